/**
 * Test-host library: boots throw-away Debian 12 machines with systemd as PID 1
 * (systemd-nspawn containers) so the project's server-side install scripts
 * can be exercised against a real systemd host, over SSH, as on EC2.
 *
 * Layout on the machine (everything we create carries the prefix `mmth-`):
 *   /var/cache/mattermost-testhost/<key>/rootfs   cached base image (read-only lower dir)
 *   /var/tmp/mmth-<name>/{upper,work,root}         per-host overlay (root = merged view)
 *   /var/tmp/mmth-<name>/state.json                what to clean up (used by cleanupStale)
 *   /run/netns/mmth-<name>                         the host's network namespace
 *   mmth-br0 (10.231.0.1/24)                       bridge shared by all hosts (no forwarding, no NAT)
 *   mmth-v<n> (host side, bridge port) <-> eth0    veth pair; eth0 inside = 10.231.0.<n>/24
 *
 * Must run as root. Host packages: see test/install-deps.sh.
 * Only node: builtins; all commands run via execFile/spawn with argv arrays.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";

// ---------------------------------------------------------------------------
// Constants

/** Bump to force a rebuild of the cached image when the build recipe changes. */
const IMAGE_VERSION = "3";
const SUITE = "bookworm";
const MIRROR = process.env.MMTH_DEBIAN_MIRROR ?? "http://deb.debian.org/debian";
const CACHE_ROOT = process.env.MMTH_CACHE_DIR ?? "/var/cache/mattermost-testhost";
const RUN_ROOT = "/var/tmp";
const PREFIX = "mmth-";
const NETNS_DIR = "/run/netns";
const SUBNET_BASE = "10.231";

/**
 * Packages debootstrap installs (stage 1). Kept small: debootstrap does not
 * order the configuration of a large dependency tree correctly (python3-*
 * failed to configure when everything was listed here).
 */
export const BOOTSTRAP_PACKAGES: readonly string[] = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "openssh-server",
    "ca-certificates",
    "curl",
    "sudo",
    "adduser",
];

/**
 * Installed with apt inside the new rootfs (stage 2, at build time only).
 * Everything the install scripts need must be in one of the two lists:
 * containers have no route to the outside, so nothing can be fetched later.
 */
export const EXTRA_PACKAGES: readonly string[] = [
    "libcap2-bin",
    "e2fsprogs",
    "util-linux",
    "postgresql",
    "nginx",
    "certbot",
    "python3-certbot-nginx",
    "python3",
    "jq",
    "procps",
    "iputils-ping",
    "openssl",
    "netcat-openbsd",
    "less",
    "tar",
    "gzip",
];

/** Both lists: what the base image contains (plus their dependencies). */
export const BASE_PACKAGES: readonly string[] = [...BOOTSTRAP_PACKAGES, ...EXTRA_PACKAGES];

/**
 * Run inside the fresh rootfs (chroot, bash -s) once at build time. Constant
 * text: nothing variable is spliced in. Part of the cache key.
 */
const CONFIGURE_SCRIPT = String.raw`set -euo pipefail
export DEBIAN_FRONTEND=noninteractive LC_ALL=C
# Stage 2 packages: their names come as arguments ("$@").
apt-get update -qq
apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 "$@" >/dev/null
# EC2 Ubuntu AMI style login user with passwordless sudo.
if ! id ubuntu >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash --groups sudo --uid 1000 ubuntu
fi
passwd --lock ubuntu >/dev/null
install -d -m 0700 -o ubuntu -g ubuntu /home/ubuntu/.ssh
printf 'ubuntu ALL=(ALL) NOPASSWD:ALL\n' > /etc/sudoers.d/90-cloud-init-users
chmod 0440 /etc/sudoers.d/90-cloud-init-users
# sshd: keys only, fast.
cat > /etc/ssh/sshd_config.d/50-testhost.conf <<'CONF'
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
PubkeyAuthentication yes
UseDNS no
CONF
systemctl enable ssh.service >/dev/null 2>&1
# Services the install scripts must enable/start themselves.
systemctl disable postgresql.service nginx.service >/dev/null 2>&1 || true
# Things that slow boot or would try to reach the network.
for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
         fstrim.timer man-db.timer dpkg-db-backup.timer systemd-networkd-wait-online.service \
         getty@tty1.service; do
  systemctl disable "$u" >/dev/null 2>&1 || true
done
systemctl mask systemd-networkd-wait-online.service >/dev/null 2>&1 || true
# A fresh transient machine-id per boot (empty file = not "first boot").
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
ln -s /etc/machine-id /var/lib/dbus/machine-id
# Persistent journal so journal() has the whole story.
mkdir -p /var/log/journal
apt-get clean
rm -rf /var/lib/apt/lists/*
# No resolver: lookups fail fast (there is no route out anyway).
rm -f /etc/resolv.conf
: > /etc/resolv.conf
`;

const HOST_TOOLS: readonly string[] = ["debootstrap", "systemd-nspawn", "ssh", "ssh-keygen", "ip", "nsenter", "losetup", "mount", "umount"];

// ---------------------------------------------------------------------------
// Process helpers

export interface RunResult {
    code: number;
    stdout: string;
    stderr: string;
}

