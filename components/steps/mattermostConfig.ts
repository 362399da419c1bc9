// Mattermost's config.json settings this project owns, typed against Mattermost's own types as a partial overlay.
import type { AdminConfig } from "@mattermost/types/config";

import { DatabaseMode, Settings, TlsMode } from "../settings";

type DeepPartial<T> = { [K in keyof T]?: T[K] extends readonly unknown[] ? T[K] : T[K] extends object ? DeepPartial<T[K]> : T[K] };

export type ConfigPatch = DeepPartial<Pick<AdminConfig, "ServiceSettings" | "SqlSettings" | "FileSettings">>;

/** Mount point of the data volume on the host. */
export const DATA_MOUNT = "/mnt/mattermost-data";
/** Where Mattermost's TLS certificate and key live in the direct shape (owned by mattermost, key 0600). */
export const TLS_DIR = "/etc/mattermost/tls";
export const TLS_CERT_FILE = `${TLS_DIR}/fullchain.pem`;
export const TLS_KEY_FILE = `${TLS_DIR}/privkey.pem`;
export const LETSENCRYPT_CACHE = `${DATA_MOUNT}/mattermost/letsencrypt.cache`;
export const DB_NAME = "mattermost";
export const DB_USER = "mmuser";
/** Mattermost's port behind a proxy. */
export const UPSTREAM_PORT = 8065;

/**
 * Mozilla intermediate (guidelines 6.0): the forward-secret AEAD suites for TLS 1.2, by Go's names (Mattermost is
 * a Go program). TLS 1.3 suites are not configurable in Go and are all AEAD. Mattermost's own default list also
 * has RSA key-exchange suites without forward secrecy, hence the override.
 */
export const MOZILLA_INTERMEDIATE_GO_CIPHERS = [
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
];

/** Two years, the HSTS max-age Mozilla recommends (at least 180 days for an A+). */
export const HSTS_MAX_AGE_SECONDS = 63072000;

/** Where the step puts the RDS certificate bundle (public material) that Mattermost verifies the database with. */
export const RDS_CA_FILE = "/etc/mattermost/rds-ca.pem";
/** AWS's bundle of every RDS region's root and intermediate certificates. */
export const RDS_CA_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem";
export const DB_PORT = 5432;

/**
 * The PostgreSQL DSN. config.json gets it without the password (and, for RDS, without the host, known only at deploy
 * time); the real one comes from MM_SQLSETTINGS_DATASOURCE (a root-only file). Local: loopback, no TLS needed. RDS:
 * TLS with the server's certificate verified against the RDS bundle and its name against the endpoint (verify-full).
 */
export function dataSource(database: DatabaseMode, password?: string, host?: string): string {
    const user = password === undefined ? DB_USER : `${DB_USER}:${password}`;
    switch (database) {
        case "local":
            return `postgres://${user}@127.0.0.1:${DB_PORT}/${DB_NAME}?sslmode=disable&connect_timeout=10`;
        case "rds":
            return `postgres://${user}@${host ?? ""}${host === undefined ? "" : `:${DB_PORT}`}/${DB_NAME}?sslmode=verify-full&sslrootcert=${RDS_CA_FILE}&connect_timeout=10`;
        default: {
            const unreachable: never = database;
            throw new Error(`unknown database ${String(unreachable)}`);
        }
    }
}

/** Mattermost serving plain HTTP on `listenAddress` behind something else that terminates TLS. */
function plainBehindTlsTerminator(listenAddress: string): ConfigPatch["ServiceSettings"] {
    return {
        ListenAddress: listenAddress,
        ConnectionSecurity: "",
        Forward80To443: false,
        UseLetsEncrypt: false,
        TLSCertFile: "",
        TLSKeyFile: "",
        TLSStrictTransport: false,
    };
}

