import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { changedPaths, COMMENT_MARKER, diffComment } from "../../tools/diffComment";

const ROOT = path.join(__dirname, "..", "..");

describe("render diff comment", () => {
    const diff = [
        "Only in head: dev",
        "diff -ru base/prod/steps/nginx.env head/prod/steps/nginx.env",
        "--- base/prod/steps/nginx.env",
        "+++ head/prod/steps/nginx.env",
        "@@ -1 +1 @@",
        "-LETSENCRYPT_EMAIL=old@example.com",
        "+LETSENCRYPT_EMAIL=ops@example.com",
        "",
    ].join("\n");

    it("starts with the marker the workflow finds it by, and shows the whole diff in a fenced block", () => {
        const body = diffComment(diff, { base: "base abc", head: "head def" });
        assert.ok(body.startsWith(`${COMMENT_MARKER}\n`));
        assert.match(body, /`base abc` → `head def`/);
        assert.ok(body.includes("```diff\n" + diff + "```\n"));
        assert.match(body, /2 changed path\(s\)/);
        assert.equal(changedPaths(diff), 2);
        assert.doesNotMatch(body, /Truncated/);
    });

    it("says so when nothing changed", () => {
        assert.match(diffComment("", { base: "a", head: "b" }), /No change to any server-side file/);
    });

    it("stays within the comment limit, cutting at a line and saying how much is left out", () => {
        const line = "+" + "x".repeat(99) + "\n";
        const big = "diff -ru base/a head/a\n" + line.repeat(2000);
        const body = diffComment(big, { base: "a", head: "b", limit: 20000 });
        assert.ok(body.length <= 20000, String(body.length));
        const shown = body.split("\n").filter((l) => l === line.trimEnd()).length;
        assert.ok(shown > 150 && shown < 200, String(shown));
        assert.match(body, new RegExp(`\\*\\*Truncated:\\*\\* ${2000 - shown} more line\\(s\\)`));
        assert.ok(diffComment(big, { base: "a", head: "b" }).length <= 65000);
    });

    it("fences the diff with more backticks than it contains", () => {
        const body = diffComment("+a ```` b\n", { base: "a", head: "b" });
        assert.ok(body.includes("`````diff\n+a ```` b\n`````\n"));
    });
});

describe("tools/render-diff.sh", function () {
    this.timeout(120000);
    let tmp: string;
    beforeEach(() => {
        tmp = fs.mkdtempSync(path.join(os.tmpdir(), "mm-render-diff-"));
    });
    afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

    /** A copy of this checkout (sharing node_modules) to play the base. */
    function baseCopy(): string {
        const base = path.join(tmp, "base");
        const skip = new Set(["node_modules", ".git", "render", "test-artifacts", "bin"]);
        fs.cpSync(ROOT, base, { recursive: true, filter: (src) => !skip.has(path.relative(ROOT, src).split(path.sep)[0]) });
        fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(base, "node_modules"));
        return base;
    }

    function renderDiff(base: string): { status: number | null; stderr: string; diff: string; comment: string } {
        const out = path.join(tmp, "out");
        const r = spawnSync("bash", [path.join(ROOT, "tools", "render-diff.sh"), base, ROOT, out], {
            encoding: "utf8",
            env: { ...process.env, TS_NODE_TRANSPILE_ONLY: "true", BASE_LABEL: "base 1", HEAD_LABEL: "head 2" },
        });
        const read = (f: string) => (fs.existsSync(path.join(out, f)) ? fs.readFileSync(path.join(out, f), "utf8") : "");
        return { status: r.status, stderr: r.stderr, diff: read("render.diff"), comment: read("comment.md") };
    }

    it("shows a changed setting, a changed script and a new stack, without file times", () => {
        const base = baseCopy();
        const prod = path.join(base, "Pulumi.prod.yaml");
        fs.writeFileSync(prod, fs.readFileSync(prod, "utf8").replace("ops@example.com", "old@example.com"));
        fs.appendFileSync(path.join(base, "scripts", "start.sh"), "# an older line\n");
        fs.rmSync(path.join(base, "Pulumi.dev.yaml"));
        const r = renderDiff(base);
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.diff, /^Only in head: dev$/m);
        assert.match(r.diff, /^-LETSENCRYPT_EMAIL=old@example\.com\n\+LETSENCRYPT_EMAIL=ops@example\.com$/m);
        assert.match(r.diff, /^diff -ru base\/prod\/scripts\/start\.sh head\/prod\/scripts\/start\.sh$/m);
        assert.match(r.diff, /^-# an older line$/m);
        assert.match(r.diff, /^--- base\/prod\/steps\/nginx\.env$/m, "no time after the file name");
        assert.equal(changedPaths(r.diff), 3);
        assert.ok(r.comment.startsWith(COMMENT_MARKER));
        assert.match(r.comment, /`base 1` → `head 2`/);
    });

    it("is empty for identical checkouts, and treats a base without the render command as an empty side", () => {
        const base = baseCopy();
        const same = renderDiff(base);
        assert.equal(same.status, 0, same.stderr);
        assert.equal(same.diff, "");
        assert.match(same.comment, /No change to any server-side file/);

        fs.rmSync(path.join(base, "tools", "render.ts"));
        const before = renderDiff(base);
        assert.equal(before.status, 0, before.stderr);
        assert.match(before.stderr, /has no render command/);
        assert.deepEqual(before.diff.trim().split("\n"), ["Only in head: dev", "Only in head: prod"]);
    });

    it("fails when the head does not render, and shows a base that does not render as its error", () => {
        const base = baseCopy();
        const dev = path.join(base, "Pulumi.dev.yaml");
        fs.writeFileSync(dev, fs.readFileSync(dev, "utf8").replace("tlsMode: direct", "tlsMode: haproxy"));
        const r = renderDiff(base);
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.diff, /^Only in base\/dev: RENDER-FAILED\.txt$/m);

        const head = spawnSync("bash", [path.join(ROOT, "tools", "render-diff.sh"), ROOT, base, path.join(tmp, "out2")], {
            encoding: "utf8",
            env: { ...process.env, TS_NODE_TRANSPILE_ONLY: "true" },
        });
        assert.equal(head.status, 1);
        assert.match(head.stderr, /head: stack dev does not render:\n[\s\S]*mattermost:tlsMode is "haproxy"/);
    });
});
