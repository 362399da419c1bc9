// Section 1 of `npm run bench`: the proxy on loopback. One fast upstream (tools/bench/upstream, Go), and in front
// of it (b) this project's nginx site as components/steps/nginx.ts renders it and (c) the configuration
// Mattermost's documentation recommends (tools/bench/mattermost-docs-nginx.conf), both over HTTPS with the same test
// certificate, each in a private nginx (own prefix, config, pid and logs; the system's nginx is not touched) wrapped
// in the http block Debian's /etc/nginx/nginx.conf gives every site. wrk measures (a) the upstream straight, (b)
// and (c), alternating, several rounds; then TLS handshakes without keep-alive, then websockets held through (b).
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { renderNginxSite } from "../../components/steps/nginx";
import { fillTemplate } from "../../components/steps/step";
import { issuePair } from "../../test/unit/pki";
import {
    cacheDir,
    childPids,
    cpuCount,
    cpuSeconds,
    hashOf,
    median,
    pinned,
    processTitle,
    rssKiB,
    run,
    runMeasured,
    Service,
    sleep,
    startService,
} from "./lib";

export const DOMAIN = "chat.example.test";
export const DOCS_FIXTURE = path.join(__dirname, "mattermost-docs-nginx.conf");
const UPSTREAM_SOURCE = path.join(__dirname, "upstream", "main.go");
const PING = "/api/v4/system/ping";

export interface ProxyOptions {
    /** Rounds of each measurement (each round runs every target once, in a rotated order). */
    readonly rounds: number;
    readonly durationSeconds: number;
    readonly warmupSeconds: number;
    /** wrk threads and connections. */
    readonly threads: number;
    readonly connections: number;
    /** taskset CPU lists: the load generators run on clientCpus, the upstream and nginx on serverCpus. */
    readonly clientCpus: string;
    readonly serverCpus: string;
    /** Websocket connections held through (b). */
    readonly wsConnections: number;
    /** CPU microseconds the second upstream spends per request (the "with real work" pair of rows). */
    readonly upstreamWorkUs: number;
    /** A run during which other processes used more than this share of the machine's CPU is run again... */
    readonly maxOtherCpuShare: number;
    /** ...at most this many times (then kept, and the report warns). */
    readonly retries: number;
    /** First of the loopback ports used (18000-18999 by default). */
    readonly basePort: number;
    readonly log: (line: string) => void;
}

export type TargetKey = "a" | "b" | "c" | "b-unique" | "c-unique" | "b-http" | "bare" | "a-work" | "b-work";

export interface Target {
    readonly key: TargetKey;
    readonly label: string;
    readonly url: string;
    /** The upstream behind it. */
    readonly upstream: Service;
    /** The nginx in front, if any. */
    readonly nginx?: NginxInstance;
    /** Every request a different URL (a counter in the query string), so no two share a proxy cache key. */
    readonly uniqueUrls?: boolean;
}

export interface WrkResult {
    readonly requestsPerSecond: number;
    readonly requests: number;
    readonly p50Ms: number;
    readonly p75Ms: number;
    readonly p90Ms: number;
    readonly p99Ms: number;
    /** Socket errors (connect, read, write, timeout) plus non-2xx/3xx answers. */
    readonly errors: number;
    /** CPU microseconds per request spent by the upstream and the nginx workers (server side). */
    readonly serverCpuUsPerRequest: number;
    /** Share of the server CPUs' time that was busy (1 = saturated). */
    readonly serverCpuBusy: number;
    /** CPU microseconds per request spent by wrk. */
    readonly clientCpuUsPerRequest: number;
    /** Share of the client CPUs' time wrk used (near 1: the load generator is the limit). */
    readonly clientCpuBusy: number;
    /** Share of the whole machine's CPU time that other processes used meanwhile (above a few %: a disturbed run). */
    readonly otherCpuShare: number;
}

export interface Measured {
    readonly target: TargetKey;
    readonly label: string;
    readonly rounds: WrkResult[];
    /** Runs thrown away and run again because other processes used the CPUs meanwhile. */
    readonly discarded: WrkResult[];
    /** Medians over the rounds, field by field. */
    readonly median: WrkResult;
}

