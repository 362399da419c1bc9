// Mattermost's config.json settings this project owns, typed against Mattermost's own types as a partial overlay.
import type { AdminConfig } from "@mattermost/types/config";

import { Settings, TlsMode } from "../settings";

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

/**
 * The local PostgreSQL DSN. config.json gets it without the password; the real one comes from
 * MM_SQLSETTINGS_DATASOURCE (a root-only file).
 */
export function dataSource(password?: string): string {
    const user = password === undefined ? DB_USER : `${DB_USER}:${password}`;
    return `postgres://${user}@127.0.0.1:5432/${DB_NAME}?sslmode=disable&connect_timeout=10`;
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
            return {
                ListenAddress: `127.0.0.1:${UPSTREAM_PORT}`,
                ConnectionSecurity: "",
                Forward80To443: false,
                UseLetsEncrypt: false,
                TLSCertFile: "",
                TLSKeyFile: "",
                TLSStrictTransport: false,
            };
        default: {
            const unreachable: never = mode;
            throw new Error(`unknown tlsMode ${String(unreachable)}`);
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
            DataSource: dataSource(),
        },
        FileSettings: {
            DriverName: "local",
            Directory: `${DATA_MOUNT}/mattermost/data/`,
        },
    };
}

/** How the start step knows Mattermost is up, per shape. */
export function healthCheck(settings: Settings): { url: string; status: number } {
    switch (settings.tlsMode) {
        case "nginx":
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
