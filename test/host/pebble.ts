/**
 * Harness for Let's Encrypt's ACME test server (Debian package `pebble`, which also ships
 * `pebble-challtestsrv`) running on this machine, for host tests.
 *
 * - pebble serves ACME on <listenAddress>:<free port> and its management interface (roots,
 *   intermediates) on <listenAddress>:<another free port>, both over HTTPS with a certificate we
 *   generate here with the openssl CLI (own CA + leaf with an IP SAN for listenAddress).
 * - pebble-challtestsrv runs only as pebble's DNS server (127.0.0.1:<free port>, UDP+TCP). Every A
 *   query is answered with `defaultIPv4` unless a record was set with `setAddress`; AAAA answers are
 *   disabled so validation never goes to ::1 by accident. Its HTTP-01/HTTPS/TLS-ALPN listeners are off.
 * - pebble validates HTTP-01 for real on port 80 (TLS-ALPN-01 on 443) of whatever address the DNS
 *   answer names, e.g. a test container at 10.231.0.N on the mmth-br0 bridge.
 *
 * Must run as root only if something else in the test needs it (pebble itself binds high ports).
 * Only node: builtins; commands run via execFile/spawn with argv arrays, no shell.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import * as dgram from "node:dgram";
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import * as http from "node:http";
import * as https from "node:https";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";

const execFileP = promisify(execFile);

export interface Pebble {
    /** ACME directory, e.g. https://10.231.0.1:14000/dir (port is whatever was free). */
    directoryUrl: string;
    /** Base URL of pebble's management interface (HTTPS, same certificate). */
    managementUrl: string;
    /** pebble's DNS server (pebble-challtestsrv), "127.0.0.1:<port>", UDP and TCP. */
    dnsServer: string;
    /** CA that signed pebble's own HTTPS certificate (for REQUESTS_CA_BUNDLE / curl --cacert). */
    caBundlePath: string;
    /** pebble's issuing root (regenerated at every start), from the management interface /roots/0. */
    rootCaPem(): Promise<string>;
    /** pebble's intermediate that signs the leaf certificates, from /intermediates/0. */
    intermediatePem(): Promise<string>;
    /** Make pebble's DNS answer `domain` A -> exactly `ipv4` (overrides defaultIPv4 for that name). */
    setAddress(domain: string, ipv4: string): Promise<void>;
    /** Kill both processes and remove the temp dir. Idempotent. */
    stop(): Promise<void>;
}

export interface StartPebbleOptions {
    /** Address pebble listens on, e.g. 10.231.0.1 (host side of the test bridge) or 127.0.0.1. */
    listenAddress: string;
    /** A answer for every name not set with setAddress (default 127.0.0.1, challtestsrv's default). */
    defaultIPv4?: string;
    /** How long to wait for the directory to answer (default 30 s). */
    startTimeoutMs?: number;
}

// ---------------------------------------------------------------------------
// Ports

function listenOnce(server: net.Server | dgram.Socket, port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
        if (server instanceof net.Server) {
            server.once("error", reject);
            server.listen({ port, host, exclusive: true }, () => resolve((server.address() as net.AddressInfo).port));
        } else {
            server.once("error", reject);
            server.bind({ port, address: host, exclusive: true }, () => resolve(server.address().port));
        }
    });
}

function closeServer(server: net.Server | dgram.Socket): Promise<void> {
    return new Promise((resolve) => (server instanceof net.Server ? server.close(() => resolve()) : server.close(() => resolve())));
}

/** A TCP port free on `host` right now (and, with `udp`, the same port free for UDP too). */
async function freePort(host: string, udp = false): Promise<number> {
    for (let attempt = 0; attempt < 20; attempt++) {
        const tcp = net.createServer();
        const port = await listenOnce(tcp, 0, host);
        try {
            if (!udp) return port;
            const sock = dgram.createSocket(net.isIPv6(host) ? "udp6" : "udp4");
            try {
                await listenOnce(sock, port, host);
                await closeServer(sock);
                return port;
            } catch {
                sock.close();
            }
        } finally {
            await closeServer(tcp);
        }
    }
    throw new Error(`no free ${udp ? "TCP+UDP " : ""}port on ${host}`);
}

/** true when nothing listens on host:port (and we may bind it). */
export async function portIsFree(host: string, port: number): Promise<boolean> {
    const srv = net.createServer();
    try {
        await listenOnce(srv, port, host);
        await closeServer(srv);
        return true;
    } catch {
        return false;
    }
}

// ---------------------------------------------------------------------------
// Certificates

async function openssl(args: string[]): Promise<void> {
    try {
        await execFileP("openssl", args);
    } catch (e) {
        const err = e as { stderr?: string; message: string };
        throw new Error(`openssl ${args[0]} failed: ${err.stderr ?? err.message}`);
    }
}