export interface WebsocketResult {
    readonly label: string;
    readonly workerConnections: number;
    readonly workerProcesses: number;
    readonly attempted: number;
    readonly held: number;
    /** Held connections still answering an echo after all were open. */
    readonly alive: number;
    readonly errors: Record<string, number>;
    readonly openSeconds: number;
    readonly nginxRssKiB: { readonly idle: number; readonly held: number };
    readonly upstreamRssKiB: { readonly idle: number; readonly held: number };
}

export interface ProxyResult {
    readonly setup: Record<string, string | number>;
    readonly keepAlive: Measured[];
    readonly handshakes: Measured[];
    readonly ratios: {
        readonly bOverA: number;
        readonly bOverC: number;
        readonly p99BOverC: number;
        /** b/c with every request a different URL (no two requests share a cache key in c). */
        readonly uniqueBOverC: number;
        readonly uniqueP99BOverC: number;
        /** b/a with the upstream that spends upstreamWorkUs of CPU per request. */
        readonly workBOverA: number;
        readonly handshakesBOverC: number;
    };
    readonly websockets: WebsocketResult[];
}

// ---------------------------------------------------------------------------
// The fast upstream

/** Builds tools/bench/upstream with Debian's Go (cached by source and toolchain); returns the binary. */
export async function buildUpstream(): Promise<string> {
    const go = await run(["go", "version"], { check: false });
    if (go.code !== 0) throw new Error("go not found: run tools/bench/install-deps.sh");
    const bin = path.join(cacheDir(), `upstream-${hashOf(fs.readFileSync(UPSTREAM_SOURCE), go.stdout)}`);
    if (!fs.existsSync(bin)) {
        await run(["go", "build", "-trimpath", "-o", `${bin}.tmp`, UPSTREAM_SOURCE], {
            env: { ...process.env, GO111MODULE: "off", CGO_ENABLED: "0", GOFLAGS: "", GOPATH: path.join(cacheDir(), "gopath") },
        });
        fs.renameSync(`${bin}.tmp`, bin);
    }
    return bin;
}

// ---------------------------------------------------------------------------
// nginx

/** The nginx version as `nginx -v` prints it. */
export async function nginxVersion(): Promise<string> {
    const r = await run(["nginx", "-v"], { check: false });
    if (r.code !== 0) throw new Error("nginx not found: run tools/bench/install-deps.sh");
    return r.stderr.trim();
}

/**
 * Moves a site's `listen` directives to loopback test ports, the same way for every site compared: port 80 to
 * 127.0.0.1:httpPort, port 443 to 127.0.0.1:httpsPort (keeping `ssl` and `http2`), IPv6 listens dropped.
 */
export function moveListens(conf: string, httpPort: number, httpsPort: number): string {
    const out = conf
        .replace(/^[ \t]*listen \[::\]:(80|443)\b[^;]*;\n/gm, "")
        .replace(/listen 80( default_server)?;/g, `listen 127.0.0.1:${httpPort};`)
        .replace(/listen 443 ssl( http2)?;/g, (_m, h2: string | undefined) => `listen 127.0.0.1:${httpsPort} ssl${h2 ?? ""};`);
    if (/listen (\[::\]:)?(80|443)\b/.test(out)) throw new Error("a listen directive was not moved to a test port");
    return out;
}

/** The same site without TLS on its 443 server (diagnostic: what TLS costs): `ssl` and HTTP/2 off that listener. */
export function withoutTls(conf: string, httpsPort: number): string {
    const out = conf
        .replace(new RegExp(`listen 127\\.0\\.0\\.1:${httpsPort} ssl( http2)?;`), `listen 127.0.0.1:${httpsPort};`)
        .replace(/^\s*http2 on;\n/m, "");
    if (out === conf) throw new Error("no TLS listener to turn off");
    return out;
}

