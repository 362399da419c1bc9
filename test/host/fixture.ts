// Helpers shared by the host scenarios.
import { strict as assert } from "node:assert";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import type { LookupFunction } from "node:net";

import { WebSocketClient } from "@mattermost/client";
import WebSocket from "ws";

import { parseSettings, Settings } from "../../components/settings";
import { buildServerSteps, RuntimeValueName, Step } from "../../components/steps";
import type { Pebble } from "./pebble";
import { run, RunResult, TestHost } from "./testhost";

export const DOMAIN = "chat.example.test";

/** Settings as a stack would have them, with the test's release host and the test network as the SSH range. */
export function hostSettings(values: Record<string, string>): Settings {
    const result = parseSettings({
        // The test network is private, and the drivers reach the host at its (private) address.
        values: { domain: DOMAIN, sshAllowedCidrs: JSON.stringify(["10.231.0.0/24"]), sshAddress: "private", ...values },
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

/**
 * Connects Mattermost's own websocket client (`@mattermost/client`) to `wss://<domain>/api/v4/websocket` on the
 * host, trusting `ca`; resolves with the connection id from the server's `hello` and the reply to a client action.
 */
export function mattermostWebsocket(host: TestHost, ca: string): Promise<{ connectionId: string; actionReply: unknown }> {
    const lookup: LookupFunction = (_name, options, callback) => {
        if (options.all)
            (callback as (e: null, a: { address: string; family: number }[]) => void)(null, [{ address: host.address, family: 4 }]);
        else callback(null, host.address, 4);
    };
    // The client reads `WebSocket.OPEN` and friends from the global, which Node 20 does not define; `ws` is a
    // complete implementation of that API.
    (globalThis as { WebSocket?: unknown }).WebSocket ??= WebSocket;
    return new Promise((resolve, reject) => {
        const client = new WebSocketClient({
            // `ws` has the browser WebSocket members the client uses (on* handlers, send, close, readyState).
            newWebSocketFn: (url: string) => new WebSocket(url, { ca, lookup }) as unknown as globalThis.WebSocket,
            maxWebSocketFails: 1,
        });
        // The client reconnects after every close; once this exchange is over, a close must not schedule another.
        let finished = false;
        client.addCloseListener(() => {
            if (finished) setImmediate(() => client.clearReconnectTimeout());
        });
        const finish = () => {
            finished = true;
            clearTimeout(timer);
            client.close();
        };
        const timer = setTimeout(() => {
            finish();
            reject(new Error("@mattermost/client: no hello and action reply within 10 s"));
        }, 10_000);
        client.addErrorListener((event) => {
            finish();
            reject(new Error(`@mattermost/client: websocket error ${String((event as { message?: string }).message ?? event)}`));
        });
        client.addMessageListener((message) => {
            if (message.event !== "hello") return;
            const connectionId = String((message.data as { connection_id: string }).connection_id);
            client.sendMessage("user_typing", { channel_id: "town-square", parent_id: "" }, (actionReply: unknown) => {
                finish();
                resolve({ connectionId, actionReply });
            });
        });
        client.initialize(`wss://${DOMAIN}/api/v4/websocket`);
    });
}

/** Settings for the NGINX shape with Let's Encrypt served by pebble (its directory, its TLS CA, its issuing root). */
export function pebbleNginxSettings(pebble: Pebble, issuingRoot: string, release: { sha256: string; baseUrl: string }): Settings {
    return hostSettings({
        tlsMode: "nginx",
        certificate: "letsencrypt",
        letsencryptEmail: "ops@example.test",
        acmeServer: pebble.directoryUrl,
        acmeCaBundle: fs.readFileSync(pebble.caBundlePath, "utf8"),
        endpointCaBundle: issuingRoot,
        mattermostSha256: release.sha256,
        mattermostDownloadBaseUrl: release.baseUrl,
    });
}

/** The server steps for a test host: its first disk as the data volume, and a shorter health wait than on EC2. */
export function hostSteps(host: TestHost, settings: Settings): Step[] {
    return buildServerSteps(settings, { dataDevice: host.diskDevices[0], healthTimeoutSeconds: 90 });
}

/** Deploy-time values as Pulumi hands them over: a volume id, a fresh database password, and a certificate if given. */
export function runtimeValues(certificate?: { chain: string; key: string }): Partial<Record<RuntimeValueName, string>> {
    return {
        dataVolumeId: "vol-0123456789abcdef0",
        databasePassword: randomBytes(16).toString("hex"),
        ...(certificate ? { certificateChain: certificate.chain, certificateKey: certificate.key } : {}),
    };
}
