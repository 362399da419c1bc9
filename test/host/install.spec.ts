// Install scenarios on a real systemd host (issue: install Mattermost, and a real test host that proves it).
// The steps are the program's own (buildServerSteps), delivered over SSH exactly as the Pulumi driver does.
import { strict as assert } from "node:assert";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { Settings } from "../../components/settings";
import { buildServerSteps, RuntimeValueName, Step } from "../../components/steps";
import { DATA_MOUNT } from "../../components/steps/mattermostConfig";
import { issuePair } from "../unit/pki";
import { buildStandinRelease, deploy, runStep, serveReleases, STANDIN_CACHE, StepFailed, StepRun } from "./driver";
import { curlDomain, DOMAIN, hostSettings, printTimings, rootSh, timed as timedInto } from "./fixture";
import { ensureBaseImage, run, startHost, stopAllHosts, TestHost } from "./testhost";

const V1 = "10.11.4";
const V2 = "10.12.0";
const V3 = "10.12.1";

interface Fixture {
    host: TestHost;
    releases: { baseUrl: string; close(): Promise<void> };
}

const timings: Record<string, number> = {};
const pair = issuePair(DOMAIN);
const dbPassword = randomBytes(16).toString("hex");
const values: Partial<Record<RuntimeValueName, string>> = {
    dataVolumeId: "vol-0123456789abcdef0",
    databasePassword: dbPassword,
    certificateChain: pair.chain,
    certificateKey: pair.key,
};

const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "mm-install-"));
const diskImage = path.join(workDir, "data.img");
const caFile = path.join(workDir, "ca.pem");
fs.writeFileSync(caFile, pair.ca);

function settingsFor(version: string, sha256: string, baseUrl: string): Settings {
    return hostSettings({
        tlsMode: "direct",
        certificate: "own",
        certificateChain: pair.chain,
        certificateKey: pair.key,
        endpointCaBundle: pair.ca,
        mattermostVersion: version,
        mattermostSha256: sha256,
        mattermostDownloadBaseUrl: baseUrl,
    });
}

const timed = <T>(name: string, fn: () => Promise<T>): Promise<T> => timedInto(timings, name, fn);

