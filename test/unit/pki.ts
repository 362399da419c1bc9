// Throwaway PKI for tests, made with the openssl CLI at run time (no private key is committed).
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

let caDir: string | undefined;

function testCa(): string {
    if (caDir) return caDir;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mm-test-ca-"));
    execFileSync(
        "openssl",
        [
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            path.join(dir, "ca.key"),
            "-out",
            path.join(dir, "ca.pem"),
            "-days",
            "30",
            "-subj",
            "/CN=mattermost test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        { stdio: "ignore" },
    );
    process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
    caDir = dir;
    return dir;
}

/** A self-signed server certificate shaped like the one @pulumi/tls makes (CA:FALSE, serverAuth). */
export function selfSignedPair(domain: string): { chain: string; key: string } {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mm-self-"));
    try {
        execFileSync("openssl", [
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", path.join(dir, "key.pem"), "-out", path.join(dir, "cert.pem"), "-days", "30", "-subj", `/CN=${domain}`,
            "-addext", `subjectAltName=DNS:${domain}`, "-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=serverAuth",
        ], { stdio: "ignore" }); // prettier-ignore
        return { chain: fs.readFileSync(path.join(dir, "cert.pem"), "utf8"), key: fs.readFileSync(path.join(dir, "key.pem"), "utf8") };
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

/** A leaf certificate for `domain` (CA:FALSE, serverAuth) issued by a per-process test CA. */
export function issuePair(domain: string): { chain: string; key: string; ca: string } {
    const ca = testCa();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mm-leaf-"));
    try {
        const san = /^[\d.]+$/.test(domain) ? `IP:${domain}` : `DNS:${domain}`;
        fs.writeFileSync(
            path.join(dir, "ext.cnf"),
            `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=${san}\n`,
        );
        execFileSync(
            "openssl",
            [
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                path.join(dir, "leaf.key"),
                "-out",
                path.join(dir, "leaf.csr"),
                "-subj",
                `/CN=${domain}`,
            ],
            { stdio: "ignore" },
        );
        execFileSync(
            "openssl",
            [
                "x509",
                "-req",
                "-in",
                path.join(dir, "leaf.csr"),
                "-CA",
                path.join(ca, "ca.pem"),
                "-CAkey",
                path.join(ca, "ca.key"),
                "-CAcreateserial",
                "-CAserial",
                path.join(dir, "ca.srl"),
                "-days",
                "25",
                "-extfile",
                path.join(dir, "ext.cnf"),
                "-out",
                path.join(dir, "leaf.pem"),
            ],
            { stdio: "ignore" },
        );
        return {
            chain: fs.readFileSync(path.join(dir, "leaf.pem"), "utf8"),
            key: fs.readFileSync(path.join(dir, "leaf.key"), "utf8"),
            ca: fs.readFileSync(path.join(ca, "ca.pem"), "utf8"),
        };
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}
