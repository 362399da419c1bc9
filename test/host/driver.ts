// The test-host driver: runs the same step list the Pulumi driver runs, the same way (scripts copied to the SSH
// user's home, each step as `sudo bash <script>` with its variables on standard input), against a container.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";

import {
    encodeStdin,
    PREPARE_SCRIPTS_DIR_COMMAND,
    REMOTE_SCRIPTS_DIR,
    RuntimeValueName,
    SCRIPTS_DIR,
    Step,
    stepCommand,
    stepVariables,
} from "../../components/steps";
import { TestHost } from "./testhost";

export interface StepRun {
    readonly step: string;
    readonly code: number;
    readonly stdout: string;
    readonly stderr: string;
    readonly ms: number;
    /** The `changed: ...` lines the step printed. */
    readonly changes: string[];
}

export class StepFailed extends Error {
    constructor(readonly run: StepRun) {
        super(`step ${run.step} failed (exit ${run.code}):\n${run.stderr}\n${run.stdout}`);
    }
}

export async function uploadScripts(host: TestHost): Promise<void> {
    const prep = await host.ssh(PREPARE_SCRIPTS_DIR_COMMAND);
    if (prep.code !== 0) throw new Error(`preparing the scripts dir failed: ${prep.stderr}`);
    await host.copyTo(SCRIPTS_DIR, REMOTE_SCRIPTS_DIR);
}

export async function runStep(host: TestHost, step: Step, values: Partial<Record<RuntimeValueName, string>>): Promise<StepRun> {
    const started = Date.now();
    const r = await host.ssh(stepCommand(step), { stdin: encodeStdin(stepVariables(step, values)), timeoutMs: 10 * 60_000 });
    const run: StepRun = {
        step: step.name,
        code: r.code,
        stdout: r.stdout,
        stderr: r.stderr,
        ms: Date.now() - started,
        changes: r.stdout.split("\n").filter((l) => l.startsWith("changed: ")),
    };
    if (r.code !== 0) throw new StepFailed(run);
    return run;
}

/** Uploads the scripts and runs every step in order, as `pulumi up` would. */
export async function deploy(
    host: TestHost,
    steps: readonly Step[],
    values: Partial<Record<RuntimeValueName, string>>,
): Promise<StepRun[]> {
    await uploadScripts(host);
    const runs: StepRun[] = [];
    for (const step of steps) runs.push(await runStep(host, step, values));
    return runs;
}

/** Builds stand-in release tarballs (test/standin/build.sh) into a cache folder; returns their SHA-256. */
export function buildStandinRelease(version: string, outDir: string): { file: string; sha256: string } {
    execFileSync("bash", [path.join(__dirname, "..", "standin", "build.sh"), version, "x86_64", outDir], {
        stdio: ["ignore", "ignore", "inherit"],
    });
    const file = path.join(outDir, `mattermost-${version}-linux-amd64.tar.gz`);
    const sha256 = fs.readFileSync(`${file}.sha256`, "utf8").split(/\s+/)[0];
    return { file, sha256 };
}

export const STANDIN_CACHE = process.env.STANDIN_OUTDIR ?? path.join(os.tmpdir(), "mattermost-standin-build");

/** Serves `<base>/<version>/<file>` from `dir`, like Mattermost's release host, on the given address. */
export async function serveReleases(dir: string, address: string): Promise<{ baseUrl: string; close(): Promise<void> }> {
    const server = http.createServer((req, res) => {
        const name = path.basename(decodeURIComponent((req.url ?? "").split("?")[0]));
        const file = path.join(dir, name);
        if (!/^mattermost-[\w.-]+\.tar\.gz$/.test(name) || !fs.existsSync(file)) {
            res.writeHead(404).end("not found\n");
            return;
        }
        res.writeHead(200, { "content-type": "application/gzip", "content-length": fs.statSync(file).size });
        fs.createReadStream(file).pipe(res);
    });
    await new Promise<void>((resolve) => server.listen(0, address, resolve));
    const port = (server.address() as { port: number }).port;
    return {
        baseUrl: `http://${address}:${port}`,
        close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    };
}
