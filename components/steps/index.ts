// The one list of server steps, decided from Settings by pure functions. Drivers: components/remote.ts
// (Pulumi over SSH to EC2) and test/host/driver.ts (SSH to a systemd container).
import { DATA_DEVICE_NAME } from "../dataVolume";
import { DatabaseMode, Settings } from "../settings";
import { ACME_WEBROOT, defaultNginxSiteInput, NGINX_CACHE_DIR, renderNginxHttpOnly, renderNginxSiteVariants } from "./nginx";
import {
    DATA_MOUNT,
    DB_NAME,
    DB_PORT,
    DB_USER,
    dataSource,
    healthCheck,
    mattermostConfigPatch,
    RDS_CA_FILE,
    RDS_CA_URL,
    TLS_CERT_FILE,
    TLS_KEY_FILE,
} from "./mattermostConfig";
import { checkStepOrder, fillTemplate, readTemplate, Step } from "./step";

export * from "./step";

export function releaseArch(settings: Settings): "amd64" | "arm64" {
    switch (settings.architecture) {
        case "x86_64":
            return "amd64";
        case "arm64":
            return "arm64";
        default: {
            const unreachable: never = settings.architecture;
            throw new Error(`unknown architecture ${String(unreachable)}`);
        }
    }
}

export function releaseUrl(settings: Settings): string {
    const v = settings.mattermostVersion;
    return `${settings.mattermostDownloadBaseUrl}/${v}/mattermost-${v}-linux-${releaseArch(settings)}.tar.gz`;
}

/** The systemd unit: with the local database it requires PostgreSQL's unit; with RDS there is none on the host. */
export function renderMattermostUnit(database: DatabaseMode): string {
    switch (database) {
        case "local":
            return fillTemplate(readTemplate("mattermost.service"), {
                DATA_MOUNT,
                AFTER_DATABASE: " postgresql.service",
                DATABASE_DEPENDENCY: "Requires=postgresql.service",
            });
        case "rds":
            return fillTemplate(readTemplate("mattermost.service"), {
                DATA_MOUNT,
                AFTER_DATABASE: "",
                DATABASE_DEPENDENCY: "# The database is Amazon RDS: no local PostgreSQL unit to require.",
            });
        default: {
            const unreachable: never = database;
            throw new Error(`unknown database ${String(unreachable)}`);
        }
    }
}

/** Knobs that differ between EC2 and the test host, with EC2's values as defaults. */
export interface StepOptions {
    /** Attachment device name of the data volume. Default: /dev/sdf. */
    readonly dataDevice?: string;
    /** Seconds the start step waits for Mattermost to answer. Default: 300. */
    readonly healthTimeoutSeconds?: number;
}

/** certbot's lineage name: fixed, so a re-issue never lands in a `-0001` copy. */
export const CERT_NAME = "mattermost";
export const NGINX_TLS_CERT_FILE = "/etc/nginx/tls/fullchain.pem";
export const NGINX_TLS_KEY_FILE = "/etc/nginx/tls/privkey.pem";

/** Where the TLS terminator finds its certificate, per shape and source. */
export function tlsFiles(settings: Settings): { cert: string; key: string } {
    switch (settings.tlsMode) {
        case "direct":
            return { cert: TLS_CERT_FILE, key: TLS_KEY_FILE };
        case "nginx":
            return settings.certificate === "letsencrypt"
                ? { cert: `/etc/letsencrypt/live/${CERT_NAME}/fullchain.pem`, key: `/etc/letsencrypt/live/${CERT_NAME}/privkey.pem` }
                : { cert: NGINX_TLS_CERT_FILE, key: NGINX_TLS_KEY_FILE };
        case "alb":
            throw new Error("the alb shape serves ACM's certificate from the load balancer; the server holds no TLS files");
        default: {
            const unreachable: never = settings.tlsMode;
            throw new Error(`unknown tlsMode ${String(unreachable)}`);
        }
    }
}

