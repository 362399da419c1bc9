// Tests for components/steps/nginx.ts: the rendered text, then the real nginx (installed with apt when missing)
// checking the rendered site with `nginx -t` and serving it on loopback ports from a temporary prefix, in front of a
// small Node upstream. The system's /etc/nginx is not touched; certificates are made here with the openssl CLI.

import { strict as assert } from "node:assert";
import { ChildProcess, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import * as tls from "node:tls";

import {
    ACME_WEBROOT,
    defaultNginxSiteInput,
    NGINX_ACCESS_LOG,
    NGINX_CACHE_DIR,
    nginxHttp2Listen,
    NginxSiteInput,
    parseNginxVersion,
    renderNginxHttpOnly,
    renderNginxSite,
    renderNginxSiteVariants,
} from "../../components/steps/nginx";
import { UPSTREAM_PORT } from "../../components/steps/mattermostConfig";

const DOMAIN = "chat.example.test";
const LEGACY_LISTEN = "listen 443 ssl http2;\n    listen [::]:443 ssl http2;";
const DIRECTIVE_LISTEN = "listen 443 ssl;\n    listen [::]:443 ssl;\n    http2 on;";
const CIPHERS = [
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
].join(":");
const FORWARDING = [
    "proxy_pass http://mattermost;",
    "proxy_http_version 1.1;",
    "proxy_set_header Host $http_host;",
    "proxy_set_header X-Real-IP $remote_addr;",
    "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
    "proxy_set_header X-Forwarded-Proto $scheme;",
    "proxy_set_header X-Frame-Options SAMEORIGIN;",
    "client_max_body_size 50M;",
];

const siteInput: NginxSiteInput = {
    domain: DOMAIN,
    certFile: "/etc/letsencrypt/live/mattermost/fullchain.pem",
    keyFile: "/etc/letsencrypt/live/mattermost/privkey.pem",
    nginxVersion: "1.22.1",
    acmeWebroot: ACME_WEBROOT,
    upstreamPort: UPSTREAM_PORT,
};

/** The block opened by `header {` (the first one at or after `from`), up to its closing brace. */
function block(text: string, header: string, from = 0): string {
    const start = text.indexOf(`${header} {`, from);
    assert.ok(start >= 0, `no block "${header}"`);
    let depth = 0;
    for (let i = text.indexOf("{", start + header.length); i < text.length; i++) {
        if (text[i] === "{") depth++;
        if (text[i] === "}" && --depth === 0) return text.slice(start, i + 1);
    }
    assert.fail(`block "${header}" is not closed`);
}

function count(text: string, needle: string): number {
    return text.split(needle).length - 1;
}

function assertContainsAll(text: string, needles: readonly string[], where: string): void {
    for (const n of needles) assert.ok(text.includes(n), `${where} lacks ${JSON.stringify(n)}`);
}

describe("nginx site rendering", () => {
    it("picks the HTTP/2 listen syntax by nginx version", () => {
        for (const v of ["1.22.1", "1.25.0", "1.3.10", "nginx version: nginx/1.24.0", "1.18.0 (Ubuntu)"]) {
            assert.equal(nginxHttp2Listen(v), LEGACY_LISTEN, v);
        }
        for (const v of ["1.25.1", "1.26.0", "1.100.0", "nginx version: nginx/1.27.3", "2.0.0"]) {
            assert.equal(nginxHttp2Listen(v), DIRECTIVE_LISTEN, v);
        }
        assert.deepEqual(parseNginxVersion("nginx version: nginx/1.22.1"), [1, 22, 1]);
        assert.throws(() => nginxHttp2Listen("latest"), /not an nginx version/);
    });

    it("fills every placeholder and has balanced braces", () => {
        const variants = renderNginxSiteVariants(defaultNginxSiteInput(DOMAIN, siteInput.certFile, siteInput.keyFile));
        const httpOnly = renderNginxHttpOnly({ domain: DOMAIN, acmeWebroot: ACME_WEBROOT });
        for (const text of [variants.legacyHttp2, variants.http2Directive, httpOnly]) {
            assert.ok(!/\{\{|\}\}/.test(text), "a placeholder is left");
            assert.equal(count(text, "{"), count(text, "}"));
        }
        assert.equal(variants.legacyHttp2, renderNginxSite(siteInput));
        assert.equal(variants.http2Directive, renderNginxSite({ ...siteInput, nginxVersion: "1.26.0" }));
        assert.ok(variants.legacyHttp2.includes(`    ${LEGACY_LISTEN}\n`));
        assert.ok(variants.http2Directive.includes(`    ${DIRECTIVE_LISTEN}\n`));
        assert.ok(!variants.legacyHttp2.includes("http2 on;"));
        assert.ok(!variants.http2Directive.includes("ssl http2;"));
    });

    it("has the upstream, cache and port-80 server", () => {
        const site = renderNginxSite(siteInput);
        assertContainsAll(
            block(site, "upstream mattermost"),
            [`server 127.0.0.1:${UPSTREAM_PORT};`, "keepalive 64;", "keepalive_timeout 50s;"],
            "upstream",
        );
        assert.ok(site.includes(`proxy_cache_path ${NGINX_CACHE_DIR} levels=1:2 keys_zone=mattermost_cache:10m `));
        assert.ok(site.includes(`access_log ${NGINX_ACCESS_LOG} combined buffer=64k flush=5s;`));
        const port80 = block(site, "server");
        assertContainsAll(
            port80,
            ["listen 80;", "listen [::]:80;", `server_name ${DOMAIN};`, "return 301 https://$host$request_uri;"],
            "port-80 server",
        );
        assertContainsAll(
            block(port80, "location ^~ /.well-known/acme-challenge/"),
            [`root ${ACME_WEBROOT};`, "try_files $uri =404;"],
            "ACME location",
        );
        assert.ok(!port80.includes("443") && !port80.includes("proxy_pass"));
        // The port-80 server is the same text as the http-only site, without its trailing newline.
        assert.ok(site.includes(renderNginxHttpOnly({ domain: DOMAIN, acmeWebroot: ACME_WEBROOT }).trimEnd() + "\n\nserver {\n"));
    });

    it("has Mozilla's intermediate TLS profile and HSTS on port 443", () => {
        const site = renderNginxSite(siteInput);
        const https = block(site, "server", site.lastIndexOf("server {"));
        assertContainsAll(
            https,
            [
                LEGACY_LISTEN,
                `server_name ${DOMAIN};`,
                `ssl_certificate ${siteInput.certFile};`,
                `ssl_certificate_key ${siteInput.keyFile};`,
                "ssl_protocols TLSv1.2 TLSv1.3;",
                `ssl_ciphers ${CIPHERS};`,
                "ssl_ecdh_curve X25519:prime256v1:secp384r1;",
                "ssl_prefer_server_ciphers off;",
                "ssl_session_timeout 1d;",
                "ssl_session_cache shared:MozSSL:10m;",
                "ssl_session_tickets off;",
                'add_header Strict-Transport-Security "max-age=63072000" always;',
            ],
            "port-443 server",
        );
        assert.ok(!/ssl_stapling|TLSv1\.1|TLSv1 |[\s:]DHE-|ssl_early_data/.test(site));
        // add_header inside a location would drop the server-level HSTS header there.
        for (const header of ["location ~ /api/v[0-9]+/(users/)?websocket$", "location /"]) {
            assert.ok(!block(https, header).includes("add_header"), header);
        }
    });

    it("proxies websockets and everything else as Mattermost recommends", () => {
        const site = renderNginxSite(siteInput);
        const ws = block(site, "location ~ /api/v[0-9]+/(users/)?websocket$");
        assertContainsAll(
            ws,
            [
                ...FORWARDING,
                "proxy_set_header Upgrade $http_upgrade;",
                'proxy_set_header Connection "upgrade";',
                "proxy_buffers 256 16k;",
                "proxy_buffer_size 16k;",
                "proxy_read_timeout 600s;",
            ],
            "websocket location",
        );
        const root = block(site, "location /", site.lastIndexOf("server {"));
        assertContainsAll(
            root,
            [
                ...FORWARDING,
                'proxy_set_header Connection "";',
                "proxy_read_timeout 600s;",
                "proxy_cache mattermost_cache;",
                "proxy_cache_revalidate on;",
                "proxy_cache_min_uses 2;",
                "proxy_cache_use_stale timeout;",
                "proxy_cache_lock on;",
                "proxy_cache_bypass $mattermost_skip_cache;",
                "proxy_no_cache $mattermost_skip_cache;",
            ],
            "location /",
        );
        // Only static assets go through the cache (and its lock); the API and everything else skip it.
        assertContainsAll(block(site, "map $uri $mattermost_skip_cache"), ["~^/static/ 0;", "default 1;"], "cache map");
        assert.ok(!root.includes("Upgrade") && !ws.includes("proxy_cache"));
    });

    it("rejects values that would change the config's syntax", () => {
        assert.throws(() => renderNginxSite({ ...siteInput, domain: "chat.example.com; include /etc/passwd" }), /domain/);
        assert.throws(() => renderNginxSite({ ...siteInput, certFile: "/etc/$host.pem" }), /certificate file/);
        assert.throws(() => renderNginxSite({ ...siteInput, keyFile: "" }), /key file/);
        assert.throws(() => renderNginxHttpOnly({ domain: DOMAIN, acmeWebroot: "/var/www/acme {" }), /webroot/);
        for (const p of [0, 65536, 80.5]) assert.throws(() => renderNginxSite({ ...siteInput, upstreamPort: p }), /port/);
    });

    it("the http-only site has only the port-80 server", () => {
        const text = renderNginxHttpOnly({ domain: DOMAIN, acmeWebroot: "/srv/acme" });
        assert.equal(count(text, "server {"), 1);
        assertContainsAll(text, ["listen 80;", "listen [::]:80;", "root /srv/acme;", "return 301 https://$host$request_uri;"], "http-only");
        assert.ok(!/443|ssl_|upstream|proxy_/.test(text));
    });
});

interface RunResult {
    readonly code: number | null;
    readonly stdout: string;
    readonly stderr: string;
}

/** Runs a command without blocking the event loop (the upstream server lives in this process). */
function run(cmd: string, args: readonly string[], timeoutMs = 20000): Promise<RunResult> {
    return new Promise((resolve, reject) => {
        const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
        const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
        child.on("error", reject);
        child.on("close", (code) => {
            clearTimeout(timer);
            resolve({ code, stdout, stderr });
        });
    });
}

function installedNginxVersion(): string | undefined {
    const r = spawnSync("nginx", ["-v"], { encoding: "utf8" });
    if (r.error || r.status !== 0) return undefined;
    return /nginx\/(\d+\.\d+\.\d+)/.exec(r.stderr)?.[1];
}

function freePort(host: string): Promise<number> {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.on("error", reject);
        s.listen(0, host, () => {
            const { port } = s.address() as net.AddressInfo;
            s.close(() => resolve(port));
        });
    });
}

