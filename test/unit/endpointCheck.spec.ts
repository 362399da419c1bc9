import { strict as assert } from "node:assert";

import { diagnose, formatDiagnosis, Observations } from "../../components/endpointCheck";

const DOMAIN = "chat.example.com";
const EIP = "203.0.113.10";
const healthy: Observations = {
    dns: { resolver: "DNS server 192.0.2.53", addresses: [EIP] },
    port80: "open",
    port443: "open",
    ping: { status: 200, body: '{"status":"OK"}' },
};

const cases: { why: string; o: Partial<Observations>; first: RegExp; fix: RegExp }[] = [
    {
        why: "no A record",
        o: { dns: { resolver: "the system resolver", addresses: [], error: "ENOTFOUND" } },
        first: /does not resolve.*ENOTFOUND/,
        fix: /Create an A record chat\.example\.com -> 203\.0\.113\.10/,
    },
    {
        why: "a stale record",
        o: { dns: { resolver: "DNS server 192.0.2.53", addresses: ["198.51.100.9"] } },
        first: /resolves to 198\.51\.100\.9 \(asked DNS server 192\.0\.2\.53\), not to the server's Elastic IP/,
        fix: /TTL/,
    },
    {
        why: "port 80 dropped, no TLS site yet",
        o: { port80: "timeout", port443: "refused", ping: { errorCode: "ECONNREFUSED" } },
        first: /Port 80 .* timed out/,
        fix: /firewall/,
    },
    {
        why: "Mattermost stopped behind nginx",
        o: { ping: { status: 502, body: "<html>502 Bad Gateway</html>" } },
        first: /proxy answers 502/,
        fix: /systemctl status mattermost/,
    },
    {
        why: "untrusted staging certificate",
        o: { ping: { errorCode: "UNABLE_TO_GET_ISSUER_CERT_LOCALLY", issuer: "(STAGING) Ersatz Edamame E1" } },
        first: /not trusted here: UNABLE_TO_GET_ISSUER_CERT_LOCALLY/,
        fix: /endpointCaBundle/,
    },
    {
        why: "rate limited",
        o: {
            port443: "refused",
            ping: { errorCode: "ECONNREFUSED" },
            journal: "certbot: too many certificates (5) already issued for this exact set of domains",
        },
        first: /Nothing listens on port 443/,
        fix: /certbot/,
    },
    {
        why: "unhealthy Mattermost",
        o: { ping: { status: 500, body: '{"status":"UNHEALTHY"}' } },
        first: /ping answered 500/,
        fix: /database/,
    },
];

describe("endpoint check: diagnosis (pure)", () => {
    for (const c of cases) {
        it(`${c.why}: names the cause and the fix first`, () => {
            const findings = diagnose(DOMAIN, EIP, { ...healthy, ...c.o });
            assert.match(findings[0].problem, c.first);
            assert.match(findings[0].fix, c.fix);
        });
    }

    it("a rate limit in the journal adds the staging advice", () => {
        const findings = diagnose(DOMAIN, EIP, {
            ...healthy,
            port443: "refused",
            journal: "Error: urn:ietf:params:acme:error:rateLimited",
        });
        assert.ok(findings.some((f) => /rate limit/.test(f.problem) && /acmeServer staging/.test(f.fix)));
    });

    it("each scenario gives a different first message", () => {
        const firsts = cases.map((c) => diagnose(DOMAIN, EIP, { ...healthy, ...c.o })[0].problem);
        assert.equal(new Set(firsts).size, firsts.length);
    });

    it("formats the message with the timeout, numbered causes, observations and the journal tail", () => {
        const text = formatDiagnosis(
            { domain: DOMAIN, expectedAddress: EIP, timeoutMs: 600_000 },
            {
                ...healthy,
                ping: { status: 502, body: "bad gateway" },
                journal: "line 1\nnginx: upstream refused",
            },
        );
        assert.match(text, /^https:\/\/chat\.example\.com\/api\/v4\/system\/ping did not answer within 600 s\./);
        assert.match(text, /\n {2}1\. The proxy answers 502/);
        assert.match(text, /port 80: open; port 443: open/);
        assert.match(text, /Server journal .*\n {2}line 1\n {2}nginx: upstream refused$/);
    });
});

describe("endpoint diagnosis behind a load balancer (tlsMode alb: the expected address is the ALB's DNS name)", () => {
    const ALB = "mattermost-lb-123456789.eu-west-1.elb.amazonaws.com";
    const viaAlb = (domainAddresses: string[]): Observations => ({
        ...healthy,
        dns: { resolver: "DNS server 192.0.2.53", addresses: domainAddresses },
        expectedName: { addresses: ["198.51.100.20", "198.51.100.21"] },
        ping: { errorCode: "ETIMEDOUT", error: "timed out" },
    });

    it("accepts the domain resolving to any of the load balancer's current addresses", () => {
        const findings = diagnose(DOMAIN, ALB, viaAlb(["198.51.100.21"]));
        assert.ok(!findings.some((f) => /^DNS:/.test(f.problem)), JSON.stringify(findings));
    });

    it("names the load balancer and asks for a CNAME or alias when the domain points elsewhere", () => {
        const [first] = diagnose(DOMAIN, ALB, viaAlb([EIP]));
        assert.match(
            first.problem,
            new RegExp(`not to the load balancer ${ALB.replace(/\./g, "\\.")} \\(198\\.51\\.100\\.20, 198\\.51\\.100\\.21\\)`),
        );
        assert.match(first.fix, /CNAME/);
        assert.match(first.fix, /never use an A record with its current IPs/);
    });
});
