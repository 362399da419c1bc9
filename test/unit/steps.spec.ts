import { strict as assert } from "node:assert";

import { parseSettings, Settings } from "../../components/settings";
import {
    buildServerSteps,
    dumpTime,
    encodeStdin,
    fillTemplate,
    releaseUrl,
    renderMattermostUnit,
    stepVariables,
} from "../../components/steps";
import {
    HSTS_MAX_AGE_SECONDS,
    LETSENCRYPT_CACHE,
    mattermostConfigPatch,
    MOZILLA_INTERMEDIATE_GO_CIPHERS,
    TLS_CERT_FILE,
    TLS_KEY_FILE,
} from "../../components/steps/mattermostConfig";
import { MINIMAL_CONFIG, plainInputs, runProgram, unwrapSecrets } from "./mocks";
import { issuePair, selfSignedPair } from "./pki";

const pair = issuePair("chat.example.com");

function settings(extra: Record<string, string>): Settings {
    const r = parseSettings({ values: { ...MINIMAL_CONFIG, letsencryptEmail: "ops@example.com", ...extra } });
    assert.deepEqual(r.errors, []);
    assert.ok(r.settings);
    return r.settings;
}

describe("Mattermost config patch", () => {
    it("direct + letsencrypt: TLS on :443, forwarder, built-in Let's Encrypt with its cache on the data volume", () => {
        const s = mattermostConfigPatch(settings({ tlsMode: "direct", certificate: "letsencrypt" })).ServiceSettings;
        assert.deepEqual(s, {
            SiteURL: "https://chat.example.com",
            ListenAddress: ":443",
            ConnectionSecurity: "TLS",
            Forward80To443: true,
            TLSMinVer: "1.2",
            TLSStrictTransport: true,
            TLSStrictTransportMaxAge: HSTS_MAX_AGE_SECONDS,
            TLSOverwriteCiphers: MOZILLA_INTERMEDIATE_GO_CIPHERS,
            UseLetsEncrypt: true,
            LetsEncryptCertificateCacheFile: LETSENCRYPT_CACHE,
            TLSCertFile: "",
            TLSKeyFile: "",
        });
        assert.ok(LETSENCRYPT_CACHE.startsWith("/mnt/mattermost-data/"));
        assert.ok(HSTS_MAX_AGE_SECONDS >= 180 * 24 * 3600);
    });

    for (const certificate of ["own", "self-signed"]) {
        it(`direct + ${certificate}: TLS files, no Let's Encrypt`, () => {
            const extra: Record<string, string> = { tlsMode: "direct", certificate };
            if (certificate === "own")
                Object.assign(extra, { certificateChain: pair.chain, certificateKey: pair.key, endpointCaBundle: pair.ca });
            const s = mattermostConfigPatch(settings(extra)).ServiceSettings;
            assert.equal(s?.UseLetsEncrypt, false);
            assert.equal(s?.TLSCertFile, TLS_CERT_FILE);
            assert.equal(s?.TLSKeyFile, TLS_KEY_FILE);
            assert.equal(s?.ConnectionSecurity, "TLS");
            assert.equal(s?.Forward80To443, true);
        });
    }

    it("uses only forward-secret AEAD suites, spelt as Mattermost's cipher table spells them", () => {
        assert.equal(MOZILLA_INTERMEDIATE_GO_CIPHERS.length, 6);
        for (const c of MOZILLA_INTERMEDIATE_GO_CIPHERS)
            assert.match(c, /^TLS_ECDHE_(ECDSA|RSA)_WITH_(AES_(128|256)_GCM_SHA(256|384)|CHACHA20_POLY1305)$/);
    });

    it("nginx: Mattermost on loopback without TLS and without the forwarder (no double TLS, no redirect loop)", () => {
        const p = mattermostConfigPatch(settings({ tlsMode: "nginx" }));
        assert.equal(p.ServiceSettings?.ListenAddress, "127.0.0.1:8065");
        assert.equal(p.ServiceSettings?.ConnectionSecurity, "");
        assert.equal(p.ServiceSettings?.Forward80To443, false);
        assert.equal(p.ServiceSettings?.UseLetsEncrypt, false);
    });

    it("keeps the database password out of config.json and files on the data volume", () => {
        const p = mattermostConfigPatch(settings({}));
        assert.doesNotMatch(String(p.SqlSettings?.DataSource), /:[^@/]*@/);
        assert.equal(p.FileSettings?.Directory, "/mnt/mattermost-data/mattermost/data/");
    });
});

