// The pull request comment for the server files' diff (tools/render-diff.sh writes the diff, this formats it):
// `ts-node tools/diffComment.ts --diff render.diff --base <label> --head <label> > comment.md`.
// The workflow finds its earlier comment by COMMENT_MARKER and edits it, so a pull request has one such comment.
import * as fs from "node:fs";

export const COMMENT_MARKER = "<!-- mattermost-render-diff -->";
/** GitHub refuses comment bodies above 65,536 characters; stay below with room to spare. */
export const COMMENT_LIMIT = 65000;

export interface DiffCommentOptions {
    readonly base: string;
    readonly head: string;
    readonly limit?: number;
}

/** A fence longer than any backtick run in the text, so the diff cannot close it. */
function fenceFor(text: string): string {
    const longest = Math.max(0, ...[...text.matchAll(/`+/g)].map((m) => m[0].length));
    return "`".repeat(Math.max(3, longest + 1));
}

/** Files the diff touches: one `diff -ru` header per changed file, one `Only in` line per added or removed path. */
export function changedPaths(diff: string): number {
    return diff.split("\n").filter((l) => l.startsWith("diff -ru ") || l.startsWith("Only in ")).length;
}

export function diffComment(diff: string, opts: DiffCommentOptions): string {
    const limit = opts.limit ?? COMMENT_LIMIT;
    const heading = [
        COMMENT_MARKER,
        `### Server files: \`${opts.base}\` → \`${opts.head}\``,
        "",
        "What `pulumi up` would put on the server, from `npm run render` for every stack at both commits (`diff -ru`; " +
            "`[secret]` stands for secret values, which are never rendered).",
        "",
        "",
    ].join("\n");
    if (diff.trim() === "") return `${heading}No change to any server-side file.\n`;

    const fence = fenceFor(diff);
    const open = `<details open><summary>${changedPaths(diff)} changed path(s)</summary>\n\n${fence}diff\n`;
    const close = `${fence}\n</details>\n`;
    const room = limit - heading.length - open.length - close.length - 200;
    if (room <= 0) throw new Error(`comment limit ${limit} leaves no room for the diff`);
    let shown = diff.endsWith("\n") ? diff : `${diff}\n`;
    let note = "";
    if (shown.length > room) {
        const cut = shown.lastIndexOf("\n", room - 1) + 1;
        const hidden = shown.slice(cut).split("\n").length - 1;
        shown = shown.slice(0, cut);
        note = `\n**Truncated:** ${hidden} more line(s) of the diff are in the workflow log; run \`npm run render\` at both commits to see it all.\n`;
    }
    return heading + open + shown + close + note;
}

function main(argv: readonly string[]): number {
    const args: Record<string, string> = {};
    for (let i = 0; i < argv.length; i += 2) {
        if (!["--diff", "--base", "--head"].includes(argv[i]) || argv[i + 1] === undefined) {
            process.stderr.write("usage: ts-node tools/diffComment.ts --diff <file> --base <label> --head <label>\n");
            return 2;
        }
        args[argv[i].slice(2)] = argv[i + 1];
    }
    if (!args.diff || !args.base || !args.head) {
        process.stderr.write("--diff, --base and --head are required\n");
        return 2;
    }
    process.stdout.write(diffComment(fs.readFileSync(args.diff, "utf8"), { base: args.base, head: args.head }));
    return 0;
}

if (require.main === module) {
    process.exitCode = main(process.argv.slice(2));
}
