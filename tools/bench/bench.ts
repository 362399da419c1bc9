// `npm run bench`: the performance numbers of this project, separate from the tests. Three sections:
//   proxy    nginx on loopback: (a) the fast upstream straight, (b) this project's rendered site, (c) Mattermost's
//            documented config; throughput and latency with keep-alive, new TLS handshakes, websockets held (proxy.ts)
//   host     time to a verified HTTPS endpoint on fresh test hosts, per shape and step (hosttime.ts, under flock)
//   program  evaluation of the Pulumi program under the unit tests' mocks (programeval.ts)
// Prints a Markdown table per section and writes everything as JSON (default bench-results/latest.json).
// BENCH_KEEP=1 keeps the proxy section's temporary folder (configs, logs) for a look afterwards.
//
//   npm run bench -- [--only proxy,host,program] [--rounds 3] [--duration 10] [--ws 1000] [--out FILE] ...
// (`--help` lists every option). Needs root for the host section; packages: tools/bench/install-deps.sh.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { fmtInt, fmtMiB, fmtMs, fmtRatio, fmtSeconds, median, run, runMain, runMeasured, sleep, table } from "./lib";
import { PACKAGE_STATES, SHAPES, type HostResult, type HostTiming } from "./hosttime";
import { PROGRAM_CONFIGS, type ProgramConfig, type ProgramEvalResult } from "./programeval";
import { benchProxy, nginxVersion, type Measured, type ProxyResult } from "./proxy";

const ROOT = path.join(__dirname, "..", "..");
const SECTIONS = ["proxy", "host", "program"] as const;
type Section = (typeof SECTIONS)[number];
const LOCK = "/run/mmth.lock";

/** The targets of the issue. */
export const TARGETS = {
    bOverA: 0.9,
    bOverC: 1.0,
    cachedHostSeconds: 120,
    programSeconds: 2,
};

interface Options {
    only: Section[];
    rounds: number;
    duration: number;
    warmup: number;
    threads: number;
    connections: number;
    ws: number;
    upstreamWork: number;
    maxOther: number;
    retries: number;
    clientCpus: string;
    serverCpus: string;
    basePort: number;
    hostShapes: string;
    hostPackages: string;
    programProcesses: number;
    programEvaluations: number;
    out: string;
}

function defaultCpus(): { client: string; server: string } {
    const n = os.cpus().length;
    if (n < 2) return { client: "", server: "" };
    return { client: String(n - 1), server: n === 2 ? "0" : `0-${n - 2}` };
}

const HELP = `usage: npm run bench -- [options]
  --only LIST               sections, comma-separated: ${SECTIONS.join(",")} (default: all)
  --rounds N                rounds per proxy measurement, at least 3 (default 3)
  --duration S              seconds per wrk run (default 10); --warmup S per target before the rounds (default 2)
  --threads N --connections N   wrk threads and connections (default 1 and 50)
  --ws N                    websocket connections held through (b) (default 1000)
  --upstream-work US        CPU microseconds per request of the second upstream (rows "with work", default 250)
  --max-other F --retries N a wrk run during which other processes used more than F of the machine's CPU
                            is run again, at most N times (default 0.05 and 3)
  --client-cpus L --server-cpus L   taskset CPU lists for the load generators and for nginx + upstream
                            (default on 2 cores: client 1, server 0)
  --base-port P             loopback ports P..P+999 (default 18000)
  --host-shapes LIST        ${SHAPES.join(",")} (default both)
  --host-packages LIST      ${PACKAGE_STATES.join(",")} (default all three)
  --program-processes N     fresh processes per config and mode (default 3); --program-evaluations N in each (default 5)
  --out FILE                JSON result (default bench-results/latest.json)`;

