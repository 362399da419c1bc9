// Stack config -> Settings. Every key, default, rule and error message lives here; nothing else reads
// pulumi.Config. The parsing is pure (raw strings in, Settings or a list of errors out) so that it is tested
// without mocks; `loadSettings` is the thin Pulumi-facing wrapper.
import * as net from "node:net";
import * as pulumi from "@pulumi/pulumi";

import { chainsToRoot, checkOwnCertificate, parsePemCertificates } from "./certificates";

export const CONFIG_NAMESPACE = "mattermost";

export type TlsModeSetting = "direct" | "nginx" | "alb" | "auto";
/** The HTTPS shape after `auto` is resolved (`auto` never picks `alb`: a load balancer is a deliberate choice). */
export type TlsMode = "direct" | "nginx" | "alb";
/** `acm` (an AWS Certificate Manager certificate on the load balancer) goes with `tlsMode: alb` and only with it. */
export type CertificateSource = "letsencrypt" | "own" | "self-signed" | "acm";
/** Where the database lives: PostgreSQL on the data volume, or Amazon RDS for PostgreSQL. */
export type DatabaseMode = "local" | "rds";
/** Where Mattermost keeps uploaded files: the data volume, or a private S3 bucket. */
export type FileStorageMode = "local" | "s3";
export type Architecture = "x86_64" | "arm64";
/** Which address of the instance Pulumi's SSH connection uses. */
export type SshAddress = "public" | "private";

/** Users above which the proxy is the recommended shape (Mattermost's TLS page). */
export const PROXY_RECOMMENDED_ABOVE_USERS = 200;

export const ACME_DIRECTORIES = {
    production: "https://acme-v02.api.letsencrypt.org/directory",
    staging: "https://acme-staging-v02.api.letsencrypt.org/directory",
} as const;

export interface Settings {
    readonly domain: string;
    /** True when `domain` is an IPv4 address rather than a DNS name. */
    readonly domainIsIp: boolean;
    readonly tlsMode: TlsMode;
    readonly certificate: CertificateSource;
    readonly letsencryptEmail?: string;
    /** The ACME directory URL (already resolved from production/staging). */
    readonly acmeDirectoryUrl: string;
    readonly expectedUsers: number;
    readonly instanceType: string;
    readonly architecture: Architecture;
    readonly mattermostVersion: string;
    readonly mattermostSha256: string;
    readonly mattermostDownloadBaseUrl: string;
    readonly sshAllowedCidrs: readonly string[];
    readonly sshAddress: SshAddress;
    readonly route53ZoneId?: string;
    readonly dataVolumeSizeGiB: number;
    readonly protectDataVolume: boolean;
    readonly subnetId?: string;
    readonly vpcCidr: string;
    readonly availabilityZone?: string;
    /** PEM of the CA behind a private ACME server's HTTPS (certbot trusts it via REQUESTS_CA_BUNDLE). */
    readonly acmeCaBundle?: string;
    /** PEM chain for `certificate: own` (public material, not a secret). */
    readonly certificateChain?: string;
    /** How long `pulumi up` waits for https://<domain>/api/v4/system/ping to answer before it diagnoses. */
    readonly endpointTimeoutSeconds: number;
    /** PEM of the CA that issued the served certificate, when it is not publicly trusted. */
    readonly endpointCaBundle?: string;
    /** Daily EBS snapshots of the data volume through Data Lifecycle Manager. */
    readonly snapshots: boolean;
    /** UTC time of the daily snapshot, "HH:MM"; the database dump runs 30 minutes before. */
    readonly snapshotTime: string;
    readonly snapshotRetainCount: number;
    /** Create the data volume from this snapshot (restore). */
    readonly dataVolumeSnapshotId?: string;
    readonly database: DatabaseMode;
    readonly rdsInstanceClass: string;
    readonly rdsMultiAz: boolean;
    readonly rdsBackupRetentionDays: number;
    readonly rdsAllocatedStorageGiB: number;
    readonly fileStorage: FileStorageMode;
    /** Days S3 keeps a replaced or deleted file version before it expires. */
    readonly s3NoncurrentVersionDays: number;
    /** `aws:region` of the stack (Mattermost's AmazonS3Region); set whenever fileStorage is s3. */
    readonly awsRegion?: string;
}

/** Secret config values, in plain text only inside the program; `loadSettings` wraps them as Pulumi secrets. */
export interface SecretSettings {
    readonly certificateKey?: string;
}

/** One config key as the README and Pulumi.yaml document it. */
export interface ConfigKeyDoc {
    readonly key: string;
    readonly type: "string" | "integer" | "boolean" | "array";
    /** The default as the README states it; keys without one are required (Pulumi.yaml declares "" for optional ones). */
    readonly default?: string;
    readonly secret?: boolean;
    /** Pulumi refuses to run a stack that lacks a required key. */
    readonly required?: boolean;
    readonly description: string;
}

