// HTTPS shape 1, TLS on Mattermost itself, for the self-signed and Let's Encrypt sources (own certificates are
// covered by install.spec.ts). Real steps over SSH to a systemd host running the stand-in.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { DATA_MOUNT, LETSENCRYPT_CACHE } from "../../components/steps/mattermostConfig";
import { selfSignedPair } from "../unit/pki";
import { buildStandinRelease, deploy, serveReleases, STANDIN_CACHE } from "./driver";
import { curlDomain, DOMAIN, hostSettings, hostSteps, printTimings, rootSh, runtimeValues, timed } from "./fixture";
import { ensureBaseImage, run, startHost, stopAllHosts, TestHost } from "./testhost";

const VERSION = "10.11.4";
const timings: Record<string, number> = {};
const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "mm-direct-"));

describe("host: direct TLS on Mattermost", function () {
    this.timeout(20 * 60_000);
    let releases: { baseUrl: string; close(): Promise<void> };
    let sha: string;
    const hosts: TestHost[] = [];

    before(async () => {
        await ensureBaseImage();
        sha = buildStandinRelease(VERSION, STANDIN_CACHE).sha256;
    });

    after(async () => {
        await releases?.close();
        await stopAllHosts();
        fs.rmSync(workDir, { recursive: true, force: true });
        printTimings(timings);
    });

    async function freshHost(name: string): Promise<TestHost> {
        const host = await startHost({ name, disks: [{ image: path.join(workDir, `${name}.img`), sizeMiB: 512 }] });
        hosts.push(host);
        releases ??= await serveReleases(STANDIN_CACHE, host.hostAddress);
        return host;
    }

    it("self-signed: https answers with that certificate as CA, port 80 redirects, TLS 1.2+ with AEAD suites only", async () => {
        const host = await freshHost("direct-self");
        const pair = selfSignedPair(DOMAIN);
        const certFile = path.join(workDir, "self.pem");
        fs.writeFileSync(certFile, pair.chain);
        const settings = hostSettings({
            tlsMode: "direct",
            certificate: "self-signed",
            mattermostSha256: sha,
            mattermostDownloadBaseUrl: releases.baseUrl,
        });
        await timed(timings, "deploy direct/self-signed", () => deploy(host, hostSteps(host, settings), runtimeValues(pair)));
        const ping = await curlDomain(host, `https://${DOMAIN}/api/v4/system/ping`, ["--cacert", certFile]);
        assert.equal(ping.code, 0, ping.stderr);
        assert.match(ping.stdout, /"status":"OK"/);
        const untrusted = await curlDomain(host, `https://${DOMAIN}/api/v4/system/ping`);
        assert.notEqual(untrusted.code, 0, "without the certificate as CA the connection is refused");
        const redirect = await curlDomain(host, `http://${DOMAIN}/`, ["-o", "/dev/null", "-w", "%{http_code} %{redirect_url}"]);
        assert.equal(redirect.stdout, `301 https://${DOMAIN}/`);
        const probe = async (args: string[]) =>
            run(["openssl", "s_client", "-connect", `${host.address}:443`, "-servername", DOMAIN, ...args], { check: false, stdin: "" });
        assert.notEqual((await probe(["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"])).code, 0, "TLS 1.1 refused");
        assert.match((await probe(["-tls1_3"])).stdout, /New, TLSv1\.3/);
        for (const cipher of ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305"]) {
            assert.match((await probe(["-tls1_2", "-cipher", cipher])).stdout, new RegExp(`Cipher is ${cipher}`), cipher);
        }
        for (const cipher of ["ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES128-SHA", "AES256-GCM-SHA384"]) {
            assert.notEqual((await probe(["-tls1_2", "-cipher", cipher])).code, 0, `${cipher} refused`);
        }
    });

    it("letsencrypt: the written settings pass start-up, Mattermost binds 80 and 443 as mattermost, cache on the data volume", async () => {
        const host = await freshHost("direct-le");
        const settings = hostSettings({
            tlsMode: "direct",
            certificate: "letsencrypt",
            mattermostSha256: sha,
            mattermostDownloadBaseUrl: releases.baseUrl,
        });
        const steps = hostSteps(host, settings);
        assert.ok(!steps.some((s) => s.name === "certificate"));
        await timed(timings, "deploy direct/letsencrypt", () => deploy(host, steps, runtimeValues()));
        assert.equal(await rootSh(host, "systemctl is-active mattermost"), "active");
        const sockets = await rootSh(host, "ss -Hltnp | grep '\"mattermost\"' | awk '{print $4}' | sort");
        assert.match(sockets, /:443$/m);
        assert.match(sockets, /:80$/m);
        assert.equal(await rootSh(host, "ps -o user= -C mattermost | sort -u"), "mattermost");
        assert.equal(await rootSh(host, `stat -c '%U %a' ${LETSENCRYPT_CACHE}`), "mattermost 700");
        assert.equal(await rootSh(host, `findmnt -no TARGET -T ${LETSENCRYPT_CACHE}`), DATA_MOUNT);
        assert.equal(
            await rootSh(
                host,
                "jq -c '[.ServiceSettings.UseLetsEncrypt, .ServiceSettings.Forward80To443]' /opt/mattermost/config/config.json",
            ),
            "[true,true]",
        );
        const redirect = await curlDomain(host, `http://${DOMAIN}/x`, ["-o", "/dev/null", "-w", "%{http_code}"]);
        assert.equal(redirect.stdout, "301");
    });
});
