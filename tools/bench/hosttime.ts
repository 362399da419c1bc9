// Section 2 of `npm run bench`: time to a verified HTTPS endpoint on a fresh test host (test/host/testhost.ts), per
// HTTPS shape, split by step, with the OS packages the steps install in three states. Boots containers, so the bench
// runs this file as its own process under `flock /run/mmth.lock` (the test hosts' bridge is one per machine):
//
//   flock /run/mmth.lock node -r ts-node/register/transpile-only tools/bench/hosttime.ts <result.json> [shapes] [packages]
//
// shapes: direct-own,nginx-letsencrypt; packages: installed,apt-cache,download (comma-separated; default all).
// Package states, for the packages the steps install with apt (postgresql, nginx, certbot and what they pull in):
//   installed  the cached test-host image as the host tests use it: already installed, apt does nothing;
//   apt-cache  purged from the container, their .deb files and the package lists left in its apt cache;
//   download   purged, apt cache and lists empty: `apt-get update` and every .deb come from deb.debian.org.
// The containers have no route out, so for the last two apt in the container uses a forwarding HTTP proxy on the
// host side of the bridge that only lets requests to the Debian archive through (and counts the bytes).
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";

import { buildServerSteps, RuntimeValueName } from "../../components/steps";
import { Settings } from "../../components/settings";
import { issuePair } from "../../test/unit/pki";
import { buildStandinRelease, deploy, serveReleases, STANDIN_CACHE } from "../../test/host/driver";
import { curlDomain, DOMAIN, hostSettings } from "../../test/host/fixture";
import { startPebble, type Pebble } from "../../test/host/pebble";
import { ensureBaseImage, lastImageBuildMs, startHost, stopAllHosts, type TestHost } from "../../test/host/testhost";

export const SHAPES = ["direct-own", "nginx-letsencrypt"] as const;
export type Shape = (typeof SHAPES)[number];
export const PACKAGE_STATES = ["installed", "apt-cache", "download"] as const;
export type PackageState = (typeof PACKAGE_STATES)[number];

const VERSION = "10.11.4";
const APT_PROXY_PORT = 18300;
const DEBIAN_HOSTS = ["deb.debian.org", "security.debian.org"];
/** What the steps install with apt and EC2's Ubuntu image does not have. */
const STEP_PACKAGES = ["postgresql", "nginx", "certbot"];

export interface HostTiming {
    readonly shape: Shape;
    readonly packages: PackageState;
    /** Boot of the container until systemd runs and SSH answers. */
    readonly bootMs: number;
    /** Copying scripts/ to the host (deploy's first action). */
    readonly uploadMs: number;
    /** Each step as driver.deploy ran it, in order. */
    readonly steps: { readonly step: string; readonly ms: number }[];
    /** From the end of the deploy until curl with the right CA gets the ping's OK over HTTPS. */
    readonly verifyMs: number;
    /** Boot + deploy + verify: from nothing to a verified HTTPS endpoint. */
    readonly totalMs: number;
    /** Bytes apt fetched from the Debian archive during the deploy. */
    readonly downloadedBytes: number;
    /** Set when this combination could not run (and why). */
    readonly skipped?: string;
}

export interface HostResult {
    readonly imageBuildMs?: number;
    readonly timings: HostTiming[];
}

// ---------------------------------------------------------------------------
// The apt forwarder

interface AptForwarder {
    readonly port: number;
    bytes(): number;
    close(): Promise<void>;
}

/** An HTTP forward proxy for apt (absolute-form GET/HEAD to the Debian archive only). */
async function startAptForwarder(address: string, port: number): Promise<AptForwarder> {
    let bytes = 0;
    const server = http.createServer((req, res) => {
        let url: URL;
        try {
            url = new URL(req.url ?? "");
        } catch {
            res.writeHead(400).end("absolute URL expected\n");
            return;
        }
        if (url.protocol !== "http:" || !DEBIAN_HOSTS.includes(url.hostname) || !["GET", "HEAD"].includes(req.method ?? "")) {
            res.writeHead(403).end("only the Debian archive\n");
            return;
        }
        const headers: http.OutgoingHttpHeaders = { ...req.headers, host: url.host };
        for (const h of Object.keys(headers)) if (h.startsWith("proxy-")) delete headers[h];
        const upstream = http.request(
            { host: url.hostname, port: url.port || 80, path: url.pathname + url.search, method: req.method, headers },
            (up) => {
                res.writeHead(up.statusCode ?? 502, up.headers);
                up.on("data", (chunk: Buffer) => (bytes += chunk.length));
                up.pipe(res);
            },
        );
        upstream.setTimeout(60_000, () => upstream.destroy(new Error("timeout")));
        upstream.on("error", (e) => {
            if (!res.headersSent) res.writeHead(502).end(`${e.message}\n`);
            else res.destroy();
        });
        upstream.end();
    });
    await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, address, () => resolve());
    });
    return {
        port,
        bytes: () => bytes,
        close: () =>
            new Promise<void>((resolve) => {
                server.closeAllConnections();
                server.close(() => resolve());
            }),
    };
}

