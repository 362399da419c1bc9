// The endpoint check that ends `pulumi up`: polls https://<domain>/api/v4/system/ping with the certificate verified,
// and when it does not answer in time, observes DNS, ports, TLS and the server's journal and explains the likely cause.
//
// This file is also the program the `VerifiedEndpoint` component runs on the operator's machine (transpiled and fed
// to `node -` on standard input), so it imports nothing but Node's own modules.
import { spawn } from "node:child_process";
import * as dns from "node:dns";
import * as fs from "node:fs";
import * as https from "node:https";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import * as tls from "node:tls";

export interface EndpointCheck {
    readonly domain: string;
    /** The Elastic IP the domain must resolve to, or the load balancer's DNS name (resolved when diagnosing). */
    readonly expectedAddress: string;
    /** PEM of the only CA to trust; none: Node's public roots. */
    readonly caPem?: string;
    readonly timeoutMs: number;
    readonly intervalMs?: number;
    /** "ip" or "ip:port" of a DNS server to ask instead of the system resolver. */
    readonly resolver?: string;
    /** Fetches the server's recent logs for the diagnosis. */
    readonly journal?: () => Promise<string>;
}

export type PortState = "open" | "refused" | "timeout" | `error ${string}`;

/** What the diagnosis is made from; gathered by `observe`, interpreted by the pure `diagnose`. */
export interface Observations {
    readonly dns: { readonly resolver: string; readonly addresses: readonly string[]; readonly error?: string };
    /**
     * When the expected address is a DNS name (the load balancer of `tlsMode: alb`, which has no fixed IP): the
     * addresses that name resolves to; the domain must resolve to one of them.
     */
    readonly expectedName?: { readonly addresses: readonly string[]; readonly error?: string };
    readonly port80: PortState;
    readonly port443: PortState;
    /** The ping requested from the expected address directly (SNI and Host set to the domain), so DNS cannot mask it. */
    readonly ping: {
        readonly status?: number;
        readonly body?: string;
        /** Node's error code for TLS verification or connection failures. */
        readonly errorCode?: string;
        readonly error?: string;
        readonly issuer?: string;
    };
    readonly journal?: string;
}

export interface Finding {
    readonly problem: string;
    readonly fix: string;
}

export const JOURNAL_COMMAND =
    "sudo journalctl --no-pager -o short-iso -n 80 -u mattermost -u nginx -u certbot -u mattermost-certificate-retry; " +
    "sudo tail -n 40 /var/log/letsencrypt/letsencrypt.log 2>/dev/null";

const PING_PATH = "/api/v4/system/ping";

function pingAnsweredOk(status: number | undefined, body: string | undefined): boolean {
    return status === 200 && body !== undefined && /"status"\s*:\s*"OK"/.test(body);
}