function parseArgs(argv: readonly string[]): Options {
    const cpus = defaultCpus();
    const o: Options = {
        only: [...SECTIONS],
        rounds: 3,
        duration: 10,
        warmup: 2,
        threads: 1,
        connections: 50,
        ws: 1000,
        upstreamWork: 250,
        maxOther: 0.05,
        retries: 3,
        clientCpus: cpus.client,
        serverCpus: cpus.server,
        basePort: 18000,
        hostShapes: SHAPES.join(","),
        hostPackages: PACKAGE_STATES.join(","),
        programProcesses: 3,
        programEvaluations: 5,
        out: path.join(ROOT, "bench-results", "latest.json"),
    };
    const numeric = (flag: string, value: string, min: number): number => {
        const n = Number(value);
        if (!Number.isFinite(n) || n < min) throw new Error(`${flag} must be a number >= ${min}`);
        return n;
    };
    for (let i = 0; i < argv.length; i++) {
        const flag = argv[i];
        if (flag === "--help" || flag === "-h") {
            console.log(HELP);
            process.exit(0);
        }
        const value = argv[++i];
        if (value === undefined) throw new Error(`${flag} needs a value\n${HELP}`);
        switch (flag) {
            case "--only":
                o.only = value.split(",").map((s) => {
                    if (!(SECTIONS as readonly string[]).includes(s)) throw new Error(`unknown section ${s}`);
                    return s as Section;
                });
                break;
            case "--rounds":
                o.rounds = numeric(flag, value, 3);
                break;
            case "--duration":
                o.duration = numeric(flag, value, 1);
                break;
            case "--warmup":
                o.warmup = numeric(flag, value, 1);
                break;
            case "--threads":
                o.threads = numeric(flag, value, 1);
                break;
            case "--connections":
                o.connections = numeric(flag, value, 1);
                break;
            case "--ws":
                o.ws = numeric(flag, value, 1);
                break;
            case "--upstream-work":
                o.upstreamWork = numeric(flag, value, 1);
                break;
            case "--max-other":
                o.maxOther = numeric(flag, value, 0);
                break;
            case "--retries":
                o.retries = numeric(flag, value, 0);
                break;
            case "--client-cpus":
                o.clientCpus = value;
                break;
            case "--server-cpus":
                o.serverCpus = value;
                break;
            case "--base-port":
                o.basePort = numeric(flag, value, 1024);
                break;
            case "--host-shapes":
                o.hostShapes = value;
                break;
            case "--host-packages":
                o.hostPackages = value;
                break;
            case "--program-processes":
                o.programProcesses = numeric(flag, value, 1);
                break;
            case "--program-evaluations":
                o.programEvaluations = numeric(flag, value, 2);
                break;
            case "--out":
                o.out = path.resolve(value);
                break;
            default:
                throw new Error(`unknown option ${flag}\n${HELP}`);
        }
    }
    return o;
}

const log = (line: string): void => console.error(`[bench] ${line}`);

// ---------------------------------------------------------------------------
// Machine

async function machine(): Promise<Record<string, string | number>> {
    const cpuinfo = fs.readFileSync("/proc/cpuinfo", "utf8");
    const text = async (argv: string[], stream: "stdout" | "stderr" = "stdout"): Promise<string> => {
        const r = await run(argv, { check: false }).catch(() => undefined);
        return (r?.[stream] ?? "").trim().split("\n")[0] ?? "";
    };
    return {
        nproc: os.cpus().length,
        cpu: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? "unknown",
        memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
        kernel: os.release(),
        os: /^PRETTY_NAME="(.*)"$/m.exec(fs.readFileSync("/etc/os-release", "utf8"))?.[1] ?? "unknown",
        nginx: await nginxVersion().catch(() => "not installed"),
        wrk: await text(["wrk", "-v"]),
        go: await text(["go", "version"]),
        node: process.version,
        loadAverageAtStart: os
            .loadavg()
            .map((l) => l.toFixed(2))
            .join(" "),
        commit: await text(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]),
    };
}

// ---------------------------------------------------------------------------
// Sections run as child processes

async function hostSection(o: Options): Promise<HostResult> {
    const out = path.join(os.tmpdir(), `mm-bench-host-${process.pid}.json`);
    const script = path.join(__dirname, "hosttime.ts");
    log(`host: waiting for ${LOCK} (the test hosts' bridge is one per machine)`);
    const r = await run(
        ["flock", LOCK, process.execPath, "-r", "ts-node/register/transpile-only", script, out, o.hostShapes, o.hostPackages],
        {
            check: false,
            env: { ...process.env, TS_NODE_PROJECT: path.join(ROOT, "tsconfig.json") },
        },
    );
    for (const line of r.stdout.split("\n").filter((l) => l.length > 0)) log(`host:${line}`);
    if (r.code !== 0) throw new Error(`host section failed (${r.code}):\n${r.stderr}`);
    const result = JSON.parse(fs.readFileSync(out, "utf8")) as HostResult;
    fs.rmSync(out, { force: true });
    return result;
}

