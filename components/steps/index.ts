// The one list of server steps, decided from Settings by pure functions. Drivers: components/remote.ts
// (Pulumi over SSH to EC2) and test/host/driver.ts (SSH to a systemd container).
import { DATA_DEVICE_NAME } from "../dataVolume";
import { Settings } from "../settings";
import {
    DATA_MOUNT,
    DB_NAME,
    DB_USER,
    dataSource,
    healthCheck,
    mattermostConfigPatch,
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

export function renderMattermostUnit(): string {
    return fillTemplate(readTemplate("mattermost.service"), { DATA_MOUNT });
}

/** Knobs that differ between EC2 and the test host, with EC2's values as defaults. */
export interface StepOptions {
    /** Attachment device name of the data volume. Default: /dev/sdf. */
    readonly dataDevice?: string;
    /** Seconds the start step waits for Mattermost to answer. Default: 300. */
    readonly healthTimeoutSeconds?: number;
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
        {
            name: "postgres",
            description: "PostgreSQL on the data volume, the Mattermost role and database",
            script: "postgres.sh",
            vars: { DATA_MOUNT, DB_NAME, DB_USER },
            runtimeVars: { DB_PASSWORD: { template: "{{databasePassword}}", secret: true } },
            after: ["volume"],
        },
    ];
    if (settings.tlsMode === "direct" && settings.certificate !== "letsencrypt") {
        steps.push({
            name: "certificate",
            description: "the TLS certificate and key for Mattermost (owned by mattermost, key 0600)",
            script: "certificate.sh",
            vars: { CERT_FILE: TLS_CERT_FILE, KEY_FILE: TLS_KEY_FILE, CERT_OWNER: "mattermost" },
            runtimeVars: {
                CERT_CHAIN: { template: "{{certificateChain}}", secret: false },
                CERT_KEY: { template: "{{certificateKey}}", secret: true },
            },
            after: ["volume"],
        });
    }
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
                CONFIG_PATCH: JSON.stringify(mattermostConfigPatch(settings), null, 2),
                UNIT_FILE: renderMattermostUnit(),
            },
            runtimeVars: { DATASOURCE: { template: dataSource("{{databasePassword}}"), secret: true } },
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
    checkStepOrder(steps);
    return steps;
}