/** The likely causes, most likely first. Pure. */
export function diagnose(domain: string, expectedAddress: string, o: Observations): Finding[] {
    const findings: Finding[] = [];
    const journal = o.journal ?? "";
    if (o.dns.error !== undefined || o.dns.addresses.length === 0) {
        findings.push({
            problem: `DNS: ${domain} does not resolve (asked ${o.dns.resolver}: ${o.dns.error ?? "no A record"}).`,
            fix: `Create an A record ${domain} -> ${expectedAddress} (or set mattermost:route53ZoneId so the stack manages it), then wait for resolvers to see it.`,
        });
    } else if (o.expectedName !== undefined) {
        if (!o.dns.addresses.some((a) => o.expectedName?.addresses.includes(a))) {
            findings.push({
                problem: `DNS: ${domain} resolves to ${o.dns.addresses.join(", ")} (asked ${o.dns.resolver}), not to the load balancer ${expectedAddress} (${o.expectedName.error ?? o.expectedName.addresses.join(", ")}).`,
                fix: `Point ${domain} at ${expectedAddress} with a CNAME (or a Route53 alias record; set mattermost:route53ZoneId so the stack manages it); the load balancer's addresses change, so never use an A record with its current IPs.`,
            });
        }
    } else if (!o.dns.addresses.includes(expectedAddress)) {
        findings.push({
            problem: `DNS: ${domain} resolves to ${o.dns.addresses.join(", ")} (asked ${o.dns.resolver}), not to the server's Elastic IP ${expectedAddress}.`,
            fix: `Point the A record for ${domain} at ${expectedAddress}; after a change, resolvers keep the old answer until its TTL runs out.`,
        });
    }
    if (o.port80 === "timeout") {
        findings.push({
            problem: `Port 80 on ${expectedAddress} does not answer from here (connection timed out: packets are dropped on the way).`,
            fix: "Let's Encrypt's HTTP-01 challenge and the http->https redirect need port 80 open from the internet: a corporate or cloud firewall between the internet and the server blocks it; the stack's security group opens it.",
        });
    } else if (o.port80 === "refused") {
        findings.push({
            problem: `Port 80 on ${expectedAddress} refuses connections: nothing listens there.`,
            fix: "nginx (tlsMode nginx) or Mattermost (tlsMode direct) is not running; see the journal below.",
        });
    }
    if (o.port443 === "timeout") {
        findings.push({
            problem: `Port 443 on ${expectedAddress} does not answer from here (connection timed out).`,
            fix: "A firewall between you and the server drops HTTPS; the stack's security group opens 443.",
        });
    } else if (o.port443 === "refused") {
        findings.push({
            problem: `Nothing listens on port 443 on ${expectedAddress}.`,
            fix: "With tlsMode nginx the TLS site is enabled only once certbot has the certificate (see certbot in the journal); with tlsMode direct Mattermost is not running.",
        });
    }
    if (/too many (certificates|failed authorizations|new orders)|rateLimited/i.test(journal)) {
        findings.push({
            problem: "Let's Encrypt refused the certificate: a rate limit was hit.",
            fix: "Wait for the limit to reset (see the time in the message), and test with `pulumi config set mattermost:acmeServer staging` (plus mattermost:endpointCaBundle) before going back to production.",
        });
    }
    const code = o.ping.errorCode ?? "";
    if (/CERT|SELF_SIGNED|UNABLE_TO|ALTNAME/.test(code)) {
        findings.push({
            problem: `TLS: the certificate served for ${domain}${o.ping.issuer ? ` (issued by ${o.ping.issuer})` : ""} is not trusted here: ${code}.`,
            fix: /STAGING|Pebble|pebble/i.test(o.ping.issuer ?? "")
                ? "It comes from a test CA: set mattermost:endpointCaBundle to that CA's root, or use acmeServer production."
                : "For Let's Encrypt staging or a private ACME CA set mattermost:endpointCaBundle to the issuing root; for an own certificate, check the chain (server certificate first, then intermediates) and that it covers the domain.",
        });
    }
    if (o.ping.status === 502 || o.ping.status === 504) {
        findings.push({
            problem: `The proxy answers ${o.ping.status}: Mattermost behind it (127.0.0.1:8065) is not answering.`,
            fix: "Mattermost is stopped or still starting: `sudo systemctl status mattermost` and its journal below tell which.",
        });
    } else if (o.ping.status !== undefined && !pingAnsweredOk(o.ping.status, o.ping.body)) {
        findings.push({
            problem: `The ping answered ${o.ping.status}: ${(o.ping.body ?? "").slice(0, 200)}`,
            fix: "Mattermost is up but unhealthy (often its database); see the journal below.",
        });
    }
    if (findings.length === 0) {
        findings.push(
            pingAnsweredOk(o.ping.status, o.ping.body)
                ? {
                      problem: `The server answers at ${expectedAddress}, but not through ${domain} as resolved here.`,
                      fix: "DNS was still changing while the check ran; run `pulumi up` again.",
                  }
                : {
                      problem: "Nothing conclusive: DNS and ports look right.",
                      fix: "The server may still be starting; raise mattermost:endpointTimeoutSeconds, and read the journal below.",
                  },
        );
    }
    return findings;
}

/** The message `pulumi up` fails with. Pure. */
export function formatDiagnosis(check: Pick<EndpointCheck, "domain" | "expectedAddress" | "timeoutMs">, o: Observations): string {
    const lines = [
        `https://${check.domain}${PING_PATH} did not answer within ${Math.round(check.timeoutMs / 1000)} s.`,
        "",
        "Likely cause, most likely first:",
    ];
    diagnose(check.domain, check.expectedAddress, o).forEach((f, i) => {
        lines.push(`  ${i + 1}. ${f.problem}`, `     Fix: ${f.fix}`);
    });
    lines.push(
        "",
        "Observed:",
        `  DNS (${o.dns.resolver}): ${o.dns.error ?? (o.dns.addresses.join(", ") || "no answer")}`,
        `  port 80: ${o.port80}; port 443: ${o.port443}`,
        `  ping via ${check.expectedAddress}: ${
            o.ping.status !== undefined ? `HTTP ${o.ping.status}` : `${o.ping.errorCode ?? ""} ${o.ping.error ?? ""}`.trim()
        }`,
    );
    if (o.journal !== undefined) {
        const tail = o.journal.trim().split("\n").slice(-60);
        lines.push("", "Server journal (mattermost, nginx, certbot), last lines:", ...tail.map((l) => `  ${l}`));
    }
    return lines.join("\n");
}