/**
 * Diagnostic: the least an nginx TLS proxy can be (TLS, keep-alive to the upstream, nothing else: no cache, no
 * log, no headers), with the same certificate and protocols. What nginx itself costs, whatever the site says.
 */
export function bareProxySite(upstreamPort: number, httpPort: number, httpsPort: number, certFile: string, keyFile: string): string {
    return `upstream bare {
    server 127.0.0.1:${upstreamPort};
    keepalive 64;
}

server {
    listen 127.0.0.1:${httpPort};
    return 301 https://$host$request_uri;
}

server {
    listen 127.0.0.1:${httpsPort} ssl;
    ssl_certificate ${certFile};
    ssl_certificate_key ${keyFile};
    ssl_protocols TLSv1.2 TLSv1.3;
    access_log off;
    location / {
        proxy_pass http://bare;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
    }
}
`;
}

export interface NginxInstance {
    readonly name: string;
    readonly dir: string;
    readonly httpPort: number;
    readonly httpsPort: number;
    readonly workerConnections: number;
    readonly master: Service;
    /** Every process under the master (workers, cache manager, cache loader). */
    children(): number[];
    workers(): number[];
    /** RSS of the master and all its children together. */
    rssKiB(): number;
    stop(): Promise<void>;
}

export interface NginxWrapper {
    /** Debian's default is 768. */
    readonly workerConnections: number;
    /** worker_rlimit_nofile; unset in Debian's nginx.conf (workers keep systemd's soft limit, 1024). */
    readonly rlimitNofile?: number;
}

export const DEBIAN_WRAPPER: NginxWrapper = { workerConnections: 768 };

/**
 * The main config around a site: the directives of Debian 12's /etc/nginx/nginx.conf that shape performance
 * (worker_processes auto, worker_connections 768, sendfile, tcp_nopush, an unbuffered access log, gzip on), with
 * every path moved into `dir`.
 */
export function wrapperConfig(dir: string, sitePath: string, wrapper: NginxWrapper, asRoot: boolean): string {
    const lines = [
        ...(asRoot ? ["user www-data;"] : []),
        "worker_processes auto;",
        ...(wrapper.rlimitNofile ? [`worker_rlimit_nofile ${wrapper.rlimitNofile};`] : []),
        `pid ${dir}/nginx.pid;`,
        `error_log ${dir}/error.log;`,
        `events {`,
        `    worker_connections ${wrapper.workerConnections};`,
        `}`,
        `http {`,
        `    sendfile on;`,
        `    tcp_nopush on;`,
        `    types_hash_max_size 2048;`,
        `    include /etc/nginx/mime.types;`,
        `    default_type application/octet-stream;`,
        `    ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;`,
        `    ssl_prefer_server_ciphers on;`,
        `    access_log ${dir}/access.log;`,
        `    gzip on;`,
        ...["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((t) => `    ${t}_temp_path ${dir}/temp/${t};`),
        `    include ${sitePath};`,
        `}`,
    ];
    return lines.join("\n") + "\n";
}

/** Starts a private nginx with `site` (its listens already moved), with systemd's default open-file limit. */
export async function startNginx(
    root: string,
    name: string,
    site: string,
    ports: { http: number; https: number },
    cpus: string,
    wrapper: NginxWrapper = DEBIAN_WRAPPER,
): Promise<NginxInstance> {
    const dir = path.join(root, name);
    const asRoot = process.getuid?.() === 0;
    fs.mkdirSync(path.join(dir, "temp"), { recursive: true });
    const sitePath = path.join(dir, "site.conf");
    fs.writeFileSync(sitePath, site);
    const conf = path.join(dir, "nginx.conf");
    fs.writeFileSync(conf, wrapperConfig(dir, sitePath, wrapper, asRoot));
    if (asRoot) await run(["chown", "-R", "www-data:www-data", path.join(dir, "temp"), path.join(root, "cache")]);
    const args = ["nginx", "-c", conf, "-p", `${dir}/`, "-e", path.join(dir, "error.log")];
    const test = await run(["nginx", "-t", "-q", ...args.slice(1)], { check: false });
    if (test.code !== 0) throw new Error(`nginx -t rejected ${name}: ${test.stderr}`);
    // systemd starts nginx.service with LimitNOFILE's default soft limit of 1024.
    const master = startService(`nginx ${name}`, ["prlimit", "--nofile=1024:", ...pinned(cpus, [...args, "-g", "daemon off;"])]);
    const started = Date.now();
    for (;;) {
        if (master.child.exitCode !== null) throw new Error(`nginx ${name} exited: ${master.output()}`);
        const r = await run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", `Host: ${DOMAIN}`, `http://127.0.0.1:${ports.http}/`],
            {
                check: false,
            },
        );
        if (r.stdout === "301") break;
        if (Date.now() - started > 15_000) throw new Error(`nginx ${name} does not answer on ${ports.http}: ${master.output()}`);
        await sleep(50);
    }
    // prlimit and taskset exec into nginx: the spawned process is nginx's master. Its children are the workers and,
    // with a proxy cache, the cache manager and loader.
    const children = (): number[] => childPids(master.pid);
    return {
        name,
        dir,
        httpPort: ports.http,
        httpsPort: ports.https,
        workerConnections: wrapper.workerConnections,
        master,
        children,
        workers: () => children().filter((pid) => processTitle(pid).includes("worker process")),
        rssKiB: () => rssKiB(master.pid) + children().reduce((sum, w) => sum + rssKiB(w), 0),
        stop: () => master.stop(),
    };
}