export interface ProgramResult {
    readonly config: ProgramConfig;
    readonly resources: number;
    /** Fresh process with ts-node type-checking, as `pulumi up` runs a TypeScript program: start to first evaluation done. */
    readonly typeCheckedProcessMs: number[];
    /** The same with ts-node's transpile-only mode (PULUMI_NODEJS_TRANSPILE_ONLY=true). */
    readonly transpileOnlyProcessMs: number[];
    /** Evaluations after the first in a process (modules of node_modules loaded, the program reloaded). */
    readonly evaluationMs: number[];
    /** The most CPU other processes used during a kept process (share of the machine), and how many were run again. */
    readonly otherCpuShareMax: number;
    readonly discardedProcesses: number;
}

async function programSection(o: Options): Promise<ProgramResult[]> {
    const results: ProgramResult[] = [];
    for (const config of PROGRAM_CONFIGS) {
        let discarded = 0;
        let maxOther = 0;
        const typeChecked: number[] = [];
        const transpileOnly: number[] = [];
        const evaluations: number[] = [];
        let resources = 0;
        for (let i = 0; i < o.programProcesses; i++) {
            for (const [register, into] of [
                ["ts-node/register", typeChecked],
                ["ts-node/register/transpile-only", transpileOnly],
            ] as const) {
                const argv = [
                    process.execPath,
                    "-r",
                    register,
                    path.join(__dirname, "programeval.ts"),
                    config,
                    String(o.programEvaluations),
                ];
                let r = await runMeasured(argv);
                for (let retry = 1; retry <= o.retries && r.otherCpuShare > o.maxOther; retry++) {
                    log(`program: ${config}: other processes used ${Math.round(r.otherCpuShare * 100)} % of the CPU; again`);
                    discarded++;
                    await sleep(retry * 5000);
                    r = await runMeasured(argv);
                }
                maxOther = Math.max(maxOther, r.otherCpuShare);
                const line = /^RESULT (.*)$/m.exec(r.stdout)?.[1];
                if (r.code !== 0 || !line) throw new Error(`program evaluation (${config}) failed:\n${r.stderr}\n${r.stdout}`);
                const res = JSON.parse(line) as ProgramEvalResult;
                into.push(res.sinceProcessStartMs);
                evaluations.push(...res.laterMs);
                resources = res.resources;
            }
        }
        log(`program: ${config}: ${resources} resources, evaluation median ${Math.round(median(evaluations))} ms`);
        results.push({
            config,
            resources,
            typeCheckedProcessMs: typeChecked,
            transpileOnlyProcessMs: transpileOnly,
            evaluationMs: evaluations,
            otherCpuShareMax: maxOther,
            discardedProcesses: discarded,
        });
    }
    return results;
}

// ---------------------------------------------------------------------------
// Report

export interface BenchResult {
    readonly date: string;
    readonly machine: Record<string, string | number>;
    readonly command: string;
    readonly proxy?: ProxyResult;
    readonly host?: HostResult;
    readonly program?: ProgramResult[];
    readonly targets: { readonly target: string; readonly value: string; readonly met: boolean | undefined }[];
}

