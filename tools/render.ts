// `npm run render -- --stack <name> [--out <dir>]`: writes every file a stack puts on the server, from the stack
// file alone (no cloud, no Pulumi engine, no passphrase), so a pull request can show the server-side diff.
// `renderStack` is pure (stack file text in, relative path -> content out); the CLI around it only writes.
import * as fs from "node:fs";
import * as path from "node:path";

import YAML from "yaml";

import { CONFIG_NAMESPACE, parseSettings, RawConfig, Settings, SettingsError } from "../components/settings";
import { buildServerSteps, REMOTE_SCRIPTS_DIR, RuntimeValueName, SCRIPTS_DIR, Step, stepCommand, stepVariables } from "../components/steps";
import { NGINX_HTTP2_DIRECTIVE_SINCE, NGINX_SITE_FILE } from "../components/steps/nginx";

/** Stands for every secret value: stack secrets are never decrypted, generated ones never known. */
export const SECRET_MARKER = "[secret]";

export const PROJECT_ROOT = path.join(__dirname, "..");

/** First line of index.txt; the CLI only empties an output directory that starts with it. */
export const INDEX_HEADER = "# Server files rendered by tools/render.ts";

/** The `mattermost:*` config of a stack file, as `pulumi config` would hand it to the program. */
export interface StackConfig {
    readonly raw: RawConfig;
    readonly warnings: string[];
}

function isSecure(value: unknown): boolean {
    return value !== null && typeof value === "object" && !Array.isArray(value) && Object.keys(value).join() === "secure";
}

/** Replaces every `{secure: ...}` inside a structured value with the marker; reports whether there was one. */
function maskSecure(value: unknown): { value: unknown; secret: boolean } {
    if (isSecure(value)) return { value: SECRET_MARKER, secret: true };
    if (Array.isArray(value)) {
        const items = value.map(maskSecure);
        return { value: items.map((i) => i.value), secret: items.some((i) => i.secret) };
    }
    if (value !== null && typeof value === "object") {
        const entries = Object.entries(value).map(([k, v]) => [k, maskSecure(v)] as const);
        return { value: Object.fromEntries(entries.map(([k, v]) => [k, v.value])), secret: entries.some(([, v]) => v.secret) };
    }
    return { value, secret: false };
}

/**
 * Reads `Pulumi.<stack>.yaml`. Scalars are kept as the text the file holds (YAML failsafe schema), lists and maps
 * become JSON as `pulumi config` stores them, and a `secure:` value becomes the marker, marked secret and unreadable.
 * Keys without a namespace belong to the project, whose name is the config namespace.
 */