export const CONFIG_KEYS: readonly ConfigKeyDoc[] = [
    {
        key: "domain",
        type: "string",
        required: true,
        description: "Public name Mattermost is served at (FQDN; an IPv4 address only with `own` or `self-signed` certificates).",
    },
    {
        key: "tlsMode",
        type: "string",
        default: "auto",
        description:
            "Where TLS ends: `direct` (Mattermost itself), `nginx` (a proxy in front), `alb` (an AWS Application Load Balancer with an ACM certificate; never picked by `auto`), `auto` (nginx above 200 expected users, else direct).",
    },
    {
        key: "certificate",
        type: "string",
        default: "letsencrypt",
        description:
            "Certificate source: `letsencrypt`, `own` (certificateChain + certificateKey), `self-signed` (tests only; browsers will not trust it) or `acm` (AWS Certificate Manager, only with `tlsMode: alb`, where it is the default).",
    },
    {
        key: "letsencryptEmail",
        type: "string",
        description: "Let's Encrypt account email (expiry notices); required for `letsencrypt` with `nginx`.",
    },
    {
        key: "acmeServer",
        type: "string",
        default: "production",
        description:
            "ACME directory for certbot: `production`, `staging`, or an https URL of a private ACME CA. Mattermost's built-in client (direct mode) always uses production.",
    },
    {
        key: "acmeCaBundle",
        type: "string",
        description:
            "PEM of the CA that signs a private ACME server's HTTPS certificate (with `acmeServer` set to its URL); certbot trusts it.",
    },
    {
        key: "endpointTimeoutSeconds",
        type: "integer",
        default: "600",
        description:
            "How long `pulumi up` waits for `https://<domain>/api/v4/system/ping` to answer (certificate verified) before it fails with a diagnosis; 30..3600.",
    },
    {
        key: "endpointCaBundle",
        type: "string",
        description:
            "PEM of the CA that issued the served certificate when it is not publicly trusted: required with `acmeServer` staging or a private ACME URL in the nginx shape (e.g. Let's Encrypt's staging root) and with an own certificate from a private CA; the endpoint check then trusts only it.",
    },
    {
        key: "expectedUsers",
        type: "integer",
        default: "50",
        description: "Expected number of users; `tlsMode: auto` picks nginx above 200.",
    },
    {
        key: "instanceType",
        type: "string",
        default: "t3.medium (x86_64) / t4g.medium (arm64)",
        description: "EC2 instance type; must match `architecture`.",
    },
    { key: "architecture", type: "string", default: "x86_64", description: "CPU architecture: `x86_64` or `arm64` (Graviton)." },
    {
        key: "mattermostVersion",
        type: "string",
        default: "10.11.4",
        description: "Mattermost server release (X.Y.Z). Raising it upgrades in place; lowering it is refused.",
    },
    {
        key: "mattermostSha256",
        type: "string",
        required: true,
        description: "SHA-256 of the release tarball for `mattermostVersion` and `architecture`; the install refuses a mismatch.",
    },
    {
        key: "mattermostDownloadBaseUrl",
        type: "string",
        default: "https://releases.mattermost.com",
        description: "Base URL of the release tarballs (`<base>/<version>/mattermost-<version>-linux-<arch>.tar.gz`).",
    },
    {
        key: "sshAllowedCidrs",
        type: "array",
        default: "[]",
        description:
            "CIDRs allowed to reach SSH (port 22). None by default, and then preview stops: Pulumi installs the server over SSH, so list the address `pulumi up` runs from.",
    },
    {
        key: "sshAddress",
        type: "string",
        default: "public",
        description:
            "Address Pulumi's SSH connection uses: `public` (the Elastic IP) or `private` (the instance's private IP, for deploying from a runner inside a peered network or VPN listed in `sshAllowedCidrs`).",
    },
    {
        key: "route53ZoneId",
        type: "string",
        description:
            "Route53 hosted zone id; when set, an A record for `domain` points at the Elastic IP (with `tlsMode: alb`: an alias to the load balancer, and the ACM certificate is validated through the zone).",
    },
    {
        key: "dataVolumeSizeGiB",
        type: "integer",
        default: "20",
        description: "Size of the encrypted data volume (PostgreSQL + Mattermost files), 1-16384 GiB. It can grow, never shrink.",
    },
    {
        key: "protectDataVolume",
        type: "boolean",
        default: "true",
        description:
            "Mark the data volume (and the RDS database and S3 bucket when used) `protect`ed so no `pulumi up`/`destroy` can delete them (they are retained on delete regardless).",
    },
    {
        key: "snapshots",
        type: "boolean",
        default: "true",
        description: "Daily EBS snapshots of the data volume (Data Lifecycle Manager), after a `pg_dump` of the database onto the volume.",
    },
    {
        key: "snapshotTime",
        type: "string",
        default: "03:00",
        description: "UTC time (HH:MM) of the daily snapshot; the database dump runs 30 minutes earlier.",
    },
    {
        key: "snapshotRetainCount",
        type: "integer",
        default: "7",
        description: "How many daily snapshots to keep (1..1000).",
    },
    {
        key: "dataVolumeSnapshotId",
        type: "string",
        description:
            "Restore: create the data volume from this EBS snapshot (snap-…). Changing it replaces the data volume; the old one is retained.",
    },
    {
        key: "subnetId",
        type: "string",
        description:
            "Use this existing public subnet instead of creating a VPC (not with `tlsMode: alb` or `database: rds`, which need subnets in two zones).",
    },
    {
        key: "vpcCidr",
        type: "string",
        default: "10.80.0.0/16",
        description:
            "CIDR of the dedicated VPC (when `subnetId` is not set); the public subnet takes its first /24, and with `alb`/`rds` the next three /24s are a second public and two private subnets (so at most /22 then).",
    },
    { key: "availabilityZone", type: "string", description: "Availability zone of the created subnet (default: the region's first)." },
    {
        key: "certificateChain",
        type: "string",
        description: "PEM chain (server certificate first, then intermediates) for `certificate: own`.",
    },
    {
        key: "certificateKey",
        type: "string",
        secret: true,
        description: "PEM private key for `certificate: own`, unencrypted, set with `--secret`.",
    },
    {
        key: "database",
        type: "string",
        default: "local",
        description:
            "Where PostgreSQL runs: `local` (on the data volume) or `rds` (Amazon RDS for PostgreSQL 16 in private subnets, TLS verified). Switching `local` to `rds` migrates the data (pg_dump/pg_restore, row counts verified).",
    },
    {
        key: "rdsInstanceClass",
        type: "string",
        default: "db.t4g.medium",
        description: "RDS instance class with `database: rds`.",
    },
    {
        key: "rdsMultiAz",
        type: "boolean",
        default: "false",
        description: "A standby in a second availability zone with automatic failover (`database: rds`); doubles the database cost.",
    },
    {
        key: "rdsBackupRetentionDays",
        type: "integer",
        default: "7",
        description: "Days RDS keeps automated backups (point-in-time restore), 1..35.",
    },
    {
        key: "rdsAllocatedStorageGiB",
        type: "integer",
        default: "20",
        description: "Encrypted gp3 storage of the RDS instance, 20..65536 GiB. It can grow, never shrink.",
    },
    {
        key: "fileStorage",
        type: "string",
        default: "local",
        description:
            "Where Mattermost keeps uploaded files: `local` (the data volume) or `s3` (a private, versioned, encrypted S3 bucket reached through the instance role; needs `aws:region`).",
    },
    {
        key: "s3NoncurrentVersionDays",
        type: "integer",
        default: "30",
        description: "With `fileStorage: s3`: days a replaced or deleted file's old version is kept before it expires, 1..3650.",
    },
];

