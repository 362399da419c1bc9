// The endpoint check that ends `pulumi up`, against a real nginx + certbot host (pebble as Let's Encrypt): it waits
// for the verified ping, and when the endpoint does not answer, each cause (port 80 blocked by a firewall, a wrong DNS
// answer, Mattermost stopped) yields its own diagnosis. The firewall is an nftables rule on this machine, between the
// "internet" (this machine, pebble included) and the server, as a corporate firewall would be.
import { strict as assert } from "node:assert";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { endpointCheckScript } from "../../components/endpoint";
import { EndpointCheck, JOURNAL_COMMAND, waitForEndpoint } from "../../components/endpointCheck";
import { buildStandinRelease, deploy, serveReleases, STANDIN_CACHE } from "./driver";
import { DOMAIN, hostSteps, pebbleNginxSettings, printTimings, runtimeValues, rootSh, timed } from "./fixture";
import { Pebble, startPebble } from "./pebble";
import { ensureBaseImage, run, startHost, stopAllHosts, TestHost } from "./testhost";

const VERSION = "10.11.4";
const TABLE = "mmth_firewall";
const timings: Record<string, number> = {};
const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "mm-verify-"));

async function blockPort80(address: string): Promise<void> {
    await run(["nft", "add", "table", "inet", TABLE]);
    await run(["nft", "add chain inet " + TABLE + " out { type filter hook output priority 0 ; }"]);
    await run(["nft", `add rule inet ${TABLE} out ip daddr ${address} tcp dport 80 drop`]);
}
const unblock = () => run(["nft", "delete", "table", "inet", TABLE], { check: false });

/** Runs the check exactly as the Pulumi command does: the transpiled script on `node -`, parameters in MM_VERIFY_*. */
function runCheckScript(env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
        const child = spawn("node", ["-"], { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", MM_VERIFY_RUN: "1", ...env } });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
        child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
        child.on("error", reject);
        child.on("close", (code) => resolve({ code, stdout, stderr }));
        child.stdin.end(endpointCheckScript());
    });
}

