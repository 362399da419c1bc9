// Tests for the Mattermost stand-in (test/standin/main.go) and its release
// tarball builder (test/standin/build.sh). Run:
//   npx mocha -r ts-node/register --timeout 300000 test/standin/standin.spec.ts
// Needs: golang-go golang-github-lib-pq-dev postgresql openssl libcap2-bin
// (setcap) util-linux (setpriv). Root is needed for the port 80/443 and
// capability tests; they are skipped otherwise.
import { strict as assert } from "node:assert";
import { ChildProcess, spawn, spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import * as tls from "node:tls";

const VERSION = "9.11.1";
const HERE = __dirname;
const OUTDIR = process.env.STANDIN_OUTDIR ?? path.join(os.tmpdir(), "mattermost-standin-build");
const IS_ROOT = typeof process.getuid === "function" && process.getuid() === 0;

interface RunResult {
    status: number | null;
    stdout: string;
    stderr: string;
}

function run(cmd: string, args: string[], opts: { input?: string; timeout?: number; cwd?: string } = {}): RunResult {
    const r = spawnSync(cmd, args, {
        input: opts.input ?? "",
        timeout: opts.timeout ?? 60_000,
        cwd: opts.cwd,
        encoding: "utf8",
    });
    if (r.error) {
        throw r.error;
    }
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function mustRun(cmd: string, args: string[], opts: { input?: string; timeout?: number; cwd?: string } = {}): string {
    const r = run(cmd, args, opts);
    if (r.status !== 0) {
        throw new Error(`${cmd} ${args.join(" ")} exited ${r.status}\n${r.stdout}\n${r.stderr}`);
    }
    return r.stdout;
}

function freePort(): Promise<number> {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.on("error", reject);
        srv.listen(0, "127.0.0.1", () => {
            const addr = srv.address();
            if (addr === null || typeof addr === "string") {
                reject(new Error("no port"));
                return;
            }
            const port = addr.port;
            srv.close(() => resolve(port));
        });
    });
}

function portFree(port: number): Promise<boolean> {
    return new Promise((resolve) => {
        const srv = net.createServer();
        srv.once("error", () => resolve(false));
        srv.listen(port, () => srv.close(() => resolve(true)));
    });
}

function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A running stand-in: its output so far, and ways to wait for it or stop it. */
class Standin {
    output = "";
    exitCode: number | null = null;
    exited: Promise<number | null>;
    private proc: ChildProcess;

    constructor(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd: string) {
        this.proc = spawn(cmd, args, { env, cwd, stdio: ["ignore", "pipe", "pipe"] });
        this.proc.stdout?.on("data", (d: Buffer) => (this.output += d.toString()));
        this.proc.stderr?.on("data", (d: Buffer) => (this.output += d.toString()));
        this.exited = new Promise((resolve) => {
            this.proc.on("exit", (code) => {
                this.exitCode = code;
                resolve(code);
            });
        });
    }

    async waitFor(re: RegExp, ms = 20_000): Promise<void> {
        const deadline = Date.now() + ms;
        while (!re.test(this.output)) {
            if (this.exitCode !== null) {
                throw new Error(`stand-in exited ${this.exitCode} before ${re}:\n${this.output}`);
            }
            if (Date.now() > deadline) {
                throw new Error(`timed out waiting for ${re}:\n${this.output}`);
            }
            await sleep(50);
        }
    }

    async waitExit(ms = 40_000): Promise<number | null> {
        let handle: NodeJS.Timeout | undefined;
        const timer = new Promise<"timeout">((resolve) => {
            handle = setTimeout(() => resolve("timeout"), ms);
        });
        const r = await Promise.race([this.exited, timer]);
        clearTimeout(handle);
        if (r === "timeout") {
            this.proc.kill("SIGKILL");
            throw new Error(`stand-in did not exit in ${ms} ms:\n${this.output}`);
        }
        return r;
    }

    async stop(): Promise<number | null> {
        if (this.exitCode === null) {
            this.proc.kill("SIGTERM");
        }
        return this.waitExit(15_000);
    }
}

interface HttpResult {
    status: number;
    headers: http.IncomingHttpHeaders;
    body: string;
}

function get(url: string, opts: { ca?: string; headers?: Record<string, string> } = {}): Promise<HttpResult> {
    return new Promise((resolve, reject) => {
        const u = new URL(url);
        const mod = u.protocol === "https:" ? https : http;
        const req = mod.get(
            url,
            { ca: opts.ca, headers: opts.headers, servername: u.hostname === "127.0.0.1" ? "localhost" : undefined, agent: false },
            (res) => {
                let body = "";
                res.setEncoding("utf8");
                res.on("data", (c: string) => (body += c));
                res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
            },
        );
        req.setTimeout(10_000, () => req.destroy(new Error("timeout")));
        req.on("error", reject);
    });
}

interface Frame {
    fin: boolean;
    opcode: number;
    payload: Buffer;
}

/** A minimal RFC 6455 client over a raw socket, to test the server's framing. */
class RawWs {
    private buf = Buffer.alloc(0);
    private closed = false;
    private wake: (() => void) | null = null;

    constructor(private sock: net.Socket) {
        sock.on("data", (d: Buffer) => {
            this.buf = Buffer.concat([this.buf, d]);
            this.notify();
        });
        sock.on("close", () => {
            this.closed = true;
            this.notify();
        });
        sock.on("error", () => {
            this.closed = true;
            this.notify();
        });
    }