/** Raw stack config: key -> string exactly as `pulumi config` holds it, plus whether it is stored as a secret. */
export interface RawConfig {
    readonly values: Readonly<Record<string, string | undefined>>;
    readonly secretKeys?: ReadonlySet<string>;
    /**
     * Keys whose value is stored encrypted and cannot be read by this caller (the render command has no
     * passphrase); `values` holds a placeholder for them. Only secret keys may be unreadable: their presence is
     * checked, their content is not.
     */
    readonly unreadableKeys?: ReadonlySet<string>;
    /** The clock for certificate dates. Default: now. */
    readonly now?: Date;
    /** The stack's `aws:region` (outside this namespace), when set. */
    readonly awsRegion?: string;
}

export interface ParseResult {
    readonly settings?: Settings;
    readonly secrets?: SecretSettings;
    readonly errors: readonly string[];
    readonly warnings: readonly string[];
}

export class SettingsError extends Error {
    constructor(readonly problems: readonly string[]) {
        super(
            `Invalid stack config (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n` +
                problems.map((p) => `  - ${p}`).join("\n"),
        );
        this.name = "SettingsError";
    }
}

const KNOWN_KEYS = new Set(CONFIG_KEYS.map((k) => k.key));

export function fullKey(key: string): string {
    return `${CONFIG_NAMESPACE}:${key}`;
}

const setCmd = (key: string, example: string, secret = false): string =>
    `\`pulumi config set ${secret ? "--secret " : ""}${fullKey(key)} ${example}\``;

// RFC 1123 host name with at least two labels, each 1-63 chars, total <= 253, TLD not all numeric.
export function isFqdn(name: string): boolean {
    const n = name.endsWith(".") ? name.slice(0, -1) : name;
    if (n.length === 0 || n.length > 253) return false;
    const labels = n.split(".");
    if (labels.length < 2) return false;
    const label = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;
    if (!labels.every((l) => label.test(l))) return false;
    return !/^[0-9]+$/.test(labels[labels.length - 1]);
}

export function isEmail(value: string): boolean {
    const at = value.lastIndexOf("@");
    if (at <= 0 || at !== value.indexOf("@")) return false;
    const local = value.slice(0, at);
    const host = value.slice(at + 1);
    return (
        /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}$/.test(local) &&
        !local.startsWith(".") &&
        !local.endsWith(".") &&
        !local.includes("..") &&
        isFqdn(host)
    );
}

/** IPv4 CIDR with the host bits zero, e.g. 203.0.113.0/24 or 198.51.100.7/32. */
export function parseCidr(value: string): { ok: true } | { ok: false; reason: string } {
    const m = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(value);
    if (!m || !net.isIPv4(m[1])) return { ok: false, reason: "is not an IPv4 CIDR like 203.0.113.7/32" };
    const prefix = Number(m[2]);
    if (prefix > 32) return { ok: false, reason: "has a prefix length above 32" };
    const ip = m[1].split(".").reduce((acc, o) => (acc << 8n) + BigInt(Number(o)), 0n);
    const hostBits = 32 - prefix;
    if (hostBits > 0 && ip % (1n << BigInt(hostBits)) !== 0n) {
        return { ok: false, reason: `has host bits set (did you mean ${cidrNetwork(ip, prefix)}/${prefix}?)` };
    }
    return { ok: true };
}

function cidrNetwork(ip: bigint, prefix: number): string {
    const hostBits = BigInt(32 - prefix);
    const network = (ip >> hostBits) << hostBits;
    return [24n, 16n, 8n, 0n].map((s) => ((network >> s) & 255n).toString()).join(".");
}

/** Address ranges that never reach an Elastic IP as a source address: RFC 1918 and shared (carrier-grade NAT) space. */
export const PRIVATE_RANGES: readonly string[] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"];

function cidrBits(cidr: string): { ip: bigint; prefix: number } {
    const [addr, prefix] = cidr.split("/");
    return { ip: addr.split(".").reduce((acc, o) => (acc << 8n) + BigInt(Number(o)), 0n), prefix: Number(prefix) };
}

/** True when a valid CIDR lies wholly inside one of PRIVATE_RANGES. */
export function isPrivateCidr(cidr: string): boolean {
    if (!parseCidr(cidr).ok) return false;
    const c = cidrBits(cidr);
    return PRIVATE_RANGES.some((range) => {
        const r = cidrBits(range);
        const shift = BigInt(32 - r.prefix);
        return c.prefix >= r.prefix && c.ip >> shift === r.ip >> shift;
    });
}

export function isSemver(v: string): boolean {
    return /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$/.test(v);
}

export function compareVersions(a: string, b: string): number {
    const pa = a.split(".").map(Number);
    const pb = b.split(".").map(Number);
    for (let i = 0; i < 3; i++) {
        if (pa[i] !== pb[i]) return pa[i] < pb[i] ? -1 : 1;
    }
    return 0;
}

/** Graviton instance families carry a `g` after the generation digit: t4g, m7g, c6gn, r8g, x2gd, im4gn ... */
export function isGravitonInstanceType(instanceType: string): boolean {
    const family = instanceType.split(".")[0];
    return /^[a-z]+\d+g[a-z]*$/.test(family);
}

export function defaultInstanceType(arch: Architecture): string {
    switch (arch) {
        case "x86_64":
            return "t3.medium";
        case "arm64":
            return "t4g.medium";
        default: {
            const unreachable: never = arch;
            throw new Error(`unknown architecture ${String(unreachable)}`);
        }
    }
}

/** `auto` becomes nginx above the recommended user count, else direct (the seed's advice). */
export function resolveTlsMode(setting: TlsModeSetting, expectedUsers: number): TlsMode {
    switch (setting) {
        case "direct":
        case "nginx":
        case "alb":
            return setting;
        case "auto":
            return expectedUsers > PROXY_RECOMMENDED_ABOVE_USERS ? "nginx" : "direct";
        default: {
            const unreachable: never = setting;
            throw new Error(`unknown tlsMode ${String(unreachable)}`);
        }
    }
}

