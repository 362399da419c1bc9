// Validation of an operator-supplied TLS certificate (mattermost:certificateChain) and private key
// (mattermost:certificateKey) before anything is deployed.
//
// Everything here is pure: no Pulumi imports, no file or network I/O, and the current time is passed
// in, so the checks can be unit-tested with certificates generated on the fly.

import { X509Certificate, createPrivateKey, createPublicKey, KeyObject } from "node:crypto";
import { rootCertificates } from "node:tls";

export interface CertificateCheck {
    errors: string[];
    warnings: string[];
}

const CHAIN_KEY = "mattermost:certificateChain";
const KEY_KEY = "mattermost:certificateKey";
const DOMAIN_KEY = "mattermost:domain";

const SET_CHAIN = `pulumi config set ${CHAIN_KEY} < fullchain.pem`;
const SET_KEY = `pulumi config set --secret ${KEY_KEY} < key.pem`;

/** Certificates expiring within this many days produce a warning. */
export const EXPIRY_WARNING_DAYS = 14;

const DAY_MS = 24 * 60 * 60 * 1000;

const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** Splits a PEM bundle into its individual `CERTIFICATE` blocks, in order. Anything else is ignored. */
export function parsePemCertificates(pem: string): string[] {
    const normalized = pem.replace(/\r\n?/g, "\n");
    return (normalized.match(CERT_BLOCK) ?? []).map((block) => block + "\n");
}

/**
 * True when the chain's last certificate is one of `roots` or is signed by one (Node's bundled public roots by
 * default: what the endpoint check trusts without `endpointCaBundle`). Unparseable input is false.
 */
export function chainsToRoot(chainPem: string, roots: readonly string[] = rootCertificates): boolean {
    const pems = parsePemCertificates(chainPem);
    const lastPem = pems[pems.length - 1];
    if (lastPem === undefined) return false;
    let last: X509Certificate;
    try {
        last = new X509Certificate(lastPem);
    } catch {
        return false;
    }
    for (const rootPem of roots) {
        let root: X509Certificate;
        try {
            root = new X509Certificate(rootPem);
        } catch {
            continue;
        }
        if (root.fingerprint256 === last.fingerprint256) return true;
        if (last.checkIssued(root) && last.verify(root.publicKey)) return true;
    }
    return false;
}

/** Lower-cases a DNS name and drops one trailing dot (the absolute-name form). */
function normalizeDnsName(name: string): string {
    const lower = name.trim().toLowerCase();
    return lower.endsWith(".") ? lower.slice(0, -1) : lower;
}

/**
 * Splits Node's `subjectAltName` rendering ("DNS:a.example.com, IP Address:10.0.0.1, DNS:\"odd,name\"")
 * into [type, value] pairs. Node JSON-quotes values that contain separators or unusual characters.
 */
function parseSubjectAltName(san: string): Array<[string, string]> {
    const entries: Array<[string, string]> = [];
    let i = 0;
    while (i < san.length) {
        while (san[i] === " " || san[i] === ",") i++;
        if (i >= san.length) break;
        const colon = san.indexOf(":", i);
        if (colon < 0) break;
        const type = san.slice(i, colon);
        i = colon + 1;
        let value: string;
        if (san[i] === '"') {
            // JSON-quoted value: find the closing quote, honouring backslash escapes.
            let j = i + 1;
            while (j < san.length && san[j] !== '"') j += san[j] === "\\" ? 2 : 1;
            const raw = san.slice(i, j + 1);
            try {
                value = JSON.parse(raw) as string;
            } catch {
                value = raw.slice(1, -1);
            }
            i = j + 1;
        } else {
            const end = san.indexOf(", ", i);
            value = end < 0 ? san.slice(i) : san.slice(i, end);
            i = end < 0 ? san.length : end;
        }
        entries.push([type, value]);
    }
    return entries;
}

function sanDnsNames(cert: X509Certificate): string[] | undefined {
    if (cert.subjectAltName === undefined) return undefined;
    return parseSubjectAltName(cert.subjectAltName)
        .filter(([type]) => type === "DNS")
        .map(([, value]) => value);
}

function commonNames(cert: X509Certificate): string[] {
    return cert.subject
        .split("\n")
        .filter((line) => line.startsWith("CN="))
        .map((line) => line.slice(3));
}

/**
 * The names a certificate is presented for: its SAN dNSNames, or (only when it has no SAN extension
 * at all) its subject common names.
 */
function presentedNames(cert: X509Certificate): string[] {
    return sanDnsNames(cert) ?? commonNames(cert);
}

