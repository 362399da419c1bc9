// Headless Chromium (Debian's `chromium`) driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`:
// JSON messages ended by NUL, written to the browser's fd 3 and read from its fd 4), so no extra npm package and
// exactly the flags we choose. Each session gets a fresh profile and a fresh NSS database holding only the CA the
// test trusts, so nothing from this machine's trust store or earlier runs leaks in.
import { ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Readable, Writable } from "node:stream";

import { run } from "./testhost";

export const CHROMIUM = "/usr/bin/chromium";

export const CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

export interface BrowserOptions {
    /** PEM of a CA to trust (added to the session's own NSS database); none: only Chromium's built-in roots. */
    readonly trustedCaPem?: string;
    /** `host → address` pairs, so names resolve without DNS (Chromium's `--host-resolver-rules`). */
    readonly hosts?: Record<string, string>;
}

export interface PageVisit {
    /** Chromium's network error for the navigation (e.g. `net::ERR_CERT_AUTHORITY_INVALID`), undefined when it loaded. */
    readonly errorText?: string;
    /** The protocol the document came over (`h2`, `http/1.1`). */
    readonly protocol?: string;
    /** The text of the element waited for, when it reached the wanted value before the deadline, or its last value. */
    readonly text?: string;
    /** PNG screenshot of the viewport after the wait. */
    readonly screenshot?: Buffer;
}

type Message = { id?: number; method?: string; result?: Record<string, unknown>; error?: { message: string }; sessionId?: string };

export class Browser {
    private nextId = 1;
    private readonly pending = new Map<number, { resolve(v: Record<string, unknown>): void; reject(e: Error): void }>();
    private stderr = "";

    private constructor(
        private readonly process: ChildProcess,
        private readonly toBrowser: Writable,
        private readonly dir: string,
    ) {
        let buffered = Buffer.alloc(0);
        (process.stdio[4] as Readable).on("data", (chunk: Buffer) => {
            buffered = Buffer.concat([buffered, chunk]);
            let end: number;
            while ((end = buffered.indexOf(0)) >= 0) {
                const message = JSON.parse(buffered.subarray(0, end).toString()) as Message;
                buffered = buffered.subarray(end + 1);
                if (message.id === undefined) continue;
                const waiter = this.pending.get(message.id);
                this.pending.delete(message.id);
                if (message.error) waiter?.reject(new Error(`chromium: ${message.error.message}`));
                else waiter?.resolve(message.result ?? {});
            }
        });
        process.stderr?.on("data", (chunk: Buffer) => (this.stderr = (this.stderr + chunk.toString()).slice(-8000)));
        process.on("exit", (code, signal) => {
            for (const waiter of this.pending.values()) {
                waiter.reject(new Error(`chromium exited (${code ?? signal}) with calls pending; stderr tail:\n${this.stderr}`));
            }
            this.pending.clear();
        });
    }

    static async launch(options: BrowserOptions = {}): Promise<Browser> {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mm-chromium-"));
        const home = path.join(dir, "home");
        const nssdb = path.join(home, ".pki", "nssdb");
        fs.mkdirSync(nssdb, { recursive: true });
        await run(["certutil", "-N", "-d", `sql:${nssdb}`, "--empty-password"]);
        if (options.trustedCaPem) {
            const caFile = path.join(dir, "trusted-ca.pem");
            fs.writeFileSync(caFile, options.trustedCaPem);
            await run(["certutil", "-A", "-d", `sql:${nssdb}`, "-n", "test-ca", "-t", "C,,", "-a", "-i", caFile]);
        }
        const rules = Object.entries(options.hosts ?? {}).map(([name, address]) => `MAP ${name} ${address}`);
        const args = [
            ...CHROMIUM_FLAGS,
            `--user-data-dir=${path.join(dir, "profile")}`,
            "--remote-debugging-pipe",
            "--window-size=1024,640",
            ...(rules.length > 0 ? [`--host-resolver-rules=${rules.join(", ")}`] : []),
            "about:blank",
        ];
        const child = spawn(CHROMIUM, args, {
            env: { ...process.env, HOME: home },
            stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"],
        });
        return new Browser(child, child.stdio[3] as Writable, dir);
    }

    private call(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<Record<string, unknown>> {
        const id = this.nextId++;
        return new Promise((resolve, reject) => {
            this.pending.set(id, { resolve, reject });
            this.toBrowser.write(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }) + "\0");
        });
    }

    /**
     * Opens `url` in a new tab, waits until `document.querySelector(selector).textContent` equals `wanted` (or the
     * deadline passes), then takes a screenshot.
     */
    async visit(url: string, selector: string, wanted: string, timeoutMs = 15_000): Promise<PageVisit> {
        const { targetId } = (await this.call("Target.createTarget", { url: "about:blank" })) as { targetId: string };
        const { sessionId } = (await this.call("Target.attachToTarget", { targetId, flatten: true })) as { sessionId: string };
        await this.call("Page.enable", {}, sessionId);
        const navigation = (await this.call("Page.navigate", { url }, sessionId)) as { errorText?: string };
        if (navigation.errorText) return { errorText: navigation.errorText };
        const evaluate = async (expression: string): Promise<string | undefined> => {
            const r = (await this.call("Runtime.evaluate", { expression, returnByValue: true }, sessionId)) as {
                result: { value?: string };
            };
            return r.result.value;
        };
        const probe = `(() => { const e = document.querySelector(${JSON.stringify(selector)}); return e ? e.textContent : undefined; })()`;
        const deadline = Date.now() + timeoutMs;
        let text = await evaluate(probe);
        while (text !== wanted && Date.now() < deadline) {
            await new Promise((r) => setTimeout(r, 100));
            text = await evaluate(probe);
        }
        const protocol = await evaluate(`performance.getEntriesByType("navigation")[0]?.nextHopProtocol`);
        const shot = (await this.call("Page.captureScreenshot", { format: "png" }, sessionId)) as { data: string };
        await this.call("Target.closeTarget", { targetId });
        return { protocol, text, screenshot: Buffer.from(shot.data, "base64") };
    }

    async close(): Promise<void> {
        const exited = new Promise<void>((resolve) => {
            if (this.process.exitCode !== null || this.process.signalCode !== null) resolve();
            else this.process.once("exit", () => resolve());
        });
        const kill = setTimeout(() => this.process.kill("SIGKILL"), 5_000);
        await this.call("Browser.close").catch(() => undefined);
        await exited;
        clearTimeout(kill);
        fs.rmSync(this.dir, { recursive: true, force: true });
    }
}

/** Where tests keep files for CI to collect: `$TEST_ARTIFACTS_DIR`, default `test-artifacts/` in the repository. */
export function artifactPath(name: string): string {
    const dir = process.env.TEST_ARTIFACTS_DIR ?? path.join(__dirname, "..", "..", "test-artifacts");
    fs.mkdirSync(dir, { recursive: true });
    return path.join(dir, name);
}