    private notify(): void {
        const w = this.wake;
        this.wake = null;
        if (w) {
            w();
        }
    }

    private async need<T>(take: () => T | undefined, ms = 10_000): Promise<T> {
        const deadline = Date.now() + ms;
        for (;;) {
            const v = take();
            if (v !== undefined) {
                return v;
            }
            if (this.closed) {
                throw new Error("socket closed");
            }
            const left = deadline - Date.now();
            if (left <= 0) {
                throw new Error("websocket read timed out");
            }
            await new Promise<void>((resolve) => {
                this.wake = resolve;
                setTimeout(resolve, Math.min(left, 200));
            });
        }
    }

    async handshake(host: string, wsPath: string, extra: Record<string, string> = {}): Promise<{ status: number; head: string }> {
        const key = crypto.randomBytes(16).toString("base64");
        const lines = [
            `GET ${wsPath} HTTP/1.1`,
            `Host: ${host}`,
            "Upgrade: websocket",
            "Connection: Upgrade",
            `Sec-WebSocket-Key: ${key}`,
            "Sec-WebSocket-Version: 13",
            ...Object.entries(extra).map(([k, v]) => `${k}: ${v}`),
        ];
        this.sock.write(lines.join("\r\n") + "\r\n\r\n");
        const head = await this.need(() => {
            const i = this.buf.indexOf("\r\n\r\n");
            if (i < 0) {
                return undefined;
            }
            const h = this.buf.subarray(0, i).toString("latin1");
            this.buf = this.buf.subarray(i + 4);
            return h;
        });
        const status = Number(head.split(" ")[1]);
        if (status === 101) {
            const expected = crypto
                .createHash("sha1")
                .update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
                .digest("base64");
            assert.match(head, new RegExp(`^Sec-WebSocket-Accept: ${expected.replace(/[+/]/g, "\\$&")}$`, "mi"));
        }
        return { status, head };
    }

    readFrame(): Promise<Frame> {
        return this.need(() => {
            const b = this.buf;
            if (b.length < 2) {
                return undefined;
            }
            assert.equal(b[1] & 0x80, 0, "server frames must not be masked");
            let len = b[1] & 0x7f;
            let off = 2;
            if (len === 126) {
                if (b.length < 4) return undefined;
                len = b.readUInt16BE(2);
                off = 4;
            } else if (len === 127) {
                if (b.length < 10) return undefined;
                len = Number(b.readBigUInt64BE(2));
                off = 10;
            }
            if (b.length < off + len) {
                return undefined;
            }
            const f: Frame = { fin: (b[0] & 0x80) !== 0, opcode: b[0] & 0x0f, payload: Buffer.from(b.subarray(off, off + len)) };
            this.buf = b.subarray(off + len);
            return f;
        });
    }

    send(opcode: number, payload: Buffer | string, fin = true): void {
        const data = typeof payload === "string" ? Buffer.from(payload) : payload;
        const mask = crypto.randomBytes(4);
        let head: Buffer;
        if (data.length < 126) {
            head = Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | data.length]);
        } else if (data.length <= 0xffff) {
            head = Buffer.alloc(4);
            head[0] = (fin ? 0x80 : 0) | opcode;
            head[1] = 0x80 | 126;
            head.writeUInt16BE(data.length, 2);
        } else {
            head = Buffer.alloc(10);
            head[0] = (fin ? 0x80 : 0) | opcode;
            head[1] = 0x80 | 127;
            head.writeBigUInt64BE(BigInt(data.length), 2);
        }
        const masked = Buffer.alloc(data.length);
        for (let i = 0; i < data.length; i++) {
            masked[i] = data[i] ^ mask[i % 4];
        }
        this.sock.write(Buffer.concat([head, mask, masked]));
    }

    destroy(): void {
        this.sock.destroy();
    }
}

function connectPlain(port: number): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
        const s = net.connect(port, "127.0.0.1", () => resolve(s));
        s.once("error", reject);
    });
}

function connectTls(port: number, ca: string): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
        const s = tls.connect({ port, host: "127.0.0.1", servername: "localhost", ca, ALPNProtocols: ["http/1.1"] }, () => resolve(s));
        s.once("error", reject);
    });
}

/** Full websocket exchange: hello, an action reply, echo (also fragmented and 64 KiB), ping/pong, close. */
async function websocketEcho(sock: net.Socket, host: string, wsPath: string): Promise<void> {
    const ws = new RawWs(sock);
    try {
        const hs = await ws.handshake(host, wsPath);
        assert.equal(hs.status, 101, hs.head);
        const hello = await ws.readFrame();
        assert.equal(hello.opcode, 1);
        const ev = JSON.parse(hello.payload.toString()) as { event: string; data: { server_version: string } };
        assert.equal(ev.event, "hello");
        assert.equal(ev.data.server_version, VERSION);

        ws.send(1, "hello there");
        let f = await ws.readFrame();
        assert.deepEqual([f.opcode, f.payload.toString()], [1, "echo:hello there"]);

        ws.send(1, JSON.stringify({ action: "user_typing", seq: 7, data: { channel_id: "c" } }));
        f = await ws.readFrame();
        assert.deepEqual(JSON.parse(f.payload.toString()), { status: "OK", seq_reply: 7 });

        ws.send(1, "frag-", false);
        ws.send(0, "ment");
        f = await ws.readFrame();
        assert.equal(f.payload.toString(), "echo:frag-ment");

        const big = "x".repeat(70_000);
        ws.send(1, big);
        f = await ws.readFrame();
        assert.equal(f.payload.toString(), "echo:" + big);

        ws.send(9, "are-you-there");
        f = await ws.readFrame();
        assert.deepEqual([f.opcode, f.payload.toString()], [10, "are-you-there"]);

        const close = Buffer.alloc(2);
        close.writeUInt16BE(1000, 0);
        ws.send(8, close);
        f = await ws.readFrame();
        assert.equal(f.opcode, 8);
        assert.equal(f.payload.readUInt16BE(0), 1000);
    } finally {
        ws.destroy();
    }
}

