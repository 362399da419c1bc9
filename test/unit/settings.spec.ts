import { strict as assert } from "node:assert";

import { CONFIG_KEYS, isFqdn, isPrivateCidr, parseCidr, parseSettings, resolveTlsMode } from "../../components/settings";
import { MINIMAL_CONFIG, programError } from "./mocks";
import { issuePair, selfSignedPair } from "./pki";

interface BadCase {
    readonly why: string;
    readonly config: Record<string, string>;
    /** The key the message must name (without the namespace). */
    readonly key: string;
    /** A phrase from the how-to-fix part. */
    readonly fix: RegExp;
    readonly secretKeys?: string[];
}

const other = issuePair("other.example.org");
const good = issuePair("chat.example.com");
const M = MINIMAL_CONFIG;

const BAD: BadCase[] = [
    {
        why: "domain missing",
        config: { mattermostSha256: M.mattermostSha256, sshAllowedCidrs: M.sshAllowedCidrs },
        key: "domain",
        fix: /pulumi config set mattermost:domain/,
    },
    { why: "domain with a scheme", config: { ...M, domain: "https://chat.example.com" }, key: "domain", fix: /no scheme, port or path/ },
    { why: "domain with a port", config: { ...M, domain: "chat.example.com:8443" }, key: "domain", fix: /fully qualified/ },
    { why: "single-label domain", config: { ...M, domain: "mattermost" }, key: "domain", fix: /fully qualified/ },
    { why: "domain label too long", config: { ...M, domain: `${"a".repeat(64)}.example.com` }, key: "domain", fix: /fully qualified/ },
    { why: "domain with underscore", config: { ...M, domain: "chat_server.example.com" }, key: "domain", fix: /fully qualified/ },
    {
        why: "an IP with Let's Encrypt",
        config: { ...M, domain: "203.0.113.5" },
        key: "domain",
        fix: /Let's Encrypt only issues certificates for DNS names/,
    },
    { why: "an IPv6 domain", config: { ...M, domain: "2001:db8::1", certificate: "self-signed" }, key: "domain", fix: /IPv6/ },
    { why: "unknown tlsMode", config: { ...M, tlsMode: "haproxy" }, key: "tlsMode", fix: /not one of "auto", "direct", "nginx", "alb"/ },
    { why: "tlsMode with the wrong case", config: { ...M, tlsMode: "NGINX" }, key: "tlsMode", fix: /case-sensitive: use "nginx"/ },
    {
        why: "unknown certificate source",
        config: { ...M, certificate: "vault" },
        key: "certificate",
        fix: /"letsencrypt", "own", "self-signed", "acm"/,
    },
    {
        why: "staging through nginx without the CA to verify the endpoint",
        config: { ...M, tlsMode: "nginx", letsencryptEmail: "a@example.com", acmeServer: "staging" },
        key: "endpointCaBundle",
        fix: /letsencrypt-stg-root-x1\.pem \| pulumi config set mattermost:endpointCaBundle/,
    },
    {
        why: "endpointCaBundle not PEM",
        config: { ...M, endpointCaBundle: "root.pem" },
        key: "endpointCaBundle",
        fix: /< issuing-root\.pem/,
    },
    {
        why: "endpoint timeout too short",
        config: { ...M, endpointTimeoutSeconds: "5" },
        key: "endpointTimeoutSeconds",
        fix: /outside 30\.\.3600/,
    },
    { why: "snapshots not boolean", config: { ...M, snapshots: "daily" }, key: "snapshots", fix: /not true or false/ },
    {
        why: "snapshot time not HH:MM",
        config: { ...M, snapshotTime: "3am" },
        key: "snapshotTime",
        fix: /config set mattermost:snapshotTime 03:00/,
    },
    { why: "snapshot time 24:00", config: { ...M, snapshotTime: "24:00" }, key: "snapshotTime", fix: /UTC time HH:MM/ },
    { why: "snapshot retention zero", config: { ...M, snapshotRetainCount: "0" }, key: "snapshotRetainCount", fix: /outside 1\.\.1000/ },
    {
        why: "snapshot id that is a volume id",
        config: { ...M, dataVolumeSnapshotId: "vol-0123456789abcdef0" },
        key: "dataVolumeSnapshotId",
        fix: /describe-snapshots/,
    },
    { why: "unknown architecture", config: { ...M, architecture: "amd64" }, key: "architecture", fix: /"x86_64", "arm64"/ },
    {
        why: "email that is not one",
        config: { ...M, letsencryptEmail: "admin.example.com" },
        key: "letsencryptEmail",
        fix: /not an email address/,
    },
    {
        why: "email with two @",
        config: { ...M, letsencryptEmail: "a@b@example.com" },
        key: "letsencryptEmail",
        fix: /not an email address/,
    },
    {
        why: "nginx + letsencrypt without email",
        config: { ...M, tlsMode: "nginx" },
        key: "letsencryptEmail",
        fix: /required with Let's Encrypt through nginx/,
    },
    {
        why: "acmeServer over plain http",
        config: { ...M, acmeServer: "http://acme.internal.example/directory" },
        key: "acmeServer",
        fix: /"production", "staging", or the https URL/,
    },
    { why: "acmeServer neither keyword nor URL", config: { ...M, acmeServer: "prod" }, key: "acmeServer", fix: /"production", "staging"/ },
    { why: "negative data volume size", config: { ...M, dataVolumeSizeGiB: "-5" }, key: "dataVolumeSizeGiB", fix: /outside 1\.\.16384/ },
    {
        why: "fractional data volume size",
        config: { ...M, dataVolumeSizeGiB: "10.5" },
        key: "dataVolumeSizeGiB",
        fix: /not a whole number/,
    },
    { why: "zero expected users", config: { ...M, expectedUsers: "0" }, key: "expectedUsers", fix: /outside 1\.\./ },
    { why: "expectedUsers not a number", config: { ...M, expectedUsers: "many" }, key: "expectedUsers", fix: /not a whole number/ },
    {
        why: "bad CIDR",
        config: { ...M, sshAllowedCidrs: JSON.stringify(["198.51.100.300/32"]) },
        key: "sshAllowedCidrs",
        fix: /IPv4 CIDR like/,
    },
    {
        why: "CIDR without prefix",
        config: { ...M, sshAllowedCidrs: JSON.stringify(["198.51.100.7"]) },
        key: "sshAllowedCidrs",
        fix: /IPv4 CIDR like/,
    },
    {
        why: "CIDR with host bits",
        config: { ...M, sshAllowedCidrs: JSON.stringify(["198.51.100.7/24"]) },
        key: "sshAllowedCidrs",
        fix: /did you mean 198\.51\.100\.0\/24/,
    },
    {
        why: "no SSH CIDR (port 22 closed, nothing can install)",
        config: { domain: M.domain, mattermostSha256: M.mattermostSha256 },
        key: "sshAllowedCidrs",
        fix: /203\.0\.113\.7\/32/,
    },
    {
        why: "SSH only from a private range, but connecting to the Elastic IP",
        config: { ...M, sshAllowedCidrs: JSON.stringify(["10.0.0.0/16", "192.168.10.0/24"]) },
        key: "sshAllowedCidrs",
        fix: /pulumi config set mattermost:sshAddress private/,
    },
    { why: "unknown sshAddress", config: { ...M, sshAddress: "vpn" }, key: "sshAddress", fix: /not one of "public", "private"/ },
    { why: "sshAllowedCidrs not a list", config: { ...M, sshAllowedCidrs: "198.51.100.7/32" }, key: "sshAllowedCidrs", fix: /--path/ },
    { why: "own certificate missing", config: { ...M, certificate: "own" }, key: "certificateChain", fix: /< fullchain\.pem/ },
    { why: "own key missing", config: { ...M, certificate: "own", certificateChain: good.chain }, key: "certificateKey", fix: /--secret/ },
    {
        why: "own key stored in plain text",
        config: { ...M, certificate: "own", certificateChain: good.chain, certificateKey: good.key },
        key: "certificateKey",
        fix: /stored in plain text/,
    },
    {
        why: "own certificate for another name",
        config: { ...M, certificate: "own", certificateChain: other.chain, certificateKey: other.key },
        secretKeys: ["certificateKey"],
        key: "certificateChain",
        fix: /other\.example\.org/,
    },
    {
        why: "own key that does not match",
        config: { ...M, certificate: "own", certificateChain: good.chain, certificateKey: other.key },
        secretKeys: ["certificateKey"],
        key: "certificateKey",
        fix: /match/,
    },
    {
        why: "own certificate from a private CA without the CA to verify the endpoint",
        config: { ...M, certificate: "own", certificateChain: good.chain, certificateKey: good.key },
        secretKeys: ["certificateKey"],
        key: "endpointCaBundle",
        fix: /does not lead to a public root.*< root-ca\.pem/,
    },
    {
        why: "endpointCaBundle that did not issue the own certificate",
        config: {
            ...M,
            certificate: "own",
            certificateChain: good.chain,
            certificateKey: good.key,
            endpointCaBundle: selfSignedPair("unrelated-ca.example.test").chain,
        },
        secretKeys: ["certificateKey"],
        key: "endpointCaBundle",
        fix: /does not issue the chain/,
    },
    { why: "version with a v prefix", config: { ...M, mattermostVersion: "v10.11.4" }, key: "mattermostVersion", fix: /no "v" prefix/ },
    {
        why: "sha256 missing",
        config: { domain: M.domain, sshAllowedCidrs: M.sshAllowedCidrs },
        key: "mattermostSha256",
        fix: /mattermost-10\.11\.4-linux-amd64\.tar\.gz/,
    },
    { why: "sha256 too short", config: { ...M, mattermostSha256: "abc123" }, key: "mattermostSha256", fix: /64 hexadecimal digits/ },
    {
        why: "download URL not a URL",
        config: { ...M, mattermostDownloadBaseUrl: "releases.mattermost.com" },
        key: "mattermostDownloadBaseUrl",
        fix: /http\(s\) URL/,
    },
    {
        why: "x86 instance type with arm64",
        config: { ...M, architecture: "arm64", instanceType: "t3.medium" },
        key: "instanceType",
        fix: /t4g\.medium/,
    },
    {
        why: "Graviton instance type with x86_64",
        config: { ...M, instanceType: "m7g.large" },
        key: "instanceType",
        fix: /architecture arm64/,
    },
    { why: "instance type gibberish", config: { ...M, instanceType: "large" }, key: "instanceType", fix: /like t3\.medium/ },
    { why: "bad subnet id", config: { ...M, subnetId: "subnet-xyz" }, key: "subnetId", fix: /subnet-0123456789abcdef0/ },
    {
        why: "availability zone and subnet both",
        config: { ...M, subnetId: "subnet-0123456789abcdef0", availabilityZone: "eu-west-1a" },
        key: "availabilityZone",
        fix: /pulumi config rm/,
    },
    { why: "bad route53 zone id", config: { ...M, route53ZoneId: "example.com" }, key: "route53ZoneId", fix: /Z0123456789ABCDEFGHIJ/ },
    {
        why: "route53 with an IP domain",
        config: { ...M, domain: "203.0.113.5", certificate: "self-signed", route53ZoneId: "Z0123456789ABCDEFGHIJ" },
        key: "route53ZoneId",
        fix: /needs a name/,
    },
    { why: "VPC CIDR too large", config: { ...M, vpcCidr: "10.0.0.0/8" }, key: "vpcCidr", fix: /between \/16 and \/24/ },
    {
        why: "protectDataVolume not boolean",
        config: { ...M, protectDataVolume: "yes" },
        key: "protectDataVolume",
        fix: /not true or false/,
    },
    { why: "a misspelt key", config: { ...M, tlsmode: "nginx" }, key: "tlsmode", fix: /did you mean mattermost:tlsMode/ },
];

