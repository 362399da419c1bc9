// Holds N websocket connections open through a proxy, for the bench's memory measurement. Run as its own process
// (pinned to the client CPUs) by tools/bench/proxy.ts:
//
//   node -r ts-node/register/transpile-only tools/bench/wsload.ts <wss url> <count> <ca file> <host name>
//
// Opens the connections (at most RAMP at a time), checks each one with an echo, then prints
// `HELD {"held":..,"failed":..,"errors":{..},"openMs":..}` and waits. On a line on standard input it checks every
// held connection with a second echo (proving they are all still alive), prints `CHECKED {"alive":..}`, closes
// them all and exits.
import * as fs from "node:fs";
import type { LookupFunction } from "node:net";
import * as readline from "node:readline";

import WebSocket from "ws";

const RAMP = 50;
const ECHO_TIMEOUT_MS = 10_000;

function echo(ws: WebSocket, text: string): Promise<void> {
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => done(new Error("echo timeout")), ECHO_TIMEOUT_MS);
        const onMessage = (data: WebSocket.RawData): void => {
            if (data.toString() === text) done();
        };
        const onClose = (): void => done(new Error("closed"));
        const done = (err?: Error): void => {
            clearTimeout(timer);
            ws.off("message", onMessage);
            ws.off("close", onClose);
            if (err) reject(err);
            else resolve();
        };
        ws.on("message", onMessage);
        ws.on("close", onClose);
        ws.send(text);
    });
}

function open(url: string, ca: Buffer, lookup: LookupFunction): Promise<WebSocket> {
    return new Promise((resolve, reject) => {
        const ws = new WebSocket(url, { ca, lookup, handshakeTimeout: ECHO_TIMEOUT_MS, perMessageDeflate: false });
        ws.once("open", () => resolve(ws));
        ws.once("error", (e) => reject(e));
        ws.once("unexpected-response", (_req, res) => {
            ws.terminate();
            reject(new Error(`HTTP ${res.statusCode}`));
        });
    });
}

async function main(): Promise<void> {
    const [url, countText, caFile, address] = process.argv.slice(2);
    const count = Number(countText);
    if (!url || !Number.isInteger(count) || count < 1 || !caFile || !address) {
        throw new Error("usage: wsload.ts <wss url> <count> <ca file> <address the url's host resolves to>");
    }
    const ca = fs.readFileSync(caFile);
    const lookup: LookupFunction = (_name, options, callback) => {
        if (options.all) (callback as (e: null, a: { address: string; family: number }[]) => void)(null, [{ address, family: 4 }]);
        else callback(null, address, 4);
    };
    const held: WebSocket[] = [];
    const errors: Record<string, number> = {};
    const started = Date.now();
    let next = 0;
    const worker = async (): Promise<void> => {
        while (next < count) {
            const i = next++;
            try {
                const ws = await open(url, ca, lookup);
                ws.on("error", () => undefined);
                await echo(ws, `hello ${i}`);
                held.push(ws);
            } catch (e) {
                const msg = e instanceof Error ? e.message : String(e);
                errors[msg] = (errors[msg] ?? 0) + 1;
            }
        }
    };
    await Promise.all(Array.from({ length: Math.min(RAMP, count) }, worker));
    const failed = count - held.length;
    console.log(`HELD ${JSON.stringify({ held: held.length, failed, errors, openMs: Date.now() - started })}`);

    const rl = readline.createInterface({ input: process.stdin });
    await new Promise<void>((resolve) => rl.once("line", () => resolve()));
    rl.close();
    const checks = await Promise.allSettled(held.map((ws, i) => echo(ws, `still here ${i}`)));
    console.log(`CHECKED ${JSON.stringify({ alive: checks.filter((c) => c.status === "fulfilled").length })}`);
    await Promise.all(
        held.map(
            (ws) =>
                new Promise<void>((resolve) => {
                    const timer = setTimeout(() => {
                        ws.terminate();
                        resolve();
                    }, 2000);
                    ws.once("close", () => {
                        clearTimeout(timer);
                        resolve();
                    });
                    ws.close(1000, "done");
                }),
        ),
    );
}

main().then(
    () => process.exit(0),
    (e: unknown) => {
        console.error(e instanceof Error ? e.message : String(e));
        process.exit(1);
    },
);