export function readStackConfig(text: string, fileName: string): StackConfig {
    let doc: unknown;
    try {
        doc = YAML.parse(text, { schema: "failsafe", prettyErrors: true });
    } catch (err) {
        throw new Error(`${fileName} is not valid YAML: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (doc === null || doc === undefined || doc === "") doc = {};
    if (typeof doc !== "object" || Array.isArray(doc)) throw new Error(`${fileName} must be a YAML mapping with a config: section`);
    const top = doc as Record<string, unknown>;
    const warnings: string[] = [];
    if (top.environment !== undefined) {
        warnings.push(`${fileName} imports ESC environments; their values are not available offline and are not rendered.`);
    }
    const config = top.config ?? {};
    if (config === "" || typeof config !== "object" || Array.isArray(config)) {
        throw new Error(`${fileName}: config: must be a mapping of keys to values`);
    }
    const values: Record<string, string> = {};
    const secretKeys = new Set<string>();
    const unreadableKeys = new Set<string>();
    const prefix = `${CONFIG_NAMESPACE}:`;
    let awsRegion: string | undefined;
    for (const [fullName, value] of Object.entries(config as Record<string, unknown>)) {
        if (fullName === "aws:region" && typeof value === "string") awsRegion = value;
        const name = fullName.includes(":") ? (fullName.startsWith(prefix) ? fullName.slice(prefix.length) : undefined) : fullName;
        if (name === undefined) continue;
        const masked = maskSecure(value);
        values[name] = typeof masked.value === "string" ? masked.value : JSON.stringify(masked.value);
        if (masked.secret) {
            secretKeys.add(name);
            unreadableKeys.add(name);
        }
    }
    return { raw: { values, secretKeys, unreadableKeys, awsRegion }, warnings };
}

/** A deploy-time value the render cannot know. */
const deployTime = (what: string): string => `[deploy-time: ${what}]`;

/** What each runtime value stands for here; mirrors how index.ts fills them, without creating anything. */
function runtimePlaceholders(settings: Settings): Record<RuntimeValueName, string> {
    return {
        dataVolumeId: deployTime("data volume id"),
        databasePassword: SECRET_MARKER,
        certificateChain:
            settings.certificate === "own" && settings.certificateChain !== undefined
                ? settings.certificateChain
                : deployTime("generated self-signed certificate"),
        certificateKey: SECRET_MARKER,
        databaseHost: deployTime("RDS endpoint"),
        filesBucket: deployTime("S3 bucket name"),
    };
}

/** Multi-line step variables and the file each is written to, with where it ends up on the host. */
interface FileVariable {
    readonly file: string;
    readonly destination: (vars: Readonly<Record<string, string>>) => string;
}

export const FILE_VARIABLES: Readonly<Record<string, FileVariable>> = {
    CONFIG_PATCH: {
        file: "mattermost/config-patch.json",
        destination: () => "merged into Mattermost's config/config.json by scripts/merge-config.py",
    },
    UNIT_FILE: { file: "systemd/mattermost.service", destination: () => "/etc/systemd/system/mattermost.service" },
    SITE_LEGACY_HTTP2: {
        file: "nginx/mattermost.conf",
        destination: () => `${NGINX_SITE_FILE} when the installed nginx is older than ${NGINX_HTTP2_DIRECTIVE_SINCE}`,
    },
    SITE_HTTP2_DIRECTIVE: {
        file: "nginx/mattermost.http2-directive.conf",
        destination: () => `${NGINX_SITE_FILE} when the installed nginx is ${NGINX_HTTP2_DIRECTIVE_SINCE} or later`,
    },
    SITE_HTTP_ONLY: {
        file: "nginx/mattermost.http-only.conf",
        destination: () => `${NGINX_SITE_FILE} until certbot has the first certificate`,
    },
    ACME_CA_BUNDLE: { file: "certbot/acme-ca.pem", destination: () => "/etc/mattermost-deploy/acme-ca.pem (certbot's REQUESTS_CA_BUNDLE)" },
    CERT_CHAIN: { file: "tls/fullchain.pem", destination: (vars) => vars.CERT_FILE ?? "the certificate file" },
    DUMP_PROGRAM: { file: "backup/mattermost-db-dump", destination: () => "/usr/local/sbin/mattermost-db-dump" },
    DUMP_SERVICE: { file: "systemd/mattermost-db-dump.service", destination: () => "/etc/systemd/system/mattermost-db-dump.service" },
    DUMP_TIMER: { file: "systemd/mattermost-db-dump.timer", destination: () => "/etc/systemd/system/mattermost-db-dump.timer" },
};

/** A step's variables as the host reads them from standard input, with every secret one replaced by the marker. */
export function renderedVariables(step: Step, settings: Settings): Record<string, string> {
    const vars = stepVariables(step, runtimePlaceholders(settings));
    for (const [name, v] of Object.entries(step.runtimeVars)) if (v.secret) vars[name] = SECRET_MARKER;
    return vars;
}

export interface RenderResult {
    readonly settings: Settings;
    /** Relative path -> content, in sorted path order. */
    readonly files: Readonly<Record<string, string>>;
    /** parseSettings' warnings and stack file notes (not written: some depend on today's date). */
    readonly warnings: readonly string[];
}

/** The full render of one stack file. Throws SettingsError (each problem naming its key) on bad config. */
export function renderStack(input: { stack: string; stackFileText: string; stackFileName?: string; now?: Date }): RenderResult {
    const fileName = input.stackFileName ?? `Pulumi.${input.stack}.yaml`;
    const stackConfig = readStackConfig(input.stackFileText, fileName);
    const parsed = parseSettings({ ...stackConfig.raw, now: input.now });
    if (parsed.errors.length > 0 || parsed.settings === undefined) throw new SettingsError(parsed.errors);
    const settings = parsed.settings;
    const steps = buildServerSteps(settings);

    const out = new Map<string, string>();
    const add = (file: string, content: string): void => {
        if (out.has(file)) throw new Error(`render: two files named ${file}`);
        out.set(file, content);
    };
    const stepLines: string[] = [];
    const fileLines: string[] = [];
    steps.forEach((step, i) => {
        const vars = renderedVariables(step, settings);
        const lines = [
            `# step ${step.name}: ${step.description}`,
            `# runs: ${stepCommand(step)} (scripts/${step.script} here); after: ${step.after.length > 0 ? step.after.join(", ") : "-"}`,
            `# standard input, decoded: NAME=value; ${SECRET_MARKER} is a secret, [file: ...] a multi-line value written to that file`,
        ];
        for (const name of Object.keys(vars).sort()) {
            const value = vars[name];
            if (value === SECRET_MARKER || !value.includes("\n")) {
                lines.push(`${name}=${value}`);
                continue;
            }
            const known = FILE_VARIABLES[name];
            const file = `files/${known?.file ?? `${step.name}/${name}.txt`}`;
            add(file, value);
            lines.push(`${name}=[file: ${file}]`);
            fileLines.push(`  ${file}\n      ${name} of step ${step.name} -> ${known?.destination(vars) ?? "read by the step's script"}`);
        }
        add(`steps/${step.name}.env`, lines.join("\n") + "\n");
        stepLines.push(`  ${i + 1}. ${step.name}: steps/${step.name}.env, runs scripts/${step.script}\n      ${step.description}`);
    });
    for (const script of fs.readdirSync(SCRIPTS_DIR).sort()) {
        add(`scripts/${script}`, fs.readFileSync(path.join(SCRIPTS_DIR, script), "utf8"));
    }
    add(
        "index.txt",
        [
            INDEX_HEADER,
            `Stack ${input.stack} (${fileName}): what \`pulumi up\` puts on the server, rendered without cloud access.`,
            `Nothing is decrypted: ${SECRET_MARKER} stands for a secret value, [deploy-time: ...] for a value known only during \`pulumi up\`.`,
            "",
            `domain ${settings.domain}, tlsMode ${settings.tlsMode}, certificate ${settings.certificate}, ` +
                `Mattermost ${settings.mattermostVersion} (${settings.architecture}), SSH to the ${settings.sshAddress} address`,
            "",
            "Steps, in the order they run over SSH (variables on standard input):",
            ...stepLines,
            "",
            "Files carried by the step variables:",
            ...(fileLines.length > 0 ? fileLines : ["  (none)"]),
            "",
            `scripts/: the payload copied to ~/${REMOTE_SCRIPTS_DIR} on the server, byte for byte.`,
            "",
        ].join("\n"),
    );
    const files: Record<string, string> = {};
    for (const key of [...out.keys()].sort()) files[key] = out.get(key) as string;
    return { settings, files, warnings: [...stackConfig.warnings, ...parsed.warnings] };
}