interface RunOptions {
    stdin?: string | Buffer;
    /** Stream a file to stdin instead. */
    stdinFile?: string;
    timeoutMs?: number;
    /** Reject when the exit code is not 0 (default true). */
    check?: boolean;
    env?: NodeJS.ProcessEnv;
}

function errorMessage(e: unknown): string {
    return e instanceof Error ? e.message : String(e);
}

/** Runs argv[0] with argv[1..] (no shell). Resolves with code/stdout/stderr. */
export function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const check = opts.check ?? true;
    return new Promise<RunResult>((resolve, reject) => {
        const [cmd, ...args] = argv;
        if (cmd === undefined) {
            reject(new Error("run: empty argv"));
            return;
        }
        const child = spawn(cmd, args, {
            stdio: ["pipe", "pipe", "pipe"],
            env: opts.env ?? process.env,
        });
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        let timedOut = false;
        let timer: NodeJS.Timeout | undefined;
        if (opts.timeoutMs !== undefined) {
            timer = setTimeout(() => {
                timedOut = true;
                child.kill("SIGKILL");
            }, opts.timeoutMs);
        }
        child.stdout.on("data", (b: Buffer) => out.push(b));
        child.stderr.on("data", (b: Buffer) => err.push(b));
        child.stdin.on("error", () => {
            /* EPIPE when the command does not read stdin: ignore */
        });
        child.on("error", (e: Error) => {
            if (timer) clearTimeout(timer);
            reject(new Error(`${cmd}: ${e.message}`));
        });
        child.on("close", (code: number | null, signal: NodeJS.Signals | null) => {
            if (timer) clearTimeout(timer);
            const res: RunResult = {
                code: code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : -1),
                stdout: Buffer.concat(out).toString("utf8"),
                stderr: Buffer.concat(err).toString("utf8"),
            };
            if (timedOut) {
                res.stderr += `\n[testhost] ${cmd} killed after ${opts.timeoutMs} ms timeout`;
            }
            if (check && (res.code !== 0 || timedOut)) {
                reject(
                    new Error(
                        `command failed (${res.code}): ${argv.join(" ")}\n` +
                            `stdout: ${res.stdout.slice(-2000)}\nstderr: ${res.stderr.slice(-2000)}`,
                    ),
                );
                return;
            }
            resolve(res);
        });
        if (opts.stdinFile !== undefined) {
            fs.createReadStream(opts.stdinFile).pipe(child.stdin);
        } else {
            child.stdin.end(opts.stdin ?? "");
        }
    });
}

/** Synchronous, never-throwing variant for exit handlers. */
function runSyncQuiet(argv: readonly string[]): number {
    const [cmd, ...args] = argv;
    if (cmd === undefined) return -1;
    const r = spawnSync(cmd, args, { stdio: "ignore", timeout: 15_000 });
    return r.status ?? -1;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves true when p settles within ms, false otherwise; leaves no timer behind. */
function settlesWithin(p: Promise<unknown> | undefined, ms: number): Promise<boolean> {
    if (p === undefined) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), ms);
        const done = (): void => {
            clearTimeout(timer);
            resolve(true);
        };
        p.then(done, done);
    });
}

