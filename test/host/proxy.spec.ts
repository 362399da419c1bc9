// HTTPS shape 2: NGINX in front, Let's Encrypt through certbot — against pebble (Let's Encrypt's ACME test
// server) on this machine, validating HTTP-01 for real against the container. Then a renewal, and mode switches.
import { strict as assert } from "node:assert";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tls from "node:tls";

import { DATA_MOUNT } from "../../components/steps/mattermostConfig";
import { issuePair } from "../unit/pki";
import { artifactPath, Browser } from "./browser";
import { buildStandinRelease, deploy, serveReleases, STANDIN_CACHE } from "./driver";
import {
    curlDomain,
    DOMAIN,
    hostSettings,
    hostSteps,
    mattermostWebsocket,
    pebbleNginxSettings,
    printTimings,
    rootSh,
    runtimeValues,
    timed,
} from "./fixture";
import { Pebble, startPebble } from "./pebble";
import { ensureBaseImage, run, startHost, stopAllHosts, TestHost } from "./testhost";

const VERSION = "10.11.4";
const timings: Record<string, number> = {};
const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "mm-proxy-"));
const own = issuePair(DOMAIN);

/** Opens a websocket to /api/v4/websocket through the proxy and returns the handshake status line and first frame. */
function websocketHello(host: TestHost, ca: string): Promise<{ status: string; firstFrame: string }> {
    return new Promise((resolve, reject) => {
        const socket = tls.connect({ host: host.address, port: 443, servername: DOMAIN, ca, ALPNProtocols: ["http/1.1"] }, () => {
            socket.write(
                [
                    "GET /api/v4/websocket HTTP/1.1",
                    `Host: ${DOMAIN}`,
                    "Upgrade: websocket",
                    "Connection: Upgrade",
                    `Origin: https://${DOMAIN}`,
                    `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}`,
                    "Sec-WebSocket-Version: 13",
                    "",
                    "",
                ].join("\r\n"),
            );
        });
        let buffer = Buffer.alloc(0);
        const timer = setTimeout(() => {
            socket.destroy();
            reject(new Error(`websocket: no hello within 10 s; got ${buffer.toString()}`));
        }, 10_000);
        socket.on("data", (chunk: Buffer) => {
            buffer = Buffer.concat([buffer, chunk]);
            const end = buffer.indexOf("\r\n\r\n");
            if (end < 0) return;
            const frame = buffer.subarray(end + 4);
            if (frame.length < 2) return;
            const len = frame[1] & 0x7f;
            const offset = len === 126 ? 4 : 2;
            const size = len === 126 ? frame.readUInt16BE(2) : len;
            if (frame.length < offset + size) return;
            clearTimeout(timer);
            socket.destroy();
            resolve({
                status: buffer.subarray(0, buffer.indexOf("\r\n")).toString(),
                firstFrame: frame.subarray(offset, offset + size).toString(),
            });
        });
        socket.on("error", (err) => {
            clearTimeout(timer);
            reject(err);
        });
    });
}

async function servedSerial(host: TestHost): Promise<string> {
    const r = await run(
        [
            "bash",
            "-c",
            `openssl s_client -connect ${host.address}:443 -servername ${DOMAIN} </dev/null 2>/dev/null | openssl x509 -noout -serial`,
        ],
        {
            check: false,
        },
    );
    return r.stdout.trim();
}