/** RFC 6125 matching of one presented identifier against a reference DNS name. */
function dnsNameMatches(pattern: string, name: string): boolean {
    const p = normalizeDnsName(pattern);
    const n = normalizeDnsName(name);
    if (p === "" || n === "" || n.split(".").some((label) => label === "")) return false;
    if (!p.includes("*")) return p === n;
    // A wildcard is only allowed as the entire left-most label, and only once.
    if (!p.startsWith("*.") || p.indexOf("*", 1) >= 0) return false;
    const suffix = p.slice(2);
    // Refuse "*.com"-style patterns: the wildcard needs at least two labels to its right.
    if (!suffix.includes(".") || suffix.split(".").some((label) => label === "")) return false;
    const dot = n.indexOf(".");
    if (dot <= 0) return false;
    // The wildcard stands for exactly one label.
    return n.slice(dot + 1) === suffix;
}

/**
 * Whether `cert` is valid for the DNS name `name`: SAN dNSName matching per RFC 6125 (case-insensitive,
 * trailing dot ignored, "*" only as the whole left-most label standing for exactly one label). The
 * subject CN is consulted only when the certificate has no subjectAltName extension.
 */
export function certificateCoversName(cert: X509Certificate, name: string): boolean {
    return presentedNames(cert).some((pattern) => dnsNameMatches(pattern, name));
}

function formatDate(date: Date): string {
    return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

function parseCertDate(text: string): Date {
    return new Date(text);
}

function describe(cert: X509Certificate): string {
    const cn = commonNames(cert)[0];
    return cn !== undefined ? `"${cn}"` : `"${cert.subject.replace(/\n/g, ", ")}"`;
}

function ordinal(index: number): string {
    return `certificate #${index + 1}`;
}

function spki(key: KeyObject): Buffer {
    return key.export({ type: "spki", format: "der" });
}

/** True when `cert` was issued (names/key identifiers) and signed by `issuer`. */
function issuedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
    try {
        return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
    } catch {
        return false;
    }
}

/** Subject equals issuer and the signature verifies with the certificate's own key. */
function isSelfSigned(cert: X509Certificate): boolean {
    try {
        return cert.subject === cert.issuer && cert.verify(cert.publicKey);
    } catch {
        return false;
    }
}

const ENCRYPTED_KEY_MESSAGE =
    `${KEY_KEY} is a password-protected (encrypted) private key, and Mattermost does not support ` +
    `password-protected keys. Decrypt it with \`openssl pkey -in key.pem -out key-decrypted.pem\` ` +
    `(it asks for the password), then set it with ` +
    `\`pulumi config set --secret ${KEY_KEY} < key-decrypted.pem\`.`;