async function resolveDomain(domain: string, resolver?: string): Promise<Observations["dns"]> {
    try {
        if (resolver !== undefined) {
            const r = new dns.promises.Resolver({ timeout: 2000, tries: 2 });
            r.setServers([resolver]);
            return { resolver: `DNS server ${resolver}`, addresses: await r.resolve4(domain) };
        }
        const answers = await dns.promises.lookup(domain, { all: true, family: 4 });
        return {
            resolver: `the system resolver (${dns.getServers().join(", ") || "/etc/hosts"})`,
            addresses: answers.map((a) => a.address),
        };
    } catch (err) {
        const e = err as NodeJS.ErrnoException;
        return {
            resolver: resolver !== undefined ? `DNS server ${resolver}` : "the system resolver",
            addresses: [],
            error: e.code ?? e.message,
        };
    }
}

function probePort(address: string, port: number, timeoutMs = 3000): Promise<PortState> {
    return new Promise((resolve) => {
        const socket = net.connect({ host: address, port });
        const done = (state: PortState) => {
            socket.destroy();
            resolve(state);
        };
        socket.setTimeout(timeoutMs, () => done("timeout"));
        socket.once("connect", () => done("open"));
        socket.once("error", (err: NodeJS.ErrnoException) => {
            if (err.code === "ECONNREFUSED") done("refused");
            else if (err.code === "ETIMEDOUT" || err.code === "EHOSTUNREACH") done("timeout");
            else done(`error ${err.code ?? err.message}`);
        });
    });
}

/** GET the ping at `address` with SNI and Host set to the domain, verifying the certificate. */
function requestPing(domain: string, address: string, caPem: string | undefined, timeoutMs = 5000): Promise<Observations["ping"]> {
    return new Promise((resolve) => {
        const req = https.get(
            {
                host: address,
                servername: net.isIP(domain) ? undefined : domain,
                headers: { Host: domain },
                path: PING_PATH,
                ca: caPem,
                timeout: timeoutMs,
                agent: false,
                checkServerIdentity: (_host, cert) => tls.checkServerIdentity(domain, cert),
            },
            (res) => {
                let body = "";
                res.setEncoding("utf8");
                res.on("data", (chunk: string) => (body = (body + chunk).slice(0, 4096)));
                res.on("end", () => resolve({ status: res.statusCode, body }));
            },
        );
        req.on("timeout", () => req.destroy(Object.assign(new Error("timed out"), { code: "ETIMEDOUT" })));
        req.on("error", (err: NodeJS.ErrnoException) => resolve({ errorCode: err.code, error: err.message }));
    });
}

/** The issuer of the certificate the server presents, read without verifying it (for the diagnosis only). */
function peekIssuer(domain: string, address: string): Promise<string | undefined> {
    return new Promise((resolve) => {
        const socket = tls.connect({
            host: address,
            port: 443,
            servername: net.isIP(domain) ? undefined : domain,
            rejectUnauthorized: false,
        });
        const timer = setTimeout(() => {
            socket.destroy();
            resolve(undefined);
        }, 3000);
        socket.once("secureConnect", () => {
            clearTimeout(timer);
            const issuer = socket.getPeerCertificate().issuer as Record<string, string> | undefined;
            socket.destroy();
            resolve(issuer ? [issuer.CN, issuer.O].filter(Boolean).join(", ") : undefined);
        });
        socket.once("error", () => {
            clearTimeout(timer);
            resolve(undefined);
        });
    });
}

export async function observe(check: EndpointCheck): Promise<Observations> {
    const [dnsResult, port80, port443, ping] = await Promise.all([
        resolveDomain(check.domain, check.resolver),
        probePort(check.expectedAddress, 80),
        probePort(check.expectedAddress, 443),
        requestPing(check.domain, check.expectedAddress, check.caPem),
    ]);
    const issuer = ping.errorCode !== undefined && port443 === "open" ? await peekIssuer(check.domain, check.expectedAddress) : undefined;
    let expectedName: Observations["expectedName"];
    if (net.isIP(check.expectedAddress) === 0) {
        const resolved = await resolveDomain(check.expectedAddress, check.resolver);
        expectedName = { addresses: resolved.addresses, error: resolved.error };
    }
    let journal: string | undefined;
    if (check.journal) {
        journal = await check.journal().catch((err: Error) => `(could not read the journal: ${err.message})`);
    }
    return { dns: dnsResult, expectedName, port80, port443, ping: { ...ping, issuer: issuer ?? ping.issuer }, journal };
}

