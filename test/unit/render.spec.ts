import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { parseSettings, SettingsError } from "../../components/settings";
import { buildServerSteps, SCRIPTS_DIR, Step } from "../../components/steps";
import { FILE_VARIABLES, readStackConfig, renderedVariables, renderStack, SECRET_MARKER, writeRender } from "../../tools/render";
import { issuePair } from "./pki";

const ROOT = path.join(__dirname, "..", "..");
const stackText = (stack: string): string => fs.readFileSync(path.join(ROOT, `Pulumi.${stack}.yaml`), "utf8");

/** A fake ciphertext in the shape `pulumi config set --secret` stores. */
const CIPHERTEXT = "v1:AAABBBCCCDDD0123456789:Zm9vYmFyYmF6cXV4c2VjcmV0LWtleS1jaXBoZXJ0ZXh0LXRoYXQtbXVzdC1uZXZlci1sZWFr";
const PAIR = issuePair("chat.example.com");

function indent(pem: string): string {
    return pem
        .trimEnd()
        .split("\n")
        .map((l) => `      ${l}`)
        .join("\n");
}

/** A stack with an own certificate whose key is stored encrypted, plus a secret in another namespace. */
const OWN_CERT_STACK = `config:
  aws:region: eu-west-1
  aws:secretKey:
    secure: ${CIPHERTEXT}-aws
  mattermost:domain: chat.example.com
  mattermost:tlsMode: nginx
  mattermost:certificate: own
  mattermost:certificateChain: |
${indent(PAIR.chain)}
  mattermost:certificateKey:
    secure: ${CIPHERTEXT}
  mattermost:endpointCaBundle: |
${indent(PAIR.ca)}
  mattermost:mattermostSha256: "${"a".repeat(64)}"
  mattermost:sshAllowedCidrs:
    - 198.51.100.7/32
`;

function settingsOf(text: string) {
    const { raw } = readStackConfig(text, "test.yaml");
    const parsed = parseSettings(raw);
    assert.deepEqual(parsed.errors, []);
    assert.ok(parsed.settings);
    return parsed.settings;
}

function stepNamed(steps: Step[], name: string): Step {
    const step = steps.find((s) => s.name === name);
    assert.ok(step, name);
    return step;
}