async function canListen(host: string): Promise<boolean> {
    try {
        await freePort(host);
        return true;
    } catch {
        return false;
    }
}

describe("nginx site with the installed nginx", function () {
    let nginxVersion = "";
    let dir = "";
    let certFile = "";
    let keyFile = "";
    let webroot = "";
    let tempPaths = "";

    before(function () {
        this.timeout(10 * 60 * 1000);
        let version = installedNginxVersion();
        if (version === undefined && process.getuid?.() === 0) {
            const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
            for (const args of [
                ["install", "-y", "nginx-light"],
                ["update"],
                ["install", "-y", "nginx-light"],
                ["install", "-y", "nginx"],
            ]) {
                spawnSync("apt-get", args, { env, stdio: "ignore" });
                version = installedNginxVersion();
                if (version !== undefined) break;
            }
        }
        if (version === undefined) {
            console.warn("    nginx is not installed and cannot be installed here (needs root and apt): skipping nginx -t checks");
            this.skip();
        }
        nginxVersion = version;

        dir = fs.mkdtempSync(path.join(os.tmpdir(), "nginx-spec-"));
        // Workers run as an unprivileged user when the master is root: they must reach the webroot and cache.
        fs.chmodSync(dir, 0o755);
        fs.mkdirSync(path.join(dir, "temp"));
        webroot = path.join(dir, "acme");
        fs.mkdirSync(path.join(webroot, ".well-known", "acme-challenge"), { recursive: true });
        certFile = path.join(dir, "fullchain.pem");
        keyFile = path.join(dir, "privkey.pem");
        // RSA, so that a non-forward-secret RSA key-exchange suite would be possible if nginx allowed one.
        const openssl = spawnSync(
            "openssl",
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", keyFile, "-out", certFile, "-days", "2"].concat([
                "-subj",
                `/CN=${DOMAIN}`,
                "-addext",
                `subjectAltName=DNS:${DOMAIN}`,
            ]),
            { encoding: "utf8" },
        );
        assert.equal(openssl.status, 0, openssl.stderr);

        // Temp paths the binary was built with, moved into the prefix (a module built without one has no directive).
        const built = spawnSync("nginx", ["-V"], { encoding: "utf8" }).stderr;
        tempPaths = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
            .filter((m) => built.includes(`--http-${m === "client_body" ? "client-body" : m}-temp-path=`))
            .map((m) => `    ${m}_temp_path ${dir}/temp/${m};\n`)
            .join("");
    });

    after(() => {
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    function input(overrides: Partial<NginxSiteInput> = {}): NginxSiteInput {
        return {
            domain: DOMAIN,
            certFile,
            keyFile,
            nginxVersion,
            acmeWebroot: webroot,
            upstreamPort: UPSTREAM_PORT,
            cacheDir: path.join(dir, "cache"),
            accessLog: path.join(dir, "mattermost.access.log"),
            ...overrides,
        };
    }

    /** Writes a minimal nginx.conf in the prefix that includes the site; returns its path. */
    function writeConfig(name: string, site: string): string {
        const sitePath = path.join(dir, `${name}.site.conf`);
        fs.writeFileSync(sitePath, site);
        const conf = path.join(dir, `${name}.nginx.conf`);
        fs.writeFileSync(
            conf,
            `pid ${dir}/${name}.pid;\nerror_log ${dir}/error.log;\nworker_processes 1;\nevents { worker_connections 256; }\n` +
                `http {\n    default_type application/octet-stream;\n    access_log ${dir}/access.log;\n${tempPaths}` +
                `    include ${sitePath};\n}\n`,
        );
        return conf;
    }

    function nginxArgs(conf: string): string[] {
        return ["-c", conf, "-p", `${dir}/`, "-e", path.join(dir, "error.log")];
    }

    async function nginxTest(name: string, site: string): Promise<RunResult> {
        return run("nginx", ["-t", ...nginxArgs(writeConfig(name, site))]);
    }

    it("nginx -t accepts the site for the installed version", async () => {
        const r = await nginxTest("site", renderNginxSite(input()));
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stderr, /syntax is ok/);
        assert.match(r.stderr, /test is successful/);
    });

    it("nginx -t accepts the legacy `listen 443 ssl http2` variant", async () => {
        const { legacyHttp2 } = renderNginxSiteVariants(input());
        const r = await nginxTest("legacy", legacyHttp2);
        assert.equal(r.code, 0, r.stderr);
    });

    it("the `http2 on` variant needs nginx 1.25.1 (fails on older ones with nginx's message)", async () => {
        const { http2Directive } = renderNginxSiteVariants(input());
        const r = await nginxTest("directive", http2Directive);
        const [major, minor, patch] = parseNginxVersion(nginxVersion);
        if (major > 1 || (major === 1 && (minor > 25 || (minor === 25 && patch >= 1)))) {
            assert.equal(r.code, 0, r.stderr);
        } else {
            assert.notEqual(r.code, 0);
            assert.match(r.stderr, /unknown directive "http2"/);
            assert.match(r.stderr, /test failed/);
        }
    });

    it("nginx -t accepts the http-only site", async () => {
        const r = await nginxTest("http-only", renderNginxHttpOnly({ domain: DOMAIN, acmeWebroot: webroot }));
        assert.equal(r.code, 0, r.stderr);
    });

    it("nginx -t rejects a broken site with nginx's message", async () => {
        const site = renderNginxSite(input());
        const noClosingBrace = await nginxTest("broken", site.slice(0, site.lastIndexOf("}")));
        assert.notEqual(noClosingBrace.code, 0);
        assert.match(noClosingBrace.stderr, /unexpected end of file, expecting "}"/);
        const missingKey = await nginxTest("nokey", renderNginxSite(input({ keyFile: path.join(dir, "missing.pem") })));
        assert.notEqual(missingKey.code, 0);
        assert.match(missingKey.stderr, /cannot load certificate key/);
    });

    describe("serving on loopback ports", function () {
        this.timeout(60000);
        let upstream: http.Server | undefined;
        let nginx: ChildProcess | undefined;
        let httpPort = 0;
        let httpsPort = 0;
        const hits = { ping: 0, static: 0 };
        /** Requests for /api/v4/users/me the upstream holds until CONCURRENT of them are in flight together. */
        const CONCURRENT = 6;
        const held: http.ServerResponse[] = [];
        const pingConnections: number[] = [];
        let lastPingHeaders: http.IncomingHttpHeaders = {};
        let lastPingVersion = "";
        let upgradeHeaders: http.IncomingHttpHeaders | undefined;

        before(async () => {
            let connectionId = 0;
            const ids = new WeakMap<net.Socket, number>();
            upstream = http.createServer((req, res) => {
                if (req.url === "/api/v4/system/ping") {
                    hits.ping++;
                    pingConnections.push(ids.get(req.socket) ?? -1);
                    lastPingHeaders = req.headers;
                    lastPingVersion = req.httpVersion;
                    res.writeHead(200, { "Content-Type": "application/json", "Cache-Control": "no-cache" });
                    res.end('{"status":"OK"}');
                } else if (req.url === "/api/v4/users/me") {
                    // Answered only once CONCURRENT of these are here at the same time, else 503 after 3 s: shorter
                    // than nginx's 5 s proxy_cache_lock_timeout, so requests queued behind a cache lock fail.
                    held.push(res);
                    if (held.length >= CONCURRENT) {
                        for (const r of held.splice(0)) {
                            r.writeHead(200, { "Content-Type": "application/json", "Cache-Control": "no-cache" });
                            r.end('{"id":"me"}');
                        }
                    } else {
                        setTimeout(() => {
                            const i = held.indexOf(res);
                            if (i >= 0) held.splice(i, 1);
                            if (!res.headersSent) res.writeHead(503).end();
                        }, 3000);
                    }
                } else if (req.url === "/static/main.js") {
                    hits.static++;
                    res.writeHead(200, { "Content-Type": "text/javascript", "Cache-Control": "max-age=31556926, public" });
                    res.end("console.log('static');\n");
                } else {
                    res.writeHead(404, { "Content-Type": "text/plain" });
                    res.end("not found\n");
                }
            });
            upstream.on("connection", (socket: net.Socket) => ids.set(socket, ++connectionId));
            // A websocket handshake answered with 101, then an echo of whatever comes through the tunnel.
            upstream.on("upgrade", (req: http.IncomingMessage, socket: net.Socket) => {
                upgradeHeaders = req.headers;
                socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
                socket.pipe(socket);
            });
            const server = upstream;
            await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
            const upstreamPort = (server.address() as net.AddressInfo).port;

            httpPort = await freePort("127.0.0.1");
            httpsPort = await freePort("127.0.0.1");
            const ipv6 = await canListen("::1");
            // Test-only: loopback high ports instead of 80/443 (IPv6 only where the host has ::1).
            const site = renderNginxSite(input({ upstreamPort }))
                .replace("listen 80;", `listen 127.0.0.1:${httpPort};`)
                .replace("listen [::]:80;", ipv6 ? `listen [::1]:${httpPort};` : "")
                .replace(/listen 443 /, `listen 127.0.0.1:${httpsPort} `)
                .replace(/listen \[::\]:443 [^;]*;/, (m) => (ipv6 ? m.replace("[::]:443", `[::1]:${httpsPort}`) : ""));
            assert.ok(!/listen (\[::\]:)?(80|443)\b/.test(site), "a listen directive was not moved to a test port");

            const proc = spawn("nginx", [...nginxArgs(writeConfig("serve", site)), "-g", "daemon off;"], {
                stdio: ["ignore", "pipe", "pipe"],
            });
            nginx = proc;
            let stderr = "";
            proc.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
            for (let i = 0; ; i++) {
                if (proc.exitCode !== null) assert.fail(`nginx exited with ${proc.exitCode}: ${stderr}`);
                if (
                    fs.existsSync(path.join(dir, "serve.pid")) &&
                    (await run("curl", ["-s", "-o", "/dev/null", `http://127.0.0.1:${httpPort}/`])).code === 0
                ) {
                    break;
                }
                if (i > 100) assert.fail(`nginx did not answer on port ${httpPort}: ${stderr}`);
                await new Promise((r) => setTimeout(r, 50));
            }
        });

        after(async () => {
            const proc = nginx;
            if (proc && proc.exitCode === null && proc.signalCode === null) {
                const exited = new Promise((resolve) => proc.once("exit", resolve));
                proc.kill("SIGTERM");
                const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
                await exited;
                clearTimeout(timer);
            }
            const server = upstream;
            if (server) {
                server.closeAllConnections();
                await new Promise((resolve) => server.close(resolve));
            }
        });

        function https(args: readonly string[]): Promise<RunResult> {
            return run("curl", ["-sS", "--cacert", certFile, "--resolve", `${DOMAIN}:${httpsPort}:127.0.0.1`, ...args]);
        }

        function headers(raw: string): Map<string, string> {
            const out = new Map<string, string>();
            for (const line of raw.split("\r\n").slice(1)) {
                const i = line.indexOf(":");
                if (i > 0) out.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
            }
            return out;
        }

        it("redirects http to https with 301", async () => {
            const r = await run("curl", [
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{redirect_url}",
                "-H",
                `Host: ${DOMAIN}`,
                `http://127.0.0.1:${httpPort}/login?redirect_to=%2Fteam`,
            ]);
            assert.equal(r.code, 0, r.stderr);
            assert.equal(r.stdout, `301 https://${DOMAIN}/login?redirect_to=%2Fteam`);
        });

        it("serves ACME challenges from the webroot over http", async () => {
            fs.writeFileSync(path.join(webroot, ".well-known", "acme-challenge", "token-123"), "token-123.thumbprint");
            const base = `http://127.0.0.1:${httpPort}/.well-known/acme-challenge`;
            const found = await run("curl", ["-sS", "-H", `Host: ${DOMAIN}`, "-w", " %{http_code} %{content_type}", `${base}/token-123`]);
            assert.equal(found.stdout, "token-123.thumbprint 200 text/plain");
            const missing = await run("curl", ["-sS", "-o", "/dev/null", "-H", `Host: ${DOMAIN}`, "-w", "%{http_code}", `${base}/other`]);
            assert.equal(missing.stdout, "404");
        });

        it("proxies over HTTP/2 with HSTS and the forwarding headers", async () => {
            const r = await https(["--http2", "-D", "-", "-w", "\n%{http_version}", `https://${DOMAIN}:${httpsPort}/api/v4/system/ping`]);
            assert.equal(r.code, 0, r.stderr);
            const [head, rest] = r.stdout.split("\r\n\r\n");
            assert.match(head, /^HTTP\/2 200/);
            assert.equal(headers(head).get("strict-transport-security"), "max-age=63072000");
            assert.equal(rest, '{"status":"OK"}\n2');
            assert.equal(lastPingVersion, "1.1");
            assert.equal(lastPingHeaders.host, `${DOMAIN}:${httpsPort}`);
            assert.equal(lastPingHeaders["x-forwarded-proto"], "https");
            assert.equal(lastPingHeaders["x-real-ip"], "127.0.0.1");
            assert.equal(lastPingHeaders["x-forwarded-for"], "127.0.0.1");
            assert.equal(lastPingHeaders.connection, undefined, "an empty Connection header is not sent upstream");
        });

        it("sends HSTS on error answers too", async () => {
            const r = await https(["-D", "-", "-o", "/dev/null", `https://${DOMAIN}:${httpsPort}/nope`]);
            assert.match(r.stdout, /^HTTP\/2 404/);
            assert.equal(headers(r.stdout).get("strict-transport-security"), "max-age=63072000");
        });

        it("reuses one upstream connection for sequential requests (keepalive)", async () => {
            const before = pingConnections.length;
            for (let i = 0; i < 5; i++) {
                const r = await https(["-o", "/dev/null", "-w", "%{http_code}", `https://${DOMAIN}:${httpsPort}/api/v4/system/ping`]);
                assert.equal(r.stdout, "200");
            }
            const used = new Set(pingConnections.slice(before));
            assert.equal(pingConnections.length - before, 5);
            assert.equal(used.size, 1, `upstream connections used: ${[...used].join(", ")}`);
        });

        it("lets concurrent identical API requests reach the upstream together (no cache lock on the API)", async () => {
            const url = `https://${DOMAIN}:${httpsPort}/api/v4/users/me`;
            const answers = await Promise.all(
                Array.from({ length: CONCURRENT }, () => https(["-o", "/dev/null", "-w", "%{http_code}", url])),
            );
            assert.deepEqual(
                answers.map((r) => r.stdout),
                Array<string>(CONCURRENT).fill("200"),
            );
        });

        it("caches static assets after the second request, never uncacheable answers", async () => {
            const url = `https://${DOMAIN}:${httpsPort}/static/main.js`;
            for (let i = 0; i < 4; i++) assert.equal((await https([url])).stdout, "console.log('static');\n");
            assert.equal(hits.static, 2, "proxy_cache_min_uses 2: the first two go upstream, later ones come from the cache");
            const pings = hits.ping;
            for (let i = 0; i < 3; i++) await https(["-o", "/dev/null", `https://${DOMAIN}:${httpsPort}/api/v4/system/ping`]);
            assert.equal(hits.ping, pings + 3);
        });

        it("tunnels websockets to the upstream", async () => {
            const socket = tls.connect({
                host: "127.0.0.1",
                port: httpsPort,
                servername: DOMAIN,
                ca: fs.readFileSync(certFile),
                ALPNProtocols: ["http/1.1"],
            });
            try {
                let received = "";
                const waitFor = (needle: string): Promise<void> =>
                    new Promise((resolve, reject) => {
                        const check = (): void => {
                            if (received.includes(needle)) {
                                socket.off("data", onData);
                                resolve();
                            }
                        };
                        const onData = (d: Buffer): void => {
                            received += d.toString();
                            check();
                        };
                        socket.on("data", onData);
                        socket.once("error", reject);
                        check();
                    });
                await new Promise<void>((resolve, reject) => socket.once("secureConnect", resolve).once("error", reject));
                socket.write(
                    `GET /api/v4/websocket HTTP/1.1\r\nHost: ${DOMAIN}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
                        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
                );
                await waitFor("\r\n\r\n");
                assert.match(received, /^HTTP\/1\.1 101 /);
                received = "";
                socket.write("hello through the tunnel");
                await waitFor("hello through the tunnel");
                assert.equal(upgradeHeaders?.upgrade, "websocket");
                assert.equal(upgradeHeaders?.connection, "upgrade");
                assert.equal(upgradeHeaders?.["x-forwarded-proto"], "https");
            } finally {
                socket.destroy();
            }
        });

        it("offers only forward-secret suites, TLS 1.2 and 1.3, and the configured curves", async () => {
            const connect = ["s_client", "-connect", `127.0.0.1:${httpsPort}`, "-servername", DOMAIN];
            const tls13 = await run("openssl", [...connect, "-tls1_3", "-brief"]);
            assert.equal(tls13.code, 0, tls13.stderr);
            assert.match(tls13.stderr, /Protocol version: TLSv1\.3/);
            const fs12 = await run("openssl", [...connect, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256", "-brief"]);
            assert.equal(fs12.code, 0, fs12.stderr);
            const rsaKex = await run("openssl", [...connect, "-tls1_2", "-cipher", "AES128-GCM-SHA256"]);
            assert.notEqual(rsaKex.code, 0, "a suite without forward secrecy was accepted");
            const cbc = await run("openssl", [...connect, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA256"]);
            assert.notEqual(cbc.code, 0, "a CBC suite was accepted");
            const p521 = await run("openssl", [...connect, "-tls1_3", "-groups", "secp521r1"]);
            assert.notEqual(p521.code, 0, "a curve outside X25519:prime256v1:secp384r1 was accepted");
        });
    });
});