async function debianReachable(): Promise<string | undefined> {
    return new Promise((resolve) => {
        const req = http.request(
            { host: "deb.debian.org", path: "/debian/dists/bookworm/Release", method: "HEAD", timeout: 10_000 },
            (res) => {
                res.resume();
                resolve(res.statusCode === 200 ? undefined : `deb.debian.org answered ${res.statusCode}`);
            },
        );
        req.on("timeout", () => req.destroy(new Error("timeout")));
        req.on("error", (e) => resolve(`deb.debian.org is not reachable from this machine (${e.message})`));
        req.end();
    });
}

// ---------------------------------------------------------------------------
// One host

async function rootSh(host: TestHost, script: string, timeoutMs = 15 * 60_000): Promise<string> {
    const r = await host.exec(["bash", "-c", script], { timeoutMs });
    if (r.code !== 0) throw new Error(`on ${host.name}: ${script}\nfailed (${r.code}): ${r.stderr}\n${r.stdout}`);
    return r.stdout;
}

/** Puts the step packages into the given state inside the (booted) container; not timed. */
async function preparePackages(host: TestHost, state: PackageState, proxyPort: number): Promise<void> {
    if (state === "installed") return;
    const proxy = `http://${host.hostAddress}:${proxyPort}/`;
    await rootSh(
        host,
        [
            "set -euo pipefail",
            "export DEBIAN_FRONTEND=noninteractive",
            `printf 'Acquire::http::Proxy "%s";\\nAcquire::http::Pipeline-Depth "0";\\nAcquire::Retries "3";\\n' '${proxy}' > /etc/apt/apt.conf.d/90bench-proxy`,
            // Everything the steps' apt_install would bring: the packages, their dependencies, their data.
            "dpkg-query -W -f='${Package}\\n' | grep -E '^(postgresql|nginx|libnginx|certbot|python3-certbot)' | xargs apt-get purge -y -qq >/dev/null",
            "apt-get autoremove --purge -y -qq >/dev/null",
            "rm -rf /var/lib/postgresql /etc/postgresql /etc/nginx /var/log/nginx /etc/letsencrypt",
            "apt-get clean",
            "rm -rf /var/lib/apt/lists/*",
            ...(state === "apt-cache"
                ? [
                      `apt-get update -qq`,
                      `apt-get install -y -qq --no-install-recommends --download-only ${STEP_PACKAGES.join(" ")} >/dev/null`,
                  ]
                : []),
        ].join("\n"),
    );
}