describe("host: nginx proxy with Let's Encrypt (certbot against pebble)", function () {
    this.timeout(20 * 60_000);
    let host: TestHost;
    let pebble: Pebble;
    let releases: { baseUrl: string; close(): Promise<void> };
    let sha: string;
    let rootCa: string;
    const values = runtimeValues(own);

    const nginxSettings = () => pebbleNginxSettings(pebble, rootCa, { sha256: sha, baseUrl: releases.baseUrl });
    const stepsFor = (settings: ReturnType<typeof hostSettings>) => hostSteps(host, settings);

    before(async () => {
        await ensureBaseImage();
        sha = buildStandinRelease(VERSION, STANDIN_CACHE).sha256;
        host = await startHost({ name: "proxy", disks: [{ image: path.join(workDir, "data.img"), sizeMiB: 512 }] });
        releases = await serveReleases(STANDIN_CACHE, host.hostAddress);
        pebble = await startPebble({ listenAddress: host.hostAddress, defaultIPv4: host.address });
        rootCa = await pebble.rootCaPem();
        fs.writeFileSync(path.join(workDir, "root.pem"), rootCa);
    });

    after(async () => {
        await pebble?.stop();
        await releases?.close();
        await stopAllHosts();
        fs.rmSync(workDir, { recursive: true, force: true });
        printTimings(timings);
    });

    it("issues a real certificate through HTTP-01 and serves Mattermost through the proxy over HTTP/2", async () => {
        const runs = await timed(timings, "deploy nginx/letsencrypt (issuance included)", () =>
            deploy(host, stepsFor(nginxSettings()), values),
        );
        const nginxRun = runs.find((r) => r.step === "nginx");
        assert.ok(
            nginxRun?.changes.some((c) => c.startsWith(`changed: certificate for ${DOMAIN}`)),
            nginxRun?.stdout,
        );
        const ping = await curlDomain(host, `https://${DOMAIN}/api/v4/system/ping`, [
            "--cacert",
            path.join(workDir, "root.pem"),
            "--http2",
            "-w",
            "\n%{http_version}",
        ]);
        assert.equal(ping.code, 0, ping.stderr);
        assert.match(ping.stdout, /"status":"OK"/);
        assert.match(ping.stdout, /\n2$/, "HTTP/2");
        const redirect = await curlDomain(host, `http://${DOMAIN}/login`, ["-o", "/dev/null", "-w", "%{http_code} %{redirect_url}"]);
        assert.equal(redirect.stdout, `301 https://${DOMAIN}/login`);
        assert.equal(await rootSh(host, "systemctl is-enabled certbot.timer"), "enabled");
        // Room for many websockets: Debian's 768 connections per worker raised, and the workers' descriptor limit.
        assert.match(await rootSh(host, "nginx -T 2>/dev/null | grep -E '^\\s*worker_connections'"), /worker_connections 8192;/);
        assert.match(await rootSh(host, "grep 'Max open files' /proc/$(pgrep -n -f '^nginx: worker')/limits"), /Max open files\s+16384\s/);
    });

    it("passes websockets through the proxy", async () => {
        const ws = await websocketHello(host, rootCa);
        assert.match(ws.status, /^HTTP\/1\.1 101/);
        assert.match(ws.firstFrame, /"event":"hello"/);
    });

    it("Mattermost's own websocket client (@mattermost/client) connects through the proxy and gets replies", async () => {
        const { connectionId, actionReply } = await mattermostWebsocket(host, rootCa);
        assert.match(connectionId, /^[0-9a-f]{26}$/);
        // The client hands a reply to the callback only when its seq_reply matches the action's sequence number.
        assert.equal((actionReply as { status: string }).status, "OK");
    });

    it("headless Chromium trusting only pebble's root loads the page over HTTP/2 and its websocket connects", async () => {
        const hosts = { [DOMAIN]: host.address };
        const untrusting = await Browser.launch({ hosts });
        try {
            const refused = await untrusting.visit(`https://${DOMAIN}/`, "#status", "websocket: connected");
            assert.equal(refused.errorText, "net::ERR_CERT_AUTHORITY_INVALID", "negative control: no trust without the root");
        } finally {
            await untrusting.close();
        }
        const browser = await Browser.launch({ trustedCaPem: rootCa, hosts });
        try {
            const page = await timed(timings, "chromium: page load until websocket connected", () =>
                browser.visit(`https://${DOMAIN}/`, "#status", "websocket: connected"),
            );
            assert.equal(page.errorText, undefined);
            assert.ok(page.screenshot && page.screenshot.length > 1000);
            const shot = artifactPath("proxy-chromium.png");
            fs.writeFileSync(shot, page.screenshot);
            console.log(`      artifact: ${shot}`);
            assert.equal(page.text, "websocket: connected");
            assert.equal(page.protocol, "h2");
        } finally {
            await browser.close();
        }
    });

    it("keeps Mattermost's port 8065 off the network", async () => {
        const direct = await run(["curl", "-sS", "--max-time", "3", `http://${host.address}:8065/api/v4/system/ping`], { check: false });
        assert.notEqual(direct.code, 0);
        assert.match(await rootSh(host, "ss -Hltn 'sport = :8065' | awk '{print $4}'"), /^127\.0\.0\.1:8065$/);
    });

    it("a second run changes nothing", async () => {
        const runs = await deploy(host, stepsFor(nginxSettings()), values);
        assert.deepEqual(
            runs.flatMap((r) => r.changes.map((c) => `${r.step}: ${c}`)),
            [],
        );
    });

    it("a forced renewal makes nginx serve the new certificate without a manual reload", async () => {
        const before = await servedSerial(host);
        assert.match(before, /^serial=/);
        await timed(timings, "forced renewal", () =>
            rootSh(
                host,
                "REQUESTS_CA_BUNDLE=/etc/mattermost-deploy/acme-ca.pem certbot renew --force-renewal --cert-name mattermost --no-random-sleep-on-renew -q",
            ),
        );
        assert.match(await rootSh(host, "grep -c 'Running deploy-hook command' /var/log/letsencrypt/letsencrypt.log || true"), /^[1-9]/);
        // The reload is graceful: give old workers a moment to hand over.
        let after = before;
        for (let i = 0; i < 20 && after === before; i++) {
            await new Promise((resolve) => setTimeout(resolve, 250));
            after = await servedSerial(host);
        }
        assert.match(after, /^serial=/);
        assert.notEqual(after, before);
    });

    it("testssl: TLS 1.2/1.3 only, forward secrecy, HSTS two years, no finding above LOW", async () => {
        const json = path.join(workDir, "testssl.json");
        await timed(timings, "testssl", () =>
            run(
                [
                    "testssl",
                    "--quiet",
                    "--color",
                    "0",
                    "--warnings",
                    "off",
                    "--add-ca",
                    path.join(workDir, "root.pem"),
                    "--ip",
                    host.address,
                    "--jsonfile",
                    json,
                    "-p",
                    "-f",
                    "-h",
                    "-U",
                    "-s",
                    `https://${DOMAIN}/`,
                ],
                { check: false, timeoutMs: 10 * 60_000 },
            ),
        );
        const findings = JSON.parse(fs.readFileSync(json, "utf8")) as { id: string; severity: string; finding: string }[];
        const byId = (id: string) => findings.find((f) => f.id === id)?.finding ?? "";
        for (const old of ["SSLv2", "SSLv3", "TLS1", "TLS1_1"]) assert.match(byId(old), /not offered/, old);
        assert.match(byId("TLS1_2"), /^offered/);
        assert.match(byId("TLS1_3"), /^offered/);
        assert.match(byId("FS") || byId("PFS"), /offered/);
        assert.match(byId("HSTS_time"), /730 days|63072000/);
        const serious = findings.filter((f) => ["MEDIUM", "HIGH", "CRITICAL"].includes(f.severity));
        assert.deepEqual(
            serious.map((f) => `${f.id}: ${f.finding}`),
            [],
        );
    });

    it("switches to direct TLS and back by config alone, losing nothing", async () => {
        await rootSh(
            host,
            "runuser -u postgres -- psql -q -d mattermost -c \"CREATE TABLE IF NOT EXISTS chat(msg text); INSERT INTO chat VALUES ('kept across shapes')\" && " +
                `runuser -u mattermost -- sh -c 'echo kept > ${DATA_MOUNT}/mattermost/data/shape.txt'`,
        );
        const direct = hostSettings({
            tlsMode: "direct",
            certificate: "own",
            certificateChain: own.chain,
            certificateKey: own.key,
            endpointCaBundle: own.ca,
            mattermostSha256: sha,
            mattermostDownloadBaseUrl: releases.baseUrl,
        });
        await timed(timings, "switch nginx -> direct", () => deploy(host, stepsFor(direct), values));
        assert.equal((await host.exec(["systemctl", "is-active", "nginx"])).stdout.trim(), "inactive");
        const caFile = path.join(workDir, "own-ca.pem");
        fs.writeFileSync(caFile, own.ca);
        const viaDirect = await curlDomain(host, `https://${DOMAIN}/api/v4/system/ping`, ["--cacert", caFile]);
        assert.match(viaDirect.stdout, /"status":"OK"/);

        await timed(timings, "switch direct -> nginx", () => deploy(host, stepsFor(nginxSettings()), values));
        const viaProxy = await curlDomain(host, `https://${DOMAIN}/api/v4/system/ping`, ["--cacert", path.join(workDir, "root.pem")]);
        assert.match(viaProxy.stdout, /"status":"OK"/);
        assert.equal(await rootSh(host, "runuser -u postgres -- psql -tA -d mattermost -c 'SELECT msg FROM chat'"), "kept across shapes");
        assert.equal(await rootSh(host, `cat ${DATA_MOUNT}/mattermost/data/shape.txt`), "kept");
    });
});