/** Parses the private key, pushing errors; returns undefined when it is unusable. */
function checkPrivateKey(keyPem: string, errors: string[], warnings: string[]): KeyObject | undefined {
    const text = keyPem.replace(/\r\n?/g, "\n").trim();
    if (text === "") {
        errors.push(`${KEY_KEY} is not set. Set it to the PEM private key of your server certificate with ` + `\`${SET_KEY}\`.`);
        return undefined;
    }
    const hasPrivateKeyBlock = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(text);
    if (/-----BEGIN ENCRYPTED PRIVATE KEY-----/.test(text) || /^Proc-Type:\s*4,\s*ENCRYPTED/im.test(text)) {
        errors.push(ENCRYPTED_KEY_MESSAGE);
        return undefined;
    }
    if (!hasPrivateKeyBlock) {
        if (/-----BEGIN (RSA )?PUBLIC KEY-----/.test(text)) {
            errors.push(
                `${KEY_KEY} contains a public key, not a private key. Use the private key file that was ` +
                    `generated together with the certificate signing request (it starts with ` +
                    `"-----BEGIN PRIVATE KEY-----", "-----BEGIN RSA PRIVATE KEY-----" or ` +
                    `"-----BEGIN EC PRIVATE KEY-----") and set it with \`${SET_KEY}\`.`,
            );
        } else if (/-----BEGIN CERTIFICATE-----/.test(text)) {
            errors.push(
                `${KEY_KEY} contains a certificate, not a private key. Certificates belong in ` +
                    `${CHAIN_KEY}; set ${KEY_KEY} to the private key file (it starts with ` +
                    `"-----BEGIN PRIVATE KEY-----" or similar) with \`${SET_KEY}\`.`,
            );
        } else {
            errors.push(
                `${KEY_KEY} is not a PEM private key (expected a block starting with ` +
                    `"-----BEGIN PRIVATE KEY-----", "-----BEGIN RSA PRIVATE KEY-----" or ` +
                    `"-----BEGIN EC PRIVATE KEY-----"). If your key is in DER form, convert it with ` +
                    `\`openssl pkey -inform der -in key.der -out key.pem\`, then set it with \`${SET_KEY}\`.`,
            );
        }
        return undefined;
    }

    let key: KeyObject;
    try {
        key = createPrivateKey({ key: text, format: "pem" });
    } catch (err) {
        const e = err as { code?: string; message?: string };
        const message = e.message ?? String(err);
        if (e.code === "ERR_MISSING_PASSPHRASE" || /passphrase|password|encrypted|interrupted or cancelled/i.test(message)) {
            errors.push(ENCRYPTED_KEY_MESSAGE);
        } else {
            errors.push(
                `${KEY_KEY} could not be read as a private key (${message}). Check that the whole PEM ` +
                    `block was copied, including the BEGIN/END lines; \`openssl pkey -in key.pem -noout\` ` +
                    `must succeed. Then set it with \`${SET_KEY}\`.`,
            );
        }
        return undefined;
    }
    if (key.type !== "private") {
        errors.push(`${KEY_KEY} is not a private key. Set the server certificate's private key with \`${SET_KEY}\`.`);
        return undefined;
    }

    const type = key.asymmetricKeyType;
    if (type === "ec") {
        const curve = key.asymmetricKeyDetails?.namedCurve;
        if (curve !== undefined && !["prime256v1", "secp384r1", "secp521r1"].includes(curve)) {
            errors.push(
                `${KEY_KEY} is an EC key on curve ${curve}, which Mattermost's TLS stack and browsers do not ` +
                    `support. Issue the certificate for a P-256 or P-384 key (or RSA 2048+), then update ` +
                    `both ${CHAIN_KEY} and ${KEY_KEY}.`,
            );
        }
    } else if (type === "rsa") {
        const bits = key.asymmetricKeyDetails?.modulusLength;
        if (bits !== undefined && bits < 2048) {
            warnings.push(
                `${KEY_KEY} is a ${bits}-bit RSA key; browsers reject RSA keys shorter than 2048 bits. ` +
                    `Reissue the certificate with a 2048-bit or larger RSA key or a P-256 EC key.`,
            );
        }
    } else if (type === "ed25519") {
        warnings.push(
            `${KEY_KEY} is an Ed25519 key. Mainstream browsers do not accept Ed25519 server certificates; ` +
                `use an ECDSA P-256 or RSA 2048+ key unless all your clients support Ed25519.`,
        );
    } else {
        errors.push(
            `${KEY_KEY} is a ${type ?? "unknown"} key, which Mattermost cannot use for TLS. Use an RSA ` +
                `(2048+ bits) or ECDSA (P-256/P-384) key and a certificate issued for it, and update both ` +
                `${CHAIN_KEY} and ${KEY_KEY}.`,
        );
        return undefined;
    }
    return key;
}

/** Parses the chain, pushing errors; returns the certificates that parsed (undefined for failures). */
function parseChain(chainPem: string, errors: string[]): Array<X509Certificate | undefined> {
    const text = chainPem.replace(/\r\n?/g, "\n").trim();
    if (text === "") {
        errors.push(
            `${CHAIN_KEY} is empty. Set it to your certificate chain in PEM form (the server certificate ` +
                `first, then the intermediate certificates) with \`${SET_CHAIN}\`.`,
        );
        return [];
    }
    if (/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(text)) {
        errors.push(
            `${CHAIN_KEY} contains a private key. Remove it from the chain (the chain is not stored as a ` +
                `secret): keep only the "-----BEGIN CERTIFICATE-----" blocks there and put the key in ` +
                `${KEY_KEY} with \`${SET_KEY}\`.`,
        );
    }
    const blocks = parsePemCertificates(text);
    if (blocks.length === 0) {
        errors.push(
            `${CHAIN_KEY} contains no PEM certificate (expected blocks starting with ` +
                `"-----BEGIN CERTIFICATE-----"). If you have a DER file (.der/.cer/.crt that is not text), ` +
                `convert it with \`openssl x509 -inform der -in cert.der -out cert.pem\`; then set the ` +
                `chain with \`${SET_CHAIN}\`.`,
        );
        return [];
    }
    return blocks.map((block, index) => {
        try {
            return new X509Certificate(block);
        } catch (err) {
            const message = err instanceof Error ? err.message : String(err);
            errors.push(
                `${CHAIN_KEY}: ${ordinal(index)} of ${blocks.length} does not parse as an X.509 certificate ` +
                    `(${message}). The block is probably truncated or was altered while copying; check it ` +
                    `with \`openssl x509 -noout -text -in cert.pem\` and set the chain again with ` +
                    `\`${SET_CHAIN}\`.`,
            );
            return undefined;
        }
    });
}