// ---------------------------------------------------------------------------
// wrk

function toMs(value: string, unit: string): number {
    const v = Number(value);
    switch (unit) {
        case "us":
            return v / 1000;
        case "ms":
            return v;
        case "s":
            return v * 1000;
        case "m":
            return v * 60_000;
        default:
            throw new Error(`unknown wrk time unit ${unit}`);
    }
}

export interface WrkOutput {
    readonly requestsPerSecond: number;
    readonly requests: number;
    readonly percentilesMs: Record<string, number>;
    readonly errors: number;
}

/** Parses wrk's text output (with --latency). */
export function parseWrk(text: string): WrkOutput {
    const rps = /Requests\/sec:\s+([\d.]+)/.exec(text);
    const total = /(\d+) requests in /.exec(text);
    if (!rps || !total) throw new Error(`unexpected wrk output:\n${text}`);
    const percentilesMs: Record<string, number> = {};
    const dist = text.split("Latency Distribution")[1] ?? "";
    for (const m of dist.matchAll(/^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$/gm)) percentilesMs[m[1]] = toMs(m[2], m[3]);
    let errors = 0;
    const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
    if (sock) errors += sock.slice(1).reduce((s, n) => s + Number(n), 0);
    const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(text);
    if (non2xx) errors += Number(non2xx[1]);
    return { requestsPerSecond: Number(rps[1]), requests: Number(total[1]), percentilesMs, errors };
}

interface WrkRun {
    readonly url: string;
    readonly seconds: number;
    readonly closeEach: boolean;
    /** A wrk Lua script (unique URLs). */
    readonly script?: string;
    readonly serverPids: () => number[];
}

/** wrk's Lua hook for unique URLs: the path of the command line's URL plus `?n=<counter>`. */
export const UNIQUE_URLS_LUA = `-- Every request a different URL, so no two requests share a proxy cache key.
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, wrk.path .. "?n=" .. n)
end
`;