function tlsSettings(settings: Settings, mode: TlsMode): ConfigPatch["ServiceSettings"] {
    switch (mode) {
        case "direct":
            return {
                ListenAddress: ":443",
                ConnectionSecurity: "TLS",
                Forward80To443: true,
                TLSMinVer: "1.2",
                TLSStrictTransport: true,
                TLSStrictTransportMaxAge: HSTS_MAX_AGE_SECONDS,
                TLSOverwriteCiphers: MOZILLA_INTERMEDIATE_GO_CIPHERS,
                UseLetsEncrypt: settings.certificate === "letsencrypt",
                LetsEncryptCertificateCacheFile: LETSENCRYPT_CACHE,
                TLSCertFile: settings.certificate === "letsencrypt" ? "" : TLS_CERT_FILE,
                TLSKeyFile: settings.certificate === "letsencrypt" ? "" : TLS_KEY_FILE,
            };
        case "nginx":
            // TLS ends at nginx; TLS on both layers loops redirects. Mattermost listens on loopback only.
            return plainBehindTlsTerminator(`127.0.0.1:${UPSTREAM_PORT}`);
        case "alb":
            // TLS ends at the load balancer, which reaches Mattermost on 8065 over the VPC (the security group admits
            // only the load balancer). Plain HTTP here, no forwarder: the ALB redirects 80 itself.
            return plainBehindTlsTerminator(`:${UPSTREAM_PORT}`);
        default: {
            const unreachable: never = mode;
            throw new Error(`unknown tlsMode ${String(unreachable)}`);
        }
    }
}

/** Placeholder for the bucket name in the config patch, filled at deploy time (the bucket's generated name). */
export const FILES_BUCKET_PLACEHOLDER = "{{filesBucket}}";

function fileSettings(settings: Settings): ConfigPatch["FileSettings"] {
    const directory = `${DATA_MOUNT}/mattermost/data/`;
    switch (settings.fileStorage) {
        case "local":
            return { DriverName: "local", Directory: directory };
        case "s3":
            // No access keys: with both empty Mattermost's S3 client takes the instance role's credentials from
            // IMDS, so no static key exists anywhere. Directory stays set (Mattermost validates it; unused by S3).
            return {
                DriverName: "amazons3",
                Directory: directory,
                AmazonS3Bucket: FILES_BUCKET_PLACEHOLDER,
                AmazonS3Region: settings.awsRegion ?? "",
                AmazonS3Endpoint: `s3.${settings.awsRegion ?? ""}.amazonaws.com`,
                AmazonS3PathPrefix: "",
                AmazonS3AccessKeyId: "",
                AmazonS3SecretAccessKey: "",
                AmazonS3SSL: true,
                AmazonS3SSE: true,
                AmazonS3SignV2: false,
            };
        default: {
            const unreachable: never = settings.fileStorage;
            throw new Error(`unknown fileStorage ${String(unreachable)}`);
        }
    }
}

export function mattermostConfigPatch(settings: Settings): ConfigPatch {
    return {
        ServiceSettings: {
            SiteURL: `https://${settings.domain}`,
            ...tlsSettings(settings, settings.tlsMode),
        },
        SqlSettings: {
            DriverName: "postgres",
            DataSource: dataSource(settings.database),
        },
        FileSettings: fileSettings(settings),
    };
}

/** How the start step knows Mattermost is up, per shape. */
export function healthCheck(settings: Settings): { url: string; status: number } {
    switch (settings.tlsMode) {
        case "nginx":
        case "alb":
            return { url: `http://127.0.0.1:${UPSTREAM_PORT}/api/v4/system/ping`, status: 200 };
        case "direct":
            // Let's Encrypt's certificate is fetched on the first TLS client; until then the port 80 forwarder
            // answering proves the server started.
            return settings.certificate === "letsencrypt"
                ? { url: "http://127.0.0.1:80/", status: 301 }
                : { url: "https://127.0.0.1:443/api/v4/system/ping", status: 200 };
        default: {
            const unreachable: never = settings.tlsMode;
            throw new Error(`unknown tlsMode ${String(unreachable)}`);
        }
    }
}
