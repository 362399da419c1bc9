// Section 3 of `npm run bench`: evaluating the Pulumi program (index.ts) under the unit tests' mocks
// (test/unit/mocks.ts runProgram), for one stack config, in this process. The bench runs it in fresh processes with
// ts-node type-checking, as `pulumi up` loads a TypeScript program:
//
//   node -r ts-node/register tools/bench/programeval.ts <default|largest> <evaluations>
//
// and reads one line `RESULT {...}`: the time from process start to the first program evaluated (module loading and
// TypeScript compilation included), the first evaluation alone, and every later evaluation (program modules
// reloaded, node_modules already loaded).
import { performance } from "node:perf_hooks";

import { issuePair } from "../../test/unit/pki";
import { MINIMAL_CONFIG, runProgram } from "../../test/unit/mocks";
import { runMain } from "./lib";

export const PROGRAM_CONFIGS = ["default", "largest"] as const;
export type ProgramConfig = (typeof PROGRAM_CONFIGS)[number];

/** The stack configs: the least a stack needs, and every key set for the shape with the most resources. */
export function programConfig(name: ProgramConfig): Record<string, string> {
    if (name === "default") return { ...MINIMAL_CONFIG };
    return {
        ...MINIMAL_CONFIG,
        tlsMode: "nginx",
        certificate: "letsencrypt",
        letsencryptEmail: "ops@example.com",
        acmeServer: "https://acme.internal.example.com/directory",
        acmeCaBundle: issuePair("acme.internal.example.com").ca,
        expectedUsers: "5000",
        instanceType: "m7i.xlarge",
        architecture: "x86_64",
        mattermostVersion: "10.11.4",
        mattermostDownloadBaseUrl: "https://mirror.example.com/mattermost",
        sshAllowedCidrs: JSON.stringify(["198.51.100.7/32", "203.0.113.0/24", "192.0.2.0/28"]),
        route53ZoneId: "Z0123456789ABCDEFGHIJ",
        dataVolumeSizeGiB: "500",
        protectDataVolume: "true",
        vpcCidr: "10.90.0.0/16",
        availabilityZone: "eu-west-1b",
    };
}

export interface ProgramEvalResult {
    readonly config: ProgramConfig;
    readonly resources: number;
    readonly sinceProcessStartMs: number;
    readonly firstMs: number;
    readonly laterMs: number[];
}

async function main(): Promise<void> {
    const name = process.argv[2] as ProgramConfig;
    const count = Number(process.argv[3] ?? "5");
    if (!(PROGRAM_CONFIGS as readonly string[]).includes(name) || !Number.isInteger(count) || count < 1) {
        throw new Error("usage: programeval.ts <default|largest> <evaluations>");
    }
    const config = programConfig(name);
    const times: number[] = [];
    let resources = 0;
    let sinceProcessStartMs = 0;
    for (let i = 0; i < count; i++) {
        const t0 = performance.now();
        const run = await runProgram(config);
        times.push(performance.now() - t0);
        if (i === 0) sinceProcessStartMs = performance.now();
        resources = run.resources.length;
    }
    const result: ProgramEvalResult = { config: name, resources, sinceProcessStartMs, firstMs: times[0], laterMs: times.slice(1) };
    console.log(`RESULT ${JSON.stringify(result)}`);
}

if (require.main === module) runMain(main);