function oneOf<T extends string>(raw: string | undefined, key: string, allowed: readonly T[], fallback: T, errors: string[]): T {
    if (raw === undefined) return fallback;
    if ((allowed as readonly string[]).includes(raw)) return raw as T;
    const hint = allowed.find((a) => a.toLowerCase() === raw.toLowerCase());
    errors.push(
        `${fullKey(key)} is "${raw}", which is not one of ${allowed.map((a) => `"${a}"`).join(", ")}` +
            (hint ? ` (values are case-sensitive: use "${hint}")` : "") +
            `; fix with ${setCmd(key, allowed[0])}.`,
    );
    return fallback;
}

function integer(raw: string | undefined, key: string, fallback: number, min: number, max: number, errors: string[]): number {
    if (raw === undefined) return fallback;
    const trimmed = raw.trim();
    if (!/^-?\d+$/.test(trimmed)) {
        errors.push(`${fullKey(key)} is "${raw}", which is not a whole number; fix with ${setCmd(key, String(fallback))}.`);
        return fallback;
    }
    const n = Number(trimmed);
    if (n < min || n > max) {
        errors.push(`${fullKey(key)} is ${n}, outside ${min}..${max}; fix with ${setCmd(key, String(fallback))}.`);
        return fallback;
    }
    return n;
}

function boolean(raw: string | undefined, key: string, fallback: boolean, errors: string[]): boolean {
    if (raw === undefined) return fallback;
    if (raw === "true" || raw === "false") return raw === "true";
    errors.push(`${fullKey(key)} is "${raw}", which is not true or false; fix with ${setCmd(key, String(fallback))}.`);
    return fallback;
}

function stringList(raw: string | undefined, key: string, errors: string[]): string[] {
    if (raw === undefined) return [];
    let parsed: unknown;
    try {
        parsed = JSON.parse(raw);
    } catch {
        errors.push(`${fullKey(key)} is not a list; set each entry with \`pulumi config set --path '${fullKey(key)}[0]' 203.0.113.7/32\`.`);
        return [];
    }
    if (!Array.isArray(parsed) || !parsed.every((x): x is string => typeof x === "string")) {
        errors.push(
            `${fullKey(key)} must be a list of strings; set each entry with \`pulumi config set --path '${fullKey(key)}[0]' 203.0.113.7/32\`.`,
        );
        return [];
    }
    return parsed;
}