describe("server steps", () => {
    it("orders volume, postgres, backup, (certificate), mattermost, start", () => {
        const names = (extra: Record<string, string>) => buildServerSteps(settings(extra)).map((s) => s.name);
        const order = (extra: Record<string, string>) => names(extra).join(" ");
        assert.equal(order({ tlsMode: "direct", certificate: "self-signed" }), "volume postgres backup certificate nginx mattermost start");
        assert.equal(order({ tlsMode: "direct", certificate: "letsencrypt" }), "volume postgres backup nginx mattermost start");
        // The proxy comes after Mattermost has moved to loopback; in the direct shape it is switched off first.
        assert.equal(order({ tlsMode: "nginx", certificate: "letsencrypt" }), "volume postgres backup mattermost start nginx");
        assert.equal(order({ tlsMode: "nginx", certificate: "self-signed" }), "volume postgres backup certificate mattermost start nginx");
    });

    it("dumps the database 30 minutes before the snapshot, wrapping past midnight, onto the data volume", () => {
        assert.equal(dumpTime("03:00"), "02:30");
        assert.equal(dumpTime("00:10"), "23:40");
        assert.equal(dumpTime("12:30"), "12:00");
        const step = buildServerSteps(settings({ snapshotTime: "00:10" })).find((s) => s.name === "backup");
        assert.ok(step);
        assert.match(step.vars.DUMP_TIMER, /^OnCalendar=\*-\*-\* 23:40:00 UTC$/m);
        assert.match(step.vars.DUMP_SERVICE, /^Environment=DUMP_DIR=\/mnt\/mattermost-data\/backups DB_NAME=mattermost KEEP=3$/m);
        assert.match(step.vars.DUMP_SERVICE, /^RequiresMountsFor=\/mnt\/mattermost-data$/m);
        assert.doesNotMatch(step.vars.DUMP_SERVICE + step.vars.DUMP_TIMER, /\{\{/);
    });

    it("downloads the release for the version and architecture", () => {
        assert.equal(releaseUrl(settings({})), "https://releases.mattermost.com/10.11.4/mattermost-10.11.4-linux-amd64.tar.gz");
        assert.equal(
            releaseUrl(settings({ architecture: "arm64", mattermostVersion: "10.12.0" })),
            "https://releases.mattermost.com/10.12.0/mattermost-10.12.0-linux-arm64.tar.gz",
        );
    });

    it("marks the database password and the TLS key secret, and fills them only at deploy time", () => {
        const steps = buildServerSteps(settings({ tlsMode: "direct", certificate: "self-signed" }));
        const secretVars = steps.flatMap((s) =>
            Object.entries(s.runtimeVars)
                .filter(([, v]) => v.secret)
                .map(([k]) => `${s.name}.${k}`),
        );
        assert.deepEqual(secretVars.sort(), ["certificate.CERT_KEY", "mattermost.DATASOURCE", "postgres.DB_PASSWORD"]);
        for (const s of steps) assert.ok(!JSON.stringify(s.vars).includes("PASSWORD="), s.name);
        const mm = steps.find((s) => s.name === "mattermost");
        assert.ok(mm);
        assert.throws(() => stepVariables(mm, {}), /runtime value databasePassword is not available/);
        assert.match(stepVariables(mm, { databasePassword: "pw" }).DATASOURCE, /^postgres:\/\/mmuser:pw@127\.0\.0\.1:5432\/mattermost\?/);
    });

    it("encodes standard input deterministically, one base64 value per named line", () => {
        const a = encodeStdin({ B: "two\nlines", A: "it's $(not) run" });
        assert.equal(a, encodeStdin({ A: "it's $(not) run", B: "two\nlines" }));
        assert.deepEqual(
            a
                .trim()
                .split("\n")
                .map((l) => [l.split("=")[0], Buffer.from(l.slice(2), "base64").toString()]),
            [
                ["A", "it's $(not) run"],
                ["B", "two\nlines"],
            ],
        );
        assert.throws(() => encodeStdin({ "bad name": "x" }), /bad variable name/);
    });

    it("fills templates strictly", () => {
        assert.equal(fillTemplate("a {{X}} b", { X: "1" }), "a 1 b");
        assert.throws(() => fillTemplate("a {{X}} {{Y}}", { X: "1" }), /\{\{Y\}\} has no value/);
        assert.throws(() => fillTemplate("a {{X}}", { X: "1", Z: "2" }), /not used: Z/);
        const unit = renderMattermostUnit("local");
        assert.doesNotMatch(unit, /\{\{/);
        assert.doesNotMatch(unit, /^NoNewPrivileges/m);
        assert.match(unit, /^Restart=always$/m);
        assert.match(unit, /^EnvironmentFile=\/etc\/mattermost\/secrets.env$/m);
    });
});

describe("nginx step", () => {
    it("direct shape: switches any proxy off", () => {
        const step = buildServerSteps(settings({ tlsMode: "direct", certificate: "letsencrypt" })).find((s) => s.name === "nginx");
        assert.deepEqual(step?.vars, { PROXY: "off" });
    });

    it("nginx + letsencrypt: certbot with a fixed cert name, the configured ACME server and email", () => {
        const s = settings({ tlsMode: "nginx", acmeServer: "staging", endpointCaBundle: selfSignedPair("stg-root.example.test").chain });
        const step = buildServerSteps(s).find((x) => x.name === "nginx");
        assert.ok(step);
        assert.equal(step.vars.CERTBOT, "yes");
        assert.equal(step.vars.CERT_NAME, "mattermost");
        assert.equal(step.vars.ACME_SERVER, "https://acme-staging-v02.api.letsencrypt.org/directory");
        assert.equal(step.vars.LETSENCRYPT_EMAIL, "ops@example.com");
        assert.equal(step.vars.CERT_FILE, "/etc/letsencrypt/live/mattermost/fullchain.pem");
        assert.match(step.vars.SITE_LEGACY_HTTP2, /listen 443 ssl http2;/);
        assert.match(step.vars.SITE_HTTP2_DIRECTIVE, /http2 on;/);
        assert.doesNotMatch(step.vars.SITE_HTTP_ONLY, /443/);
    });

    it("nginx + own: root-owned certificate files for nginx, no certbot", () => {
        const steps = buildServerSteps(
            settings({
                tlsMode: "nginx",
                certificate: "own",
                certificateChain: pair.chain,
                certificateKey: pair.key,
                endpointCaBundle: pair.ca,
            }),
        );
        assert.deepEqual(steps.find((x) => x.name === "certificate")?.vars, {
            CERT_FILE: "/etc/nginx/tls/fullchain.pem",
            KEY_FILE: "/etc/nginx/tls/privkey.pem",
            CERT_OWNER: "root",
        });
        assert.equal(steps.find((x) => x.name === "nginx")?.vars.CERTBOT, "no");
    });
});

describe("Pulumi driver under mocks", function () {
    this.timeout(30000);

    it("copies the scripts and runs one command per step in order, secrets only as secrets", async () => {
        const run = await runProgram({ ...MINIMAL_CONFIG, tlsMode: "direct", certificate: "self-signed" });
        const commands = run.ofType("command:remote:Command").map((c) => c.name);
        assert.deepEqual(commands, [
            "mattermost-scripts-dir",
            "mattermost-volume",
            "mattermost-postgres",
            "mattermost-backup",
            "mattermost-certificate",
            "mattermost-nginx",
            "mattermost-mattermost",
            "mattermost-start",
        ]);
        run.one("command:remote:CopyToRemote");
        const byName = Object.fromEntries(run.ofType("command:remote:Command").map((c) => [c.name, c]));
        assert.equal(byName["mattermost-volume"].inputs.create, "sudo bash mattermost-deploy/scripts/volume.sh");
        // Plain steps keep a readable stdin (diffable in preview); steps with a secret have it wrapped as a secret.
        assert.match(plainInputs(byName["mattermost-volume"]), /"stdin":"DATA_DEVICE=/);
        for (const name of ["mattermost-postgres", "mattermost-certificate", "mattermost-mattermost"]) {
            assert.match(plainInputs(byName[name]), /"stdin":"\[secret\]"/, name);
        }
        const triggers = unwrapSecrets(byName["mattermost-mattermost"].inputs.triggers) as unknown[];
        assert.equal(triggers.length, 3);
        assert.match(String(triggers[0]), /^[0-9a-f]{64}$/);
        assert.equal(byName["mattermost-start"].inputs.addPreviousOutputInEnv, false);
    });

    it("a new Mattermost version changes only the mattermost step's trigger", async () => {
        const a = await runProgram({ ...MINIMAL_CONFIG });
        const b = await runProgram({ ...MINIMAL_CONFIG, mattermostVersion: "10.12.0", mattermostSha256: "b".repeat(64) });
        const trig = (run: typeof a, name: string) =>
            JSON.stringify(run.ofType("command:remote:Command").find((c) => c.name === name)?.inputs.triggers);
        for (const name of ["mattermost-volume", "mattermost-postgres", "mattermost-start"])
            assert.equal(trig(a, name), trig(b, name), name);
        assert.notEqual(trig(a, "mattermost-mattermost"), trig(b, "mattermost-mattermost"));
    });
});