/** The proxy step: on in the nginx shape, and in the direct shape it undoes a previous proxy. */
export function nginxStep(settings: Settings, after: string[]): Step {
    if (settings.tlsMode === "direct" || settings.tlsMode === "alb") {
        return {
            name: "nginx",
            description: `no proxy in the ${settings.tlsMode} shape: stop and disable nginx if an earlier shape left it`,
            script: "nginx.sh",
            vars: { PROXY: "off" },
            runtimeVars: {},
            after,
        };
    }
    const files = tlsFiles(settings);
    const variants = renderNginxSiteVariants(defaultNginxSiteInput(settings.domain, files.cert, files.key));
    const certbot = settings.certificate === "letsencrypt";
    const vars: Record<string, string> = {
        PROXY: "on",
        SITE_LEGACY_HTTP2: variants.legacyHttp2,
        SITE_HTTP2_DIRECTIVE: variants.http2Directive,
        SITE_HTTP_ONLY: renderNginxHttpOnly({ domain: settings.domain, acmeWebroot: ACME_WEBROOT }),
        CERT_FILE: files.cert,
        KEY_FILE: files.key,
        ACME_WEBROOT,
        CACHE_DIR: NGINX_CACHE_DIR,
        CERTBOT: certbot ? "yes" : "no",
    };
    if (certbot) {
        Object.assign(vars, {
            DOMAIN: settings.domain,
            CERT_NAME,
            ACME_SERVER: settings.acmeDirectoryUrl,
            LETSENCRYPT_EMAIL: settings.letsencryptEmail ?? "",
        });
        if (settings.acmeCaBundle !== undefined) vars.ACME_CA_BUNDLE = settings.acmeCaBundle;
    }
    return {
        name: "nginx",
        description: certbot ? "nginx proxy with a Let's Encrypt certificate through certbot" : "nginx proxy terminating TLS",
        script: "nginx.sh",
        vars,
        runtimeVars: {},
        after,
    };
}

/** Where the daily database dumps go: on the data volume, so every snapshot carries one. */
export const DUMP_DIR = `${DATA_MOUNT}/backups`;
/** Dumps kept on the volume (each snapshot keeps its own copies beyond that). */
export const DUMPS_KEPT = 3;

/** The dump runs 30 minutes before the snapshot ("HH:MM" UTC, wrapping past midnight). */
export function dumpTime(snapshotTime: string): string {
    const [h, m] = snapshotTime.split(":").map(Number);
    const minutes = (h * 60 + m - 30 + 24 * 60) % (24 * 60);
    return `${String(Math.floor(minutes / 60)).padStart(2, "0")}:${String(minutes % 60).padStart(2, "0")}`;
}

export function backupStep(settings: Settings): Step {
    return {
        name: "backup",
        description: `daily pg_dump onto the data volume at ${dumpTime(settings.snapshotTime)} UTC, before the snapshot`,
        script: "backup.sh",
        vars: {
            DUMP_PROGRAM: readTemplate("db-dump.sh"),
            DUMP_SERVICE: fillTemplate(readTemplate("mattermost-db-dump.service"), {
                DATA_MOUNT,
                DUMP_DIR,
                DB_NAME,
                KEEP: String(DUMPS_KEPT),
            }),
            DUMP_TIMER: fillTemplate(readTemplate("mattermost-db-dump.timer"), { DUMP_TIME: dumpTime(settings.snapshotTime) }),
        },
        runtimeVars: {},
        after: ["postgres"],
    };
}

/**
 * The RDS step: installs the RDS certificate bundle (downloaded on the server), waits until the database answers
 * over verified TLS, and, when a local database from the `local` shape is still on the volume and the RDS database
 * is empty, migrates it (scripts/migrate-database.sh). It also retires the local PostgreSQL and its dump timer.
 */
export function rdsStep(after: string[]): Step {
    return {
        name: "rds",
        description: "the RDS certificate bundle, a verified TLS connection, and the one-time migration of a local database",
        script: "rds.sh",
        vars: {
            DATA_MOUNT,
            DB_NAME,
            DB_USER,
            DB_PORT: String(DB_PORT),
            CA_URL: RDS_CA_URL,
            CA_FILE: RDS_CA_FILE,
            SSLMODE: "verify-full",
        },
        runtimeVars: {
            DB_HOST: { template: "{{databaseHost}}", secret: false },
            DB_PASSWORD: { template: "{{databasePassword}}", secret: true },
        },
        after,
    };
}