describe("render: stack file -> server files", () => {
    it("is deterministic: same stack file, same paths in sorted order and the same bytes, whatever the date", () => {
        for (const stack of ["dev", "prod"]) {
            const a = renderStack({ stack, stackFileText: stackText(stack) });
            const b = renderStack({ stack, stackFileText: stackText(stack), now: new Date("2031-06-01T00:00:00Z") });
            assert.deepEqual(Object.keys(a.files), Object.keys(b.files));
            assert.deepEqual(Object.keys(a.files), [...Object.keys(a.files)].sort());
            for (const file of Object.keys(a.files)) assert.equal(a.files[file], b.files[file], file);
            // No timestamp: neither today's date nor the current year appears anywhere.
            const today = new Date().toISOString().slice(0, 10);
            for (const [file, content] of Object.entries(a.files)) {
                assert.ok(!content.includes(today), file);
                assert.ok(!content.includes(String(new Date().getUTCFullYear())), file);
            }
        }
        const own = (now: Date) => renderStack({ stack: "own", stackFileText: OWN_CERT_STACK, now }).files;
        assert.deepEqual(own(new Date()), own(new Date(Date.now() + 24 * 3600 * 1000)));
    });

    it("writes a variables file per step, every script of the payload byte for byte, and an index", () => {
        const { files } = renderStack({ stack: "prod", stackFileText: stackText("prod") });
        const steps = buildServerSteps(settingsOf(stackText("prod")));
        for (const step of steps) {
            const env = files[`steps/${step.name}.env`];
            assert.ok(env, step.name);
            assert.match(env, new RegExp(`^# runs: sudo bash mattermost-deploy/scripts/${step.script} `, "m"));
            for (const name of [...Object.keys(step.vars), ...Object.keys(step.runtimeVars)])
                assert.match(env, new RegExp(`^${name}=`, "m"));
        }
        const scripts = fs.readdirSync(SCRIPTS_DIR).sort();
        assert.deepEqual(
            Object.keys(files).filter((f) => f.startsWith("scripts/")),
            scripts.map((s) => `scripts/${s}`),
        );
        for (const s of scripts) assert.equal(files[`scripts/${s}`], fs.readFileSync(path.join(SCRIPTS_DIR, s), "utf8"), s);
        assert.match(files["index.txt"], /1\. volume.*\n.*\n\s+2\. postgres/);
        assert.ok(
            Object.keys(files).every((f) => /^(index\.txt|steps\/[a-z]+\.env|scripts\/[^/]+|files\/[a-z]+\/[^/]+)$/.test(f)),
            Object.keys(files).join(" "),
        );
    });

    it("writes the nginx sites, Mattermost settings and systemd unit exactly as buildServerSteps produces them", () => {
        const { files } = renderStack({ stack: "prod", stackFileText: stackText("prod") });
        const steps = buildServerSteps(settingsOf(stackText("prod")));
        const nginx = stepNamed(steps, "nginx");
        const mattermost = stepNamed(steps, "mattermost");
        assert.equal(files["files/nginx/mattermost.conf"], nginx.vars.SITE_LEGACY_HTTP2);
        assert.equal(files["files/nginx/mattermost.http2-directive.conf"], nginx.vars.SITE_HTTP2_DIRECTIVE);
        assert.equal(files["files/nginx/mattermost.http-only.conf"], nginx.vars.SITE_HTTP_ONLY);
        assert.equal(files["files/mattermost/config-patch.json"], mattermost.vars.CONFIG_PATCH);
        assert.equal(files["files/systemd/mattermost.service"], mattermost.vars.UNIT_FILE);
        assert.match(files["files/nginx/mattermost.conf"], /server_name chat\.example\.com;/);
        assert.equal(JSON.parse(files["files/mattermost/config-patch.json"]).ServiceSettings.SiteURL, "https://chat.example.com");
        // Certbot's settings are the nginx step's one-line variables.
        assert.match(files["steps/nginx.env"], /^ACME_SERVER=https:\/\/acme-v02\.api\.letsencrypt\.org\/directory$/m);
        assert.match(files["steps/nginx.env"], /^LETSENCRYPT_EMAIL=ops@example\.com$/m);
        assert.match(files["steps/nginx.env"], /^SITE_LEGACY_HTTP2=\[file: files\/nginx\/mattermost\.conf\]$/m);
        // The dev stack (direct TLS) has no proxy and no site files.
        const dev = renderStack({ stack: "dev", stackFileText: stackText("dev") }).files;
        assert.equal(
            dev["steps/nginx.env"]
                .split("\n")
                .filter((l) => !l.startsWith("#") && l !== "")
                .join(),
            "PROXY=off",
        );
        assert.ok(!Object.keys(dev).some((f) => f.startsWith("files/nginx/")));
        assert.equal(JSON.parse(dev["files/mattermost/config-patch.json"]).ServiceSettings.ListenAddress, ":443");
    });

    it("puts every multi-line plain variable in its own file and names it on the variable's line", () => {
        for (const [stack, text] of [
            ["prod", stackText("prod")],
            ["own", OWN_CERT_STACK],
        ]) {
            const { files, settings } = renderStack({ stack, stackFileText: text });
            for (const step of buildServerSteps(settings)) {
                for (const [name, value] of Object.entries(renderedVariables(step, settings))) {
                    const line = new RegExp(`^${name}=(.*)$`, "m").exec(files[`steps/${step.name}.env`])?.[1];
                    if (!value.includes("\n")) {
                        assert.equal(line, value, `${step.name}.${name}`);
                        continue;
                    }
                    const file = /^\[file: (.+)\]$/.exec(line ?? "")?.[1];
                    assert.ok(file, `${step.name}.${name}: ${line}`);
                    assert.equal(files[file], value, file);
                    if (FILE_VARIABLES[name]) assert.equal(file, `files/${FILE_VARIABLES[name].file}`);
                }
            }
        }
    });

    it("never outputs a secret: encrypted stack values and generated secrets become the marker", () => {
        const { files } = renderStack({ stack: "own", stackFileText: OWN_CERT_STACK });
        const all = Object.values(files).join("\n");
        assert.ok(!all.includes(CIPHERTEXT.slice(3, 30)), "ciphertext leaked");
        assert.doesNotMatch(all, /PRIVATE KEY/);
        assert.match(files["steps/certificate.env"], /^CERT_KEY=\[secret\]$/m);
        assert.match(files["steps/postgres.env"], /^DB_PASSWORD=\[secret\]$/m);
        assert.match(files["steps/mattermost.env"], /^DATASOURCE=\[secret\]$/m);
        // The chain is public and is what the certificate step installs for nginx.
        assert.equal(files["files/tls/fullchain.pem"], PAIR.chain.trimEnd() + "\n");
        assert.match(files["index.txt"], /CERT_CHAIN of step certificate -> \/etc\/nginx\/tls\/fullchain\.pem/);
    });

    it("replaces a secret variable whole, even when its template has plain parts", () => {
        const step: Step = {
            name: "x",
            description: "x",
            script: "x.sh",
            vars: { PLAIN: "p" },
            runtimeVars: {
                SECRET: { template: "user:{{databasePassword}}@host/{{dataVolumeId}}", secret: true },
                VOLUME: { template: "{{dataVolumeId}}", secret: false },
            },
            after: [],
        };
        const vars = renderedVariables(step, settingsOf(stackText("dev")));
        assert.deepEqual(vars, { PLAIN: "p", SECRET: SECRET_MARKER, VOLUME: "[deploy-time: data volume id]" });
    });

    it("refuses a certificate key stored in plain text, and an encrypted value it would need to read", () => {
        const plainKey = OWN_CERT_STACK.replace(`    secure: ${CIPHERTEXT}\n`, "").replace(
            "  mattermost:certificateKey:\n",
            `  mattermost:certificateKey: |\n${indent(PAIR.key)}\n`,
        );
        assert.notEqual(plainKey, OWN_CERT_STACK);
        assert.throws(
            () => renderStack({ stack: "own", stackFileText: plainKey }),
            (err: unknown) => err instanceof SettingsError && /mattermost:certificateKey is stored in plain text/.test(err.message),
        );
        const secretEmail = stackText("prod").replace(
            "mattermost:letsencryptEmail: ops@example.com",
            `mattermost:letsencryptEmail:\n    secure: ${CIPHERTEXT}`,
        );
        assert.throws(
            () => renderStack({ stack: "prod", stackFileText: secretEmail }),
            (err: unknown) => err instanceof SettingsError && /mattermost:letsencryptEmail is stored encrypted/.test(err.message),
        );
    });

    it("stops on a bad stack file with every problem naming its key", () => {
        const bad = stackText("prod")
            .replace("mattermost:tlsMode: nginx", "mattermost:tlsMode: haproxy")
            .replace("  mattermost:sshAddress: private\n", "");
        assert.throws(
            () => renderStack({ stack: "prod", stackFileText: bad }),
            (err: unknown) =>
                err instanceof SettingsError &&
                /mattermost:tlsMode is "haproxy"/.test(err.message) &&
                /mattermost:sshAllowedCidrs only lists private ranges/.test(err.message) &&
                err.problems.length === 2,
        );
        assert.throws(() => renderStack({ stack: "x", stackFileText: "config: [1, 2" }), /x\.yaml is not valid YAML/);
        assert.throws(() => renderStack({ stack: "x", stackFileText: "config:\n  - a\n" }), /config: must be a mapping/);
    });

    it("reads the stack file as pulumi config does: text scalars, JSON lists, project-namespaced bare keys", () => {
        const { raw, warnings } = readStackConfig(
            "environment:\n  - shared\nconfig:\n  aws:region: eu-west-1\n  domain: chat.example.com\n  mattermost:expectedUsers: 0500\n" +
                `  mattermost:sshAllowedCidrs:\n    - 198.51.100.7/32\n    - secure: ${CIPHERTEXT}\n  mattermost:protectDataVolume: false\n`,
            "Pulumi.t.yaml",
        );
        assert.deepEqual(raw.values, {
            domain: "chat.example.com",
            expectedUsers: "0500",
            sshAllowedCidrs: JSON.stringify(["198.51.100.7/32", SECRET_MARKER]),
            protectDataVolume: "false",
        });
        assert.deepEqual([...(raw.unreadableKeys ?? [])], ["sshAllowedCidrs"]);
        assert.deepEqual([...(raw.secretKeys ?? [])], ["sshAllowedCidrs"]);
        assert.match(warnings.join(), /ESC environments/);
    });
});