describe("host: the endpoint check and its diagnosis (nginx + certbot against pebble)", function () {
    this.timeout(10 * 60_000);
    let host: TestHost;
    let pebble: Pebble;
    let releases: { baseUrl: string; close(): Promise<void> };
    let rootCa: string;
    let check: (timeoutMs: number) => EndpointCheck;
    const values = runtimeValues();
    const diagnoses: string[] = [];

    before(async () => {
        await ensureBaseImage();
        await unblock();
        const sha = buildStandinRelease(VERSION, STANDIN_CACHE).sha256;
        host = await startHost({ name: "verify", disks: [{ image: path.join(workDir, "data.img"), sizeMiB: 512 }] });
        releases = await serveReleases(STANDIN_CACHE, host.hostAddress);
        pebble = await startPebble({ listenAddress: host.hostAddress, defaultIPv4: host.address });
        rootCa = await pebble.rootCaPem();
        check = (timeoutMs) => ({
            domain: DOMAIN,
            expectedAddress: host.address,
            caPem: rootCa,
            resolver: pebble.dnsServer,
            timeoutMs,
            intervalMs: 1000,
            journal: async () => (await host.exec(["bash", "-c", JOURNAL_COMMAND])).stdout,
        });
        const settings = pebbleNginxSettings(pebble, rootCa, { sha256: sha, baseUrl: releases.baseUrl });
        await blockPort80(host.address);
        const runs = await timed(timings, "deploy with port 80 blocked", () => deploy(host, hostSteps(host, settings), values));
        const nginx = runs.find((r) => r.step === "nginx");
        assert.match(nginx?.stdout ?? "", /warning: certbot could not get a certificate/);
        assert.ok(
            nginx?.changes.some((c) => c.startsWith("changed: certificate retry timer started")),
            nginx?.stdout,
        );
    });

    after(async () => {
        await unblock();
        await pebble?.stop();
        await releases?.close();
        await stopAllHosts();
        fs.rmSync(workDir, { recursive: true, force: true });
        printTimings(timings);
    });

    it("port 80 blocked on the way: the deploy completes serving port 80 only, and the check names the firewall", async () => {
        const result = await waitForEndpoint(check(3000));
        assert.equal(result.ok, false);
        assert.ok(!result.ok);
        diagnoses.push(result.message);
        assert.match(result.message, /1\. Port 80 on 10\.231\.0\.\d+ does not answer from here \(connection timed out/);
        assert.match(result.message, /Fix: Let's Encrypt's HTTP-01 challenge .* firewall/);
        assert.match(result.message, /Nothing listens on port 443/);
        assert.match(result.message, /Server journal/);
    });

    it("once the firewall opens, the retry gets the certificate and the check passes with it verified", async () => {
        await unblock();
        await rootSh(host, "systemctl start mattermost-certificate-retry.service");
        const result = await timed(timings, "check until verified after the retry", () => waitForEndpoint(check(60_000)));
        assert.equal(result.ok, true, result.ok ? "" : result.message);
        assert.equal(await rootSh(host, "systemctl is-active mattermost-certificate-retry.timer || true"), "inactive");
    });

    it("a wrong DNS answer: the check names the resolver, the address it got and the Elastic IP", async () => {
        await pebble.setAddress(DOMAIN, "10.231.0.254");
        try {
            const result = await waitForEndpoint(check(3000));
            assert.ok(!result.ok);
            diagnoses.push(result.message);
            assert.match(
                result.message,
                new RegExp(
                    `1\\. DNS: chat\\.example\\.test resolves to 10\\.231\\.0\\.254 \\(asked DNS server ${pebble.dnsServer.replace(/\./g, "\\.")}\\), not to the server's Elastic IP ${host.address.replace(/\./g, "\\.")}`,
                ),
            );
        } finally {
            await pebble.setAddress(DOMAIN, host.address);
        }
    });

    it("Mattermost stopped: the check, run as Pulumi runs it (node -, journal over SSH), reports the proxy's 502", async () => {
        await rootSh(host, "systemctl stop mattermost");
        try {
            const result = await runCheckScript({
                MM_VERIFY_DOMAIN: DOMAIN,
                MM_VERIFY_ADDRESS: host.address,
                MM_VERIFY_TIMEOUT_SECONDS: "3",
                MM_VERIFY_CA: rootCa,
                MM_VERIFY_RESOLVER: pebble.dnsServer,
                MM_VERIFY_SSH_HOST: host.address,
                MM_VERIFY_SSH_USER: "ubuntu",
                MM_VERIFY_SSH_KEY: fs.readFileSync(host.privateKeyPath, "utf8"),
            });
            assert.equal(result.code, 1, result.stdout + result.stderr);
            diagnoses.push(result.stderr);
            assert.match(result.stderr, /1\. The proxy answers 502: Mattermost behind it \(127\.0\.0\.1:8065\) is not answering/);
            assert.match(result.stderr, /Stopped mattermost\.service|Stopped .*Mattermost/, "the journal tail came over SSH");
        } finally {
            await rootSh(host, "systemctl start mattermost");
        }
        const ok = await runCheckScript({
            MM_VERIFY_DOMAIN: DOMAIN,
            MM_VERIFY_ADDRESS: host.address,
            MM_VERIFY_TIMEOUT_SECONDS: "60",
            MM_VERIFY_CA: rootCa,
            MM_VERIFY_RESOLVER: pebble.dnsServer,
        });
        assert.equal(ok.code, 0, ok.stderr);
        assert.match(ok.stdout, /answered OK with a verified certificate/);
    });

    it("the three causes give three different first messages", () => {
        const firsts = diagnoses.map((d) => /\n {2}1\. ([^\n]*)/.exec(d)?.[1]);
        assert.equal(firsts.length, 3);
        assert.equal(new Set(firsts).size, 3, firsts.join("\n"));
    });
});