/** Pure: validates raw config and returns Settings, or every problem found (each naming its key). */
export function parseSettings(raw: RawConfig): ParseResult {
    const errors: string[] = [];
    const warnings: string[] = [];
    const get = (key: string): string | undefined => {
        const v = raw.values[key];
        return v === undefined || v === "" ? undefined : v;
    };

    for (const key of Object.keys(raw.values)) {
        if (!KNOWN_KEYS.has(key)) {
            const near = [...KNOWN_KEYS].find((k) => k.toLowerCase() === key.toLowerCase());
            errors.push(
                `${fullKey(key)} is not a known setting` +
                    (near ? ` (did you mean ${fullKey(near)}?)` : "") +
                    `; remove it with \`pulumi config rm ${fullKey(key)}\` (see the README's config table).`,
            );
        }
    }

    for (const key of raw.unreadableKeys ?? []) {
        const doc = CONFIG_KEYS.find((k) => k.key === key);
        if (doc !== undefined && !doc.secret) {
            errors.push(
                `${fullKey(key)} is stored encrypted (secure:), so it cannot be read here without the stack's passphrase, but its value is needed (only secret settings such as ${fullKey("certificateKey")} can stay unread): store it in plain text with \`pulumi config set ${fullKey(key)} <value>\`.`,
            );
        }
    }
    const unreadable = (key: string): boolean => raw.unreadableKeys?.has(key) ?? false;

    const tlsModeSetting = oneOf<TlsModeSetting>(get("tlsMode"), "tlsMode", ["auto", "direct", "nginx", "alb"], "auto", errors);
    const certificate = oneOf<CertificateSource>(
        get("certificate"),
        "certificate",
        ["letsencrypt", "own", "self-signed", "acm"],
        tlsModeSetting === "alb" ? "acm" : "letsencrypt",
        errors,
    );
    const architecture = oneOf<Architecture>(get("architecture"), "architecture", ["x86_64", "arm64"], "x86_64", errors);
    const expectedUsers = integer(get("expectedUsers"), "expectedUsers", 50, 1, 1_000_000, errors);
    const dataVolumeSizeGiB = integer(get("dataVolumeSizeGiB"), "dataVolumeSizeGiB", 20, 1, 16384, errors);
    const protectDataVolume = boolean(get("protectDataVolume"), "protectDataVolume", true, errors);

    // domain
    const domainRaw = get("domain");
    let domain = "";
    let domainIsIp = false;
    if (domainRaw === undefined) {
        errors.push(
            `${fullKey("domain")} is required: the public name users will open; set it with ${setCmd("domain", "chat.example.com")}.`,
        );
    } else {
        domain = domainRaw.toLowerCase().replace(/\.$/, "");
        domainIsIp = net.isIPv4(domain);
        if (net.isIPv6(domainRaw)) {
            errors.push(
                `${fullKey("domain")} is an IPv6 address; use a DNS name (or an IPv4 address with a self-signed certificate), e.g. ${setCmd("domain", "chat.example.com")}.`,
            );
        } else if (!domainIsIp && !isFqdn(domain)) {
            errors.push(
                `${fullKey("domain")} is "${domainRaw}", which is not a fully qualified domain name (letters, digits and hyphens in dot-separated labels, like chat.example.com; no scheme, port or path); fix with ${setCmd("domain", "chat.example.com")}.`,
            );
        } else if (domainIsIp && tlsModeSetting === "alb") {
            errors.push(
                `${fullKey("domain")} is the IP address ${domain}, but ${fullKey("tlsMode")} "alb" needs a DNS name: the load balancer has no fixed address and ACM only issues certificates for names. Set ${setCmd("domain", "chat.example.com")}, or choose another shape with ${setCmd("tlsMode", "nginx")}.`,
            );
        } else if (domainIsIp && certificate === "letsencrypt") {
            errors.push(
                `${fullKey("domain")} is the IP address ${domain}, but Let's Encrypt only issues certificates for DNS names: point a DNS name at the server and set ${fullKey("domain")} to it, or use ${setCmd("certificate", "self-signed")}.`,
            );
        }
    }

    // letsencrypt / ACME
    const emailRaw = get("letsencryptEmail");
    if (emailRaw !== undefined && !isEmail(emailRaw)) {
        errors.push(
            `${fullKey("letsencryptEmail")} is "${emailRaw}", which is not an email address; fix with ${setCmd("letsencryptEmail", "admin@example.com")}.`,
        );
    }
    const acmeServerSetting = get("acmeServer") ?? "production";
    let acmeDirectoryUrl: string = ACME_DIRECTORIES.production;
    if (acmeServerSetting === "production" || acmeServerSetting === "staging") {
        acmeDirectoryUrl = ACME_DIRECTORIES[acmeServerSetting];
    } else {
        let url: URL | undefined;
        try {
            url = new URL(acmeServerSetting);
        } catch {
            url = undefined;
        }
        if (!url || url.protocol !== "https:" || url.username || url.password) {
            errors.push(
                `${fullKey("acmeServer")} is "${acmeServerSetting}": use "production", "staging", or the https URL of an ACME directory (e.g. https://acme.internal.example/directory); fix with ${setCmd("acmeServer", "staging")}.`,
            );
        } else {
            acmeDirectoryUrl = url.toString();
        }
    }

    const acmeCaBundle = get("acmeCaBundle");
    if (acmeCaBundle !== undefined && !/-----BEGIN CERTIFICATE-----/.test(acmeCaBundle)) {
        errors.push(
            `${fullKey("acmeCaBundle")} is not a PEM certificate; set it with \`pulumi config set ${fullKey("acmeCaBundle")} < acme-ca.pem\`.`,
        );
    }
    const tlsMode = resolveTlsMode(tlsModeSetting, expectedUsers);
    if (tlsMode === "alb" && certificate !== "acm") {
        errors.push(
            `${fullKey("certificate")} is "${certificate}", but with ${fullKey("tlsMode")} "alb" TLS ends at the load balancer, which serves an ACM certificate it requests and renews itself (importing own or self-signed certificates into ACM is not supported here): remove it with \`pulumi config rm ${fullKey("certificate")}\` (or ${setCmd("certificate", "acm")}), or keep the certificate with ${setCmd("tlsMode", "nginx")}.`,
        );
    }
    if (tlsMode !== "alb" && certificate === "acm") {
        errors.push(
            `${fullKey("certificate")} is "acm", which only a load balancer can serve, but ${fullKey("tlsMode")} resolves to "${tlsMode}": set ${setCmd("tlsMode", "alb")}, or use ${setCmd("certificate", "letsencrypt")}.`,
        );
    }
    if (certificate === "letsencrypt" && tlsMode === "nginx" && emailRaw === undefined) {
        errors.push(
            `${fullKey("letsencryptEmail")} is required with Let's Encrypt through nginx (certbot registers an account and Let's Encrypt sends expiry notices there); set it with ${setCmd("letsencryptEmail", "admin@example.com")}.`,
        );
    }
    if (certificate === "letsencrypt" && tlsMode === "direct" && acmeServerSetting !== "production") {
        warnings.push(
            `${fullKey("acmeServer")} is "${acmeServerSetting}", but with tlsMode direct Mattermost's built-in Let's Encrypt client always uses the production directory; the setting only applies to certbot in the nginx shape.`,
        );
    }
    if (certificate !== "letsencrypt" && (emailRaw !== undefined || acmeServerSetting !== "production")) {
        warnings.push(
            `${fullKey("letsencryptEmail")}/${fullKey("acmeServer")} are set but unused: ${fullKey("certificate")} is "${certificate}".`,
        );
    }
    if (tlsModeSetting === "direct" && expectedUsers > PROXY_RECOMMENDED_ABOVE_USERS) {
        warnings.push(
            `${fullKey("expectedUsers")} is ${expectedUsers}: above ${PROXY_RECOMMENDED_ABOVE_USERS} users Mattermost recommends a proxy; consider ${setCmd("tlsMode", "nginx")}.`,
        );
    }
    if (certificate === "self-signed") {
        warnings.push(
            `${fullKey("certificate")} is "self-signed": browsers and the mobile apps will not trust it; use it for test environments only.`,
        );
    }

    // own certificate material
    const certificateChain = get("certificateChain");
    const certificateKey = get("certificateKey");
    if (certificate === "own") {
        if (certificateChain === undefined) {
            errors.push(
                `${fullKey("certificateChain")} is required with certificate "own": set the PEM chain (server certificate first) with \`pulumi config set ${fullKey("certificateChain")} < fullchain.pem\`.`,
            );
        }
        if (certificateKey === undefined) {
            errors.push(
                `${fullKey("certificateKey")} is required with certificate "own": set the unencrypted PEM key with \`pulumi config set --secret ${fullKey("certificateKey")} < privkey.pem\`.`,
            );
        } else if (raw.secretKeys && !raw.secretKeys.has("certificateKey")) {
            errors.push(
                `${fullKey("certificateKey")} is stored in plain text; store it encrypted with \`pulumi config set --secret ${fullKey("certificateKey")} < privkey.pem\`.`,
            );
        }
        if (certificateChain !== undefined && certificateKey !== undefined && domain !== "") {
            const keyPem = unreadable("certificateKey") ? null : certificateKey;
            const check = checkOwnCertificate({ chainPem: certificateChain, keyPem, domain, now: raw.now ?? new Date() });
            errors.push(...check.errors);
            warnings.push(...check.warnings);
        }
    } else if (certificateChain !== undefined || certificateKey !== undefined) {
        warnings.push(
            `${fullKey("certificateChain")}/${fullKey("certificateKey")} are set but unused: ${fullKey("certificate")} is "${certificate}".`,
        );
    }

    // Mattermost release
    const mattermostVersion = get("mattermostVersion") ?? "10.11.4";
    if (!isSemver(mattermostVersion)) {
        errors.push(
            `${fullKey("mattermostVersion")} is "${mattermostVersion}", which is not a release number like 10.11.4 (no "v" prefix); fix with ${setCmd("mattermostVersion", "10.11.4")}.`,
        );
    }
    const shaRaw = get("mattermostSha256");
    let mattermostSha256 = "";
    if (shaRaw === undefined) {
        errors.push(
            `${fullKey("mattermostSha256")} is required: the SHA-256 of mattermost-${mattermostVersion}-linux-${architecture === "arm64" ? "arm64" : "amd64"}.tar.gz as published with the release; set it with ${setCmd("mattermostSha256", "<64 hex digits>")}.`,
        );
    } else if (!/^[0-9a-fA-F]{64}$/.test(shaRaw.trim())) {
        errors.push(
            `${fullKey("mattermostSha256")} must be 64 hexadecimal digits (a SHA-256), got ${shaRaw.length} characters; fix with ${setCmd("mattermostSha256", "<64 hex digits>")}.`,
        );
    } else {
        mattermostSha256 = shaRaw.trim().toLowerCase();
    }
    const baseRaw = get("mattermostDownloadBaseUrl") ?? "https://releases.mattermost.com";
    let mattermostDownloadBaseUrl = baseRaw.replace(/\/+$/, "");
    try {
        const u = new URL(baseRaw);
        if (u.protocol !== "https:" && u.protocol !== "http:") throw new Error("scheme");
        if (u.search || u.hash) throw new Error("query");
    } catch {
        errors.push(
            `${fullKey("mattermostDownloadBaseUrl")} is "${baseRaw}", which is not an http(s) URL without query; fix with ${setCmd("mattermostDownloadBaseUrl", "https://releases.mattermost.com")}.`,
        );
        mattermostDownloadBaseUrl = "https://releases.mattermost.com";
    }

    // instance
    const instanceType = get("instanceType") ?? defaultInstanceType(architecture);
    if (!/^[a-z][a-z0-9-]*\.[a-z0-9]+$/.test(instanceType)) {
        errors.push(
            `${fullKey("instanceType")} is "${instanceType}", which is not an EC2 instance type like t3.medium; fix with ${setCmd("instanceType", defaultInstanceType(architecture))}.`,
        );
    } else if (architecture === "arm64" && !isGravitonInstanceType(instanceType)) {
        errors.push(
            `${fullKey("instanceType")} "${instanceType}" is not a Graviton (arm64) type but ${fullKey("architecture")} is arm64; use e.g. ${setCmd("instanceType", "t4g.medium")}.`,
        );
    } else if (architecture === "x86_64" && isGravitonInstanceType(instanceType)) {
        errors.push(
            `${fullKey("instanceType")} "${instanceType}" is a Graviton (arm64) type but ${fullKey("architecture")} is x86_64; set ${setCmd("architecture", "arm64")} or pick an x86_64 type.`,
        );
    }

    // network
    const sshAllowedCidrs = stringList(get("sshAllowedCidrs"), "sshAllowedCidrs", errors);
    sshAllowedCidrs.forEach((cidr, i) => {
        const check = parseCidr(cidr);
        if (!check.ok) {
            errors.push(
                `${fullKey("sshAllowedCidrs")}[${i}] "${cidr}" ${check.reason}; fix with \`pulumi config set --path '${fullKey("sshAllowedCidrs")}[${i}]' 203.0.113.7/32\`.`,
            );
        }
    });
    if (sshAllowedCidrs.length === 0) {
        errors.push(
            `${fullKey("sshAllowedCidrs")} is empty, so port 22 is closed, but Pulumi installs and updates the server over SSH from the machine running \`pulumi up\`: add that machine's public address with \`pulumi config set --path '${fullKey("sshAllowedCidrs")}[0]' 203.0.113.7/32\` (and nothing wider than you need).`,
        );
    }
    if (sshAllowedCidrs.includes("0.0.0.0/0")) {
        warnings.push(
            `${fullKey("sshAllowedCidrs")} opens SSH (port 22) to the whole internet (0.0.0.0/0); narrow it to the addresses you deploy and administer from.`,
        );
    }
    const sshAddress = oneOf<SshAddress>(get("sshAddress"), "sshAddress", ["public", "private"], "public", errors);
    if (sshAddress === "public" && sshAllowedCidrs.length > 0 && sshAllowedCidrs.every(isPrivateCidr)) {
        errors.push(
            `${fullKey("sshAllowedCidrs")} only lists private ranges (${sshAllowedCidrs.join(", ")}), but ${fullKey("sshAddress")} is "public": Pulumi would SSH to the Elastic IP, where connections never arrive from a private address. To deploy from a runner inside that network set ${setCmd("sshAddress", "private")}; to deploy over the internet list that machine's public address instead.`,
        );
    }
    const vpcCidr = get("vpcCidr") ?? "10.80.0.0/16";
    const vpcCheck = parseCidr(vpcCidr);
    if (!vpcCheck.ok) {
        errors.push(`${fullKey("vpcCidr")} "${vpcCidr}" ${vpcCheck.reason}; fix with ${setCmd("vpcCidr", "10.80.0.0/16")}.`);
    } else {
        const prefix = Number(vpcCidr.split("/")[1]);
        if (prefix < 16 || prefix > 24) {
            errors.push(
                `${fullKey("vpcCidr")} "${vpcCidr}" must have a prefix between /16 and /24 (AWS VPC limits, room for a /24 subnet); fix with ${setCmd("vpcCidr", "10.80.0.0/16")}.`,
            );
        }
    }
    const subnetId = get("subnetId");
    if (subnetId !== undefined && !/^subnet-[0-9a-f]{8,17}$/.test(subnetId)) {
        errors.push(
            `${fullKey("subnetId")} is "${subnetId}", which is not a subnet id like subnet-0123456789abcdef0; fix with ${setCmd("subnetId", "subnet-0123456789abcdef0")}.`,
        );
    }
    const availabilityZone = get("availabilityZone");
    if (availabilityZone !== undefined && !/^[a-z]{2}(-gov)?-[a-z]+-\d[a-z]$/.test(availabilityZone)) {
        errors.push(
            `${fullKey("availabilityZone")} is "${availabilityZone}", which is not an availability zone like eu-west-1a; fix with ${setCmd("availabilityZone", "eu-west-1a")}.`,
        );
    }
    if (availabilityZone !== undefined && subnetId !== undefined) {
        errors.push(
            `${fullKey("availabilityZone")} and ${fullKey("subnetId")} are both set; an existing subnet has its own zone: remove one with \`pulumi config rm ${fullKey("availabilityZone")}\`.`,
        );
    }
    const route53ZoneId = get("route53ZoneId");
    if (route53ZoneId !== undefined) {
        if (!/^Z[0-9A-Z]{4,31}$/.test(route53ZoneId)) {
            errors.push(
                `${fullKey("route53ZoneId")} is "${route53ZoneId}", which is not a hosted zone id like Z0123456789ABCDEFGHIJ; fix with ${setCmd("route53ZoneId", "Z0123456789ABCDEFGHIJ")}.`,
            );
        } else if (domainIsIp) {
            errors.push(
                `${fullKey("route53ZoneId")} is set but ${fullKey("domain")} is an IP address; a DNS record needs a name: set a DNS name as domain or \`pulumi config rm ${fullKey("route53ZoneId")}\`.`,
            );
        }
    }

    // endpoint check
    const endpointTimeoutSeconds = integer(get("endpointTimeoutSeconds"), "endpointTimeoutSeconds", 600, 30, 3600, errors);
    const endpointCaBundle = get("endpointCaBundle");
    if (endpointCaBundle !== undefined && !/-----BEGIN CERTIFICATE-----/.test(endpointCaBundle)) {
        errors.push(
            `${fullKey("endpointCaBundle")} is not a PEM certificate; set it with \`pulumi config set ${fullKey("endpointCaBundle")} < issuing-root.pem\`.`,
        );
    }
    if (certificate === "own" && certificateChain !== undefined && /-----BEGIN CERTIFICATE-----/.test(certificateChain)) {
        if (endpointCaBundle === undefined && !chainsToRoot(certificateChain)) {
            errors.push(
                `${fullKey("endpointCaBundle")} is required: the chain in ${fullKey("certificateChain")} does not lead to a public root, so \`pulumi up\` could not verify the endpoint (nor would browsers without your CA). Set your CA's root with \`pulumi config set ${fullKey("endpointCaBundle")} < root-ca.pem\`, or append the missing intermediates to the chain.`,
            );
        } else if (endpointCaBundle !== undefined && !chainsToRoot(certificateChain, parsePemCertificates(endpointCaBundle))) {
            errors.push(
                `${fullKey("endpointCaBundle")} does not issue the chain in ${fullKey("certificateChain")} (its last certificate is neither in the bundle nor signed by it); set the right root with \`pulumi config set ${fullKey("endpointCaBundle")} < root-ca.pem\`.`,
            );
        }
    }
    if (certificate === "letsencrypt" && tlsMode === "nginx" && acmeServerSetting !== "production" && endpointCaBundle === undefined) {
        errors.push(
            `${fullKey("endpointCaBundle")} is required with ${fullKey("acmeServer")} "${acmeServerSetting}": its certificates are not publicly trusted, so \`pulumi up\` could never verify the endpoint. Set the issuing root, e.g. for staging: \`curl -s https://letsencrypt.org/certs/staging/letsencrypt-stg-root-x1.pem | pulumi config set ${fullKey("endpointCaBundle")}\`.`,
        );
    }

    // backups
    const snapshots = boolean(get("snapshots"), "snapshots", true, errors);
    const snapshotTime = get("snapshotTime") ?? "03:00";
    if (!/^([01]\d|2[0-3]):[0-5]\d$/.test(snapshotTime)) {
        errors.push(
            `${fullKey("snapshotTime")} is "${snapshotTime}", which is not a UTC time HH:MM; fix with ${setCmd("snapshotTime", "03:00")}.`,
        );
    }
    const snapshotRetainCount = integer(get("snapshotRetainCount"), "snapshotRetainCount", 7, 1, 1000, errors);
    const dataVolumeSnapshotId = get("dataVolumeSnapshotId");
    if (dataVolumeSnapshotId !== undefined && !/^snap-[0-9a-f]{8}([0-9a-f]{9})?$/.test(dataVolumeSnapshotId)) {
        errors.push(
            `${fullKey("dataVolumeSnapshotId")} is "${dataVolumeSnapshotId}", which is not an EBS snapshot id like snap-0123456789abcdef0 (see \`aws ec2 describe-snapshots --owner-ids self\`); fix with ${setCmd("dataVolumeSnapshotId", "snap-0123456789abcdef0")}.`,
        );
    }

    // managed services (issue 8): each a single choice
    const database = oneOf<DatabaseMode>(get("database"), "database", ["local", "rds"], "local", errors);
    const rdsInstanceClass = get("rdsInstanceClass") ?? "db.t4g.medium";
    if (!/^db\.[a-z][a-z0-9-]*\.[a-z0-9]+$/.test(rdsInstanceClass)) {
        errors.push(
            `${fullKey("rdsInstanceClass")} is "${rdsInstanceClass}", which is not an RDS instance class like db.t4g.medium; fix with ${setCmd("rdsInstanceClass", "db.t4g.medium")}.`,
        );
    }
    const rdsMultiAz = boolean(get("rdsMultiAz"), "rdsMultiAz", false, errors);
    const rdsBackupRetentionDays = integer(get("rdsBackupRetentionDays"), "rdsBackupRetentionDays", 7, 1, 35, errors);
    const rdsAllocatedStorageGiB = integer(get("rdsAllocatedStorageGiB"), "rdsAllocatedStorageGiB", 20, 20, 65536, errors);
    const fileStorage = oneOf<FileStorageMode>(get("fileStorage"), "fileStorage", ["local", "s3"], "local", errors);
    const s3NoncurrentVersionDays = integer(get("s3NoncurrentVersionDays"), "s3NoncurrentVersionDays", 30, 1, 3650, errors);
    const awsRegion = raw.awsRegion === undefined || raw.awsRegion === "" ? undefined : raw.awsRegion;
    if (database !== "rds") {
        for (const key of ["rdsInstanceClass", "rdsMultiAz", "rdsBackupRetentionDays", "rdsAllocatedStorageGiB"]) {
            if (get(key) !== undefined) warnings.push(`${fullKey(key)} is set but unused: ${fullKey("database")} is "${database}".`);
        }
    }
    if (fileStorage !== "s3" && get("s3NoncurrentVersionDays") !== undefined) {
        warnings.push(`${fullKey("s3NoncurrentVersionDays")} is set but unused: ${fullKey("fileStorage")} is "${fileStorage}".`);
    }
    if (fileStorage === "s3" && awsRegion === undefined) {
        errors.push(
            `${fullKey("fileStorage")} is "s3", but aws:region is not set in the stack: Mattermost's AmazonS3Region must name the bucket's region before anything is created; set it with \`pulumi config set aws:region eu-west-1\`.`,
        );
    }
    if (awsRegion !== undefined && !/^[a-z]{2}(-gov)?-[a-z]+-\d$/.test(awsRegion)) {
        errors.push(
            `aws:region is "${awsRegion}", which is not an AWS region like eu-west-1; fix with \`pulumi config set aws:region eu-west-1\`.`,
        );
    }
    // The shapes that span two availability zones need subnets this program creates.
    const multiZone = [
        tlsMode === "alb" ? `${fullKey("tlsMode")} "alb"` : "",
        database === "rds" ? `${fullKey("database")} "rds"` : "",
    ].filter((x) => x !== "");
    if (multiZone.length > 0 && subnetId !== undefined) {
        errors.push(
            `${fullKey("subnetId")} is set, but ${multiZone.join(" and ")} need${multiZone.length === 1 ? "s" : ""} subnets in two availability zones, which this program creates in its own VPC: remove it with \`pulumi config rm ${fullKey("subnetId")}\`.`,
        );
    }
    if (multiZone.length > 0 && vpcCheck.ok && Number(vpcCidr.split("/")[1]) > 22) {
        errors.push(
            `${fullKey("vpcCidr")} "${vpcCidr}" has room for one /24 subnet per /24, but ${multiZone.join(" and ")} need four (two public, two private): use /22 or wider, e.g. ${setCmd("vpcCidr", "10.80.0.0/16")}.`,
        );
    }
    if (tlsMode === "alb" && route53ZoneId === undefined && !domainIsIp) {
        warnings.push(
            `${fullKey("tlsMode")} is "alb" without ${fullKey("route53ZoneId")}: ACM validates the certificate for ${domain} through a DNS record this stack cannot create. \`pulumi up\` logs the CNAME (and exports it as \`certificateValidationRecords\`) and waits for it; create it in your DNS, then point ${domain} (CNAME or alias) at the load balancer's DNS name (output \`loadBalancerDnsName\`). Or set ${setCmd("route53ZoneId", "Z0123456789ABCDEFGHIJ")} and the stack does both.`,
        );
    }
    if (database === "rds" && snapshots && fileStorage === "s3") {
        errors.push(
            `${fullKey("snapshots")} is true, but with ${fullKey("database")} "rds" and ${fullKey("fileStorage")} "s3" the data volume holds neither the database nor the files, so its snapshots (and the pg_dump before them) cannot back anything up: the database is backed up by RDS (${fullKey("rdsBackupRetentionDays")}) and the files by S3 versioning. Turn them off with ${setCmd("snapshots", "false")}.`,
        );
    }

    if (errors.length > 0) return { errors, warnings };
    return {
        errors,
        warnings,
        settings: {
            domain,
            domainIsIp,
            tlsMode,
            certificate,
            letsencryptEmail: emailRaw,
            acmeDirectoryUrl,
            acmeCaBundle,
            expectedUsers,
            instanceType,
            architecture,
            mattermostVersion,
            mattermostSha256,
            mattermostDownloadBaseUrl,
            sshAllowedCidrs,
            sshAddress,
            route53ZoneId,
            dataVolumeSizeGiB,
            protectDataVolume,
            subnetId,
            vpcCidr,
            availabilityZone,
            certificateChain,
            endpointTimeoutSeconds,
            endpointCaBundle,
            snapshots,
            snapshotTime,
            snapshotRetainCount,
            dataVolumeSnapshotId,
            database,
            rdsInstanceClass,
            rdsMultiAz,
            rdsBackupRetentionDays,
            rdsAllocatedStorageGiB,
            fileStorage,
            s3NoncurrentVersionDays,
            awsRegion,
        },
        secrets: { certificateKey: unreadable("certificateKey") ? undefined : certificateKey },
    };
}

