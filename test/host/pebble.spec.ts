// The pebble harness on loopback (the test bridge may not exist when this runs alone): pebble comes up,
// its DNS answers what we set, and certbot gets a real certificate through HTTP-01 on 127.0.0.1:80.
import { strict as assert } from "node:assert";
import { execFile } from "node:child_process";
import { Resolver } from "node:dns/promises";
import * as fs from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";

import { Pebble, portIsFree, startPebble } from "./pebble";

const execFileP = promisify(execFile);
const DOMAIN = "chat.example.test";

function get(url: string, ca: Buffer): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
        https
            .get(url, { ca }, (res) => {
                let body = "";
                res.setEncoding("utf8");
                res.on("data", (c: string) => (body += c));
                res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
            })
            .on("error", reject);
    });
}

async function hasCommand(cmd: string): Promise<boolean> {
    try {
        await execFileP(cmd, ["--version"]);
        return true;
    } catch {
        return false;
    }
}

/** Serves /.well-known/acme-challenge/<token> from `webroot` on 127.0.0.1:80. */
function serveWebroot(webroot: string, hits: string[]): Promise<http.Server> {
    const prefix = "/.well-known/acme-challenge/";
    const server = http.createServer((req, res) => {
        const url = req.url ?? "/";
        hits.push(url);
        const token = url.startsWith(prefix) ? url.slice(prefix.length) : "";
        if (!/^[A-Za-z0-9_-]+$/.test(token)) {
            res.writeHead(404).end();
            return;
        }
        fs.readFile(path.join(webroot, ".well-known", "acme-challenge", token), (err, data) => {
            if (err) res.writeHead(404).end();
            else res.writeHead(200, { "content-type": "text/plain" }).end(data);
        });
    });
    return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(80, "127.0.0.1", () => resolve(server));
    });
}

describe("host: pebble harness (loopback)", function () {
    this.timeout(120_000);
    let pebble: Pebble | undefined;
    let ca: Buffer;
    const timings: Record<string, number> = {};
    const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "mm-pebble-spec-"));

    before(async () => {
        const t0 = Date.now();
        pebble = await startPebble({ listenAddress: "127.0.0.1", defaultIPv4: "127.0.0.1" });
        timings["pebble start"] = Date.now() - t0;
        ca = fs.readFileSync(pebble.caBundlePath);
    });

    after(async () => {
        await pebble?.stop();
        fs.rmSync(workDir, { recursive: true, force: true });
        console.log("\n    pebble timings (ms):");
        for (const [name, ms] of Object.entries(timings)) console.log(`      ${name}: ${ms}`);
    });

    it("serves the ACME directory over HTTPS signed by the generated CA", async () => {
        const res = await get(pebble!.directoryUrl, ca);
        assert.equal(res.status, 200);
        const dir = JSON.parse(res.body) as Record<string, unknown>;
        assert.equal(typeof dir.newAccount, "string");
        assert.equal(typeof dir.newOrder, "string");
    });

    it("hands out its issuing root and intermediate as PEM", async () => {
        assert.match(await pebble!.rootCaPem(), /^-----BEGIN CERTIFICATE-----\n[\s\S]+-----END CERTIFICATE-----\s*$/);
        assert.match(await pebble!.intermediatePem(), /-----BEGIN CERTIFICATE-----/);
    });

    it("its DNS answers the default IPv4, set A records, and no AAAA", async () => {
        const resolver = new Resolver({ timeout: 2000, tries: 1 });
        resolver.setServers([pebble!.dnsServer]);
        assert.deepEqual(await resolver.resolve4("anything.example.test"), ["127.0.0.1"]);
        await pebble!.setAddress("other.example.test", "10.231.0.9");
        assert.deepEqual(await resolver.resolve4("other.example.test"), ["10.231.0.9"]);
        const aaaa = await resolver.resolve6(DOMAIN).catch(() => [] as string[]);
        assert.deepEqual(aaaa, []);
    });

    it("certbot gets a certificate through real HTTP-01 validation on 127.0.0.1:80", async function () {
        if (!(await portIsFree("127.0.0.1", 80))) return this.skip();
        if (!(await hasCommand("certbot"))) return this.skip(); // apt-get install -y certbot
        const webroot = path.join(workDir, "webroot");
        const certbotDir = path.join(workDir, "certbot");
        fs.mkdirSync(webroot, { recursive: true });
        await pebble!.setAddress(DOMAIN, "127.0.0.1");
        const hits: string[] = [];
        const server = await serveWebroot(webroot, hits);
        const t0 = Date.now();
        try {
            await execFileP(
                "certbot",
                [
                    "certonly", "--webroot", "-w", webroot, "-d", DOMAIN, "--server", pebble!.directoryUrl,
                    "--config-dir", path.join(certbotDir, "config"), "--work-dir", path.join(certbotDir, "work"),
                    "--logs-dir", path.join(certbotDir, "logs"), "--agree-tos", "-m", "test@example.test",
                    "--no-eff-email", "--non-interactive", "--no-random-sleep-on-renew",
                ], // prettier-ignore
                { env: { PATH: process.env.PATH, HOME: workDir, REQUESTS_CA_BUNDLE: pebble!.caBundlePath } },
            );
        } catch (e) {
            const err = e as { stdout?: string; stderr?: string; message: string };
            assert.fail(`certbot failed: ${err.message}\n${err.stdout ?? ""}\n${err.stderr ?? ""}`);
        } finally {
            await new Promise<void>((r) => server.close(() => r()));
        }
        timings["certbot issuance"] = Date.now() - t0;
        assert.ok(
            hits.some((u) => u.startsWith("/.well-known/acme-challenge/")),
            "pebble fetched the challenge from our server",
        );

        const live = path.join(certbotDir, "config", "live", DOMAIN);
        const certFile = path.join(live, "cert.pem");
        assert.ok(fs.existsSync(certFile), "cert.pem exists");

        const rootFile = path.join(workDir, "root.pem");
        const interFile = path.join(workDir, "intermediate.pem");
        fs.writeFileSync(rootFile, await pebble!.rootCaPem());
        fs.writeFileSync(interFile, await pebble!.intermediatePem());
        const verify = await execFileP("openssl", ["verify", "-CAfile", rootFile, "-untrusted", interFile, certFile]);
        assert.match(verify.stdout, /: OK/);
        const san = await execFileP("openssl", ["x509", "-in", certFile, "-noout", "-ext", "subjectAltName"]);
        assert.match(san.stdout, new RegExp(`DNS:${DOMAIN.replace(/\./g, "\\.")}`));
    });
});