/** POSIX-shell single-quote one word. */
export function shellQuote(word: string): string {
    if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
    return `'${word.replace(/'/g, `'\\''`)}'`;
}

function pidAlive(pid: number): boolean {
    if (!Number.isInteger(pid) || pid <= 0) return false;
    try {
        process.kill(pid, 0);
        return true;
    } catch (e: unknown) {
        return (e as NodeJS.ErrnoException).code === "EPERM";
    }
}

async function exists(p: string): Promise<boolean> {
    try {
        await fsp.lstat(p);
        return true;
    } catch {
        return false;
    }
}

// ---------------------------------------------------------------------------
// Host prerequisites

let hostChecked = false;

async function checkHost(): Promise<void> {
    if (hostChecked) return;
    if (typeof process.getuid === "function" && process.getuid() !== 0) {
        throw new Error("testhost: must run as root (systemd-nspawn, mount, losetup)");
    }
    const missing: string[] = [];
    for (const tool of HOST_TOOLS) {
        const r = await run(["sh", "-c", 'command -v "$1"', "sh", tool], { check: false });
        if (r.code !== 0) missing.push(tool);
    }
    if (missing.length > 0) {
        throw new Error(`testhost: missing host tools: ${missing.join(", ")}; run test/install-deps.sh`);
    }
    hostChecked = true;
}

// ---------------------------------------------------------------------------
// Base image

/** Cache key: hash of recipe (version, suite, packages, configure script). */
export function imageKey(): string {
    const h = createHash("sha256");
    h.update(
        JSON.stringify({
            IMAGE_VERSION,
            SUITE,
            bootstrap: [...BOOTSTRAP_PACKAGES].sort(),
            extra: [...EXTRA_PACKAGES].sort(),
            CONFIGURE_SCRIPT,
        }),
    );
    return `${SUITE}-${h.digest("hex").slice(0, 16)}`;
}

let imagePromise: Promise<string> | undefined;

/**
 * Builds (once) and returns the path of the cached base rootfs. Built in a
 * temp dir and renamed into place, so an interrupted build is never used.
 */
export function ensureBaseImage(): Promise<string> {
    imagePromise ??= buildBaseImage().catch((e: unknown) => {
        imagePromise = undefined;
        throw e;
    });
    return imagePromise;
}

async function buildBaseImage(): Promise<string> {
    await checkHost();
    const key = imageKey();
    const finalDir = path.join(CACHE_ROOT, key);
    const rootfs = path.join(finalDir, "rootfs");
    if (await exists(path.join(finalDir, "complete"))) return rootfs;

    await fsp.mkdir(CACHE_ROOT, { recursive: true });
    // Remove leftovers of interrupted builds whose builder is gone.
    for (const entry of await fsp.readdir(CACHE_ROOT)) {
        const m = /^\.build-(\d+)-/.exec(entry);
        if (m && !pidAlive(Number(m[1]))) {
            await fsp.rm(path.join(CACHE_ROOT, entry), { recursive: true, force: true });
        }
    }
    const debCache = path.join(CACHE_ROOT, "debs");
    await fsp.mkdir(debCache, { recursive: true });
    const tmpDir = await fsp.mkdtemp(path.join(CACHE_ROOT, `.build-${process.pid}-`));
    const tmpRoot = path.join(tmpDir, "rootfs");
    const started = Date.now();
    try {
        await run(
            [
                "debootstrap",
                "--variant=minbase",
                `--cache-dir=${debCache}`,
                `--include=${BOOTSTRAP_PACKAGES.join(",")}`,
                SUITE,
                tmpRoot,
                MIRROR,
            ],
            { timeoutMs: 30 * 60_000 },
        );
        // Stage 2 in a non-booted nspawn (proper /proc, /dev, /sys, torn down
        // by nspawn itself; host network so apt reaches the Debian archive).
        await run(
            [
                "systemd-nspawn",
                "--quiet",
                `--directory=${tmpRoot}`,
                "--register=no",
                "--keep-unit",
                "--resolv-conf=replace-host",
                "--timezone=off",
                "--pipe",
                "--setenv=PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                "--setenv=LANG=C.UTF-8",
                "--",
                "/bin/bash",
                "-s",
                "--",
                ...EXTRA_PACKAGES,
            ],
            { stdin: CONFIGURE_SCRIPT, timeoutMs: 20 * 60_000 },
        );
        await fsp.writeFile(
            path.join(tmpDir, "complete"),
            JSON.stringify({ key, packages: BASE_PACKAGES, builtAt: new Date().toISOString() }) + "\n",
        );
        try {
            await fsp.rename(tmpDir, finalDir);
        } catch (e: unknown) {
            const code = (e as NodeJS.ErrnoException).code;
            // Someone else finished first: use theirs.
            if ((code === "ENOTEMPTY" || code === "EEXIST") && (await exists(path.join(finalDir, "complete")))) {
                await fsp.rm(tmpDir, { recursive: true, force: true });
            } else {
                throw e;
            }
        }
    } catch (e: unknown) {
        await fsp
            .copyFile(path.join(tmpRoot, "debootstrap/debootstrap.log"), path.join(CACHE_ROOT, "last-failed-build.log"))
            .catch(() => undefined);
        await fsp.rm(tmpDir, { recursive: true, force: true }).catch(() => undefined);
        throw new Error(`testhost: building base image failed: ${errorMessage(e)}`);
    }
    lastImageBuildMs = Date.now() - started;
    return rootfs;
}

/** Milliseconds the last image build took in this process (undefined: cache hit). */
export let lastImageBuildMs: number | undefined;

// ---------------------------------------------------------------------------
// Hosts

export interface DiskSpec {
    /** Image file on the machine; created sparse when missing, reused as-is otherwise. */
    image: string;
    sizeMiB: number;
}

export interface StartHostOptions {
    /** Short name: [a-z][a-z0-9-]{0,19}; also the host name inside. */
    name: string;
    disks?: DiskSpec[];
    /** Boot + SSH wait limit (default 120 s). */
    bootTimeoutMs?: number;
}

export interface SshOptions {
    stdin?: string | Buffer;
    timeoutMs?: number;
}

export interface TestHost {
    readonly name: string;
    /** Container IP (inside, on eth0). */
    readonly address: string;
    /** Host side of the veth: listen here for servers the container must reach. */
    readonly hostAddress: string;
    /** Block devices inside the container, in the order of opts.disks (/dev/xvdf, ...). */
    readonly diskDevices: string[];
    /** Loop devices on the machine backing diskDevices. */
    readonly loopDevices: string[];
    /** ed25519 private key accepted for user ubuntu. */
    readonly privateKeyPath: string;
    /** PID (on the machine) of the container's PID 1. */
    readonly leaderPid: number;
    /** Measured time from start to systemd up + sshd answering. */
    readonly bootMs: number;
    /** Runs a command as `ubuntu` over SSH. A string is a remote shell command line; an array is quoted word by word. */
    ssh(command: string[] | string, opts?: SshOptions): Promise<RunResult>;
    /** Runs argv as root inside the container (nsenter), for assertions. */
    exec(argv: string[], opts?: SshOptions): Promise<RunResult>;
    /** Copies a local file or directory to remotePath (as ubuntu, over SSH). */
    copyTo(localPath: string, remotePath: string): Promise<void>;
    /** Last `lines` journal lines of a unit. */
    journal(unit: string, lines?: number): Promise<string>;
    /** Powers off and removes everything. Safe to call more than once. */
    stop(): Promise<void>;
}

interface HostState {
    name: string;
    machine: string;
    ownerPid: number;
    nspawnPid?: number;
    leaderPid?: number;
    dir: string;
    merged: string;
    netns: string;
    hostVeth: string;
    loopDevices: string[];
}

const live = new Map<string, HostImpl>();
let sessionKeyDir: string | undefined;

const NAME_RE = /^[a-z][a-z0-9-]{0,19}$/;

async function sessionKey(): Promise<string> {
    if (sessionKeyDir === undefined) {
        const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `${PREFIX}keys-`));
        await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mmth-test", "-f", path.join(dir, "id_ed25519")]);
        sessionKeyDir = dir;
    }
    return path.join(sessionKeyDir, "id_ed25519");
}

function stateFile(dir: string): string {
    return path.join(dir, "state.json");
}

async function writeState(st: HostState): Promise<void> {
    await fsp.writeFile(stateFile(st.dir), JSON.stringify(st, null, 2) + "\n");
}

async function hostLinkNames(): Promise<Set<string>> {
    const r = await run(["ip", "-o", "link", "show"], { check: false });
    const names = new Set<string>();
    for (const line of r.stdout.split("\n")) {
        const m = /^\d+:\s+([^:@\s]+)/.exec(line);
        if (m?.[1]) names.add(m[1]);
    }
    return names;
}

/** Host bridge shared by all test hosts: they reach each other and the host (10.231.0.1) on it. */
const BRIDGE = `${PREFIX}br0`;
const BRIDGE_ADDRESS = `${SUBNET_BASE}.0.1`;

async function ensureBridge(): Promise<void> {
    const links = await hostLinkNames();
    if (!links.has(BRIDGE)) {
        const r = await run(["ip", "link", "add", BRIDGE, "type", "bridge"], { check: false });
        if (r.code !== 0 && !/exists/i.test(r.stderr)) throw new Error(`ip link add ${BRIDGE}: ${r.stderr}`);
    }
    const a = await run(["ip", "addr", "add", `${BRIDGE_ADDRESS}/24`, "dev", BRIDGE], { check: false });
    if (a.code !== 0 && !/exists|already assigned/i.test(a.stderr)) throw new Error(`ip addr add on ${BRIDGE}: ${a.stderr}`);
    await run(["ip", "link", "set", BRIDGE, "up"]);
}

/** Deletes the bridge when no veth is attached to it any more. */
async function removeBridgeIfUnused(): Promise<void> {
    const ports = await fsp.readdir(`/sys/class/net/${BRIDGE}/brif`).catch(() => undefined);
    if (ports !== undefined && ports.length === 0) {
        await run(["ip", "link", "delete", BRIDGE], { check: false });
    }
}

/**
 * Creates the host's netns and a veth pair: `mmth-v<n>` on the host (a port
 * of the bridge), `eth0` inside with 10.231.0.<n>/24. No default route inside
 * and no forwarding on the host: only the bridge subnet is reachable.
 */
async function setupNetwork(netnsName: string): Promise<{ n: number; hostVeth: string }> {
    await run(["ip", "netns", "add", netnsName]);
    await ensureBridge();
    const used = new Set<number>();
    for (const h of live.values()) used.add(h.subnetIndex);
    const links = await hostLinkNames();
    for (let n = 2; n <= 254; n++) {
        const hostVeth = `${PREFIX}v${n}`;
        if (used.has(n) || links.has(hostVeth)) continue;
        const peer = `${PREFIX}c${n}`;
        const r = await run(["ip", "link", "add", hostVeth, "type", "veth", "peer", "name", peer, "netns", netnsName], {
            check: false,
        });
        if (r.code !== 0) {
            if (/exists/i.test(r.stderr)) continue; // raced with another process
            throw new Error(`ip link add failed: ${r.stderr}`);
        }
        const ns = ["ip", "-n", netnsName];
        await run([...ns, "link", "set", peer, "name", "eth0"]);
        await run([...ns, "addr", "add", `${SUBNET_BASE}.0.${n}/24`, "dev", "eth0"]);
        await run([...ns, "link", "set", "eth0", "up"]);
        await run([...ns, "link", "set", "lo", "up"]);
        await run(["ip", "link", "set", hostVeth, "master", BRIDGE]);
        await run(["ip", "link", "set", hostVeth, "up"]);
        return { n, hostVeth };
    }
    throw new Error(`testhost: no free address in ${SUBNET_BASE}.0.0/24`);
}

async function attachDisk(spec: DiskSpec): Promise<string> {
    if (!(await exists(spec.image))) {
        await fsp.mkdir(path.dirname(spec.image), { recursive: true });
        const fh = await fsp.open(spec.image, "wx");
        try {
            await fh.truncate(spec.sizeMiB * 1024 * 1024);
        } finally {
            await fh.close();
        }
    }
    const r = await run(["losetup", "--find", "--show", spec.image]);
    return r.stdout.trim();
}

/** Finds the PID of the container's init: a process in our netns whose innermost PID is 1 and that runs systemd. */
async function findLeader(netnsPath: string): Promise<number | undefined> {
    let nsIno: number;
    try {
        nsIno = (await fsp.stat(netnsPath)).ino;
    } catch {
        return undefined;
    }
    for (const entry of await fsp.readdir("/proc")) {
        if (!/^\d+$/.test(entry)) continue;
        try {
            const st = await fsp.stat(`/proc/${entry}/ns/net`);
            if (st.ino !== nsIno) continue;
            const status = await fsp.readFile(`/proc/${entry}/status`, "utf8");
            const m = /^NSpid:\s*(.*)$/m.exec(status);
            const ids = m?.[1]?.trim().split(/\s+/) ?? [];
            // Only once it has exec'd systemd: before that nspawn is still
            // setting up mounts and /dev is not the container's yet.
            const comm = (await fsp.readFile(`/proc/${entry}/comm`, "utf8")).trim();
            if (ids.length > 1 && ids[ids.length - 1] === "1" && comm === "systemd") return Number(entry);
        } catch {
            /* process went away */
        }
    }
    return undefined;
}

class HostImpl implements TestHost {
    readonly diskDevices: string[] = [];
    readonly loopDevices: string[] = [];
    address = "";
    hostAddress = "";
    privateKeyPath = "";
    leaderPid = 0;
    bootMs = 0;
    subnetIndex = 0;
    nspawn: ChildProcess | undefined;
    nspawnExit: Promise<void> | undefined;
    exited = false;
    stopping: Promise<void> | undefined;
    readonly state: HostState;

    constructor(readonly name: string) {
        const machine = `${PREFIX}${name}`;
        const dir = path.join(RUN_ROOT, machine);
        this.state = {
            name,
            machine,
            ownerPid: process.pid,
            dir,
            merged: path.join(dir, "root"),
            netns: machine,
            hostVeth: "",
            loopDevices: this.loopDevices,
        };
    }

    get logPath(): string {
        return path.join(this.state.dir, "console.log");
    }

    sshArgs(): string[] {
        return [
            "ssh",
            "-i",
            this.privateKeyPath,
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "IdentitiesOnly=yes",
            `ubuntu@${this.address}`,
            "--",
        ];
    }

    ssh(command: string[] | string, opts: SshOptions = {}): Promise<RunResult> {
        const remote = typeof command === "string" ? command : command.map(shellQuote).join(" ");
        return run([...this.sshArgs(), remote], {
            check: false,
            stdin: opts.stdin,
            timeoutMs: opts.timeoutMs ?? 10 * 60_000,
        });
    }

    exec(argv: string[], opts: SshOptions = {}): Promise<RunResult> {
        if (this.leaderPid <= 0) return Promise.reject(new Error(`host ${this.name} is not running`));
        return run(
            [
                "nsenter",
                "-t",
                String(this.leaderPid),
                "-a",
                "-r",
                "-w",
                "--",
                "/usr/bin/env",
                "-i",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME=/root",
                "LANG=C.UTF-8",
                ...argv,
            ],
            { check: false, stdin: opts.stdin, timeoutMs: opts.timeoutMs ?? 5 * 60_000 },
        );
    }

    async copyTo(localPath: string, remotePath: string): Promise<void> {
        const st = await fsp.stat(localPath);
        const q = shellQuote(remotePath);
        let r: RunResult;
        if (st.isDirectory()) {
            // tar on the machine into a temp file, streamed to tar on the host.
            const tmp = path.join(this.state.dir, `copy-${Date.now()}.tar`);
            try {
                await run(["tar", "-C", localPath, "-cf", tmp, "."]);
                r = await run([...this.sshArgs(), `mkdir -p ${q} && tar -C ${q} -xf -`], {
                    check: false,
                    stdinFile: tmp,
                    timeoutMs: 10 * 60_000,
                });
            } finally {
                await fsp.rm(tmp, { force: true });
            }
        } else {
            r = await run([...this.sshArgs(), `cat > ${q}`], {
                check: false,
                stdinFile: localPath,
                timeoutMs: 10 * 60_000,
            });
        }
        if (r.code !== 0) throw new Error(`copyTo ${localPath} -> ${this.name}:${remotePath} failed: ${r.stderr}`);
    }

    async journal(unit: string, lines = 200): Promise<string> {
        const r = await this.exec(["journalctl", "--no-pager", "-o", "short-precise", "-u", unit, "-n", String(lines)]);
        return r.stdout + (r.code !== 0 ? r.stderr : "");
    }

    async start(rootfs: string, disks: DiskSpec[], bootTimeoutMs: number): Promise<void> {
        const t0 = Date.now();
        const st = this.state;
        await fsp.mkdir(st.dir, { recursive: false });
        await writeState(st);
        for (const d of ["upper", "work", "root"]) await fsp.mkdir(path.join(st.dir, d));

        // Network first (the subnet index is also used for state).
        const net = await setupNetwork(st.netns);
        this.subnetIndex = net.n;
        st.hostVeth = net.hostVeth;
        this.hostAddress = BRIDGE_ADDRESS;
        this.address = `${SUBNET_BASE}.0.${net.n}`;
        await writeState(st);

        for (const d of disks) {
            this.loopDevices.push(await attachDisk(d));
            await writeState(st);
        }

        await run([
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            `lowerdir=${rootfs},upperdir=${path.join(st.dir, "upper")},workdir=${path.join(st.dir, "work")}`,
            st.merged,
        ]);

        // Per-host files, written into the overlay before boot.
        this.privateKeyPath = await sessionKey();
        const pub = await fsp.readFile(`${this.privateKeyPath}.pub`, "utf8");
        const sshDir = path.join(st.merged, "home/ubuntu/.ssh");
        const ak = path.join(sshDir, "authorized_keys");
        await fsp.writeFile(ak, pub, { mode: 0o600 });
        const ubuntu = await fsp.stat(path.join(st.merged, "home/ubuntu"));
        await fsp.chown(ak, ubuntu.uid, ubuntu.gid);
        await fsp.writeFile(path.join(st.merged, "etc/hostname"), `${this.name}\n`);
        await fsp.writeFile(
            path.join(st.merged, "etc/hosts"),
            `127.0.0.1\tlocalhost\n127.0.1.1\t${this.name}\n${this.address}\t${this.name}\n` +
                `::1\tlocalhost ip6-localhost ip6-loopback\n`,
        );

        const args = [
            `--directory=${st.merged}`,
            "--boot",
            "--register=no",
            "--keep-unit",
            `--machine=${st.machine}`,
            `--hostname=${this.name}`,
            `--network-namespace-path=${path.join(NETNS_DIR, st.netns)}`,
            "--console=read-only",
            "--link-journal=no",
            "--resolv-conf=off",
            "--timezone=off",
            ...this.loopDevices.map((l) => `--bind=${l}`),
        ];
        const log = fs.openSync(this.logPath, "a");
        try {
            this.nspawn = spawn("systemd-nspawn", args, {
                stdio: ["ignore", log, log],
                detached: true, // own process group: a terminal ^C reaches only us
            });
        } finally {
            fs.closeSync(log);
        }
        const child = this.nspawn;
        this.nspawnExit = new Promise<void>((resolve) => {
            child.once("exit", () => {
                this.exited = true;
                resolve();
            });
            child.once("error", () => {
                this.exited = true;
                resolve();
            });
        });
        st.nspawnPid = child.pid;
        await writeState(st);

        const deadline = t0 + bootTimeoutMs;
        const fail = async (why: string): Promise<never> => {
            const console = await fsp.readFile(this.logPath, "utf8").catch(() => "");
            throw new Error(`testhost ${this.name}: ${why}\n--- console (tail) ---\n${console.slice(-4000)}`);
        };

        // 1. leader PID
        while (this.leaderPid <= 0) {
            if (this.exited) await fail("systemd-nspawn exited during boot");
            if (Date.now() > deadline) await fail("timed out waiting for container init");
            this.leaderPid = (await findLeader(path.join(NETNS_DIR, st.netns))) ?? 0;
            if (this.leaderPid <= 0) await sleep(50);
        }
        st.leaderPid = this.leaderPid;
        await writeState(st);

        // 2. disks: the loop node is bound under its own name (so blkid's
        //    /proc/partitions scan for UUID= finds it); /dev/xvdf etc. link to it,
        //    as udev links /dev/xvdf -> /dev/nvme1n1 on EC2 Nitro.
        for (let i = 0; i < this.loopDevices.length; i++) {
            const dev = `/dev/xvd${String.fromCharCode("f".charCodeAt(0) + i)}`;
            const loop = this.loopDevices[i] as string;
            let ok = false;
            while (!ok) {
                const r = await this.exec(["ln", "-sfn", loop, dev]);
                ok = r.code === 0;
                if (!ok) {
                    if (this.exited) await fail("systemd-nspawn exited during boot");
                    if (Date.now() > deadline) await fail(`cannot create ${dev}: ${r.stderr}`);
                    await sleep(100);
                }
            }
            this.diskDevices.push(dev);
        }

        // 3. systemd up
        for (;;) {
            if (this.exited) await fail("systemd-nspawn exited during boot");
            if (Date.now() > deadline) {
                const jobs = await this.exec(["systemctl", "list-jobs", "--no-pager"]).catch(() => undefined);
                await fail(`timed out waiting for systemd (jobs: ${jobs?.stdout ?? "?"})`);
            }
            const r = await this.exec(["systemctl", "is-system-running"]);
            const s = r.stdout.trim();
            if (s === "running" || s === "degraded") break;
            await sleep(100);
        }

        // 4. sshd answers with our key
        for (;;) {
            if (this.exited) await fail("systemd-nspawn exited during boot");
            const r = await this.ssh(["true"], { timeoutMs: 10_000 });
            if (r.code === 0) break;
            if (Date.now() > deadline) await fail(`timed out waiting for ssh: ${r.stderr}`);
            await sleep(100);
        }
        this.bootMs = Date.now() - t0;
    }

    stop(): Promise<void> {
        this.stopping ??= this.doStop().finally(() => live.delete(this.name));
        return this.stopping;
    }

    private async doStop(): Promise<void> {
        const errors: string[] = [];
        const child = this.nspawn;
        if (child && !this.exited && child.pid !== undefined) {
            // SIGTERM makes nspawn ask the container's systemd to power off.
            try {
                process.kill(child.pid, "SIGTERM");
            } catch {
                /* already gone */
            }
            if (!(await settlesWithin(this.nspawnExit, 15_000))) {
                const log = await fsp.readFile(this.logPath, "utf8").catch(() => "");
                process.stderr.write(
                    `[testhost] ${this.name}: no clean poweroff within 15 s, killing. Console tail:\n${log.slice(-1500)}\n`,
                );
                if (this.leaderPid > 0) killQuiet(this.leaderPid);
                killQuiet(child.pid);
                await settlesWithin(this.nspawnExit, 5_000);
            }
        }
        // Any survivor in the container's PID namespace dies with its init.
        if (this.leaderPid > 0 && pidAlive(this.leaderPid)) killQuiet(this.leaderPid);
        if (this.leaderPid > 0) await waitGone(this.leaderPid, 10_000);
        this.leaderPid = 0;
        try {
            await teardownResources(this.state);
        } catch (e: unknown) {
            errors.push(errorMessage(e));
        }
        if (errors.length > 0) throw new Error(`testhost ${this.name}: stop: ${errors.join("; ")}`);
    }
}

/** Waits until pid is gone or a zombie (its namespace is then torn down). */
async function waitGone(pid: number, ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
        let status: string;
        try {
            status = await fsp.readFile(`/proc/${pid}/status`, "utf8");
        } catch {
            return;
        }
        if (/^State:\s*Z/m.test(status)) return;
        await sleep(50);
    }
}

function killQuiet(pid: number): void {
    try {
        process.kill(pid, "SIGKILL");
    } catch {
        /* gone */
    }
}

async function isMounted(p: string): Promise<boolean> {
    const mounts = await fsp.readFile("/proc/self/mounts", "utf8");
    return mounts.split("\n").some((l) => l.split(" ")[1] === p);
}

/** Unmount, detach, delete netns/veth and the per-host dir. Idempotent. */
async function teardownResources(st: HostState): Promise<void> {
    for (let i = 0; i < 50 && (await isMounted(st.merged)); i++) {
        const r = await run(["umount", st.merged], { check: false });
        if (r.code !== 0) {
            if (i >= 20) await run(["umount", "--lazy", st.merged], { check: false });
            await sleep(100);
        }
    }
    for (const loop of st.loopDevices) {
        await run(["losetup", "--detach", loop], { check: false });
    }
    if (await exists(path.join(NETNS_DIR, st.netns))) {
        await run(["ip", "netns", "delete", st.netns], { check: false });
    }
    if (st.hostVeth && (await hostLinkNames()).has(st.hostVeth)) {
        await run(["ip", "link", "delete", st.hostVeth], { check: false });
    }
    await removeBridgeIfUnused();
    await fsp.rm(path.join("/run/systemd/nspawn/propagate", st.machine), { recursive: true, force: true });
    if (!(await isMounted(st.merged))) {
        await fsp.rm(st.dir, { recursive: true, force: true });
    }
}

function teardownSync(st: HostState): void {
    if (st.leaderPid) killQuiet(st.leaderPid);
    if (st.nspawnPid) killQuiet(st.nspawnPid);
    runSyncQuiet(["umount", "--lazy", st.merged]);
    for (const loop of st.loopDevices) runSyncQuiet(["losetup", "--detach", loop]);
    runSyncQuiet(["ip", "netns", "delete", st.netns]);
    if (st.hostVeth) runSyncQuiet(["ip", "link", "delete", st.hostVeth]);
    try {
        if (fs.readdirSync(`/sys/class/net/${BRIDGE}/brif`).length === 0) runSyncQuiet(["ip", "link", "delete", BRIDGE]);
    } catch {
        /* no bridge */
    }
    try {
        fs.rmSync(st.dir, { recursive: true, force: true });
    } catch {
        /* best effort */
    }
}

/**
 * Boots a fresh container from an overlay of the cached image and waits for
 * systemd (running/degraded) and sshd. Several may run at once.
 */
export async function startHost(opts: StartHostOptions): Promise<TestHost> {
    if (!NAME_RE.test(opts.name)) {
        throw new Error(`testhost: bad name ${JSON.stringify(opts.name)} (want ${NAME_RE.source})`);
    }
    if (live.has(opts.name)) throw new Error(`testhost: host ${opts.name} is already running`);
    installExitHandlers();
    const rootfs = await ensureBaseImage();
    await cleanupStale(opts.name);
    const host = new HostImpl(opts.name);
    live.set(opts.name, host);
    try {
        await host.start(rootfs, opts.disks ?? [], opts.bootTimeoutMs ?? 120_000);
    } catch (e: unknown) {
        await host.stop().catch(() => undefined);
        throw e;
    }
    return host;
}

/** Stops every host this process started. */
export async function stopAllHosts(): Promise<void> {
    const results = await Promise.allSettled([...live.values()].map((h) => h.stop()));
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed.length > 0) throw new Error(failed.map((f) => errorMessage(f.reason)).join("\n"));
}

/** Names of hosts this process is running. */
export function liveHosts(): string[] {
    return [...live.keys()];
}

function readStateSync(dir: string): HostState | undefined {
    try {
        return JSON.parse(fs.readFileSync(stateFile(dir), "utf8")) as HostState;
    } catch {
        return undefined;
    }
}

/**
 * Removes leftovers of earlier crashed runs: per-host dirs (with their
 * nspawn process, container, overlay mount, loop devices, netns, veth)
 * whose owning process is dead, and orphaned mmth- netns/veths.
 * With `onlyName`, handles just that host name.
 */
export async function cleanupStale(onlyName?: string): Promise<void> {
    const keep = new Set<string>(); // netns / veth names owned by live processes
    const entries = await fsp.readdir(RUN_ROOT).catch(() => [] as string[]);
    for (const entry of entries) {
        if (!entry.startsWith(PREFIX) || entry.startsWith(`${PREFIX}keys-`)) continue;
        const dir = path.join(RUN_ROOT, entry);
        const st = readStateSync(dir);
        const ownerAlive = st !== undefined && st.ownerPid !== process.pid && pidAlive(st.ownerPid);
        const mine = st !== undefined && st.ownerPid === process.pid && live.has(st.name);
        if (ownerAlive || mine) {
            if (st) {
                keep.add(st.netns);
                if (st.hostVeth) keep.add(st.hostVeth);
            }
            if (onlyName !== undefined && st?.name === onlyName) {
                throw new Error(`testhost: host ${onlyName} is in use by pid ${st.ownerPid}`);
            }
            continue;
        }
        if (onlyName !== undefined && entry !== `${PREFIX}${onlyName}`) continue;
        if (st) {
            if (st.nspawnPid && isNspawn(st.nspawnPid)) killQuiet(st.nspawnPid);
            if (st.leaderPid && pidAlive(st.leaderPid)) killQuiet(st.leaderPid);
            if (st.leaderPid) await waitGone(st.leaderPid, 10_000);
            await teardownResources(st);
        } else {
            const merged = path.join(dir, "root");
            if (await isMounted(merged)) await run(["umount", "--lazy", merged], { check: false });
            await fsp.rm(dir, { recursive: true, force: true });
        }
    }
    // Stray nspawn processes of ours (e.g. state file never written).
    for (const pid of await nspawnPids()) {
        const machine = nspawnMachine(pid);
        if (!machine) continue;
        const st = readStateSync(path.join(RUN_ROOT, machine));
        if (st && pidAlive(st.ownerPid) && (st.ownerPid !== process.pid || live.has(st.name))) continue;
        if (onlyName !== undefined && machine !== `${PREFIX}${onlyName}`) continue;
        killQuiet(pid);
    }
    if (onlyName !== undefined) {
        keep.clear();
        for (const h of live.values()) {
            keep.add(h.state.netns);
            keep.add(h.state.hostVeth);
        }
        const ns = `${PREFIX}${onlyName}`;
        if (await exists(path.join(NETNS_DIR, ns))) await run(["ip", "netns", "delete", ns], { check: false });
        return;
    }
    for (const ns of await fsp.readdir(NETNS_DIR).catch(() => [] as string[])) {
        if (ns.startsWith(PREFIX) && !keep.has(ns)) await run(["ip", "netns", "delete", ns], { check: false });
    }
    for (const link of await hostLinkNames()) {
        if (link.startsWith(PREFIX) && link !== BRIDGE && !keep.has(link)) {
            await run(["ip", "link", "delete", link], { check: false });
        }
    }
    await removeBridgeIfUnused();
}

function cmdline(pid: number): string[] {
    try {
        return fs
            .readFileSync(`/proc/${pid}/cmdline`, "utf8")
            .split("\0")
            .filter((s) => s.length > 0);
    } catch {
        return [];
    }
}

function isNspawn(pid: number): boolean {
    const argv = cmdline(pid);
    return argv.length > 0 && path.basename(argv[0] ?? "") === "systemd-nspawn";
}

function nspawnMachine(pid: number): string | undefined {
    for (const a of cmdline(pid)) {
        const m = /^--machine=(mmth-[a-z0-9-]+)$/.exec(a);
        if (m) return m[1];
    }
    return undefined;
}

async function nspawnPids(): Promise<number[]> {
    const pids: number[] = [];
    for (const entry of await fsp.readdir("/proc")) {
        if (/^\d+$/.test(entry) && isNspawn(Number(entry))) pids.push(Number(entry));
    }
    return pids;
}

// ---------------------------------------------------------------------------
// Exit handling

let handlersInstalled = false;

function installExitHandlers(): void {
    if (handlersInstalled) return;
    handlersInstalled = true;
    process.on("exit", () => {
        for (const h of live.values()) teardownSync(h.state);
        live.clear();
        if (sessionKeyDir) fs.rmSync(sessionKeyDir, { recursive: true, force: true });
    });
    for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
        process.once(sig, () => {
            const code = 128 + (os.constants.signals[sig] ?? 0);
            const force = setTimeout(() => process.exit(code), 30_000);
            stopAllHosts()
                .catch(() => undefined)
                .finally(() => {
                    clearTimeout(force);
                    process.exit(code);
                });
        });
    }
}