async function wrk(opts: ProxyOptions, w: WrkRun): Promise<WrkResult> {
    const args = [
        "wrk",
        "-t",
        String(opts.threads),
        "-c",
        String(opts.connections),
        "-d",
        `${w.seconds}s`,
        "--latency",
        "-H",
        `Host: ${DOMAIN}`,
        ...(w.closeEach ? ["-H", "Connection: close"] : []),
        ...(w.script ? ["-s", w.script] : []),
        w.url,
    ];
    const pids = w.serverPids();
    const serverCpuNow = (): number => pids.reduce((sum, p) => sum + cpuSeconds(p), 0);
    const before = serverCpuNow();
    const r = await runMeasured(pinned(opts.clientCpus, args), { timeoutMs: (w.seconds + 60) * 1000, extraCpu: serverCpuNow });
    const serverCpu = serverCpuNow() - before;
    const { wallSeconds } = r;
    if (r.code !== 0) throw new Error(`wrk failed (${r.code}): ${r.stderr}\n${r.stdout}`);
    const parsed = parseWrk(r.stdout);
    const clientCpu = r.cpuSeconds;
    return {
        requestsPerSecond: parsed.requestsPerSecond,
        requests: parsed.requests,
        p50Ms: parsed.percentilesMs["50"] ?? NaN,
        p75Ms: parsed.percentilesMs["75"] ?? NaN,
        p90Ms: parsed.percentilesMs["90"] ?? NaN,
        p99Ms: parsed.percentilesMs["99"] ?? NaN,
        errors: parsed.errors,
        serverCpuUsPerRequest: (serverCpu / parsed.requests) * 1e6,
        serverCpuBusy: serverCpu / (wallSeconds * cpuCount(opts.serverCpus)),
        clientCpuUsPerRequest: (clientCpu / parsed.requests) * 1e6,
        clientCpuBusy: clientCpu / (wallSeconds * cpuCount(opts.clientCpus)),
        otherCpuShare: r.otherCpuShare,
    };
}

function medianResult(runs: readonly WrkResult[]): WrkResult {
    const m = (f: (r: WrkResult) => number): number => median(runs.map(f));
    return {
        requestsPerSecond: m((r) => r.requestsPerSecond),
        requests: m((r) => r.requests),
        p50Ms: m((r) => r.p50Ms),
        p75Ms: m((r) => r.p75Ms),
        p90Ms: m((r) => r.p90Ms),
        p99Ms: m((r) => r.p99Ms),
        errors: m((r) => r.errors),
        serverCpuUsPerRequest: m((r) => r.serverCpuUsPerRequest),
        serverCpuBusy: m((r) => r.serverCpuBusy),
        clientCpuUsPerRequest: m((r) => r.clientCpuUsPerRequest),
        clientCpuBusy: m((r) => r.clientCpuBusy),
        otherCpuShare: m((r) => r.otherCpuShare),
    };
}

/** Every target once per round, in an order rotated by one each round (a b c, b c a, c a b, ...); medians. */
async function rounds(
    opts: ProxyOptions,
    targets: readonly Target[],
    closeEach: boolean,
    luaScript: string,
    what: string,
): Promise<Measured[]> {
    const runs = new Map<TargetKey, WrkResult[]>(targets.map((t) => [t.key, []]));
    const discarded = new Map<TargetKey, WrkResult[]>(targets.map((t) => [t.key, []]));
    const wrkRun = (t: Target, seconds: number): WrkRun => ({
        url: t.url,
        seconds,
        closeEach,
        script: t.uniqueUrls ? luaScript : undefined,
        serverPids: () => [t.upstream.pid, ...(t.nginx?.children() ?? [])],
    });
    for (const t of targets) {
        opts.log(`  warm-up ${what} ${t.key}`);
        await wrk(opts, wrkRun(t, opts.warmupSeconds));
    }
    for (let round = 0; round < opts.rounds; round++) {
        const order = targets.map((_, i) => targets[(i + round) % targets.length]);
        for (const t of order) {
            let r = await wrk(opts, wrkRun(t, opts.durationSeconds));
            for (let retry = 1; retry <= opts.retries && r.otherCpuShare > opts.maxOtherCpuShare; retry++) {
                opts.log(
                    `  round ${round + 1} ${what} ${t.key}: other processes used ${Math.round(r.otherCpuShare * 100)} % of the CPU; again`,
                );
                discarded.get(t.key)?.push(r);
                await sleep(retry * 5000);
                r = await wrk(opts, wrkRun(t, opts.durationSeconds));
            }
            opts.log(
                `  round ${round + 1}/${opts.rounds} ${what} ${t.key}: ${Math.round(r.requestsPerSecond)} req/s, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms` +
                    (r.errors ? `, ${r.errors} errors` : ""),
            );
            runs.get(t.key)?.push(r);
        }
    }
    return targets.map((t) => {
        const rs = runs.get(t.key) ?? [];
        return { target: t.key, label: t.label, rounds: rs, discarded: discarded.get(t.key) ?? [], median: medianResult(rs) };
    });
}