describe("render: the command", function () {
    this.timeout(60000);
    let tmp: string;
    beforeEach(() => {
        tmp = fs.mkdtempSync(path.join(os.tmpdir(), "mm-render-"));
    });
    afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

    const run = (...args: string[]) =>
        spawnSync(process.execPath, ["-r", "ts-node/register", path.join(ROOT, "tools", "render.ts"), ...args], {
            cwd: ROOT,
            encoding: "utf8",
            env: { ...process.env, TS_NODE_TRANSPILE_ONLY: "true", INIT_CWD: tmp },
        });

    function readTree(dir: string): Record<string, string> {
        const out: Record<string, string> = {};
        for (const entry of fs.readdirSync(dir, { recursive: true, encoding: "utf8" }).sort()) {
            const full = path.join(dir, entry);
            if (fs.statSync(full).isFile()) out[entry.split(path.sep).join("/")] = fs.readFileSync(full, "utf8");
        }
        return out;
    }

    it("writes exactly renderStack's files, replaces its own earlier render, and lists what it wrote", () => {
        const first = run("--stack", "prod", "--out", "out");
        assert.equal(first.status, 0, first.stderr);
        const expected = renderStack({ stack: "prod", stackFileText: stackText("prod") }).files;
        assert.deepEqual(readTree(path.join(tmp, "out")), expected);
        assert.match(first.stdout, /^rendered stack prod into out\/ \(\d+ files\):\n/);
        assert.match(first.stdout, /^ {2}files\/mattermost\/config-patch\.json$/m);
        fs.writeFileSync(path.join(tmp, "out", "stale.txt"), "left over");
        const second = run("--stack=prod", "--out=out");
        assert.equal(second.status, 0, second.stderr);
        assert.deepEqual(readTree(path.join(tmp, "out")), expected);
    });

    it("exits 1 on bad config, naming the key, and writes nothing", () => {
        fs.writeFileSync(path.join(tmp, "bad.yaml"), stackText("dev").replace('"10"', '"-10"'));
        const r = run("--stack", "bad", "--stack-file", "bad.yaml", "--out", "out");
        assert.equal(r.status, 1);
        assert.match(r.stderr, /mattermost:dataVolumeSizeGiB is -10, outside 1\.\.16384/);
        assert.ok(!fs.existsSync(path.join(tmp, "out")));
    });

    it("exits 2 on usage errors, unknown stacks, and an output directory it did not write", () => {
        assert.equal(run().status, 2);
        assert.equal(run("--stack", "dev", "--bogus").status, 2);
        const missing = run("--stack", "nosuch");
        assert.equal(missing.status, 2);
        assert.match(missing.stderr, /stacks here: dev, prod/);
        fs.mkdirSync(path.join(tmp, "mine"));
        fs.writeFileSync(path.join(tmp, "mine", "keep.txt"), "precious");
        const clobber = run("--stack", "dev", "--out", "mine");
        assert.equal(clobber.status, 2);
        assert.match(clobber.stderr, /refusing to replace it/);
        assert.equal(fs.readFileSync(path.join(tmp, "mine", "keep.txt"), "utf8"), "precious");
        assert.throws(() => writeRender(path.join(tmp, "mine"), { "index.txt": "x" }), /holds no earlier render/);
    });
});