function checkValidity(cert: X509Certificate, label: string, now: Date, errors: string[], warnings: string[], warnExpiry: boolean): void {
    const from = parseCertDate(cert.validFrom);
    const to = parseCertDate(cert.validTo);
    if (!Number.isNaN(from.getTime()) && now.getTime() < from.getTime()) {
        errors.push(
            `${CHAIN_KEY}: ${label} ${describe(cert)} is not yet valid: it is valid from ${formatDate(from)} ` +
                `to ${formatDate(to)}, and it is now ${formatDate(now)}. Wait until it becomes valid, or ` +
                `check the clock of the machine running Pulumi.`,
        );
    } else if (!Number.isNaN(to.getTime()) && now.getTime() > to.getTime()) {
        errors.push(
            `${CHAIN_KEY}: ${label} ${describe(cert)} expired on ${formatDate(to)} (valid from ` +
                `${formatDate(from)}). Renew it with your certificate authority and set the new chain with ` +
                `\`${SET_CHAIN}\` (and the key, if it changed).`,
        );
    } else if (warnExpiry && !Number.isNaN(to.getTime())) {
        const left = to.getTime() - now.getTime();
        if (left < EXPIRY_WARNING_DAYS * DAY_MS) {
            const days = Math.floor(left / DAY_MS);
            const when = days < 1 ? "less than a day" : days === 1 ? "1 day" : `${days} days`;
            warnings.push(
                `${CHAIN_KEY}: ${label} ${describe(cert)} expires on ${formatDate(to)} (${when} left). ` +
                    `Renew it soon and set the new chain with \`${SET_CHAIN}\`, then run \`pulumi up\`.`,
            );
        }
    }
}

/**
 * Validates an operator's own certificate chain and private key for serving `domain`.
 * Returns all problems found; an empty `errors` list means the pair is usable.
 * `keyPem: null` means the key exists but cannot be read here (an encrypted secret seen without the stack's
 * passphrase, as by the render command): the key checks are skipped and the chain is checked on its own.
 */