// ---------------------------------------------------------------------------
// websockets

async function websocketsThrough(
    opts: ProxyOptions,
    nginx: NginxInstance,
    upstream: Service,
    caFile: string,
    label: string,
): Promise<WebsocketResult> {
    await sleep(500);
    const idle = { nginx: nginx.rssKiB(), upstream: rssKiB(upstream.pid) };
    const script = path.join(__dirname, "wsload.ts");
    const loader = startService(
        "wsload",
        pinned(opts.clientCpus, [
            process.execPath,
            "-r",
            "ts-node/register/transpile-only",
            script,
            `wss://${DOMAIN}:${nginx.httpsPort}/api/v4/websocket`,
            String(opts.wsConnections),
            caFile,
            "127.0.0.1",
        ]),
        { cwd: path.join(__dirname, "..", ".."), stdin: true },
    );
    try {
        await loader.waitFor(/^HELD .*$/m, 300_000);
        const heldLine = /^HELD (.*)$/m.exec(loader.output())?.[1] ?? "{}";
        const held = JSON.parse(heldLine) as { held: number; failed: number; errors: Record<string, number>; openMs: number };
        await sleep(1000);
        const loaded = { nginx: nginx.rssKiB(), upstream: rssKiB(upstream.pid) };
        loader.child.stdin?.write("check\n");
        await loader.waitFor(/^CHECKED .*$/m, 120_000);
        const checked = JSON.parse(/^CHECKED (.*)$/m.exec(loader.output())?.[1] ?? "{}") as { alive: number };
        return {
            label,
            workerConnections: nginx.workerConnections,
            workerProcesses: nginx.workers().length,
            attempted: opts.wsConnections,
            held: held.held,
            alive: checked.alive,
            errors: held.errors,
            openSeconds: held.openMs / 1000,
            nginxRssKiB: { idle: idle.nginx, held: loaded.nginx },
            upstreamRssKiB: { idle: idle.upstream, held: loaded.upstream },
        };
    } finally {
        await loader.stop();
    }
}

// ---------------------------------------------------------------------------
// The section