/** CA + leaf for pebble's own HTTPS listeners. Returns paths. */
async function makeTlsCert(dir: string, listenAddress: string): Promise<{ ca: string; cert: string; key: string }> {
    const caKey = path.join(dir, "tls-ca.key");
    const ca = path.join(dir, "tls-ca.pem");
    const key = path.join(dir, "tls.key");
    const csr = path.join(dir, "tls.csr");
    const cert = path.join(dir, "tls.pem");
    const ext = path.join(dir, "tls.ext");
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    await openssl([
        "req", "-x509", ...ec, "-keyout", caKey, "-out", ca, "-days", "7", "-subj", "/CN=pebble harness TLS CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    ]); // prettier-ignore
    await openssl(["req", "-new", ...ec, "-keyout", key, "-out", csr, "-subj", "/CN=pebble"]);
    const sans = [`IP:${listenAddress}`, "DNS:localhost"];
    if (listenAddress !== "127.0.0.1") sans.push("IP:127.0.0.1");
    await fsp.writeFile(
        ext,
        [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature",
            "extendedKeyUsage=serverAuth",
            `subjectAltName=${sans.join(",")}`,
            "subjectKeyIdentifier=hash",
            "authorityKeyIdentifier=keyid,issuer",
            "",
        ].join("\n"),
    );
    await openssl([
        "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", caKey, "-CAcreateserial", "-out", cert, "-days", "7", "-extfile", ext,
    ]); // prettier-ignore
    return { ca, cert, key };
}

// ---------------------------------------------------------------------------
// HTTP helpers

function collectBody(
    res: http.IncomingMessage,
    resolve: (r: { status: number; body: string }) => void,
    reject: (err: Error) => void,
): void {
    const chunks: Buffer[] = [];
    res.on("data", (c: Buffer) => chunks.push(c));
    res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
    res.on("error", reject);
}

function httpsGet(url: string, ca: Buffer, timeoutMs = 5000): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
        const req = https.get(url, { ca, timeout: timeoutMs }, (res) => collectBody(res, resolve, reject));
        req.on("timeout", () => req.destroy(new Error(`timeout: GET ${url}`)));
        req.on("error", reject);
    });
}

function httpPost(url: string, body: unknown): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
        const data = JSON.stringify(body);
        const req = http.request(url, { method: "POST", headers: { "content-type": "application/json" }, timeout: 5000 }, (res) =>
            collectBody(res, resolve, reject),
        );
        req.on("timeout", () => req.destroy(new Error(`timeout: POST ${url}`)));
        req.on("error", reject);
        req.end(data);
    });
}

// ---------------------------------------------------------------------------
// Processes

interface Proc {
    child: ChildProcess;
    log: () => string;
    exited: Promise<void>;
}