export function checkOwnCertificate(input: { chainPem: string; keyPem: string | null; domain: string; now: Date }): CertificateCheck {
    const errors: string[] = [];
    const warnings: string[] = [];
    const { now } = input;

    const parsed = parseChain(input.chainPem ?? "", errors);
    const key = input.keyPem === null ? undefined : checkPrivateKey(input.keyPem ?? "", errors, warnings);
    const allParsed = parsed.length > 0 && parsed.every((c) => c !== undefined);
    const certs = parsed.filter((c): c is X509Certificate => c !== undefined);
    if (certs.length === 0) return { errors, warnings };

    // Which certificate is the server (leaf) certificate? The one matching the key; failing that, the
    // first non-CA certificate when the chain starts with a CA certificate; otherwise the first one.
    let keyMatch = -1;
    let keySpki: Buffer | undefined;
    if (key !== undefined) {
        keySpki = spki(createPublicKey(key));
        keyMatch = parsed.findIndex((c) => c !== undefined && spki(c.publicKey).equals(keySpki as Buffer));
    }
    let leafIndex = keyMatch >= 0 ? keyMatch : 0;
    if (keyMatch < 0 && parsed[0]?.ca === true) {
        const nonCa = parsed.findIndex((c) => c !== undefined && !c.ca);
        if (nonCa > 0) leafIndex = nonCa;
    }
    let orderReported = false;
    const leaf = parsed[leafIndex];
    if (leaf === undefined) return { errors, warnings };

    if (keySpki !== undefined && keyMatch < 0) {
        errors.push(
            `${KEY_KEY} does not match the server certificate ${describe(leaf)} in ${CHAIN_KEY} (nor any ` +
                `other certificate there): the key and the certificate are from different pairs. Compare ` +
                `\`openssl x509 -in cert.pem -noout -pubkey | openssl sha256\` with ` +
                `\`openssl pkey -in key.pem -pubout | openssl sha256\` (they must be equal), then set the ` +
                `matching key with \`${SET_KEY}\` or the matching chain with \`${SET_CHAIN}\`.`,
        );
    }

    if (leafIndex > 0) {
        orderReported = true;
        errors.push(
            `${CHAIN_KEY} is in the wrong order: the server certificate ${describe(leaf)} is ` +
                `${ordinal(leafIndex)}, but it must come first. Put the server certificate first, then ` +
                `intermediates (each certificate followed by the one that issued it), and set it again with ` +
                `\`${SET_CHAIN}\`.`,
        );
    }

    // The leaf must be an end-entity certificate.
    if (leaf.ca) {
        errors.push(
            `${CHAIN_KEY}: the server certificate ${describe(leaf)} is a CA certificate (basic constraints ` +
                `CA:TRUE), not a server certificate; browsers reject CA certificates as server certificates. ` +
                `Use the certificate issued for ${input.domain || "your domain"} (basic constraints CA:FALSE) ` +
                `as the first certificate, with its own private key in ${KEY_KEY}.`,
        );
    }

    // Name.
    const domain = (input.domain ?? "").trim();
    if (domain === "") {
        errors.push(`${DOMAIN_KEY} is not set; set it with \`pulumi config set ${DOMAIN_KEY} chat.example.com\`.`);
    } else if (!certificateCoversName(leaf, domain)) {
        const names = presentedNames(leaf);
        errors.push(
            `${CHAIN_KEY}: the server certificate ${describe(leaf)} does not cover ${domain}; it covers ` +
                `${names.length > 0 ? names.join(", ") : "no DNS names"}. Get a certificate that includes ` +
                `${domain} (a wildcard "*.x.y" covers exactly one extra label), or set ${DOMAIN_KEY} to a ` +
                `name the certificate covers.`,
        );
    }
    if (leaf.subjectAltName === undefined && !leaf.ca) {
        warnings.push(
            `${CHAIN_KEY}: the server certificate ${describe(leaf)} has no subjectAltName extension; modern ` +
                `browsers ignore the subject common name and will reject it. Reissue it with ${domain || "your domain"} ` +
                `as a DNS subject alternative name.`,
        );
    }
    const eku = leaf.keyUsage as string[] | undefined;
    if (Array.isArray(eku) && eku.length > 0 && !eku.includes("1.3.6.1.5.5.7.3.1") && !eku.includes("2.5.29.37.0")) {
        errors.push(
            `${CHAIN_KEY}: the server certificate ${describe(leaf)} is not allowed for TLS servers (its ` +
                `extended key usage lacks serverAuth). Get a TLS server certificate for ${domain || "your domain"}.`,
        );
    }

    // Dates.
    checkValidity(leaf, "the server certificate", now, errors, warnings, true);
    parsed.forEach((cert, index) => {
        if (cert === undefined || index === leafIndex) return;
        checkValidity(cert, `${ordinal(index)} (an intermediate/CA certificate)`, now, errors, warnings, false);
    });

    // Chain order: each certificate must be issued by the next one.
    if (!orderReported && allParsed) {
        for (let i = 0; i + 1 < certs.length; i++) {
            const cert = certs[i];
            const next = certs[i + 1];
            if (issuedBy(cert, next)) continue;
            const issuerIndex = certs.findIndex((c, j) => j !== i && issuedBy(cert, c));
            if (issuerIndex >= 0) {
                errors.push(
                    `${CHAIN_KEY} is in the wrong order: ${ordinal(i)} ${describe(cert)} is issued by ` +
                        `${ordinal(issuerIndex)}, not by the certificate that follows it. Put the server ` +
                        `certificate first, then intermediates (each certificate followed by the one that ` +
                        `issued it), and set it again with \`${SET_CHAIN}\`.`,
                );
            } else {
                errors.push(
                    `${CHAIN_KEY}: ${ordinal(i)} ${describe(cert)} was not issued by ${ordinal(i + 1)} ` +
                        `${describe(next)}; its issuer is "${cert.issuer.replace(/\n/g, ", ")}". The chain ` +
                        `contains an unrelated certificate or is missing an intermediate. Use the full chain ` +
                        `file from your certificate authority (often "fullchain.pem"): the server certificate ` +
                        `first, then intermediates, and set it with \`${SET_CHAIN}\`.`,
                );
            }
            break;
        }
    }

    if (parsed.length === 1 && !leaf.ca) {
        if (isSelfSigned(leaf)) {
            warnings.push(
                `${CHAIN_KEY}: the server certificate ${describe(leaf)} is self-signed. Browsers will show a ` +
                    `security warning and the Mattermost mobile and desktop apps will refuse to connect unless ` +
                    `it is trusted on every device. Use a certificate from a public certificate authority ` +
                    `for production.`,
            );
        } else {
            warnings.push(
                `${CHAIN_KEY} contains only the server certificate, no intermediates. Unless it was issued ` +
                    `directly by a trusted root, clients (notably the mobile apps) will fail with "unable to ` +
                    `verify the certificate". Append your CA's intermediate certificates after the server ` +
                    `certificate (use "fullchain.pem" rather than "cert.pem") and set it with \`${SET_CHAIN}\`.`,
            );
        }
    }

    return { errors, warnings };
}