describe("host: install Mattermost on a systemd host over SSH", function () {
    this.timeout(20 * 60_000);
    let fx: Fixture;
    let sha: Record<string, string>;
    let steps: Step[];

    before(async () => {
        await timed("base image (cached after the first run)", () => ensureBaseImage());
        sha = await timed("stand-in releases", async () => {
            const out: Record<string, string> = {};
            for (const v of [V1, V2, V3]) out[v] = buildStandinRelease(v, STANDIN_CACHE).sha256;
            return out;
        });
        const host = await startHost({ name: "install", disks: [{ image: diskImage, sizeMiB: 512 }] });
        const releases = await serveReleases(STANDIN_CACHE, host.hostAddress);
        fx = { host, releases };
    });

    after(async () => {
        await fx?.releases.close();
        await stopAllHosts();
        fs.rmSync(workDir, { recursive: true, force: true });
        printTimings(timings);
    });

    it("fresh install reaches a healthy ping", async () => {
        steps = buildServerSteps(settingsFor(V1, sha[V1], fx.releases.baseUrl), {
            dataDevice: fx.host.diskDevices[0],
            healthTimeoutSeconds: 90,
        });
        const runs = await timed("fresh install", () => deploy(fx.host, steps, values));
        assert.deepEqual(
            runs.map((r) => r.step),
            ["volume", "postgres", "backup", "certificate", "nginx", "mattermost", "start"],
        );
        assert.ok(runs.find((r) => r.step === "volume")?.changes.some((c) => c.includes("created an ext4 filesystem")));
        const ping = await rootSh(fx.host, "curl -ksS https://127.0.0.1/api/v4/system/ping");
        assert.match(ping, /"status":"OK"/);
        assert.match(ping, new RegExp(`"version":"${V1}"`));
        assert.equal(await rootSh(fx.host, `findmnt -no TARGET ${DATA_MOUNT}`), DATA_MOUNT);
        assert.match(
            await rootSh(fx.host, "grep mattermost-data /etc/fstab"),
            /^UUID=[0-9a-f-]+ \/mnt\/mattermost-data ext4 defaults,nofail/,
        );
    });

    it("a second run changes nothing and succeeds", async () => {
        const runs = await timed("second run", () => deploy(fx.host, steps, values));
        const changes = runs.flatMap((r) => r.changes.map((c) => `${r.step}: ${c}`));
        assert.deepEqual(changes, []);
    });

    it("keeps secrets out of world-readable files and out of config.json", async () => {
        const listing = await rootSh(
            fx.host,
            "stat -c '%a %U:%G %n' /etc/mattermost/secrets.env /etc/mattermost/tls/privkey.pem /opt/mattermost/config/config.json",
        );
        assert.match(listing, /^600 root:root \/etc\/mattermost\/secrets.env$/m);
        assert.match(listing, /^600 mattermost:mattermost \/etc\/mattermost\/tls\/privkey.pem$/m);
        assert.match(listing, /^600 mattermost:mattermost \/opt\/mattermost\/config\/config.json$/m);
        const leaks = await fx.host.exec([
            "grep",
            "-rl",
            "--exclude-dir=proc",
            "--exclude-dir=sys",
            dbPassword,
            "/etc",
            "/opt",
            "/home",
            "/var/log",
            "/tmp",
        ]);
        assert.deepEqual(leaks.stdout.trim().split("\n").filter(Boolean), ["/etc/mattermost/secrets.env"]);
        const journal = await rootSh(fx.host, "journalctl --no-pager -o cat | grep -c " + dbPassword + " || true");
        assert.equal(journal, "0");
    });

    it("serves HTTPS for the domain with the right CA, redirects port 80, and offers only the configured TLS", async () => {
        const ping = await curlDomain(fx.host, `https://${DOMAIN}/api/v4/system/ping`, ["--cacert", caFile, "-i"]);
        assert.equal(ping.code, 0, ping.stderr);
        assert.match(ping.stdout, /strict-transport-security: max-age=63072000/i);
        assert.match(ping.stdout, /"status":"OK"/);
        const redirect = await curlDomain(fx.host, `http://${DOMAIN}/login`, ["-o", "/dev/null", "-w", "%{http_code} %{redirect_url}"]);
        assert.equal(redirect.stdout, `301 https://${DOMAIN}/login`);
        const tls11 = await run(
            [
                "openssl",
                "s_client",
                "-connect",
                `${fx.host.address}:443`,
                "-servername",
                DOMAIN,
                "-tls1_1",
                "-cipher",
                "DEFAULT@SECLEVEL=0",
            ],
            {
                check: false,
                stdin: "",
            },
        );
        assert.notEqual(tls11.code, 0, "TLS 1.1 must be refused");
        const rsaKex = await run(
            ["openssl", "s_client", "-connect", `${fx.host.address}:443`, "-servername", DOMAIN, "-tls1_2", "-cipher", "AES128-GCM-SHA256"],
            {
                check: false,
                stdin: "",
            },
        );
        assert.notEqual(rsaKex.code, 0, "non-forward-secret RSA key exchange must be refused");
        const good = await run(
            ["openssl", "s_client", "-connect", `${fx.host.address}:443`, "-servername", DOMAIN, "-tls1_2", "-CAfile", caFile],
            {
                check: false,
                stdin: "",
            },
        );
        assert.match(good.stdout, /Cipher is ECDHE-ECDSA-(AES128-GCM-SHA256|AES256-GCM-SHA384|CHACHA20-POLY1305)/);
    });

    it("setcap shows on the binary and Mattermost, running as mattermost, binds 443 and 80", async () => {
        assert.match(await rootSh(fx.host, "getcap /opt/mattermost/bin/mattermost"), /cap_net_bind_service=ep/);
        assert.equal(await rootSh(fx.host, "ps -o user= -C mattermost | sort -u"), "mattermost");
        const listening = await rootSh(fx.host, "ss -Hltnp | grep '\"mattermost\"' | awk '{print $4}' | sort");
        assert.match(listening, /:443$/m);
        assert.match(listening, /:80$/m);
    });

    it("without the capability the bind fails (negative control), and the start step restores it", async () => {
        await rootSh(fx.host, "setcap -r /opt/mattermost/bin/mattermost && systemctl restart mattermost; sleep 3");
        const journal = await rootSh(fx.host, "journalctl -u mattermost --no-pager -n 30 -o cat");
        assert.match(journal, /permission denied/);
        const health = await fx.host.exec(["curl", "-ksS", "--max-time", "3", "https://127.0.0.1/api/v4/system/ping"]);
        assert.notEqual(health.code, 0);
        const start = steps.find((s) => s.name === "start");
        assert.ok(start);
        const restored = await timed("capability restore", () => runStep(fx.host, start, values));
        assert.ok(restored.changes.some((c) => c.includes("setcap")));
        assert.match(await rootSh(fx.host, "curl -ksS https://127.0.0.1/api/v4/system/ping"), /"status":"OK"/);
    });

    it("upgrades in place: keeps a database row and a data file, re-applies setcap", async () => {
        await rootSh(
            fx.host,
            "runuser -u postgres -- psql -q -d mattermost -c \"CREATE TABLE IF NOT EXISTS chat(msg text); INSERT INTO chat VALUES ('hello before upgrade')\" && " +
                `runuser -u mattermost -- sh -c 'echo attachment > ${DATA_MOUNT}/mattermost/data/upload.txt'`,
        );
        steps = buildServerSteps(settingsFor(V2, sha[V2], fx.releases.baseUrl), {
            dataDevice: fx.host.diskDevices[0],
            healthTimeoutSeconds: 90,
        });
        const runs = await timed("upgrade", () => deploy(fx.host, steps, values));
        assert.ok(runs.find((r) => r.step === "mattermost")?.changes.some((c) => c.includes(`${V1} -> ${V2}`)));
        assert.ok(
            runs.find((r) => r.step === "start")?.changes.some((c) => c.includes("setcap")),
            "a new binary needs setcap again",
        );
        assert.match(await rootSh(fx.host, "curl -ksS https://127.0.0.1/api/v4/system/ping"), new RegExp(`"version":"${V2}"`));
        assert.equal(
            await rootSh(fx.host, "runuser -u postgres -- psql -tA -d mattermost -c 'SELECT msg FROM chat'"),
            "hello before upgrade",
        );
        assert.equal(await rootSh(fx.host, `cat ${DATA_MOUNT}/mattermost/data/upload.txt`), "attachment");
        assert.match(
            await rootSh(fx.host, "jq -r .ServiceSettings.SiteURL /opt/mattermost/config/config.json"),
            new RegExp(`https://${DOMAIN}`),
        );
    });

    it("refuses a downgrade with a clear message", async () => {
        const down = buildServerSteps(settingsFor(V1, sha[V1], fx.releases.baseUrl), { dataDevice: fx.host.diskDevices[0] });
        await assert.rejects(
            deploy(fx.host, down, values),
            (err: unknown) => err instanceof StepFailed && /refusing to downgrade Mattermost from 10\.12\.0 to 10\.11\.4/.test(err.message),
        );
    });

    it("a wrong SHA-256 refuses the install and leaves the old version running", async () => {
        const bad = buildServerSteps(settingsFor(V3, "0".repeat(64), fx.releases.baseUrl), { dataDevice: fx.host.diskDevices[0] });
        await assert.rejects(
            deploy(fx.host, bad, values),
            (err: unknown) => err instanceof StepFailed && /SHA-256 mismatch/.test(err.message) && /keeps running/.test(err.message),
        );
        assert.match(await rootSh(fx.host, "curl -ksS https://127.0.0.1/api/v4/system/ping"), new RegExp(`"version":"${V2}"`));
        assert.equal(await rootSh(fx.host, "cat /opt/mattermost/.deployed-version"), V2);
    });

    it("a data volume that already holds a filesystem is not reformatted (a new host on the same volume keeps everything)", async () => {
        await fx.host.stop();
        const second = await timed("boot second host", () => startHost({ name: "install2", disks: [{ image: diskImage, sizeMiB: 512 }] }));
        try {
            const again = buildServerSteps(settingsFor(V2, sha[V2], fx.releases.baseUrl), {
                dataDevice: second.diskDevices[0],
                healthTimeoutSeconds: 90,
            });
            const runs: StepRun[] = await timed("install on a used volume", () => deploy(second, again, values));
            const volume = runs.find((r) => r.step === "volume");
            assert.ok(volume && !volume.changes.some((c) => c.includes("created")), "no mkfs");
            assert.match(volume.stdout, /already holds ext4; not formatting/);
            assert.ok(runs.find((r) => r.step === "postgres")?.changes.some((c) => c.includes("uses the existing data")));
            assert.equal(
                await rootSh(second, "runuser -u postgres -- psql -tA -d mattermost -c 'SELECT msg FROM chat'"),
                "hello before upgrade",
            );
            assert.equal(await rootSh(second, `cat ${DATA_MOUNT}/mattermost/data/upload.txt`), "attachment");
            assert.match(await rootSh(second, "curl -ksS https://127.0.0.1/api/v4/system/ping"), /"status":"OK"/);
        } finally {
            await second.stop();
        }
    });
});
