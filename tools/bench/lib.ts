// Small helpers shared by the bench sections: processes pinned to CPUs, /proc readings, statistics, tables.
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { run } from "../../test/host/testhost";

export { run };

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export function median(values: readonly number[]): number {
    if (values.length === 0) return NaN;
    const s = [...values].sort((a, b) => a - b);
    const mid = Math.floor(s.length / 2);
    return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** `taskset -c <cpus>` in front of argv, or argv unchanged when no CPU list is given. */
export function pinned(cpus: string | undefined, argv: readonly string[]): string[] {
    return cpus ? ["taskset", "-c", cpus, ...argv] : [...argv];
}

/** Number of CPUs in a taskset list such as "0", "0,1" or "0-3" (all of them for an empty list). */
export function cpuCount(list: string): number {
    if (list === "") return os.cpus().length;
    let n = 0;
    for (const part of list.split(",")) {
        const [a, b] = part.split("-").map(Number);
        n += b === undefined ? 1 : b - a + 1;
    }
    return n;
}

/** A long-running child process whose output is kept (tail) for error messages. */
export interface Service {
    readonly name: string;
    readonly child: ChildProcess;
    readonly pid: number;
    output(): string;
    /** Resolves when the output contains `needle` (rejects when the process exits first or after timeoutMs). */
    waitFor(needle: string | RegExp, timeoutMs?: number): Promise<void>;
    stop(): Promise<void>;
}

const services = new Set<Service>();
let exitHook = false;

export function startService(
    name: string,
    argv: readonly string[],
    opts: { env?: NodeJS.ProcessEnv; cwd?: string; stdin?: boolean } = {},
): Service {
    if (!exitHook) {
        exitHook = true;
        process.on("exit", () => {
            for (const s of services) if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill("SIGKILL");
        });
        // Ctrl-C or a kill: leave no nginx or upstream behind (the exit handler above runs on process.exit).
        for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.once(sig, () => process.exit(130));
    }
    const [cmd, ...args] = argv;
    const child = spawn(cmd, args, {
        stdio: [opts.stdin ? "pipe" : "ignore", "pipe", "pipe"],
        env: opts.env ?? process.env,
        cwd: opts.cwd,
    });
    let out = "";
    const listeners = new Set<() => void>();
    const keep = (b: Buffer): void => {
        out += b.toString("utf8");
        if (out.length > 64_000) out = out.slice(-32_000);
        for (const l of listeners) l();
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    const exited = new Promise<void>((resolve) => {
        child.once("exit", () => resolve());
        child.once("error", (e) => {
            out += `\n[${name}] ${e.message}`;
            resolve();
        });
    });
    const service: Service = {
        name,
        child,
        pid: child.pid ?? -1,
        output: () => out,
        waitFor(needle, timeoutMs = 15_000) {
            return new Promise<void>((resolve, reject) => {
                const check = (): void => {
                    if (typeof needle === "string" ? out.includes(needle) : needle.test(out)) done(resolve);
                };
                const done = (fn: () => void): void => {
                    clearTimeout(timer);
                    listeners.delete(check);
                    fn();
                };
                const timer = setTimeout(
                    () => done(() => reject(new Error(`${name}: no ${String(needle)} within ${timeoutMs} ms:\n${out}`))),
                    timeoutMs,
                );
                listeners.add(check);
                void exited.then(() => done(() => reject(new Error(`${name} exited (${child.exitCode ?? child.signalCode}):\n${out}`))));
                check();
            });
        },
        async stop() {
            services.delete(service);
            if (child.exitCode !== null || child.signalCode !== null) return;
            child.kill("SIGTERM");
            const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
            await exited;
            clearTimeout(timer);
        },
    };
    services.add(service);
    return service;
}

// ---------------------------------------------------------------------------
// /proc

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** User + system CPU seconds a process has used so far (0 when it is gone). */
export function cpuSeconds(pid: number): number {
    try {
        const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
        const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
        return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
    } catch {
        return 0;
    }
}

/** CPU seconds the whole machine has been busy so far (all CPUs: everything but idle and iowait, from /proc/stat). */
export function machineBusySeconds(): number {
    const fields = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, , , irq, softirq, steal] = fields;
    return (user + nice + system + irq + softirq + (steal ?? 0)) / CLOCK_TICKS;
}

/** Resident set size in KiB (VmRSS), 0 when the process is gone. */
export function rssKiB(pid: number): number {
    try {
        const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
        return m ? Number(m[1]) : 0;
    } catch {
        return 0;
    }
}

/** A process's command line as `ps` shows it (nginx sets titles such as "nginx: worker process"). */
export function processTitle(pid: number): string {
    try {
        return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim();
    } catch {
        return "";
    }
}

/** Direct children of a process. */
export function childPids(pid: number): number[] {
    const out: number[] = [];
    for (const entry of fs.readdirSync("/proc")) {
        if (!/^\d+$/.test(entry)) continue;
        try {
            const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
            const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
            if (ppid === pid) out.push(Number(entry));
        } catch {
            /* gone */
        }
    }
    return out;
}

/** POSIX-shell single quotes around one word. */
export function shQuote(word: string): string {
    return `'${word.replace(/'/g, `'\\''`)}'`;
}

export interface MeasuredRun {
    readonly code: number;
    readonly stdout: string;
    readonly stderr: string;
    readonly wallSeconds: number;
    /** CPU seconds of the command and its children. */
    readonly cpuSeconds: number;
    /** CPU the rest of the machine used meanwhile, as a share of all CPUs' time. */
    readonly otherCpuShare: number;
}

/** Runs argv through bash, whose `times` (printed last) gives the command's own CPU time; `extraCpu` adds known others'. */
export async function runMeasured(
    argv: readonly string[],
    opts: { timeoutMs?: number; extraCpu?: () => number } = {},
): Promise<MeasuredRun> {
    const script = `${argv.map(shQuote).join(" ")}; rc=$?; times; exit $rc`;
    const extraBefore = opts.extraCpu?.() ?? 0;
    const machineBefore = machineBusySeconds();
    const t0 = process.hrtime.bigint();
    const r = await run(["bash", "-c", script], { check: false, timeoutMs: opts.timeoutMs });
    const wallSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const machine = machineBusySeconds() - machineBefore;
    const extra = (opts.extraCpu?.() ?? 0) - extraBefore;
    const times = [...r.stdout.matchAll(/^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$/gm)].map(
        (m) => Number(m[1]) * 60 + Number(m[2]) + Number(m[3]) * 60 + Number(m[4]),
    );
    const cpu = times[1] ?? NaN;
    return {
        code: r.code,
        stdout: r.stdout,
        stderr: r.stderr,
        wallSeconds,
        cpuSeconds: cpu,
        otherCpuShare: Math.max(0, machine - cpu - extra) / (wallSeconds * os.cpus().length),
    };
}

// ---------------------------------------------------------------------------
// Build cache

/** A per-machine cache folder for built helpers (the fast upstream). */
export function cacheDir(): string {
    const dir = path.join(os.tmpdir(), "mattermost-bench-cache");
    fs.mkdirSync(dir, { recursive: true });
    return dir;
}

export function hashOf(...parts: (string | Buffer)[]): string {
    const h = createHash("sha256");
    for (const p of parts) h.update(p).update("\0");
    return h.digest("hex").slice(0, 16);
}

// ---------------------------------------------------------------------------
// Formatting

export function fmtInt(n: number): string {
    return Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "-";
}

export function fmtMs(ms: number): string {
    if (!Number.isFinite(ms)) return "-";
    return ms < 10 ? `${ms.toFixed(2)} ms` : ms < 100 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

export function fmtSeconds(ms: number): string {
    if (!Number.isFinite(ms)) return "-";
    return `${(ms / 1000).toFixed(ms < 1000 ? 2 : 1)} s`;
}

export function fmtMiB(kib: number): string {
    return Number.isFinite(kib) ? `${(kib / 1024).toFixed(1)} MiB` : "-";
}

export function fmtRatio(r: number): string {
    if (!Number.isFinite(r)) return "-";
    return r >= 0.1 || r === 0 ? r.toFixed(2) : r.toPrecision(2);
}

/** A Markdown table (also readable as plain text): first column left-aligned, the others right-aligned. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
    const line = (cells: readonly string[]): string =>
        "| " + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(" | ") + " |";
    const rule = "| " + widths.map((w, i) => (i === 0 ? "-".repeat(w) : "-".repeat(w - 1) + ":")).join(" | ") + " |";
    return [line(header), rule, ...rows.map(line)].join("\n");
}

/** Runs a command-line entry point: exit 0 when it resolves, 1 with the error's stack when it rejects. */
export function runMain(main: () => Promise<void>): void {
    main().then(
        () => process.exit(0),
        (e: unknown) => {
            console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
            process.exit(1);
        },
    );
}
