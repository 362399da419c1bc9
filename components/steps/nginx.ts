// The nginx site of the proxy shape: scripts/nginx-site.conf and scripts/nginx-http-only.conf, filled here.
import { HSTS_MAX_AGE_SECONDS, UPSTREAM_PORT } from "./mattermostConfig";
import { fillTemplate, readTemplate } from "./step";

export const NGINX_SITE_TEMPLATE = "nginx-site.conf";
export const NGINX_HTTP_ONLY_TEMPLATE = "nginx-http-only.conf";
/** The site file on the host; enabled by a symlink at NGINX_SITE_LINK. */
export const NGINX_SITE_FILE = "/etc/nginx/sites-available/mattermost";
export const NGINX_SITE_LINK = "/etc/nginx/sites-enabled/mattermost";
/** certbot's `--webroot -w` directory; nginx serves its `.well-known/acme-challenge/` on port 80. */
export const ACME_WEBROOT = "/var/www/acme";
/** proxy_cache_path for static assets. */
export const NGINX_CACHE_DIR = "/var/cache/nginx/mattermost";
export const NGINX_ACCESS_LOG = "/var/log/nginx/mattermost.access.log";
/** The first nginx release with the `http2` directive (`listen ... http2` is deprecated from then on). */
export const NGINX_HTTP2_DIRECTIVE_SINCE = "1.25.1";

export interface NginxHttpOnlyInput {
    readonly domain: string;
    readonly acmeWebroot: string;
}

export interface NginxSiteInput extends NginxHttpOnlyInput {
    readonly certFile: string;
    readonly keyFile: string;
    /** As `nginx -v` prints it ("nginx version: nginx/1.22.1") or bare ("1.22.1"). */
    readonly nginxVersion: string;
    readonly upstreamPort: number;
    /** Defaults to NGINX_CACHE_DIR; tests point it at a temporary directory. */
    readonly cacheDir?: string;
    /** Defaults to NGINX_ACCESS_LOG. */
    readonly accessLog?: string;
}

/** Both renderings of the site, one per listen syntax; see renderNginxSiteVariants. */
export interface NginxSiteVariants {
    /** For nginx before 1.25.1 (Debian 12 ships 1.22.1): `listen 443 ssl http2;`. */
    readonly legacyHttp2: string;
    /** For nginx 1.25.1 and later: `listen 443 ssl;` plus `http2 on;`. */
    readonly http2Directive: string;
}

/** [major, minor, patch] from a version string such as "1.22.1" or "nginx version: nginx/1.26.0". */
export function parseNginxVersion(version: string): [number, number, number] {
    const m = /(\d+)\.(\d+)\.(\d+)/.exec(version);
    if (!m) throw new Error(`"${version}" is not an nginx version like 1.22.1`);
    return [Number(m[1]), Number(m[2]), Number(m[3])];
}

function versionAtLeast(version: string, minimum: string): boolean {
    const a = parseNginxVersion(version);
    const b = parseNginxVersion(minimum);
    for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i] > b[i];
    return true;
}

/** The port-443 listen lines (IPv4 and IPv6) with HTTP/2 in the syntax the given nginx version accepts. */
export function nginxHttp2Listen(version: string): string {
    if (versionAtLeast(version, NGINX_HTTP2_DIRECTIVE_SINCE)) return "listen 443 ssl;\n    listen [::]:443 ssl;\n    http2 on;";
    return "listen 443 ssl http2;\n    listen [::]:443 ssl http2;";
}

/** A value written into the config as one bare word: no spaces, quotes, `;`, braces or `$` (nginx variables). */
function word(name: string, value: string): string {
    if (!/^[A-Za-z0-9._/:-]+$/.test(value)) {
        throw new Error(`nginx ${name} "${value}" must be one word of letters, digits and . _ / : - characters`);
    }
    return value;
}

function port(value: number): string {
    if (!Number.isInteger(value) || value < 1 || value > 65535) throw new Error(`nginx upstream port ${value} is not a TCP port`);
    return String(value);
}

/** The port-80 server alone: ACME challenges from the webroot, a 301 to https for everything else. */
export function renderNginxHttpOnly(input: NginxHttpOnlyInput): string {
    return fillTemplate(readTemplate(NGINX_HTTP_ONLY_TEMPLATE), {
        DOMAIN: word("domain", input.domain),
        ACME_WEBROOT: word("ACME webroot", input.acmeWebroot),
    });
}

/** The full site (port 80 and 443) for one nginx version. */
export function renderNginxSite(input: NginxSiteInput): string {
    return fillTemplate(readTemplate(NGINX_SITE_TEMPLATE), {
        HTTP_SERVER: renderNginxHttpOnly(input).trimEnd(),
        LISTEN_443: nginxHttp2Listen(input.nginxVersion),
        DOMAIN: word("domain", input.domain),
        CERT_FILE: word("certificate file", input.certFile),
        KEY_FILE: word("key file", input.keyFile),
        UPSTREAM_PORT: port(input.upstreamPort),
        HSTS_MAX_AGE: String(HSTS_MAX_AGE_SECONDS),
        CACHE_DIR: word("cache directory", input.cacheDir ?? NGINX_CACHE_DIR),
        ACCESS_LOG: word("access log", input.accessLog ?? NGINX_ACCESS_LOG),
    });
}

/**
 * The nginx version is only known on the host, once apt has installed nginx. Instead of a second placeholder syntax
 * that the shell fills, the step ships both complete renderings and the install script picks one:
 * `http2Directive` when the version `nginx -v` prints is 1.25.1 or later (`dpkg --compare-versions "$v" ge 1.25.1`),
 * else `legacyHttp2`, and then runs `nginx -t`.
 * So all templating stays here, the shell only chooses a file, and each variant is a whole file that can be checked
 * with `nginx -t` and read in review.
 */
export function renderNginxSiteVariants(input: Omit<NginxSiteInput, "nginxVersion">): NginxSiteVariants {
    return {
        legacyHttp2: renderNginxSite({ ...input, nginxVersion: "1.25.0" }),
        http2Directive: renderNginxSite({ ...input, nginxVersion: NGINX_HTTP2_DIRECTIVE_SINCE }),
    };
}

/** The site with this project's paths and Mattermost's upstream port. */
export function defaultNginxSiteInput(domain: string, certFile: string, keyFile: string): Omit<NginxSiteInput, "nginxVersion"> {
    return { domain, certFile, keyFile, acmeWebroot: ACME_WEBROOT, upstreamPort: UPSTREAM_PORT };
}