async function verify(host: TestHost, caFile: string): Promise<number> {
    const started = Date.now();
    for (;;) {
        const r = await curlDomain(host, `https://${DOMAIN}/api/v4/system/ping`, ["--cacert", caFile]);
        if (r.code === 0 && r.stdout.includes('"status":"OK"')) return Date.now() - started;
        if (Date.now() - started > 60_000) throw new Error(`no verified HTTPS answer from ${host.name}: ${r.stderr} ${r.stdout}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
    }
}

async function timeOne(
    shape: Shape,
    packages: PackageState,
    workDir: string,
    sha: string,
    log: (line: string) => void,
): Promise<HostTiming> {
    const name = `bn-${shape === "direct-own" ? "direct" : "nginx"}-${packages}`;
    const t0 = Date.now();
    const host = await startHost({ name, disks: [{ image: path.join(workDir, `${name}.img`), sizeMiB: 512 }] });
    const bootMs = Date.now() - t0;
    let releases: { baseUrl: string; close(): Promise<void> } | undefined;
    let pebble: Pebble | undefined;
    let apt: AptForwarder | undefined;
    try {
        releases = await serveReleases(STANDIN_CACHE, host.hostAddress);
        if (packages !== "installed") apt = await startAptForwarder(host.hostAddress, APT_PROXY_PORT);
        log(`  ${name}: booted in ${bootMs} ms; preparing packages (${packages})`);
        await preparePackages(host, packages, APT_PROXY_PORT);
        const values: Partial<Record<RuntimeValueName, string>> = {
            dataVolumeId: "vol-0123456789abcdef0",
            databasePassword: randomBytes(16).toString("hex"),
        };
        let settings: Settings;
        const caFile = path.join(workDir, `${name}-ca.pem`);
        if (shape === "direct-own") {
            const own = issuePair(DOMAIN);
            values.certificateChain = own.chain;
            values.certificateKey = own.key;
            fs.writeFileSync(caFile, own.ca);
            settings = hostSettings({
                tlsMode: "direct",
                certificate: "own",
                certificateChain: own.chain,
                certificateKey: own.key,
                mattermostSha256: sha,
                mattermostDownloadBaseUrl: releases.baseUrl,
            });
        } else {
            pebble = await startPebble({ listenAddress: host.hostAddress, defaultIPv4: host.address });
            settings = hostSettings({
                tlsMode: "nginx",
                certificate: "letsencrypt",
                letsencryptEmail: "ops@example.test",
                acmeServer: pebble.directoryUrl,
                acmeCaBundle: fs.readFileSync(pebble.caBundlePath, "utf8"),
                mattermostSha256: sha,
                mattermostDownloadBaseUrl: releases.baseUrl,
            });
        }
        const steps = buildServerSteps(settings, { dataDevice: host.diskDevices[0], healthTimeoutSeconds: 90 });
        const bytesBefore = apt?.bytes() ?? 0;
        // The boot above is the host's own; everything below is what `pulumi up` would do on a fresh instance.
        const d0 = Date.now();
        const runs = await deploy(host, steps, values);
        const deployMs = Date.now() - d0;
        if (pebble) fs.writeFileSync(caFile, await pebble.rootCaPem());
        const verifyMs = await verify(host, caFile);
        const stepsMs = runs.reduce((s, r) => s + r.ms, 0);
        const timing: HostTiming = {
            shape,
            packages,
            bootMs,
            uploadMs: deployMs - stepsMs,
            steps: runs.map((r) => ({ step: r.step, ms: r.ms })),
            verifyMs,
            totalMs: bootMs + deployMs + verifyMs,
            downloadedBytes: (apt?.bytes() ?? 0) - bytesBefore,
        };
        log(`  ${name}: verified HTTPS after ${timing.totalMs} ms (${runs.map((r) => `${r.step} ${r.ms}`).join(", ")})`);
        return timing;
    } finally {
        await pebble?.stop();
        await apt?.close();
        await releases?.close();
        await host.stop();
    }
}

export async function benchHosts(
    shapes: readonly Shape[],
    states: readonly PackageState[],
    log: (line: string) => void,
): Promise<HostResult> {
    const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "mm-bench-host-"));
    try {
        await ensureBaseImage();
        const imageBuildMs = lastImageBuildMs;
        const sha = buildStandinRelease(VERSION, STANDIN_CACHE).sha256;
        const offline = states.some((s) => s !== "installed") ? await debianReachable() : undefined;
        const timings: HostTiming[] = [];
        for (const packages of states) {
            for (const shape of shapes) {
                if (packages !== "installed" && offline) {
                    timings.push({
                        shape,
                        packages,
                        bootMs: NaN,
                        uploadMs: NaN,
                        steps: [],
                        verifyMs: NaN,
                        totalMs: NaN,
                        downloadedBytes: 0,
                        skipped: offline,
                    });
                    continue;
                }
                timings.push(await timeOne(shape, packages, workDir, sha, log));
            }
        }
        return { imageBuildMs, timings };
    } finally {
        await stopAllHosts().catch(() => undefined);
        fs.rmSync(workDir, { recursive: true, force: true });
    }
}

function parseList<T extends string>(arg: string | undefined, all: readonly T[]): T[] {
    if (!arg) return [...all];
    const list = arg.split(",").filter((s) => s.length > 0);
    for (const s of list) if (!(all as readonly string[]).includes(s)) throw new Error(`unknown "${s}" (one of ${all.join(", ")})`);
    return list as T[];
}

if (require.main === module) {
    const [out, shapes, states] = process.argv.slice(2);
    if (!out) {
        console.error("usage: hosttime.ts <result.json> [shapes] [package states]");
        process.exit(2);
    }
    benchHosts(parseList(shapes, SHAPES), parseList(states, PACKAGE_STATES), (line) => console.log(line)).then(
        (result) => {
            fs.writeFileSync(out, JSON.stringify(result, null, 2) + "\n");
            process.exit(0);
        },
        (e: unknown) => {
            console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
            process.exit(1);
        },
    );
}