/** Settings plus the secret values, already wrapped as Pulumi secrets. */
export interface LoadedSettings {
    readonly settings: Settings;
    readonly certificateKey?: pulumi.Output<string>;
}

// `isConfigSecret` is exported by the SDK's runtime but missing from its type declarations.
const runtimeWithSecrets = pulumi.runtime as unknown as { isConfigSecret?: (key: string) => boolean };
function isConfigSecret(key: string): boolean {
    return typeof runtimeWithSecrets.isConfigSecret === "function" && runtimeWithSecrets.isConfigSecret(key);
}

/** Reads the `mattermost:*` stack config, logs warnings, and throws one error listing every problem. */
export function loadSettings(): LoadedSettings {
    const values: Record<string, string> = {};
    const secretKeys = new Set<string>();
    const prefix = `${CONFIG_NAMESPACE}:`;
    for (const [key, value] of Object.entries(pulumi.runtime.allConfig())) {
        if (!key.startsWith(prefix)) continue;
        const name = key.slice(prefix.length);
        values[name] = value;
        if (isConfigSecret(key)) secretKeys.add(name);
    }
    const result = parseSettings({ values, secretKeys, awsRegion: pulumi.runtime.allConfig()["aws:region"] });
    for (const warning of result.warnings) pulumi.log.warn(warning);
    if (result.errors.length > 0 || !result.settings) {
        throw new pulumi.RunError(new SettingsError(result.errors).message);
    }
    const key = result.secrets?.certificateKey;
    return { settings: result.settings, certificateKey: key === undefined ? undefined : pulumi.secret(key) };
}
