// The server steps as plain data, and the pure helpers every driver shares (Pulumi over SSH to EC2, the test
// host over SSH to a container, and the render command).
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

/** Values only known at deploy time (resource outputs, generated secrets). */
export type RuntimeValueName =
    | "dataVolumeId"
    | "databasePassword"
    | "certificateChain"
    | "certificateKey"
    /** The RDS endpoint's host name (database: rds). */
    | "databaseHost"
    /** The S3 bucket's generated name (fileStorage: s3). */
    | "filesBucket";

/** A variable whose value is filled from runtime values: `{{dataVolumeId}}` placeholders in `template`. */
export interface RuntimeVar {
    readonly template: string;
    readonly secret: boolean;
}

export interface Step {
    /** Stable name: shows up in `pulumi preview --diff` as the resource `${name}-<step>`. */
    readonly name: string;
    readonly description: string;
    /** Script under scripts/ that runs the step (with sudo) and reads its variables from standard input. */
    readonly script: string;
    /** Named plain variables. */
    readonly vars: Readonly<Record<string, string>>;
    /** Named variables filled at deploy time; secret ones stay Pulumi secrets. */
    readonly runtimeVars: Readonly<Record<string, RuntimeVar>>;
    /** Steps that must have run first. */
    readonly after: readonly string[];
}

/** The scripts directory, shipped to the host as a whole. Resolved from this file, not the working directory. */
export const SCRIPTS_DIR = path.join(__dirname, "..", "..", "scripts");

/** Where the scripts land on the host (in the SSH user's home, so no sudo is needed to copy them). */
export const REMOTE_SCRIPTS_DIR = "mattermost-deploy/scripts";

/** Empties the scripts' target dir: copying a directory into an existing one would nest it. */
export const PREPARE_SCRIPTS_DIR_COMMAND = `rm -rf ${REMOTE_SCRIPTS_DIR} && mkdir -p ${path.posix.dirname(REMOTE_SCRIPTS_DIR)}`;

export function stepCommand(step: Step): string {
    return `sudo bash ${REMOTE_SCRIPTS_DIR}/${step.script}`;
}

/** Fills `{{name}}` placeholders; fails on any placeholder without a value and on any unused value. */
export function fillTemplate(template: string, values: Readonly<Record<string, string>>): string {
    const used = new Set<string>();
    const out = template.replace(/\{\{([A-Za-z][A-Za-z0-9_]*)\}\}/g, (_, name: string) => {
        const v = values[name];
        if (v === undefined) throw new Error(`template placeholder {{${name}}} has no value`);
        used.add(name);
        return v;
    });
    const unused = Object.keys(values).filter((k) => !used.has(k));
    if (unused.length > 0) throw new Error(`template values not used: ${unused.join(", ")}`);
    return out;
}

const templateCache = new Map<string, string>();

/** A file under scripts/, read once per process (steps hash and render the same files many times). */
export function readTemplate(file: string): string {
    let text = templateCache.get(file);
    if (text === undefined) {
        text = fs.readFileSync(path.join(SCRIPTS_DIR, file), "utf8");
        templateCache.set(file, text);
    }
    return text;
}

export function resolveRuntimeVar(v: RuntimeVar, values: Readonly<Partial<Record<RuntimeValueName, string>>>): string {
    return v.template.replace(/\{\{([A-Za-z][A-Za-z0-9_]*)\}\}/g, (_, name: string) => {
        const value = values[name as RuntimeValueName];
        if (value === undefined) throw new Error(`runtime value ${name} is not available`);
        return value;
    });
}

/** The runtime value names a step needs. */
export function runtimeValueNames(step: Step): RuntimeValueName[] {
    const names = new Set<RuntimeValueName>();
    for (const v of Object.values(step.runtimeVars)) {
        for (const m of v.template.matchAll(/\{\{([A-Za-z][A-Za-z0-9_]*)\}\}/g)) names.add(m[1] as RuntimeValueName);
    }
    return [...names].sort();
}

/** Standard input for a step: `NAME=<base64>` per line, sorted, so the same inputs give the same bytes. */
export function encodeStdin(vars: Readonly<Record<string, string>>): string {
    return (
        Object.keys(vars)
            .sort()
            .map((name) => {
                if (!/^[A-Z][A-Z0-9_]*$/.test(name)) throw new Error(`bad variable name ${name}`);
                return `${name}=${Buffer.from(vars[name], "utf8").toString("base64")}`;
            })
            .join("\n") + "\n"
    );
}

/** All variables of a step with runtime values filled in. */
export function stepVariables(step: Step, values: Readonly<Partial<Record<RuntimeValueName, string>>>): Record<string, string> {
    const out: Record<string, string> = { ...step.vars };
    for (const [name, v] of Object.entries(step.runtimeVars)) out[name] = resolveRuntimeVar(v, values);
    return out;
}

export function sha256(text: string | Buffer): string {
    return createHash("sha256").update(text).digest("hex");
}

/** Hash of the script a step runs plus the shared library: changes when the code on the host changes. */
export function scriptHash(step: Step): string {
    return sha256(readTemplate("lib.sh") + "\0" + readTemplate(step.script));
}

/** Hash of a step's plain inputs (its script, its plain variables, and the templates of runtime variables). */
export function plainInputHash(step: Step): string {
    const runtime = Object.fromEntries(Object.entries(step.runtimeVars).map(([k, v]) => [k, v.template]));
    return sha256(JSON.stringify({ script: scriptHash(step), vars: encodeStdin(step.vars), runtime }));
}

/** Checks the step list is well formed: unique names, known predecessors listed earlier. */
export function checkStepOrder(steps: readonly Step[]): void {
    const seen = new Set<string>();
    for (const s of steps) {
        if (seen.has(s.name)) throw new Error(`duplicate step ${s.name}`);
        for (const a of s.after) if (!seen.has(a)) throw new Error(`step ${s.name} runs after ${a}, which is not before it`);
        seen.add(s.name);
    }
}
