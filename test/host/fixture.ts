// Helpers shared by the host scenarios.
import { strict as assert } from "node:assert";

import { parseSettings, Settings } from "../../components/settings";
import { run, RunResult, TestHost } from "./testhost";

export const DOMAIN = "chat.example.test";

/** Settings as a stack would have them, with the test's release host and the test network as the SSH CIDR. */
export function hostSettings(values: Record<string, string>): Settings {
    const result = parseSettings({
        values: { domain: DOMAIN, sshAllowedCidrs: JSON.stringify(["10.231.0.0/24"]), ...values },
    });
    assert.deepEqual(result.errors, []);
    assert.ok(result.settings);
    return result.settings;
}

/** Runs a shell snippet as root inside the host; fails the test on a non-zero exit. */
export async function rootSh(host: TestHost, script: string): Promise<string> {
    const r = await host.exec(["bash", "-c", script]);
    if (r.code !== 0) throw new Error(`${script} failed: ${r.stderr}`);
    return r.stdout.trim();
}

/** curl from this machine to the host, with the domain resolved to the host's address. */
export function curlDomain(host: TestHost, url: string, extra: string[] = []): Promise<RunResult> {
    return run(
        [
            "curl",
            "-sS",
            "--max-time",
            "10",
            "--resolve",
            `${DOMAIN}:443:${host.address}`,
            "--resolve",
            `${DOMAIN}:80:${host.address}`,
            ...extra,
            url,
        ],
        {
            check: false,
        },
    );
}

export function printTimings(timings: Record<string, number>): void {
    console.log("\n    scenario timings (ms):");
    for (const [name, ms] of Object.entries(timings)) console.log(`      ${name}: ${ms}`);
}

export async function timed<T>(timings: Record<string, number>, name: string, fn: () => Promise<T>): Promise<T> {
    const started = Date.now();
    try {
        return await fn();
    } finally {
        timings[name] = Date.now() - started;
    }
}