type Json = { [k: string]: unknown };

describe("Mattermost stand-in", function () {
    let work = "";
    let install = "";
    let binary = "";
    let baseConfig: Json = {};
    let pgDir = "";
    let pgBin = "";
    let pgPort = 0;
    let dsn = "";
    let cert = "";
    let key = "";
    let certPem = "";
    /** ServiceSettings for TLS with the test certificate on `listen`, plus `extra`. */
    const tlsService = (listen: string, extra: Record<string, unknown> = {}) => ({
        ListenAddress: listen,
        ConnectionSecurity: "TLS",
        TLSCertFile: cert,
        TLSKeyFile: key,
        ...extra,
    });
    let tarball = "";
    const running: Standin[] = [];

    function pgRun(args: string[], bin: string): string {
        const exe = path.join(pgBin, bin);
        return IS_ROOT ? mustRun("runuser", ["-u", "postgres", "--", exe, ...args]) : mustRun(exe, args);
    }

    function psql(sqlText: string): string {
        return mustRun(path.join(pgBin, "psql"), [
            "-h",
            "127.0.0.1",
            "-p",
            String(pgPort),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-tAc",
            sqlText,
        ]).trim();
    }

    before(async function () {
        this.timeout(300_000);
        work = fs.mkdtempSync(path.join(os.tmpdir(), "standin-spec-"));
        fs.chmodSync(work, 0o755);

        // Build (twice: the second must come from the cache and give the same bytes).
        const t0 = Date.now();
        const out = mustRun("bash", [path.join(HERE, "build.sh"), VERSION, "x86_64", OUTDIR], { timeout: 240_000 }).trim();
        tarball = path.join(OUTDIR, `mattermost-${VERSION}-linux-amd64.tar.gz`);
        assert.equal(out, tarball);
        const sum1 = fs.readFileSync(tarball + ".sha256", "utf8");
        const t1 = Date.now();
        mustRun("bash", [path.join(HERE, "build.sh"), VERSION, "amd64", OUTDIR]);
        assert.equal(fs.readFileSync(tarball + ".sha256", "utf8"), sum1, "same version must give the same sha256");
        console.log(`      build ${t1 - t0} ms, cached rebuild ${Date.now() - t1} ms`);

        mustRun("tar", ["-xzf", tarball, "-C", work]);
        install = path.join(work, "mattermost");
        binary = path.join(install, "bin", "mattermost");
        baseConfig = JSON.parse(fs.readFileSync(path.join(install, "config", "config.json"), "utf8")) as Json;

        // Throwaway PostgreSQL cluster on a free port on 127.0.0.1.
        const versions = fs.readdirSync("/usr/lib/postgresql").sort((a, b) => Number(b) - Number(a));
        assert.ok(versions.length > 0, "postgresql is not installed");
        pgBin = path.join("/usr/lib/postgresql", versions[0], "bin");
        pgDir = fs.mkdtempSync(path.join(os.tmpdir(), "standin-pg-"));
        if (IS_ROOT) {
            mustRun("chown", ["postgres:postgres", pgDir]);
        }
        pgPort = await freePort();
        pgRun(["-D", path.join(pgDir, "data"), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"], "initdb");
        pgRun(
            [
                "-D",
                path.join(pgDir, "data"),
                "-l",
                path.join(pgDir, "log"),
                "-w",
                "-t",
                "60",
                "-o",
                `-p ${pgPort} -k ${pgDir} -c listen_addresses=127.0.0.1 -c fsync=off`,
                "start",
            ],
            "pg_ctl",
        );
        dsn = `postgres://postgres@127.0.0.1:${pgPort}/postgres?sslmode=disable&connect_timeout=5`;

        // Self-signed certificate for localhost, and a password-protected key.
        cert = path.join(work, "cert.pem");
        key = path.join(work, "key.pem");
        mustRun("openssl", [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ]);
        fs.chmodSync(key, 0o644);
        mustRun("openssl", ["pkey", "-in", key, "-aes256", "-passout", "pass:secret", "-out", path.join(work, "encrypted.key")]);
        certPem = fs.readFileSync(cert, "utf8");
    });

    afterEach(async function () {
        while (running.length > 0) {
            const s = running.pop();
            if (s !== undefined && s.exitCode === null) {
                await s.stop();
            }
        }
    });

    after(function () {
        this.timeout(60_000);
        if (pgDir !== "") {
            try {
                pgRun(["-D", path.join(pgDir, "data"), "-m", "fast", "-w", "stop"], "pg_ctl");
            } catch (e) {
                console.error(e);
            }
            fs.rmSync(pgDir, { recursive: true, force: true });
        }
        if (work !== "") {
            fs.rmSync(work, { recursive: true, force: true });
        }
    });

    /** Writes a config: the shipped default with `patch` merged per section. */
    function writeConfig(name: string, patch: { [section: string]: Json }): string {
        const cfg = JSON.parse(JSON.stringify(baseConfig)) as { [section: string]: Json };
        for (const [section, keys] of Object.entries(patch)) {
            cfg[section] = { ...(cfg[section] ?? {}), ...keys };
        }
        const p = path.join(work, `${name}.json`);
        fs.writeFileSync(p, JSON.stringify(cfg, null, 2));
        fs.chmodSync(p, 0o644);
        return p;
    }

    function start(args: string[], env: NodeJS.ProcessEnv = {}, opts: { cwd?: string; asUser?: string; bin?: string } = {}): Standin {
        const fullEnv: NodeJS.ProcessEnv = { PATH: process.env.PATH, MM_SQLSETTINGS_DATASOURCE: dsn, ...env };
        const bin = opts.bin ?? binary;
        const s =
            opts.asUser !== undefined
                ? new Standin(
                      "setpriv",
                      [
                          "--reuid",
                          opts.asUser,
                          "--regid",
                          opts.asUser === "nobody" ? "nogroup" : opts.asUser,
                          "--clear-groups",
                          bin,
                          ...args,
                      ],
                      fullEnv,
                      opts.cwd ?? install,
                  )
                : new Standin(bin, args, fullEnv, opts.cwd ?? install);
        running.push(s);
        return s;
    }

    it("tarball has the release layout, reproducible metadata, and a sha256 file", function () {
        const list = mustRun("tar", ["-tvzf", tarball]);
        for (const p of [
            "mattermost/bin/mattermost",
            "mattermost/config/config.json",
            "mattermost/client/index.html",
            "mattermost/logs/",
            "mattermost/i18n/",
            "mattermost/templates/",
        ]) {
            assert.match(list, new RegExp(`\\s${p.replace(/\./g, "\\.")}$`, "m"), p);
        }
        assert.match(list, /^-rwxr-xr-x 0\/0 .* 1970-01-01 00:00 mattermost\/bin\/mattermost$/m);
        const sum = crypto.createHash("sha256").update(fs.readFileSync(tarball)).digest("hex");
        assert.equal(fs.readFileSync(tarball + ".sha256", "utf8"), `${sum}  mattermost-${VERSION}-linux-amd64.tar.gz\n`);
        const ss = baseConfig.ServiceSettings as Json;
        assert.equal(ss.ListenAddress, ":8065");
        assert.equal(ss.SiteURL, "");
        assert.equal(ss.ConnectionSecurity, "");
        assert.equal((baseConfig.SqlSettings as Json).DriverName, "postgres");
        assert.deepEqual(baseConfig.FileSettings, { ...(baseConfig.FileSettings as Json), DriverName: "local", Directory: "./data/" });
        const file = mustRun("file", [binary]);
        assert.match(file, /ELF 64-bit .*x86-64.*statically linked/);
    });

    it("prints its version", function () {
        const r = run(binary, ["version"]);
        assert.equal(r.status, 0);
        assert.match(r.stdout, new RegExp(`^Version: ${VERSION.replace(/\./g, "\\.")}$`, "m"));
    });

    it("serves ping, info, the page and the websocket over HTTP; records its start; stops on SIGTERM", async function () {
        const port = await freePort();
        const before =
            Number(psql("SELECT count(*) FROM pg_tables WHERE tablename = 'standin_starts'")) === 1
                ? Number(psql("SELECT count(*) FROM standin_starts"))
                : 0;
        // Config from ./config/config.json (cwd = install dir), listen address from the environment.
        const s = start([], { MM_SERVICESETTINGS_LISTENADDRESS: `127.0.0.1:${port}` });
        await s.waitFor(new RegExp(`listening on 127\\.0\\.0\\.1:${port} \\(http\\)`));
        const ping = await get(`http://127.0.0.1:${port}/api/v4/system/ping`);
        assert.equal(ping.status, 200);
        assert.deepEqual(JSON.parse(ping.body), { status: "OK", version: VERSION, ActiveSearchBackend: "database" });
        assert.equal(ping.headers["strict-transport-security"], undefined);

        const info = JSON.parse((await get(`http://127.0.0.1:${port}/api/v4/standin/info`)).body) as Json;
        assert.equal(info.config_file, path.join(install, "config", "config.json"));
        assert.equal(info.tls, false);
        assert.equal(info.data_directory, path.join(install, "data"));
        assert.ok(fs.statSync(path.join(install, "data")).isDirectory());
        assert.equal(info.uid, process.getuid?.());

        const page = await get(`http://127.0.0.1:${port}/`);
        assert.equal(page.status, 200);
        assert.match(page.body, /<title>Mattermost stand-in<\/title>/);
        assert.match(page.body, /id="status"/);
        assert.match(page.body, /\/api\/v4\/websocket/);
        assert.equal((await get(`http://127.0.0.1:${port}/api/v4/nope`)).status, 404);

        assert.equal(Number(psql("SELECT count(*) FROM standin_starts")), before + 1);
        assert.equal(psql("SELECT version FROM standin_starts ORDER BY started_at DESC LIMIT 1"), VERSION);

        await websocketEcho(await connectPlain(port), `127.0.0.1:${port}`, "/api/v4/websocket");
        await websocketEcho(await connectPlain(port), `127.0.0.1:${port}`, "/api/v4/users/websocket");

        // A real client implementation too (undici's WebSocket in Node, behind a flag in Node 20).
        const script = `const ws = new WebSocket("ws://127.0.0.1:${port}/api/v4/websocket");
      const got = [];
      ws.onopen = () => ws.send("ping-from-page");
      ws.onmessage = (e) => { got.push(String(e.data)); if (got.length === 2) ws.close(1000); };
      ws.onclose = (e) => { console.log(JSON.stringify({ got, code: e.code })); process.exit(0); };
      ws.onerror = () => { console.log("error"); process.exit(1); };
      setTimeout(() => process.exit(2), 10000);`;
        const node = run(process.execPath, ["--experimental-websocket", "--no-warnings", "-e", script], { timeout: 20_000 });
        assert.equal(node.status, 0, node.stdout + node.stderr);
        const seen = JSON.parse(node.stdout) as { got: string[]; code: number };
        assert.match(seen.got[0], /"event":"hello"/);
        assert.equal(seen.got[1], "echo:ping-from-page");
        assert.equal(seen.code, 1000);

        // Mattermost's origin check: without SiteURL the Origin must match Host.
        const bad = new RawWs(await connectPlain(port));
        const hs = await bad.handshake(`127.0.0.1:${port}`, "/api/v4/websocket", { Origin: "https://evil.example" });
        assert.equal(hs.status, 403);
        bad.destroy();
        // Not an upgrade (e.g. a proxy dropping Upgrade/Connection): 400, like Mattermost.
        assert.equal((await get(`http://127.0.0.1:${port}/api/v4/websocket`)).status, 400);

        // Ping reports UNHEALTHY while the database is away, OK again after.
        pgRun(["-D", path.join(pgDir, "data"), "-m", "fast", "-w", "stop"], "pg_ctl");
        try {
            const down = await get(`http://127.0.0.1:${port}/api/v4/system/ping`);
            assert.equal(down.status, 500);
            assert.deepEqual(JSON.parse(down.body), { status: "UNHEALTHY" });
        } finally {
            pgRun(
                [
                    "-D",
                    path.join(pgDir, "data"),
                    "-l",
                    path.join(pgDir, "log"),
                    "-w",
                    "-o",
                    `-p ${pgPort} -k ${pgDir} -c listen_addresses=127.0.0.1 -c fsync=off`,
                    "start",
                ],
                "pg_ctl",
            );
        }
        assert.equal((await get(`http://127.0.0.1:${port}/api/v4/system/ping`)).status, 200);

        assert.equal(await s.stop(), 0);
    });

    it("finds its config by -c, --config, MM_CONFIG and <bin>/../config", async function () {
        const cases: { name: string; args: string[]; env: NodeJS.ProcessEnv; cwd: string; want: (p: string) => string }[] = [
            { name: "-c", args: ["server", "-c", "CFG"], env: {}, cwd: install, want: (p) => p },
            { name: "--config", args: ["--config", "CFG"], env: {}, cwd: install, want: (p) => p },
            { name: "MM_CONFIG", args: [], env: { MM_CONFIG: "CFG" }, cwd: install, want: (p) => p },
            { name: "binary dir", args: [], env: {}, cwd: "/", want: () => path.join(install, "config", "config.json") },
        ];
        for (const c of cases) {
            const port = await freePort();
            const cfg = writeConfig(`find-${c.name}`, { ServiceSettings: { ListenAddress: `127.0.0.1:${port}` } });
            const sub = (v: string): string => (v === "CFG" ? cfg : v);
            const env: NodeJS.ProcessEnv = { ...c.env, MM_FILESETTINGS_DIRECTORY: path.join(work, "data-find") };
            if (env.MM_CONFIG !== undefined) env.MM_CONFIG = sub(env.MM_CONFIG);
            if (c.name === "binary dir") env.MM_SERVICESETTINGS_LISTENADDRESS = `127.0.0.1:${port}`;
            const s = start(c.args.map(sub), env, { cwd: c.cwd });
            await s.waitFor(/listening on .* \(http\)/);
            const info = JSON.parse((await get(`http://127.0.0.1:${port}/api/v4/standin/info`)).body) as Json;
            assert.equal(info.config_file, c.want(cfg), c.name);
            assert.equal(await s.stop(), 0);
        }
    });

    describe("refuses to start where Mattermost does", function () {
        interface Refusal {
            name: string;
            patch?: { [section: string]: Json };
            env?: NodeJS.ProcessEnv;
            expect: RegExp;
            /** Mattermost binds the listen address before this check (so does the stand-in). */
            afterBind?: boolean;
            noConfigFlag?: boolean;
        }
        const refusals: Refusal[] = [
            {
                name: "SiteURL not a URL",
                patch: { ServiceSettings: { SiteURL: "chat.example.com" } },
                expect: /ServiceSettings\.SiteURL.*site_url\.app_error/,
            },
            { name: "SiteURL from the environment", env: { MM_SERVICESETTINGS_SITEURL: "not a url" }, expect: /ServiceSettings\.SiteURL/ },
            {
                name: "ConnectionSecurity not '' or TLS",
                patch: { ServiceSettings: { ConnectionSecurity: "SSL" } },
                expect: /ServiceSettings\.ConnectionSecurity.*webserver_security/,
            },
            {
                name: "TLS without certificate",
                patch: { ServiceSettings: { ConnectionSecurity: "TLS" } },
                expect: /ServiceSettings\.TLSCertFile.*tls_cert_file_missing/,
            },
            {
                name: "TLS with a missing certificate file",
                patch: { ServiceSettings: { ConnectionSecurity: "TLS", TLSCertFile: "/nonexistent/cert.pem", TLSKeyFile: "KEY" } },
                expect: /tls_cert_file_missing/,
            },
            {
                name: "TLS without key",
                patch: { ServiceSettings: { ConnectionSecurity: "TLS", TLSCertFile: "CERT" } },
                expect: /ServiceSettings\.TLSKeyFile.*tls_key_file_missing/,
            },
            {
                name: "TLS with a missing key file",
                patch: { ServiceSettings: { ConnectionSecurity: "TLS", TLSCertFile: "CERT", TLSKeyFile: "/nonexistent/key.pem" } },
                expect: /tls_key_file_missing/,
            },
            {
                name: "TLS with a password-protected key",
                patch: { ServiceSettings: { ConnectionSecurity: "TLS", TLSCertFile: "CERT", TLSKeyFile: "ENCKEY" } },
                expect: /Error starting server: loading ServiceSettings\.TLSCertFile/,
                afterBind: true,
            },
            {
                name: "unknown cipher",
                patch: { ServiceSettings: { TLSOverwriteCiphers: ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_FOO"] } },
                expect: /TLSOverwriteCiphers.*"TLS_FOO".*tls_overwrite_cipher/,
            },
            {
                name: "Go's ChaCha20 name (Mattermost spells it without _SHA256)",
                patch: { ServiceSettings: { TLSOverwriteCiphers: ["TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"] } },
                expect: /tls_overwrite_cipher/,
            },
            {
                name: "ciphers without an HTTP/2-required AES-128-GCM suite",
                patch: {
                    ServiceSettings: {
                        ConnectionSecurity: "TLS",
                        TLSCertFile: "CERT",
                        TLSKeyFile: "KEY",
                        TLSOverwriteCiphers: ["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"],
                    },
                },
                expect: /Error starting server: http2: TLSConfig\.CipherSuites is missing/,
                afterBind: true,
            },
            {
                name: "Forward80To443 not on port 443",
                patch: { ServiceSettings: { Forward80To443: true } },
                expect: /Forward80To443.*enabled_but_listening_on_wrong_port/,
                afterBind: true,
            },
            {
                name: "Let's Encrypt without Forward80To443",
                patch: { ServiceSettings: { ConnectionSecurity: "TLS", UseLetsEncrypt: true } },
                expect: /UseLetsEncrypt.*disabled_while_using_lets_encrypt/,
                afterBind: true,
            },
            {
                name: "Let's Encrypt without Forward80To443, TLS off",
                patch: { ServiceSettings: { UseLetsEncrypt: true } },
                expect: /disabled_while_using_lets_encrypt/,
                afterBind: true,
            },
            {
                name: "ListenAddress without a port",
                patch: { ServiceSettings: { ListenAddress: "8065" } },
                expect: /ServiceSettings\.ListenAddress.*listen_address/,
            },
            { name: "empty DataSource", env: { MM_SQLSETTINGS_DATASOURCE: "" }, expect: /SqlSettings\.DataSource.*sql_data_src/ },
            { name: "unknown SQL driver", patch: { SqlSettings: { DriverName: "sqlite" } }, expect: /SqlSettings\.DriverName.*sql_driver/ },
            {
                name: "file driver not local/amazons3",
                patch: { FileSettings: { DriverName: "azure" } },
                expect: /FileSettings\.DriverName.*file_driver/,
            },
            {
                name: "unwritable data directory",
                patch: { FileSettings: { Directory: "/proc/standin-data" } },
                expect: /FileSettings\.Directory .* cannot be created/,
            },
            {
                name: "database unreachable",
                env: {
                    MM_SQLSETTINGS_DATASOURCE: "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable",
                    STANDIN_DB_RETRY_SECONDS: "2",
                },
                expect: /error pinging the database.*connection refused/,
            },
            {
                name: "bad boolean in the environment",
                env: { MM_SERVICESETTINGS_FORWARD80TO443: "yes please" },
                expect: /MM_SERVICESETTINGS_FORWARD80TO443="yes please" is not a boolean/,
            },
            {
                name: "config file not found",
                env: { MM_CONFIG: "/nonexistent/config.json" },
                expect: /failed to load configuration/,
                noConfigFlag: true,
            },
        ];
        for (const r of refusals) {
            it(r.name, async function () {
                const port = await freePort();
                const subst = (v: unknown): unknown =>
                    v === "CERT" ? cert : v === "KEY" ? key : v === "ENCKEY" ? path.join(work, "encrypted.key") : v;
                const patch: { [section: string]: Json } = {
                    ServiceSettings: { ListenAddress: `127.0.0.1:${port}` },
                    FileSettings: { Directory: path.join(work, "data-refuse") },
                };
                for (const [section, keys] of Object.entries(r.patch ?? {})) {
                    patch[section] = {
                        ...(patch[section] ?? {}),
                        ...Object.fromEntries(Object.entries(keys).map(([k, v]) => [k, subst(v)])),
                    };
                }
                const cfg = writeConfig("refuse", patch);
                const s = start(r.noConfigFlag === true ? [] : ["-c", cfg], r.env ?? {});
                const code = await s.waitExit(30_000);
                assert.equal(code, 1, s.output);
                assert.match(s.output, r.expect);
                if (r.afterBind !== true) {
                    assert.doesNotMatch(s.output, /listening on /);
                }
                assert.ok(
                    !fs.existsSync(path.join(install, "config", "letsencrypt.cache")),
                    "a refused start must not create the Let's Encrypt cache",
                );
            });
        }

        it("exits 1 when the listen port is taken", async function () {
            const blocker = net.createServer();
            await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", () => resolve()));
            const addr = blocker.address() as net.AddressInfo;
            try {
                const s = start([], {
                    MM_SERVICESETTINGS_LISTENADDRESS: `127.0.0.1:${addr.port}`,
                    MM_FILESETTINGS_DIRECTORY: path.join(work, "data-refuse"),
                });
                assert.equal(await s.waitExit(), 1);
                assert.match(s.output, /Error starting server.*bind: address already in use/);
            } finally {
                blocker.close();
            }
        });
    });

    describe("TLS", function () {
        function sClient(port: number, args: string[]): RunResult {
            return run("openssl", ["s_client", "-connect", `127.0.0.1:${port}`, "-servername", "localhost", ...args], { timeout: 15_000 });
        }

        it("serves ping over https with the configured minimum version and ciphers, HSTS and HTTP/2", async function () {
            const port = await freePort();
            const cfg = writeConfig("tls", {
                ServiceSettings: tlsService(`:${port}`, {
                    TLSMinVer: "1.2",
                    TLSStrictTransport: true,
                    TLSStrictTransportMaxAge: 31536000,
                    TLSOverwriteCiphers: ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"],
                    SiteURL: `https://localhost:${port}`,
                }),
                FileSettings: { Directory: path.join(work, "data-tls") },
            });
            const s = start(["-c", cfg]);
            await s.waitFor(new RegExp(`listening on :${port} \\(tls\\)`));

            const ping = await get(`https://127.0.0.1:${port}/api/v4/system/ping`, { ca: certPem });
            assert.equal(ping.status, 200);
            assert.equal((JSON.parse(ping.body) as Json).version, VERSION);
            assert.equal(ping.headers["strict-transport-security"], "max-age=31536000");

            const ok = sClient(port, ["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"]);
            assert.equal(ok.status, 0, ok.stdout + ok.stderr);
            assert.match(ok.stdout, /Cipher is ECDHE-RSA-AES128-GCM-SHA256/);
            const tls11 = sClient(port, ["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]);
            assert.notEqual(tls11.status, 0, "TLS 1.1 must be refused");
            assert.match(tls11.stdout + tls11.stderr, /protocol version|no protocols available|alert/i);
            const chacha = sClient(port, ["-tls1_2", "-cipher", "ECDHE-RSA-CHACHA20-POLY1305"]);
            assert.notEqual(chacha.status, 0, "a cipher not in TLSOverwriteCiphers must be refused");
            const cbc = sClient(port, ["-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA"]);
            assert.notEqual(cbc.status, 0, "a cipher not in TLSOverwriteCiphers must be refused");
            // Go always allows TLS 1.3 (its suites are not configurable), as in Mattermost.
            const tls13 = sClient(port, ["-tls1_3"]);
            assert.equal(tls13.status, 0, tls13.stdout + tls13.stderr);
            // Mattermost's curves are P-521, P-384, P-256: no X25519.
            assert.notEqual(sClient(port, ["-tls1_3", "-groups", "X25519"]).status, 0, "X25519 must be refused");
            assert.equal(sClient(port, ["-tls1_3", "-groups", "P-384"]).status, 0);
            const h2 = sClient(port, ["-alpn", "h2"]);
            assert.match(h2.stdout, /ALPN protocol: h2/);

            await websocketEcho(await connectTls(port, certPem), `localhost:${port}`, "/api/v4/websocket");
            // SiteURL is set: the Origin must match its scheme and host.
            const ws = new RawWs(await connectTls(port, certPem));
            assert.equal(
                (await ws.handshake(`localhost:${port}`, "/api/v4/websocket", { Origin: `https://localhost:${port}` })).status,
                101,
            );
            ws.destroy();
            const ws2 = new RawWs(await connectTls(port, certPem));
            assert.equal(
                (await ws2.handshake(`localhost:${port}`, "/api/v4/websocket", { Origin: `http://localhost:${port}` })).status,
                403,
            );
            ws2.destroy();
            assert.equal(await s.stop(), 0);
        });

        it("TLSMinVer 1.0 lets TLS 1.1 in (control for the refusal above)", async function () {
            const port = await freePort();
            const cfg = writeConfig("tls10", {
                ServiceSettings: tlsService(`127.0.0.1:${port}`, {
                    TLSMinVer: "1.0",
                    TLSOverwriteCiphers: ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"],
                }),
                FileSettings: { Directory: path.join(work, "data-tls") },
            });
            const s = start(["-c", cfg]);
            await s.waitFor(/listening on .* \(tls\)/);
            const r = sClient(port, ["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]);
            assert.equal(r.status, 0, r.stdout + r.stderr);
            assert.match(r.stdout, /Protocol *: TLSv1\.1/);
            assert.equal(await s.stop(), 0);
        });

        it("TLSMinVer 1.3 is not an error: like Mattermost it falls back to 1.2, with a warning", async function () {
            const port = await freePort();
            const cfg = writeConfig("tls13", {
                ServiceSettings: tlsService(`127.0.0.1:${port}`, {
                    TLSMinVer: "1.3",
                }),
                FileSettings: { Directory: path.join(work, "data-tls") },
            });
            const s = start(["-c", cfg]);
            await s.waitFor(/listening on .* \(tls\)/);
            assert.match(s.output, /TLSMinVer "1\.3" is not 1\.0, 1\.1 or 1\.2/);
            assert.equal(sClient(port, ["-tls1_2"]).status, 0);
            assert.notEqual(sClient(port, ["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]).status, 0);
            assert.equal(await s.stop(), 0);
        });
    });

    describe("ports 80 and 443 (root only)", function () {
        before(async function () {
            if (!IS_ROOT || !(await portFree(443)) || !(await portFree(80))) {
                this.skip();
            }
        });

        it("Forward80To443 redirects :80 to https and serves TLS on :443", async function () {
            const cfg = writeConfig("fwd", {
                ServiceSettings: tlsService(":443", {
                    Forward80To443: true,
                }),
                FileSettings: { Directory: path.join(work, "data-fwd") },
            });
            const s = start(["-c", cfg]);
            await s.waitFor(/listening on :443 \(tls\)/);
            await s.waitFor(/listening on :80 \(redirect to https\)/);
            const r = await get("http://127.0.0.1:80/login?redirect_to=%2Fteam", { headers: { Host: "chat.example.test:80" } });
            assert.equal(r.status, 301);
            assert.equal(r.headers.location, "https://chat.example.test/login?redirect_to=%2Fteam");
            assert.equal((await get("https://127.0.0.1:443/api/v4/system/ping", { ca: certPem })).status, 200);
            assert.equal(await s.stop(), 0);
        });

        it("Forward80To443 goes on without :80 when it is taken (only logs)", async function () {
            const blocker = net.createServer();
            await new Promise<void>((resolve) => blocker.listen(80, () => resolve()));
            try {
                const cfg = writeConfig("fwd-busy", {
                    ServiceSettings: tlsService(":443", {
                        Forward80To443: true,
                    }),
                    FileSettings: { Directory: path.join(work, "data-fwd") },
                });
                const s = start(["-c", cfg]);
                await s.waitFor(/Unable to setup forwarding: .*address already in use/);
                assert.equal((await get("https://127.0.0.1:443/api/v4/system/ping", { ca: certPem })).status, 200);
                assert.equal(await s.stop(), 0);
            } finally {
                blocker.close();
            }
        });

        it("UseLetsEncrypt creates the cache directory 0700 and binds :443 and :80", async function () {
            const cache = path.join(work, "le", "letsencrypt.cache");
            const cfg = writeConfig("le", {
                ServiceSettings: {
                    ListenAddress: ":443",
                    ConnectionSecurity: "TLS",
                    UseLetsEncrypt: true,
                    Forward80To443: true,
                    LetsEncryptCertificateCacheFile: cache,
                },
                FileSettings: { Directory: path.join(work, "data-le") },
            });
            const s = start(["-c", cfg]);
            await s.waitFor(/listening on :443 \(tls\)/);
            await s.waitFor(/listening on :80 \(redirect to https\)/);
            const st = fs.statSync(cache);
            assert.ok(st.isDirectory());
            assert.equal(st.mode & 0o777, 0o700);
            await assert.rejects(get("https://127.0.0.1:443/api/v4/system/ping", { ca: certPem }));
            await s.waitFor(/stand-in: no ACME client/);
            assert.equal(
                (await get("http://127.0.0.1:80/x", { headers: { Host: "chat.example.test" } })).headers.location,
                "https://chat.example.test/x",
            );
            assert.equal(await s.stop(), 0);
        });

        it("binds :443 as nobody only with cap_net_bind_service on the binary", async function () {
            const unprivStart = Number(fs.readFileSync("/proc/sys/net/ipv4/ip_unprivileged_port_start", "utf8"));
            if (unprivStart <= 443) {
                this.skip(); // this kernel lets anyone bind 443; the capability is moot here
            }
            // A private copy of the install, so setcap does not touch the shared one.
            const capDir = path.join(work, "cap");
            mustRun("cp", ["-a", install, capDir]);
            const capBin = path.join(capDir, "bin", "mattermost");
            const data = path.join(work, "data-nobody");
            fs.mkdirSync(data, { recursive: true });
            mustRun("chown", ["nobody:nogroup", data]);
            const cfg = writeConfig("cap", {
                ServiceSettings: { ListenAddress: ":443", ConnectionSecurity: "TLS", TLSCertFile: cert, TLSKeyFile: key },
                FileSettings: { Directory: data },
            });
            const env = { MM_CONFIG: cfg };

            const denied = start([], env, { asUser: "nobody", bin: capBin, cwd: capDir });
            assert.equal(await denied.waitExit(), 1);
            assert.match(denied.output, /Error starting server.*listen tcp :443: bind: permission denied/);

            mustRun("setcap", ["cap_net_bind_service=+ep", capBin]);
            assert.match(mustRun("getcap", [capBin]), /cap_net_bind_service[=+]+ep/);
            const s = start([], env, { asUser: "nobody", bin: capBin, cwd: capDir });
            await s.waitFor(/listening on :443 \(tls\)/);
            const info = JSON.parse((await get("https://127.0.0.1:443/api/v4/standin/info", { ca: certPem })).body) as Json;
            assert.equal(info.uid, 65534);
            assert.equal(info.euid, 65534);
            assert.equal(info.tls, true);
            assert.equal(await s.stop(), 0);
        });
    });
});
