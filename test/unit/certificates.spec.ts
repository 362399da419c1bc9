// Unit tests for components/certificates.ts. All keys and certificates are generated here with the
// openssl CLI into a temporary directory (no private keys are committed).

import { strict as assert } from "node:assert";
import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { rootCertificates } from "node:tls";

import { certificateCoversName, chainsToRoot, checkOwnCertificate, parsePemCertificates } from "../../components/certificates";
import { issuePair, selfSignedPair } from "./pki";

const CHAIN = "mattermost:certificateChain";
const KEY = "mattermost:certificateKey";
const DAY = 24 * 60 * 60 * 1000;

let dir = "";
let serial = 0x1000;

function openssl(args: string[], env: Record<string, string> = {}): void {
    execFileSync("openssl", args, {
        cwd: dir,
        env: { ...process.env, SAN: "DNS:unused.invalid", ...env },
        stdio: ["ignore", "pipe", "pipe"],
    });
}

function read(file: string): string {
    return fs.readFileSync(path.join(dir, file), "utf8");
}

function ecKey(name: string): string {
    openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", `${name}.key`]);
    return `${name}.key`;
}

/** openssl ca -startdate/-enddate format (GeneralizedTime). */
function asn1Time(date: Date): string {
    return date
        .toISOString()
        .replace(/[-:T]/g, "")
        .replace(/\.\d{3}Z$/, "Z");
}

/**
 * Issues a certificate for `key` signed by `issuer` (or self-signed when issuer is undefined) with
 * `openssl ca`, which allows explicit start and end dates.
 */
function issue(opts: {
    name: string;
    key: string;
    cn: string;
    ext: string;
    san?: string;
    issuer?: string;
    start?: Date;
    end?: Date;
}): string {
    const now = Date.now();
    const start = opts.start ?? new Date(now - DAY);
    const end = opts.end ?? new Date(now + 365 * DAY);
    openssl(["req", "-new", "-config", "openssl.cnf", "-key", opts.key, "-subj", `/CN=${opts.cn}`, "-out", `${opts.name}.csr`]);
    fs.writeFileSync(path.join(dir, "serial"), (serial++).toString(16) + "\n");
    const signer =
        opts.issuer === undefined ? ["-selfsign", "-keyfile", opts.key] : ["-cert", `${opts.issuer}.pem`, "-keyfile", `${opts.issuer}.key`];
    openssl(
        [
            "ca",
            "-batch",
            "-notext",
            "-config",
            "openssl.cnf",
            ...signer,
            "-in",
            `${opts.name}.csr`,
            "-out",
            `${opts.name}.pem`,
            "-extensions",
            opts.ext,
            "-startdate",
            asn1Time(start),
            "-enddate",
            asn1Time(end),
        ],
        { SAN: opts.san ?? "DNS:unused.invalid" },
    );
    return read(`${opts.name}.pem`);
}

const CONFIG = `
[ca]
default_ca = ca_default
[ca_default]
dir = .
database = ./index.txt
new_certs_dir = ./newcerts
serial = ./serial
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no
[policy_any]
commonName = supplied
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[root_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[int_ext]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[leaf_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = $ENV::SAN
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = $ENV::SAN
[nosan_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
`;

// Fixtures, filled in by before().
const pem: Record<string, string> = {};
const key: Record<string, string> = {};

interface Case {
    name: string;
    chain: () => string;
    key: () => string;
    domain?: string;
    now?: () => Date;
    /** Expected errors: each names a config key and contains a phrase (case-insensitive). */
    errors?: Array<[string, RegExp]>;
    warnings?: Array<[string, RegExp]>;
}