describe("stack config: invalid input fails before any resource, naming the key", function () {
    this.timeout(30000);
    it("has at least 20 cases", () => assert.ok(BAD.length >= 20));
    for (const c of BAD) {
        it(`${c.why} -> mattermost:${c.key}`, async () => {
            const { message, resources } = await programError(c.config, { secretKeys: c.secretKeys });
            assert.equal(resources, 0, "no resource registered");
            assert.match(message, new RegExp(`mattermost:${c.key}\\b`), message);
            assert.match(message, c.fix, message);
        });
    }

    it("reports every problem at once", async () => {
        const { message } = await programError({
            domain: "bad domain",
            tlsMode: "x",
            dataVolumeSizeGiB: "-1",
            sshAllowedCidrs: M.sshAllowedCidrs,
        });
        for (const key of ["domain", "tlsMode", "dataVolumeSizeGiB", "mattermostSha256"])
            assert.match(message, new RegExp(`mattermost:${key}`));
        assert.match(message, /4 problems/);
    });
});

describe("settings: pure rules", () => {
    it("accepts the minimal config with documented defaults", () => {
        const r = parseSettings({ values: { ...M } });
        assert.deepEqual(r.errors, []);
        assert.ok(r.settings);
        assert.equal(r.settings.tlsMode, "direct");
        assert.equal(r.settings.certificate, "letsencrypt");
        assert.equal(r.settings.instanceType, "t3.medium");
        assert.equal(r.settings.dataVolumeSizeGiB, 20);
        assert.deepEqual(r.settings.sshAllowedCidrs, ["198.51.100.7/32"]);
        assert.equal(r.settings.acmeDirectoryUrl, "https://acme-v02.api.letsencrypt.org/directory");
    });

    it("resolves auto: direct up to 200 users, nginx above", () => {
        assert.equal(resolveTlsMode("auto", 200), "direct");
        assert.equal(resolveTlsMode("auto", 201), "nginx");
        assert.equal(resolveTlsMode("direct", 5000), "direct");
        assert.equal(resolveTlsMode("nginx", 1), "nginx");
    });

    it("maps acmeServer keywords and keeps private URLs", () => {
        const nginx = {
            ...M,
            tlsMode: "nginx",
            letsencryptEmail: "a@example.com",
            endpointCaBundle: selfSignedPair("ca.example.test").chain,
        };
        const staging = parseSettings({ values: { ...nginx, acmeServer: "staging" } });
        assert.equal(staging.settings?.acmeDirectoryUrl, "https://acme-staging-v02.api.letsencrypt.org/directory");
        const own = parseSettings({ values: { ...nginx, acmeServer: "https://ca.internal.example/acme/directory" } });
        assert.equal(own.settings?.acmeDirectoryUrl, "https://ca.internal.example/acme/directory");
    });

    it("warns when SSH is opened to the world, when direct LE is given a non-production ACME server, and for self-signed", () => {
        const world = parseSettings({ values: { ...M, sshAllowedCidrs: JSON.stringify(["0.0.0.0/0"]) } });
        assert.ok(world.warnings.some((w) => /whole internet/.test(w)));
        const staging = parseSettings({ values: { ...M, tlsMode: "direct", acmeServer: "staging" } });
        assert.ok(staging.warnings.some((w) => /always uses the production directory/.test(w)));
        const selfSigned = parseSettings({ values: { ...M, certificate: "self-signed" } });
        assert.ok(selfSigned.warnings.some((w) => /will not trust/.test(w)));
    });

    it("accepts an IPv4 domain only for own or self-signed certificates", () => {
        assert.deepEqual(parseSettings({ values: { ...M, domain: "203.0.113.5", certificate: "self-signed" } }).errors, []);
        assert.equal(parseSettings({ values: { ...M, domain: "203.0.113.5" } }).errors.length, 1);
    });

    it("validates FQDNs and CIDRs", () => {
        for (const ok of ["chat.example.com", "a.b", "xn--bcher-kva.example", "chat.example.com."]) assert.ok(isFqdn(ok), ok);
        for (const bad of ["example", "-a.example.com", "a..b", "chat.example.123", ""]) assert.ok(!isFqdn(bad), bad);
        assert.deepEqual(parseCidr("0.0.0.0/0"), { ok: true });
        assert.equal(parseCidr("10.0.0.1/8").ok, false);
        assert.equal(parseCidr("10.0.0.0/33").ok, false);
    });

    it("tells private ranges from public ones, and takes a private range with sshAddress private", () => {
        for (const p of ["10.0.0.0/16", "10.0.0.0/8", "172.16.0.0/12", "172.31.255.0/24", "192.168.1.7/32", "100.64.0.0/10"])
            assert.ok(isPrivateCidr(p), p);
        for (const p of ["0.0.0.0/0", "8.0.0.0/7", "172.32.0.0/16", "198.51.100.7/32", "100.128.0.0/16", "10.0.0.1/8"])
            assert.ok(!isPrivateCidr(p), p);
        const cidrs = JSON.stringify(["10.0.0.0/16"]);
        assert.equal(parseSettings({ values: { ...M, sshAllowedCidrs: cidrs } }).errors.length, 1);
        const priv = parseSettings({ values: { ...M, sshAllowedCidrs: cidrs, sshAddress: "private" } });
        assert.deepEqual(priv.errors, []);
        assert.equal(priv.settings?.sshAddress, "private");
        // One public entry is enough for the default public address.
        const mixed = JSON.stringify(["10.0.0.0/16", "198.51.100.7/32"]);
        assert.deepEqual(parseSettings({ values: { ...M, sshAllowedCidrs: mixed } }).errors, []);
        assert.equal(parseSettings({ values: { ...M } }).settings?.sshAddress, "public");
    });

    it("checks an encrypted key it cannot read only for presence, and still checks the chain", () => {
        const unreadable = { secretKeys: new Set(["certificateKey"]), unreadableKeys: new Set(["certificateKey"]) };
        const own = { ...M, certificate: "own", certificateKey: "[secret]", endpointCaBundle: good.ca };
        const ok = parseSettings({ values: { ...own, certificateChain: good.chain }, ...unreadable });
        assert.deepEqual(ok.errors, []);
        assert.equal(ok.secrets?.certificateKey, undefined, "the placeholder is never handed on as the key");
        const readable = parseSettings({ values: { ...own, certificateChain: good.chain }, secretKeys: unreadable.secretKeys });
        assert.match(readable.errors.join(), /mattermost:certificateKey is not a PEM private key/);
        const wrongName = parseSettings({ values: { ...own, certificateChain: other.chain }, ...unreadable });
        assert.match(wrongName.errors.join(), /mattermost:certificateChain: the server certificate .* does not cover chat\.example\.com/);
        const email = parseSettings({
            values: { ...M, letsencryptEmail: "[secret]" },
            secretKeys: new Set(["letsencryptEmail"]),
            unreadableKeys: new Set(["letsencryptEmail"]),
        });
        assert.match(email.errors.join(), /mattermost:letsencryptEmail is stored encrypted/);
    });

    it("documents every key it reads (README and Pulumi.yaml are generated from the same list)", () => {
        const keys = CONFIG_KEYS.map((k) => k.key);
        assert.equal(new Set(keys).size, keys.length);
        for (const k of CONFIG_KEYS) assert.ok(k.description.length > 20, k.key);
    });
});