/** The database steps: one choice, local PostgreSQL (plus its dump job) or RDS. */
export function databaseSteps(settings: Settings): Step[] {
    switch (settings.database) {
        case "local":
            return [
                {
                    name: "postgres",
                    description: "PostgreSQL on the data volume, the Mattermost role and database",
                    script: "postgres.sh",
                    vars: { DATA_MOUNT, DB_NAME, DB_USER },
                    runtimeVars: { DB_PASSWORD: { template: "{{databasePassword}}", secret: true } },
                    after: ["volume"],
                },
                backupStep(settings),
            ];
        case "rds":
            return [rdsStep(["volume"])];
        default: {
            const unreachable: never = settings.database;
            throw new Error(`unknown database ${String(unreachable)}`);
        }
    }
}

export function buildServerSteps(settings: Settings, opts: StepOptions = {}): Step[] {
    const health = healthCheck(settings);
    const steps: Step[] = [
        {
            name: "volume",
            description: "find, format once, and mount the data volume by UUID",
            script: "volume.sh",
            vars: { DATA_DEVICE: opts.dataDevice ?? DATA_DEVICE_NAME, DATA_MOUNT },
            runtimeVars: { DATA_VOLUME_ID: { template: "{{dataVolumeId}}", secret: false } },
            after: [],
        },
        ...databaseSteps(settings),
    ];
    if (settings.certificate === "own" || settings.certificate === "self-signed") {
        const files = tlsFiles(settings);
        const owner = settings.tlsMode === "direct" ? "mattermost" : "root";
        steps.push({
            name: "certificate",
            description: `the TLS certificate and key for ${settings.tlsMode === "direct" ? "Mattermost" : "nginx"} (owned by ${owner}, key 0600)`,
            script: "certificate.sh",
            vars: { CERT_FILE: files.cert, KEY_FILE: files.key, CERT_OWNER: owner },
            runtimeVars: {
                CERT_CHAIN: { template: "{{certificateChain}}", secret: false },
                CERT_KEY: { template: "{{certificateKey}}", secret: true },
            },
            after: ["volume"],
        });
    }
    if (settings.tlsMode !== "nginx")
        steps.push(
            nginxStep(
                settings,
                steps.map((s) => s.name),
            ),
        );
    // With S3 the bucket's generated name is only known at deploy time: the patch becomes a runtime template.
    const configPatch = JSON.stringify(mattermostConfigPatch(settings), null, 2);
    const patchNeedsRuntime = configPatch.includes("{{");
    steps.push(
        {
            name: "mattermost",
            description: `Mattermost ${settings.mattermostVersion}: release, config, systemd unit`,
            script: "mattermost.sh",
            vars: {
                MM_VERSION: settings.mattermostVersion,
                MM_URL: releaseUrl(settings),
                MM_SHA256: settings.mattermostSha256,
                DATA_MOUNT,
                ...(patchNeedsRuntime ? {} : { CONFIG_PATCH: configPatch }),
                UNIT_FILE: renderMattermostUnit(settings.database),
            },
            runtimeVars: {
                DATASOURCE: {
                    template: dataSource(
                        settings.database,
                        "{{databasePassword}}",
                        settings.database === "rds" ? "{{databaseHost}}" : undefined,
                    ),
                    secret: true,
                },
                ...(patchNeedsRuntime ? { CONFIG_PATCH: { template: configPatch, secret: false } } : {}),
            },
            after: steps.map((s) => s.name),
        },
        {
            name: "start",
            description: "setcap on the binary (last), then (re)start and wait for the health check",
            script: "start.sh",
            vars: {
                HEALTH_URL: health.url,
                HEALTH_STATUS: String(health.status),
                HEALTH_TIMEOUT: String(opts.healthTimeoutSeconds ?? 300),
            },
            runtimeVars: {},
            after: ["mattermost"],
        },
    );
    if (settings.tlsMode === "nginx") steps.push(nginxStep(settings, ["start"]));
    checkStepOrder(steps);
    return steps;
}