describe("certificates", function () {
    this.timeout(60_000);
    let started = 0;

    before(function () {
        started = Date.now();
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "mm-certs-"));
        fs.writeFileSync(path.join(dir, "openssl.cnf"), CONFIG);
        fs.writeFileSync(path.join(dir, "index.txt"), "");
        fs.mkdirSync(path.join(dir, "newcerts"));
        const now = Date.now();

        // Root and intermediate CAs.
        ecKey("root");
        pem.root = issue({
            name: "root",
            key: "root.key",
            cn: "Test Root CA",
            ext: "root_ext",
            end: new Date(now + 3650 * DAY),
        });
        ecKey("int");
        pem.int = issue({
            name: "int",
            key: "int.key",
            cn: "Test Intermediate CA",
            ext: "int_ext",
            issuer: "root",
            end: new Date(now + 1825 * DAY),
        });
        key.int = read("int.key");
        ecKey("other");
        pem.otherRoot = issue({ name: "other", key: "other.key", cn: "Unrelated CA", ext: "root_ext" });
        ecKey("oldint");
        pem.expiredInt = issue({
            name: "oldint",
            key: "oldint.key",
            cn: "Expired Intermediate CA",
            ext: "int_ext",
            issuer: "root",
            start: new Date(now - 400 * DAY),
            end: new Date(now - 10 * DAY),
        });

        // Leaves.
        const leaf = (name: string, san: string, extra: Partial<Parameters<typeof issue>[0]> = {}) => {
            const k = extra.key ?? ecKey(name);
            pem[name] = issue({
                name,
                key: k,
                cn: san.split(",")[0].replace(/^DNS:/, ""),
                ext: "leaf_ext",
                san,
                issuer: "int",
                ...extra,
            });
            key[name] = read(k);
        };
        leaf("chat", "DNS:chat.example.com");
        leaf("wild", "DNS:*.example.com");
        leaf("other", "DNS:other.example.org,DNS:www.other.example.org");
        leaf("expired", "DNS:chat.example.com", { start: new Date(now - 30 * DAY), end: new Date(now - DAY) });
        leaf("future", "DNS:chat.example.com", { start: new Date(now + 2 * DAY), end: new Date(now + 90 * DAY) });
        leaf("soon", "DNS:chat.example.com", { end: new Date(now + 10 * DAY) });
        leaf("client", "DNS:chat.example.com", { ext: "client_ext" });
        leaf("underOldInt", "DNS:chat.example.com", { issuer: "oldint" });
        leaf("odd", "DNS:f*.example.com,DNS:a.*.example.net,DNS:*.com,DNS:Mixed.Example.COM.", { key: ecKey("odd") });
        leaf("cnMismatch", "DNS:san.example.com", { cn: "cn.example.com" });
        pem.nosan = issue({ name: "nosan", key: "odd.key", cn: "nosan.example.com", ext: "nosan_ext", issuer: "int" });

        // RSA leaf, and its key in encrypted PKCS#8 and encrypted traditional forms.
        openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "rsa.key"]);
        leaf("rsa", "DNS:chat.example.com", { key: "rsa.key" });
        openssl(["pkey", "-in", "rsa.key", "-aes256", "-passout", "pass:x", "-out", "rsa-pkcs8-enc.key"]);
        key.encPkcs8 = read("rsa-pkcs8-enc.key");
        openssl(["rsa", "-in", "rsa.key", "-aes256", "-traditional", "-passout", "pass:x", "-out", "rsa-trad-enc.key"]);
        key.encTraditional = read("rsa-trad-enc.key");
        openssl(["ec", "-in", "chat.key", "-aes128", "-passout", "pass:x", "-out", "ec-trad-enc.key"]);
        key.encEcTraditional = read("ec-trad-enc.key");
        openssl(["pkey", "-in", "chat.key", "-pubout", "-out", "chat.pub"]);
        key.chatPublic = read("chat.pub");
        openssl(["ec", "-in", "chat.key", "-out", "chat-sec1.key"]);
        key.chatSec1 = read("chat-sec1.key");

        // Self-signed, non-CA leaf.
        pem.selfSigned = issue({
            name: "self",
            key: "chat.key",
            cn: "chat.example.com",
            ext: "leaf_ext",
            san: "DNS:chat.example.com",
        });
        console.log(`      (generated fixtures in ${Date.now() - started} ms)`);
    });

    after(function () {
        if (dir !== "") fs.rmSync(dir, { recursive: true, force: true });
        console.log(`      (suite ran in ${Date.now() - started} ms)`);
    });

    describe("parsePemCertificates", function () {
        it("splits a bundle in order, tolerating CRLF and text between blocks", function () {
            const bundle = `subject=chat\r\n${pem.chat.replace(/\n/g, "\r\n")}\r\nissuer stuff\n${pem.int}\n${pem.root}`;
            const blocks = parsePemCertificates(bundle);
            assert.equal(blocks.length, 3);
            assert.equal(new X509Certificate(blocks[0]).fingerprint256, new X509Certificate(pem.chat).fingerprint256);
            assert.equal(new X509Certificate(blocks[1]).fingerprint256, new X509Certificate(pem.int).fingerprint256);
            assert.equal(new X509Certificate(blocks[2]).fingerprint256, new X509Certificate(pem.root).fingerprint256);
        });
        it("returns nothing for non-PEM input", function () {
            assert.deepEqual(parsePemCertificates("hello"), []);
            assert.deepEqual(parsePemCertificates(""), []);
        });
    });

    describe("certificateCoversName", function () {
        const cases: Array<[string, string, boolean]> = [
            ["chat", "chat.example.com", true],
            ["chat", "CHAT.Example.com", true],
            ["chat", "chat.example.com.", true],
            ["chat", "example.com", false],
            ["chat", "xchat.example.com", false],
            ["wild", "chat.example.com", true],
            ["wild", "Chat.EXAMPLE.com.", true],
            ["wild", "example.com", false],
            ["wild", "a.b.example.com", false],
            ["wild", ".example.com", false],
            ["odd", "foo.example.com", false], // f*.example.com: partial wildcards are not honoured
            ["odd", "a.b.example.net", false], // a.*.example.net: wildcard not left-most
            ["odd", "example.com", false], // *.com is too broad
            ["odd", "mixed.example.com", true], // SAN with upper case and trailing dot
            ["nosan", "nosan.example.com", true], // no SAN extension: CN is used
        ];
        for (const [cert, name, expected] of cases) {
            it(`${cert} ${expected ? "covers" : "does not cover"} ${name}`, function () {
                assert.equal(certificateCoversName(new X509Certificate(pem[cert]), name), expected);
            });
        }
        it("ignores the CN when a SAN extension exists", function () {
            const c = new X509Certificate(pem.cnMismatch); // CN=cn.example.com, SAN=san.example.com
            assert.equal(certificateCoversName(c, "cn.example.com"), false);
            assert.equal(certificateCoversName(c, "san.example.com"), true);
        });
    });

    describe("checkOwnCertificate", function () {
        const good = (leafName: string) => () => pem[leafName] + pem.int;
        const cases: Case[] = [
            { name: "good EC chain (leaf + intermediate)", chain: good("chat"), key: () => key.chat },
            { name: "good chain including the root", chain: () => pem.chat + pem.int + pem.root, key: () => key.chat },
            { name: "good EC key in SEC1 ('EC PRIVATE KEY') form", chain: good("chat"), key: () => key.chatSec1 },
            { name: "good RSA key", chain: good("rsa"), key: () => key.rsa },
            { name: "good wildcard", chain: good("wild"), key: () => key.wild },
            {
                name: "good wildcard, domain with trailing dot and upper case",
                chain: good("wild"),
                key: () => key.wild,
                domain: "Chat.Example.com.",
            },
            {
                name: "wildcard does not cover the apex",
                chain: good("wild"),
                key: () => key.wild,
                domain: "example.com",
                errors: [[CHAIN, /does not cover example\.com; it covers \*\.example\.com/]],
            },
            {
                name: "wildcard does not cover two labels deep",
                chain: good("wild"),
                key: () => key.wild,
                domain: "a.b.example.com",
                errors: [[CHAIN, /does not cover a\.b\.example\.com/]],
            },
            {
                name: "wrong name lists the covered names",
                chain: good("other"),
                key: () => key.other,
                errors: [[CHAIN, /does not cover chat\.example\.com; it covers other\.example\.org, www\.other\.example\.org/]],
            },
            {
                name: "encrypted PKCS#8 key",
                chain: good("rsa"),
                key: () => key.encPkcs8,
                errors: [[KEY, /does not support password-protected keys.*openssl pkey -in key\.pem -out key-decrypted\.pem/]],
            },
            {
                name: "encrypted traditional RSA key (Proc-Type: 4,ENCRYPTED)",
                chain: good("rsa"),
                key: () => key.encTraditional,
                errors: [[KEY, /password-protected.*pulumi config set --secret mattermost:certificateKey/]],
            },
            {
                name: "encrypted traditional EC key",
                chain: good("chat"),
                key: () => key.encEcTraditional,
                errors: [[KEY, /password-protected/]],
            },
            {
                name: "encrypted PKCS#8 key with its label altered (createPrivateKey failure path)",
                chain: good("rsa"),
                key: () => key.encPkcs8.replace(/ENCRYPTED PRIVATE KEY/g, "PRIVATE KEY"),
                errors: [[KEY, /could not be read as a private key|password-protected/]],
            },
            {
                name: "missing key",
                chain: good("chat"),
                key: () => "",
                errors: [[KEY, /is not set.*pulumi config set --secret/]],
            },
            {
                name: "public key instead of private key",
                chain: good("chat"),
                key: () => key.chatPublic,
                errors: [[KEY, /public key, not a private key/]],
            },
            {
                name: "certificate instead of private key",
                chain: good("chat"),
                key: () => pem.chat,
                errors: [[KEY, /certificate, not a private key/]],
            },
            {
                name: "garbage key",
                chain: good("chat"),
                key: () => "not a key",
                errors: [[KEY, /is not a PEM private key/]],
            },
            {
                name: "mismatched key and certificate",
                chain: good("chat"),
                key: () => key.wild,
                errors: [[KEY, /does not match the server certificate.*openssl sha256/]],
            },
            {
                name: "expired leaf",
                chain: good("expired"),
                key: () => key.expired,
                errors: [[CHAIN, /server certificate "chat\.example\.com" expired on \d{4}-\d\d-\d\dT/]],
            },
            {
                name: "expired leaf, by injecting a future 'now'",
                chain: good("chat"),
                key: () => key.chat,
                now: () => new Date(Date.now() + 400 * DAY),
                errors: [[CHAIN, /expired on/]],
            },
            {
                name: "leaf not yet valid",
                chain: good("future"),
                key: () => key.future,
                errors: [[CHAIN, /is not yet valid: it is valid from \d{4}-/]],
            },
            {
                name: "leaf expiring within 14 days: warning only",
                chain: good("soon"),
                key: () => key.soon,
                warnings: [[CHAIN, /expires on \d{4}-\d\d-\d\dT[\d:]+Z \((9|10) days left\)/]],
            },
            {
                name: "expired intermediate",
                chain: () => pem.underOldInt + pem.expiredInt,
                key: () => key.underOldInt,
                errors: [[CHAIN, /certificate #2 \(an intermediate\/CA certificate\) "Expired Intermediate CA" expired on/]],
            },
            {
                name: "chain with intermediate first",
                chain: () => pem.int + pem.chat,
                key: () => key.chat,
                errors: [[CHAIN, /wrong order.*put the server certificate first, then intermediates/i]],
            },
            {
                name: "chain with intermediate first and an unrelated key",
                chain: () => pem.int + pem.chat,
                key: () => key.wild,
                errors: [
                    [CHAIN, /put the server certificate first/i],
                    [KEY, /does not match/],
                ],
            },
            {
                name: "chain with root before intermediate",
                chain: () => pem.chat + pem.root + pem.int,
                key: () => key.chat,
                errors: [[CHAIN, /wrong order.*put the server certificate first, then intermediates/i]],
            },
            {
                name: "chain with an unrelated CA instead of the intermediate",
                chain: () => pem.chat + pem.otherRoot,
                key: () => key.chat,
                errors: [[CHAIN, /was not issued by certificate #2 "Unrelated CA".*missing an intermediate/]],
            },
            {
                name: "CA certificate as the leaf",
                chain: () => pem.int + pem.root,
                key: () => key.int,
                errors: [[CHAIN, /is a CA certificate \(basic constraints CA:TRUE\)/]],
            },
            {
                name: "leaf without serverAuth extended key usage",
                chain: good("client"),
                key: () => key.client,
                errors: [[CHAIN, /lacks serverAuth/]],
            },
            {
                name: "leaf only (no intermediates): warning",
                chain: () => pem.chat,
                key: () => key.chat,
                warnings: [[CHAIN, /only the server certificate, no intermediates/]],
            },
            {
                name: "self-signed leaf: warning",
                chain: () => pem.selfSigned,
                key: () => key.chat,
                warnings: [[CHAIN, /is self-signed/]],
            },
            {
                name: "empty chain",
                chain: () => "  \n",
                key: () => key.chat,
                errors: [[CHAIN, /is empty.*pulumi config set mattermost:certificateChain/]],
            },
            {
                name: "garbage chain",
                chain: () => "hello world",
                key: () => key.chat,
                errors: [[CHAIN, /contains no PEM certificate/]],
            },
            {
                name: "a block that does not parse as X.509",
                chain: () => pem.chat + "-----BEGIN CERTIFICATE-----\nTUlJQm9ndXM=\n-----END CERTIFICATE-----\n",
                key: () => key.chat,
                errors: [[CHAIN, /certificate #2 of 2 does not parse as an X\.509 certificate/]],
            },
            {
                name: "private key pasted into the chain",
                chain: () => pem.chat + key.chat + pem.int,
                key: () => key.chat,
                errors: [[CHAIN, /contains a private key/]],
            },
        ];

        for (const c of cases) {
            it(c.name, function () {
                const result = checkOwnCertificate({
                    chainPem: c.chain(),
                    keyPem: c.key(),
                    domain: c.domain ?? "chat.example.com",
                    now: c.now?.() ?? new Date(),
                });
                const show = () => JSON.stringify(result, null, 2);
                const expectMessages = (kind: "errors" | "warnings", expected: Array<[string, RegExp]> | undefined) => {
                    if (expected === undefined || expected.length === 0) {
                        assert.deepEqual(result[kind], [], `expected no ${kind}, got ${show()}`);
                        return;
                    }
                    for (const [configKey, phrase] of expected) {
                        const hit = result[kind].some(
                            (m) => m.includes(configKey) && new RegExp(phrase.source, phrase.flags.includes("i") ? "is" : "s").test(m),
                        );
                        assert.ok(hit, `expected a ${kind.slice(0, -1)} naming ${configKey} matching ${phrase}, got ${show()}`);
                    }
                };
                expectMessages("errors", c.errors);
                // A case about an error may also produce incidental warnings; only check those if asked.
                if (c.errors === undefined || c.warnings !== undefined) expectMessages("warnings", c.warnings);
            });
        }
    });
});

describe("certificates: does a chain lead to a trusted root", () => {
    const pair = issuePair("chat.example.com");
    const selfSigned = selfSignedPair("chat.example.com");

    it("a private CA's chain is not trusted by the public roots, but is by that CA", () => {
        assert.equal(chainsToRoot(pair.chain), false);
        assert.equal(chainsToRoot(pair.chain, [pair.ca]), true);
        assert.equal(chainsToRoot(pair.chain, [selfSigned.chain]), false, "another CA does not");
    });

    it("a certificate that is itself in the bundle is trusted; garbage is not", () => {
        assert.equal(chainsToRoot(selfSigned.chain, [selfSigned.chain]), true);
        assert.equal(chainsToRoot("not a certificate", [selfSigned.chain]), false);
    });

    it("by default the public roots bundled with Node are the trusted ones", () => {
        const anyPublicRoot = rootCertificates[0];
        assert.equal(chainsToRoot(anyPublicRoot), true);
    });
});