/** Removes a previous render (never anything else) and writes the files. */
export function writeRender(outDir: string, files: Readonly<Record<string, string>>): void {
    if (fs.existsSync(outDir)) {
        const entries = fs.readdirSync(outDir);
        const index = path.join(outDir, "index.txt");
        const previous = fs.existsSync(index) && fs.readFileSync(index, "utf8").startsWith(INDEX_HEADER);
        if (entries.length > 0 && !previous) {
            throw new Error(`${outDir} is not empty and holds no earlier render; refusing to replace it`);
        }
        fs.rmSync(outDir, { recursive: true, force: true });
    }
    for (const [rel, content] of Object.entries(files)) {
        const target = path.join(outDir, rel);
        fs.mkdirSync(path.dirname(target), { recursive: true });
        fs.writeFileSync(target, content);
    }
}

const USAGE = "usage: npm run render -- --stack <name> [--out <dir>] [--stack-file <path>]";

interface CliArgs {
    stack: string;
    out?: string;
    stackFile?: string;
}

function parseArgs(argv: readonly string[]): CliArgs {
    const args: Partial<CliArgs> = {};
    const names: Record<string, keyof CliArgs> = { "--stack": "stack", "--out": "out", "--stack-file": "stackFile" };
    for (let i = 0; i < argv.length; i++) {
        const [flag, inline] = argv[i].split(/=(.*)/s, 2);
        const key = names[flag];
        if (key === undefined) throw new Error(`unknown argument ${argv[i]}`);
        const value = inline ?? argv[++i];
        if (value === undefined || value === "") throw new Error(`${flag} needs a value`);
        args[key] = value;
    }
    if (args.stack === undefined) throw new Error("--stack is required");
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(args.stack)) throw new Error(`--stack ${args.stack} is not a plain stack name like dev`);
    return args as CliArgs;
}

function main(argv: readonly string[]): number {
    let args: CliArgs;
    try {
        args = parseArgs(argv);
    } catch (err) {
        process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n${USAGE}\n`);
        return 2;
    }
    // npm runs scripts from the package root; paths given on the command line are relative to where it was typed.
    const cwd = process.env.INIT_CWD ?? process.cwd();
    const stackFile = args.stackFile ? path.resolve(cwd, args.stackFile) : path.join(PROJECT_ROOT, `Pulumi.${args.stack}.yaml`);
    if (!fs.existsSync(stackFile)) {
        const known = fs
            .readdirSync(PROJECT_ROOT)
            .map((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1])
            .filter((s): s is string => s !== undefined);
        process.stderr.write(`no stack file ${stackFile} (stacks here: ${known.join(", ") || "none"})\n`);
        return 2;
    }
    let result: RenderResult;
    try {
        result = renderStack({
            stack: args.stack,
            stackFileText: fs.readFileSync(stackFile, "utf8"),
            stackFileName: path.basename(stackFile),
        });
    } catch (err) {
        process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
        return 1;
    }
    const outDir = args.out ? path.resolve(cwd, args.out) : path.join(PROJECT_ROOT, "render", args.stack);
    try {
        writeRender(outDir, result.files);
    } catch (err) {
        process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
        return 2;
    }
    const shown = path.relative(cwd, outDir) || ".";
    process.stdout.write(`rendered stack ${args.stack} into ${shown}/ (${Object.keys(result.files).length} files):\n`);
    for (const file of Object.keys(result.files)) process.stdout.write(`  ${file}\n`);
    for (const w of result.warnings) process.stderr.write(`warning: ${w}\n`);
    return 0;
}

if (require.main === module) {
    process.exitCode = main(process.argv.slice(2));
}