function startProc(name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd: string): Proc {
    const child = spawn(cmd, args, { env, cwd, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    const keep = (c: Buffer) => {
        out += c.toString("utf8");
        if (out.length > 64_000) out = out.slice(-32_000);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    const exited = new Promise<void>((resolve) => {
        child.once("exit", () => resolve());
        child.once("error", (e) => {
            out += `\n[${name}] spawn error: ${e.message}`;
            resolve();
        });
    });
    return { child, log: () => out, exited };
}

async function killProc(p: Proc | undefined): Promise<void> {
    if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
    p.child.kill("SIGTERM");
    const timer = setTimeout(() => p.child.kill("SIGKILL"), 3000);
    await p.exited;
    clearTimeout(timer);
}

const live = new Set<{ procs: Proc[]; dir: string }>();
let exitHookInstalled = false;
function installExitHook(): void {
    if (exitHookInstalled) return;
    exitHookInstalled = true;
    process.on("exit", () => {
        for (const entry of live) {
            for (const p of entry.procs) {
                try {
                    p.child.kill("SIGKILL");
                } catch {
                    /* already gone */
                }
            }
            fs.rmSync(entry.dir, { recursive: true, force: true });
        }
    });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------
// Public entry point

export async function startPebble(opts: StartPebbleOptions): Promise<Pebble> {
    const { listenAddress } = opts;
    const defaultIPv4 = opts.defaultIPv4 ?? "127.0.0.1";
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "mm-pebble-"));
    const entry = { procs: [] as Proc[], dir };
    live.add(entry);
    installExitHook();

    let stopped = false;
    const stop = async (): Promise<void> => {
        if (stopped) return;
        stopped = true;
        await Promise.all(entry.procs.map((p) => killProc(p)));
        live.delete(entry);
        await fsp.rm(dir, { recursive: true, force: true });
    };

    try {
        const tls = await makeTlsCert(dir, listenAddress);
        const caBuf = await fsp.readFile(tls.ca);

        const dnsPort = await freePort("127.0.0.1", true);
        const dnsMgmtPort = await freePort("127.0.0.1");
        const acmePort = await freePort(listenAddress);
        const mgmtPort = await freePort(listenAddress);
        const host = net.isIPv6(listenAddress) ? `[${listenAddress}]` : listenAddress;

        // DNS only: other challenge servers off, AAAA answers off.
        const chall = startProc(
            "challtestsrv",
            "pebble-challtestsrv",
            [
                "-dns01", `127.0.0.1:${dnsPort}`,
                "-management", `127.0.0.1:${dnsMgmtPort}`,
                "-http01", "", "-https01", "", "-tlsalpn01", "",
                "-defaultIPv4", defaultIPv4, "-defaultIPv6", "",
            ], // prettier-ignore
            { PATH: process.env.PATH },
            dir,
        );
        entry.procs.push(chall);

        const configPath = path.join(dir, "pebble-config.json");
        await fsp.writeFile(
            configPath,
            JSON.stringify(
                {
                    pebble: {
                        listenAddress: `${host}:${acmePort}`,
                        managementListenAddress: `${host}:${mgmtPort}`,
                        certificate: tls.cert,
                        privateKey: tls.key,
                        httpPort: 80,
                        tlsPort: 443,
                        ocspResponderURL: "",
                        externalAccountBindingRequired: false,
                    },
                },
                null,
                2,
            ),
        );
        const env: NodeJS.ProcessEnv = {
            PATH: process.env.PATH,
            PEBBLE_VA_NOSLEEP: "1",
            PEBBLE_WFE_NONCEREJECT: "0",
            PEBBLE_AUTHZREUSE: "0",
        };
        const pebble = startProc("pebble", "pebble", ["-config", configPath, "-dnsserver", `127.0.0.1:${dnsPort}`], env, dir);
        entry.procs.push(pebble);

        const directoryUrl = `https://${host}:${acmePort}/dir`;
        const managementUrl = `https://${host}:${mgmtPort}`;
        const dnsMgmtUrl = `http://127.0.0.1:${dnsMgmtPort}`;

        // Wait for the directory (pebble) and challtestsrv's management port (DNS comes up with it).
        const deadline = Date.now() + (opts.startTimeoutMs ?? 30_000);
        let lastErr = "";
        for (;;) {
            for (const p of entry.procs) {
                if (p.child.exitCode !== null || p.child.signalCode !== null) {
                    throw new Error(`${p === pebble ? "pebble" : "pebble-challtestsrv"} exited early:\n${p.log()}`);
                }
            }
            try {
                const dirRes = await httpsGet(directoryUrl, caBuf, 2000);
                const challRes = await httpPost(`${dnsMgmtUrl}/set-default-ipv4`, { ip: defaultIPv4 });
                if (dirRes.status === 200 && /newAccount/.test(dirRes.body) && challRes.status === 200) break;
                lastErr = `directory ${dirRes.status}, challtestsrv ${challRes.status}`;
            } catch (e) {
                lastErr = (e as Error).message;
            }
            if (Date.now() > deadline) {
                throw new Error(`pebble did not come up (${lastErr})\npebble:\n${pebble.log()}\nchalltestsrv:\n${chall.log()}`);
            }
            await sleep(100);
        }

        const getPem = async (p: string): Promise<string> => {
            const res = await httpsGet(`${managementUrl}${p}`, caBuf);
            if (res.status !== 200 || !res.body.includes("-----BEGIN CERTIFICATE-----")) {
                throw new Error(`GET ${managementUrl}${p}: ${res.status} ${res.body.slice(0, 200)}`);
            }
            return res.body;
        };

        return {
            directoryUrl,
            managementUrl,
            dnsServer: `127.0.0.1:${dnsPort}`,
            caBundlePath: tls.ca,
            rootCaPem: () => getPem("/roots/0"),
            intermediatePem: () => getPem("/intermediates/0"),
            async setAddress(domain: string, ipv4: string): Promise<void> {
                if (!net.isIPv4(ipv4)) throw new Error(`not an IPv4 address: ${ipv4}`);
                // add-a appends to the name's answers; clear first so the answer is exactly this address.
                const cleared = await httpPost(`${dnsMgmtUrl}/clear-a`, { host: domain });
                if (cleared.status !== 200) throw new Error(`challtestsrv clear-a ${domain}: ${cleared.status} ${cleared.body}`);
                const res = await httpPost(`${dnsMgmtUrl}/add-a`, { host: domain, addresses: [ipv4] });
                if (res.status !== 200) throw new Error(`challtestsrv add-a ${domain}: ${res.status} ${res.body}`);
            },
            stop,
        };
    } catch (e) {
        await stop();
        throw e;
    }
}