function proxyTables(p: ProxyResult): string {
    const us = (n: number): string => (Number.isFinite(n) ? `${n.toFixed(1)} µs` : "-");
    const pct = (n: number): string => (Number.isFinite(n) ? `${Math.round(n * 100)} %` : "-");
    const row = (m: Measured): string[] => [
        m.label,
        fmtInt(m.median.requestsPerSecond),
        fmtMs(m.median.p50Ms),
        fmtMs(m.median.p99Ms),
        us(m.median.serverCpuUsPerRequest),
        pct(m.median.serverCpuBusy),
        pct(m.median.clientCpuBusy),
        fmtInt(m.median.errors),
    ];
    const header = ["target", "req/s", "p50", "p99", "server CPU per request", "server CPU busy", "wrk CPU busy", "errors"];
    const keepAlive = table(header, p.keepAlive.map(row));
    const handshakes = table(
        [
            "target (Connection: close, every request a different URL)",
            "new TLS handshakes/s",
            "p50",
            "p99",
            "server CPU per handshake",
            "server CPU busy",
            "wrk CPU busy",
            "errors",
        ],
        p.handshakes.map(row),
    );
    const ws = table(
        [
            "websockets through (b)",
            "held / attempted",
            "alive after all opened",
            "nginx RSS idle → held",
            "per connection",
            "upstream RSS idle → held",
            "per connection",
        ],
        p.websockets.map((w) => {
            const per = (rss: { idle: number; held: number }): string =>
                w.held > 0 ? `${((rss.held - rss.idle) / w.held).toFixed(1)} KiB` : "-";
            return [
                `${w.label}, ${w.workerProcesses} workers`,
                `${w.held} / ${w.attempted}`,
                String(w.alive),
                `${fmtMiB(w.nginxRssKiB.idle)} → ${fmtMiB(w.nginxRssKiB.held)}`,
                per(w.nginxRssKiB),
                `${fmtMiB(w.upstreamRssKiB.idle)} → ${fmtMiB(w.upstreamRssKiB.held)}`,
                per(w.upstreamRssKiB),
            ];
        }),
    );
    const r = p.ratios;
    const measured = [...p.keepAlive, ...p.handshakes];
    const other = Math.max(...measured.flatMap((m) => m.rounds.map((x) => x.otherCpuShare)));
    const discarded = measured.reduce((n, m) => n + m.discarded.length, 0);
    const setup = [
        ...Object.entries(p.setup).map(([k, v]) => `- ${k}: ${v}`),
        `- other processes: at most ${pct(other)} of the machine's CPU during any kept run; ${discarded} run(s) discarded and run again` +
            (other > 0.05 ? " (WARNING: a disturbed run was kept; compare rows of this run only, or run again on a quiet machine)" : ""),
    ].join("\n");
    return [
        "Proxy on loopback (medians over the rounds):",
        "",
        setup,
        "",
        keepAlive,
        "",
        `Ratios (keep-alive, req/s): b/a = ${fmtRatio(r.bOverA)}, b/c = ${fmtRatio(r.bOverC)} with p99 b/c = ${fmtRatio(r.p99BOverC)}` +
            ` (below 1: b's tail is shorter); every URL different: b/c = ${fmtRatio(r.uniqueBOverC)}, p99 b/c = ${fmtRatio(r.uniqueP99BOverC)};` +
            ` with the upstream doing work: b/a = ${fmtRatio(r.workBOverA)}. New TLS handshakes/s b/c = ${fmtRatio(r.handshakesBOverC)}.`,
        "",
        handshakes,
        "",
        ws,
    ].join("\n");
}

const STEP_ORDER = ["volume", "postgres", "certificate", "mattermost", "start", "nginx"];

function hostTable(h: HostResult): string {
    const steps = [...STEP_ORDER];
    for (const t of h.timings) for (const s of t.steps) if (!steps.includes(s.step)) steps.push(s.step);
    const used = steps.filter((s) => h.timings.some((t) => t.steps.some((x) => x.step === s)));
    const rows = h.timings.map((t: HostTiming) =>
        t.skipped
            ? [t.shape, t.packages, ...used.map(() => "-"), "-", "-", "-", "-", `skipped: ${t.skipped}`]
            : [
                  t.shape,
                  t.packages,
                  fmtSeconds(t.bootMs),
                  fmtSeconds(t.uploadMs),
                  ...used.map((s) => fmtSeconds(t.steps.find((x) => x.step === s)?.ms ?? NaN)),
                  fmtSeconds(t.verifyMs),
                  fmtSeconds(t.totalMs),
                  t.downloadedBytes ? `${(t.downloadedBytes / 2 ** 20).toFixed(1)} MiB` : "0",
              ],
    );
    const header = ["shape", "OS packages", "boot", "upload scripts", ...used, "verify", "total", "apt download"];
    const fixed = rows.map((r) => (r.length < header.length ? [...r, ...Array<string>(header.length - r.length).fill("")] : r));
    return [
        "Time to a verified HTTPS endpoint on a fresh test host (systemd-nspawn, 2 cores shared), by step:",
        "",
        table(header, fixed),
        ...(h.imageBuildMs !== undefined ? ["", `(the base image was built first, in ${fmtSeconds(h.imageBuildMs)}; not counted)`] : []),
    ].join("\n");
}

function programTable(p: ProgramResult[]): string {
    return [
        "Program evaluation under mocks (test/unit/mocks.ts runProgram), medians:",
        "",
        `(${p.reduce((n, r) => Math.max(n, r.otherCpuShareMax), 0) > 0.05 ? "WARNING: disturbed by other processes; " : ""}` +
            `other processes used at most ${Math.round(Math.max(...p.map((r) => r.otherCpuShareMax)) * 100)} % of the CPU during a kept process; ` +
            `${p.reduce((n, r) => n + r.discardedProcesses, 0)} process(es) discarded and run again)`,
        "",
        table(
            [
                "stack config",
                "resources",
                "fresh process, type-checked (as pulumi up)",
                "fresh process, transpile-only",
                "evaluation (module cache warm)",
            ],
            p.map((r) => [
                r.config,
                String(r.resources),
                fmtMs(median(r.typeCheckedProcessMs)),
                fmtMs(median(r.transpileOnlyProcessMs)),
                fmtMs(median(r.evaluationMs)),
            ]),
        ),
    ].join("\n");
}