export async function benchProxy(opts: ProxyOptions): Promise<ProxyResult> {
    const version = await nginxVersion();
    const upstreamBin = await buildUpstream();
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "mm-bench-proxy-"));
    const started: (Service | NginxInstance)[] = [];
    try {
        // nginx's workers run as www-data (when started as root) and must reach the cache and temp folders.
        fs.chmodSync(root, 0o755);
        fs.mkdirSync(path.join(root, "cache"), { recursive: true });
        fs.mkdirSync(path.join(root, "acme"), { recursive: true });
        const pair = issuePair(DOMAIN);
        const certFile = path.join(root, "fullchain.pem");
        const keyFile = path.join(root, "privkey.pem");
        const caFile = path.join(root, "ca.pem");
        fs.writeFileSync(certFile, pair.chain);
        fs.writeFileSync(keyFile, pair.key, { mode: 0o600 });
        fs.writeFileSync(caFile, pair.ca);

        const port = (offset: number): number => opts.basePort + offset;
        const luaScript = path.join(root, "unique-urls.lua");
        fs.writeFileSync(luaScript, UNIQUE_URLS_LUA);
        const startUpstream = async (name: string, upstreamPort: number, workUs: number): Promise<Service> => {
            const argv = [upstreamBin, "-listen", `127.0.0.1:${upstreamPort}`, ...(workUs > 0 ? ["-work", `${workUs}us`] : [])];
            const service = startService(name, pinned(opts.serverCpus, argv), {
                env: { ...process.env, GOMAXPROCS: String(cpuCount(opts.serverCpus)) },
            });
            started.push(service);
            await service.waitFor("listening on");
            return service;
        };
        const upstreamPort = port(65);
        const workPort = port(66);
        const upstream = await startUpstream("upstream", upstreamPort, 0);
        const working = await startUpstream("upstream with work", workPort, opts.upstreamWorkUs);

        const projectSite = (name: string, toPort: number, http: number, https: number): string =>
            moveListens(
                renderNginxSite({
                    domain: DOMAIN,
                    certFile,
                    keyFile,
                    nginxVersion: version,
                    acmeWebroot: path.join(root, "acme"),
                    upstreamPort: toPort,
                    cacheDir: path.join(root, "cache", name),
                    accessLog: path.join(root, `${name}.access.log`),
                }),
                http,
                https,
            );
        const docsSite = moveListens(
            fillTemplate(fs.readFileSync(DOCS_FIXTURE, "utf8"), {
                DOMAIN,
                CERT_FILE: certFile,
                KEY_FILE: keyFile,
                UPSTREAM_PORT: String(upstreamPort),
                CACHE_DIR: path.join(root, "cache", "c"),
            }),
            port(181),
            port(444),
        );
        const nginx = async (name: string, site: string, http: number, https: number, wrapper?: NginxWrapper): Promise<NginxInstance> => {
            const instance = await startNginx(root, name, site, { http, https }, opts.serverCpus, wrapper);
            started.push(instance);
            return instance;
        };
        const b = await nginx("b", projectSite("b", upstreamPort, port(180), port(443)), port(180), port(443));
        const c = await nginx("c", docsSite, port(181), port(444));
        const bHttp = await nginx(
            "b-http",
            withoutTls(projectSite("b-http", upstreamPort, port(182), port(445)), port(445)),
            port(182),
            port(445),
        );
        const bare = await nginx("bare", bareProxySite(upstreamPort, port(185), port(448), certFile, keyFile), port(185), port(448));
        const bWork = await nginx("b-work", projectSite("b-work", workPort, port(184), port(447)), port(184), port(447));

        const https = (n: NginxInstance): string => `https://127.0.0.1:${n.httpsPort}${PING}`;
        const work = `${opts.upstreamWorkUs} µs`;
        const targets: Target[] = [
            { key: "a", label: "(a) upstream, plain HTTP (the limit)", url: `http://127.0.0.1:${upstreamPort}${PING}`, upstream },
            { key: "b", label: "(b) this project's site, HTTPS", url: https(b), upstream, nginx: b },
            { key: "c", label: "(c) Mattermost docs' config, HTTPS", url: https(c), upstream, nginx: c },
            { key: "b-unique", label: "(b), every request a different URL", url: https(b), upstream, nginx: b, uniqueUrls: true },
            { key: "c-unique", label: "(c), every request a different URL", url: https(c), upstream, nginx: c, uniqueUrls: true },
            {
                key: "b-http",
                label: "(b') this project's site without TLS (diagnostic)",
                url: `http://127.0.0.1:${bHttp.httpsPort}${PING}`,
                upstream,
                nginx: bHttp,
            },
            {
                key: "bare",
                label: "(b'') bare nginx TLS proxy: no cache, log or headers (diagnostic)",
                url: https(bare),
                upstream,
                nginx: bare,
            },
            {
                key: "a-work",
                label: `(a) upstream spending ${work} CPU per request`,
                url: `http://127.0.0.1:${workPort}${PING}`,
                upstream: working,
            },
            { key: "b-work", label: `(b) in front of that upstream`, url: https(bWork), upstream: working, nginx: bWork },
        ];
        // Every target answers the ping before anything is measured.
        for (const t of targets) {
            const r = await run(["curl", "-sk", "-H", `Host: ${DOMAIN}`, t.url], { check: false });
            if (!r.stdout.includes('"status":"OK"')) throw new Error(`${t.key} does not answer the ping: ${r.stdout} ${r.stderr}`);
        }

        opts.log("proxy: keep-alive throughput and latency");
        const keepAlive = await rounds(opts, targets, false, luaScript, "keep-alive");
        opts.log("proxy: new TLS handshakes (Connection: close, every request a different URL)");
        const handshakeTargets = targets
            .filter((t) => t.key === "b-unique" || t.key === "c-unique")
            .map((t) => ({ ...t, key: t.key === "b-unique" ? ("b" as const) : ("c" as const), label: t.label.split(",")[0] }));
        const handshakes = await rounds(opts, handshakeTargets, true, luaScript, "handshakes");
        for (const n of [bWork, bare, bHttp, c, b]) await n.stop();

        opts.log(`proxy: ${opts.wsConnections} websockets through (b)`);
        const websockets: WebsocketResult[] = [];
        for (const [name, wrapper, label] of [
            ["ws-debian", DEBIAN_WRAPPER, "(b), Debian's nginx.conf (worker_connections 768)"],
            ["ws-raised", { workerConnections: 4096, rlimitNofile: 8192 }, "(b), worker_connections 4096, worker_rlimit_nofile 8192"],
        ] as const) {
            // A fresh upstream and nginx for each, so both start from their idle memory.
            const wsUpstream = await startUpstream(`upstream for ${name}`, port(67), 0);
            const ws = await nginx(name, projectSite(name, port(67), port(183), port(446)), port(183), port(446), wrapper);
            try {
                const r = await websocketsThrough(opts, ws, wsUpstream, caFile, label);
                opts.log(`  ${label}: held ${r.held}/${r.attempted}, alive ${r.alive}`);
                websockets.push(r);
            } finally {
                await ws.stop();
                await wsUpstream.stop();
            }
        }

        const get = (list: Measured[], key: TargetKey): WrkResult | undefined => list.find((m) => m.target === key)?.median;
        const ratio = (x: number | undefined, y: number | undefined): number => (x !== undefined && y ? x / y : NaN);
        const rps = (list: Measured[], key: TargetKey): number | undefined => get(list, key)?.requestsPerSecond;
        return {
            setup: {
                nginx: version,
                wrk: `${opts.threads} thread(s), ${opts.connections} connections, ${opts.durationSeconds} s per run (+${opts.warmupSeconds} s warm-up per target), ${opts.rounds} rounds, targets alternating`,
                cpus: `wrk and the websocket client on CPU ${opts.clientCpus}; upstream (Go, GOMAXPROCS=${cpuCount(opts.serverCpus)}) and nginx on CPU ${opts.serverCpus}`,
                nginxWrapper:
                    "Debian 12's nginx.conf directives around each site (worker_processes auto, worker_connections 768, unbuffered access log, gzip on); open files 1024 as under systemd",
                request: `GET ${PING}: the upstream answers 48 bytes with Cache-Control: no-cache (never a cache hit); HTTP/1.1 (wrk has no HTTP/2)`,
                certificate: "ECDSA P-256 leaf from a test CA (what certbot 2.x requests by default)",
            },
            keepAlive,
            handshakes,
            ratios: {
                bOverA: ratio(rps(keepAlive, "b"), rps(keepAlive, "a")),
                bOverC: ratio(rps(keepAlive, "b"), rps(keepAlive, "c")),
                p99BOverC: ratio(get(keepAlive, "b")?.p99Ms, get(keepAlive, "c")?.p99Ms),
                uniqueBOverC: ratio(rps(keepAlive, "b-unique"), rps(keepAlive, "c-unique")),
                uniqueP99BOverC: ratio(get(keepAlive, "b-unique")?.p99Ms, get(keepAlive, "c-unique")?.p99Ms),
                workBOverA: ratio(rps(keepAlive, "b-work"), rps(keepAlive, "a-work")),
                handshakesBOverC: ratio(rps(handshakes, "b"), rps(handshakes, "c")),
            },
            websockets,
        };
    } finally {
        for (const s of started.reverse()) await s.stop().catch(() => undefined);
        if (!process.env.BENCH_KEEP) fs.rmSync(root, { recursive: true, force: true });
    }
}