/** One attempt the way a browser goes: resolve the domain, then connect, verify and GET the ping at each address. */
async function attempt(check: EndpointCheck): Promise<boolean> {
    const resolved = await resolveDomain(check.domain, check.resolver);
    for (const address of resolved.addresses) {
        const ping = await requestPing(check.domain, address, check.caPem);
        if (pingAnsweredOk(ping.status, ping.body)) return true;
    }
    return false;
}

export type CheckResult = { ok: true; attempts: number } | { ok: false; attempts: number; observations: Observations; message: string };

/** Polls until the endpoint answers or the time is up; then observes and diagnoses. */
export async function waitForEndpoint(check: EndpointCheck): Promise<CheckResult> {
    const deadline = Date.now() + check.timeoutMs;
    let attempts = 0;
    for (;;) {
        attempts++;
        if (await attempt(check)) return { ok: true, attempts };
        if (Date.now() + (check.intervalMs ?? 5000) >= deadline) break;
        await new Promise((r) => setTimeout(r, check.intervalMs ?? 5000));
    }
    const observations = await observe(check);
    return { ok: false, attempts, observations, message: formatDiagnosis(check, observations) };
}

/** Reads the journal over SSH with the deploy key (the `ssh` client of the machine running `pulumi up`). */
function sshJournal(host: string, user: string, privateKey: string): () => Promise<string> {
    return () =>
        new Promise((resolve, reject) => {
            const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mm-verify-"));
            const keyFile = path.join(dir, "key");
            fs.writeFileSync(keyFile, privateKey.endsWith("\n") ? privateKey : `${privateKey}\n`, { mode: 0o600 });
            // Read-only commands on a host we just created: its key is not known yet, so it is not checked.
            const child = spawn(
                "ssh",
                [
                    "-i",
                    keyFile,
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "StrictHostKeyChecking=no",
                    "-o",
                    "UserKnownHostsFile=/dev/null",
                    "-o",
                    "ConnectTimeout=10",
                    "-o",
                    "LogLevel=ERROR",
                    `${user}@${host}`,
                    JOURNAL_COMMAND,
                ],
                { stdio: ["ignore", "pipe", "pipe"] },
            );
            let out = "";
            let err = "";
            child.stdout.on("data", (c: Buffer) => (out += c.toString()));
            child.stderr.on("data", (c: Buffer) => (err += c.toString()));
            child.on("error", (e) => {
                fs.rmSync(dir, { recursive: true, force: true });
                reject(e);
            });
            child.on("close", (code) => {
                fs.rmSync(dir, { recursive: true, force: true });
                if (code === 0 || out.length > 0) resolve(out);
                else reject(new Error(`ssh exited ${code}: ${err.trim()}`));
            });
        });
}

/**
 * Entry point when run by the VerifiedEndpoint command; parameters come from MM_VERIFY_* variables (DOMAIN, ADDRESS,
 * TIMEOUT_SECONDS, CA, SSH_HOST/USER/KEY, and RESOLVER to ask one DNS server instead of the system's).
 */
export async function runFromEnvironment(env: NodeJS.ProcessEnv): Promise<number> {
    const domain = env.MM_VERIFY_DOMAIN ?? "";
    const expectedAddress = env.MM_VERIFY_ADDRESS ?? "";
    const timeoutMs = Number(env.MM_VERIFY_TIMEOUT_SECONDS ?? "600") * 1000;
    const started = Date.now();
    const result = await waitForEndpoint({
        domain,
        expectedAddress,
        timeoutMs,
        caPem: env.MM_VERIFY_CA || undefined,
        resolver: env.MM_VERIFY_RESOLVER || undefined,
        journal:
            env.MM_VERIFY_SSH_HOST && env.MM_VERIFY_SSH_KEY
                ? sshJournal(env.MM_VERIFY_SSH_HOST, env.MM_VERIFY_SSH_USER ?? "ubuntu", env.MM_VERIFY_SSH_KEY)
                : undefined,
    });
    if (result.ok) {
        process.stdout.write(
            `https://${domain}${PING_PATH} answered OK with a verified certificate after ${Math.round((Date.now() - started) / 1000)} s (${result.attempts} attempts)\n`,
        );
        return 0;
    }
    process.stderr.write(result.message + "\n");
    return 1;
}

if (process.env.MM_VERIFY_RUN === "1") {
    runFromEnvironment(process.env).then(
        (code) => process.exit(code),
        (err: Error) => {
            process.stderr.write(`endpoint check failed to run: ${err.stack ?? err.message}\n`);
            process.exit(2);
        },
    );
}