function targets(r: Omit<BenchResult, "targets">): BenchResult["targets"] {
    const out: BenchResult["targets"][number][] = [];
    if (r.proxy) {
        const { bOverA, bOverC, p99BOverC } = r.proxy.ratios;
        out.push({ target: `b/a ≥ ${TARGETS.bOverA} on requests/s`, value: fmtRatio(bOverA), met: bOverA >= TARGETS.bOverA });
        out.push({
            target: `b/c ≥ ${TARGETS.bOverC.toFixed(1)} on requests/s, p99 no worse`,
            value: `${fmtRatio(bOverC)}, p99 b/c ${fmtRatio(p99BOverC)}`,
            met: bOverC >= TARGETS.bOverC && p99BOverC <= 1,
        });
    }
    if (r.host) {
        const cached = r.host.timings.filter((t) => t.packages === "installed" && !t.skipped);
        const worst = Math.max(...cached.map((t) => t.totalMs));
        if (cached.length > 0) {
            out.push({
                target: `verified HTTPS on a cached host ≤ ${TARGETS.cachedHostSeconds} s`,
                value: `${fmtSeconds(worst)} (slowest shape)`,
                met: worst <= TARGETS.cachedHostSeconds * 1000,
            });
        }
    }
    if (r.program) {
        const evaluation = Math.max(...r.program.map((p) => median(p.evaluationMs)));
        const typeChecked = Math.max(...r.program.map((p) => median(p.typeCheckedProcessMs)));
        out.push({
            target: `program evaluation ≤ ${TARGETS.programSeconds} s`,
            value: `${fmtMs(evaluation)} evaluation; ${fmtSeconds(typeChecked)} from a fresh type-checked process`,
            met: evaluation <= TARGETS.programSeconds * 1000,
        });
    }
    return out;
}

export function report(r: BenchResult): string {
    const m = r.machine;
    const parts = [
        `Machine: ${m.nproc} cores (${m.cpu}), ${m.memoryGiB} GiB, kernel ${m.kernel}, ${m.os}; ${m.nginx}; ${m.wrk}; ${m.go}; node ${m.node}; ` +
            `load average at start ${m.loadAverageAtStart}; commit ${m.commit}.`,
    ];
    if (r.proxy) parts.push(proxyTables(r.proxy));
    if (r.host) parts.push(hostTable(r.host));
    if (r.program) parts.push(programTable(r.program));
    if (r.targets.length > 0) {
        parts.push(
            table(
                ["target", "measured", "met"],
                r.targets.map((t) => [t.target, t.value, t.met === undefined ? "-" : t.met ? "yes" : "no"]),
            ),
        );
    }
    return parts.join("\n\n") + "\n";
}

async function main(): Promise<void> {
    const o = parseArgs(process.argv.slice(2));
    const date = new Date().toISOString();
    const info = await machine();
    log(`sections: ${o.only.join(", ")}; load average ${info.loadAverageAtStart}`);
    const partial: Omit<BenchResult, "targets"> & { proxy?: ProxyResult; host?: HostResult; program?: ProgramResult[] } = {
        date,
        machine: info,
        command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`,
    };
    if (o.only.includes("proxy")) {
        partial.proxy = await benchProxy({
            rounds: o.rounds,
            durationSeconds: o.duration,
            warmupSeconds: o.warmup,
            threads: o.threads,
            connections: o.connections,
            clientCpus: o.clientCpus,
            serverCpus: o.serverCpus,
            wsConnections: o.ws,
            upstreamWorkUs: o.upstreamWork,
            maxOtherCpuShare: o.maxOther,
            retries: o.retries,
            basePort: o.basePort,
            log,
        });
    }
    if (o.only.includes("host")) partial.host = await hostSection(o);
    if (o.only.includes("program")) partial.program = await programSection(o);
    partial.machine.loadAverageAtEnd = os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(" ");
    const result: BenchResult = { ...partial, targets: targets(partial) };
    fs.mkdirSync(path.dirname(o.out), { recursive: true });
    fs.writeFileSync(o.out, JSON.stringify(result, null, 2) + "\n");
    process.stdout.write(report(result));
    console.log(`\nresults: ${o.out}`);
}

if (require.main === module) runMain(main);
