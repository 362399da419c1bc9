// Issue 8, "Outgrowing one machine": database rds, fileStorage s3 and tlsMode alb under Pulumi's mocks (the resource
// graph, the security-group chain, no public database, no static credentials) and the combinations preview refuses.
import { strict as assert } from "node:assert";

import { finalSnapshotIdentifier } from "../../components/database";
import { bucketPolicyDocument } from "../../components/fileStorage";
import { ALB_SSL_POLICY } from "../../components/loadBalancer";
import { nthSubnetCidr } from "../../components/network";
import { parseSettings } from "../../components/settings";
import { renderMattermostUnit } from "../../components/steps";
import {
    MINIMAL_CONFIG,
    MOCK_SECRET_MARKERS,
    plainInputs,
    programError,
    ProgramRun,
    RecordedResource,
    runProgram,
    unwrapSecrets,
} from "./mocks";

const SG = "aws:ec2/securityGroup:SecurityGroup";
const INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule";
const EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule";
const RDS = "aws:rds/instance:Instance";
const SUBNET = "aws:ec2/subnet:Subnet";

const RDS_CONFIG = { database: "rds" };
const S3_CONFIG = { fileStorage: "s3" };
const ALB_CONFIG = { tlsMode: "alb" };
const ZONE = { route53ZoneId: "Z0123456789ABCDEFGHIJ" };

function group(run: ProgramRun, name: string): RecordedResource {
    const found = run.ofType(SG).filter((g) => g.name === name);
    assert.equal(found.length, 1, `security group ${name}`);
    return found[0];
}

/** Ingress rules of a security group, as "port from source" strings (source: a CIDR or another group's name). */
function ingressOf(run: ProgramRun, groupName: string): string[] {
    const byId = new Map(run.ofType(SG).map((g) => [g.id, g.name]));
    const id = group(run, groupName).id;
    return run
        .ofType(INGRESS)
        .filter((r) => r.inputs.securityGroupId === id)
        .map(
            (r) =>
                `${String(r.inputs.fromPort)} from ${String(r.inputs.cidrIpv4 ?? `sg:${byId.get(String(r.inputs.referencedSecurityGroupId))}`)}`,
        )
        .sort();
}

function stepStdin(run: ProgramRun, step: string): Record<string, string> {
    const cmd = run.ofType("command:remote:Command").find((c) => c.name === `mattermost-${step}`);
    assert.ok(cmd, `step ${step}`);
    const stdin = String(unwrapSecrets(cmd.inputs.stdin));
    return Object.fromEntries(
        stdin
            .trim()
            .split("\n")
            .map((line) => {
                const [name, value] = [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)];
                return [name, Buffer.from(value, "base64").toString("utf8")];
            }),
    );
}

function stepNames(run: ProgramRun): string[] {
    return run
        .ofType("command:remote:Command")
        .map((c) => c.name.replace(/^mattermost-/, ""))
        .filter((n) => n !== "scripts-dir");
}

describe("managed services: database rds", function () {
    this.timeout(60000);
    let run: ProgramRun;
    before(async () => {
        run = await runProgram({ ...MINIMAL_CONFIG, ...RDS_CONFIG });
    });

    it("creates an encrypted, private PostgreSQL 16 with deletion protection, a final snapshot and backups", () => {
        const db = run.one(RDS);
        assert.equal(db.inputs.engine, "postgres");
        assert.equal(db.inputs.engineVersion, "16");
        assert.equal(db.inputs.storageEncrypted, true);
        assert.equal(db.inputs.publiclyAccessible, false);
        assert.equal(db.inputs.deletionProtection, true);
        assert.equal(db.inputs.skipFinalSnapshot, false);
        assert.equal(db.inputs.finalSnapshotIdentifier, "mattermost-test-final");
        assert.equal(db.inputs.backupRetentionPeriod, 7);
        assert.equal(db.inputs.multiAz, false);
        assert.equal(db.inputs.instanceClass, "db.t4g.medium");
        assert.equal(db.inputs.dbName, "mattermost");
        assert.equal(db.inputs.username, "mmuser");
        const params = run.one("aws:rds/parameterGroup:ParameterGroup");
        assert.equal(params.inputs.family, "postgres16");
        assert.deepEqual(
            (params.inputs.parameters as { name: string; value: string }[]).map((p) => `${p.name}=${p.value}`),
            ["rds.force_ssl=1"],
        );
        assert.equal(db.inputs.parameterGroupName, params.name);
    });

    it("keeps the generated password a secret end to end (resource input, step input, never a plain output)", () => {
        const db = run.one(RDS);
        assert.match(plainInputs(db), /"password":"\[secret\]"/);
        assert.match(String(unwrapSecrets(db.inputs.password)), new RegExp(MOCK_SECRET_MARKERS[1]));
        for (const r of run.resources) assert.ok(!plainInputs(r).includes(MOCK_SECRET_MARKERS[1]), `${r.name} holds the password in clear`);
        for (const [name, out] of Object.entries(run.outputs)) {
            if (!out.secret) assert.ok(!JSON.stringify(out.value ?? null).includes(MOCK_SECRET_MARKERS[1]), name);
        }
    });

    it("puts it in two private subnets in two zones, with no route to the internet", () => {
        const privateSubnets = run.ofType(SUBNET).filter((s) => s.name.startsWith("mattermost-private-"));
        assert.deepEqual(privateSubnets.map((s) => s.inputs.cidrBlock).sort(), ["10.80.2.0/24", "10.80.3.0/24"]);
        assert.deepEqual(privateSubnets.map((s) => s.inputs.availabilityZone).sort(), ["eu-west-1a", "eu-west-1b"]);
        const group = run.one("aws:rds/subnetGroup:SubnetGroup");
        assert.deepEqual((group.inputs.subnetIds as string[]).sort(), privateSubnets.map((s) => s.id).sort());
        assert.equal(run.one(RDS).inputs.dbSubnetGroupName, group.name);
        const privateRoutes = run.ofType("aws:ec2/routeTable:RouteTable").find((t) => t.name === "mattermost-private");
        assert.ok(privateRoutes);
        assert.deepEqual(privateRoutes.inputs.routes ?? [], [], "no route out");
        for (const assoc of run.ofType("aws:ec2/routeTableAssociation:RouteTableAssociation")) {
            if (privateSubnets.some((s) => s.id === assoc.inputs.subnetId)) assert.equal(assoc.inputs.routeTableId, privateRoutes.id);
        }
    });

    it("admits 5432 only from the server's security group (no CIDR at all)", () => {
        assert.deepEqual(ingressOf(run, "mattermost-db"), ["5432 from sg:mattermost-server"]);
        assert.deepEqual(run.one(RDS).inputs.vpcSecurityGroupIds, [group(run, "mattermost-db").id]);
        assert.equal(run.ofType(EGRESS).filter((r) => r.inputs.securityGroupId === group(run, "mattermost-db").id).length, 0);
    });

    it("replaces the postgres and backup steps with the rds step, and the DataSource verifies the RDS certificate", () => {
        assert.deepEqual(
            stepNames(run),
            ["scripts", "volume", "rds", "nginx", "mattermost", "start"].filter((n) => n !== "scripts"),
        );
        const rds = stepStdin(run, "rds");
        assert.equal(rds.DB_HOST, "mattermost-db.c0mock0.eu-west-1.rds.amazonaws.com");
        assert.equal(rds.CA_URL, "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem");
        assert.equal(rds.SSLMODE, "verify-full");
        assert.match(rds.DB_PASSWORD, new RegExp(MOCK_SECRET_MARKERS[1]));
        const mm = stepStdin(run, "mattermost");
        assert.equal(
            mm.DATASOURCE,
            `postgres://mmuser:${MOCK_SECRET_MARKERS[1]}-mattermost-db-password@mattermost-db.c0mock0.eu-west-1.rds.amazonaws.com:5432/mattermost?sslmode=verify-full&sslrootcert=/etc/mattermost/rds-ca.pem&connect_timeout=10`,
        );
        // No local PostgreSQL to require (a unit that requires a missing unit never starts).
        assert.doesNotMatch(mm.UNIT_FILE, /postgresql/);
        assert.match(renderMattermostUnit("local"), /^Requires=postgresql\.service$/m);
        const patch = JSON.parse(mm.CONFIG_PATCH) as { SqlSettings: { DataSource: string } };
        assert.doesNotMatch(patch.SqlSettings.DataSource, /MOCK|:[^/]*@/, "no password in config.json");
        assert.equal(run.outputs.databaseEndpoint.value, "mattermost-db.c0mock0.eu-west-1.rds.amazonaws.com");
    });

    it("honours the instance class, Multi-AZ and retention settings", async () => {
        const custom = await runProgram({
            ...MINIMAL_CONFIG,
            ...RDS_CONFIG,
            rdsInstanceClass: "db.m7g.large",
            rdsMultiAz: "true",
            rdsBackupRetentionDays: "14",
            rdsAllocatedStorageGiB: "100",
        });
        const db = custom.one(RDS);
        assert.deepEqual(
            [db.inputs.instanceClass, db.inputs.multiAz, db.inputs.backupRetentionPeriod, db.inputs.allocatedStorage],
            ["db.m7g.large", true, 14, 100],
        );
    });

    it("the default stack creates none of it", async () => {
        const plain = await runProgram({ ...MINIMAL_CONFIG });
        for (const t of [RDS, "aws:rds/subnetGroup:SubnetGroup", "aws:s3/bucket:Bucket", "aws:lb/loadBalancer:LoadBalancer"]) {
            assert.equal(plain.ofType(t).length, 0, t);
        }
        assert.deepEqual(
            plain.ofType(SUBNET).map((s) => s.name),
            ["mattermost-public"],
        );
        assert.deepEqual(stepNames(plain).slice(0, 3), ["volume", "postgres", "backup"]);
    });
});

describe("managed services: fileStorage s3", function () {
    this.timeout(60000);
    let run: ProgramRun;
    before(async () => {
        run = await runProgram({ ...MINIMAL_CONFIG, ...S3_CONFIG });
    });

    it("creates a private bucket: public access blocked, owner-enforced, SSE, versioning, noncurrent versions expire", () => {
        const bucket = run.one("aws:s3/bucket:Bucket");
        assert.equal(bucket.inputs.forceDestroy, false);
        const block = run.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock");
        for (const k of ["blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"])
            assert.equal(block.inputs[k], true, k);
        assert.equal(block.inputs.bucket, bucket.id);
        assert.equal(
            (run.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls").inputs.rule as { objectOwnership: string }).objectOwnership,
            "BucketOwnerEnforced",
        );
        const sse = run.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration");
        assert.match(JSON.stringify(sse.inputs.rules), /"sseAlgorithm":"AES256"/);
        assert.equal(
            (run.one("aws:s3/bucketVersioning:BucketVersioning").inputs.versioningConfiguration as { status: string }).status,
            "Enabled",
        );
        const lifecycle = run.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration");
        const rules = lifecycle.inputs.rules as { status: string; noncurrentVersionExpiration: { noncurrentDays: number } }[];
        assert.equal(rules[0].status, "Enabled");
        assert.equal(rules[0].noncurrentVersionExpiration.noncurrentDays, 30);
        const policy = JSON.parse(String(run.one("aws:s3/bucketPolicy:BucketPolicy").inputs.policy)) as {
            Statement: { Effect: string; Condition: unknown }[];
        };
        assert.deepEqual(policy.Statement[0].Effect, "Deny");
        assert.deepEqual(policy.Statement[0].Condition, { Bool: { "aws:SecureTransport": "false" } });
    });

    it("grants the instance role this bucket only (inline policy, no wildcard resource, no other principal)", () => {
        const inline = run.ofType("aws:iam/rolePolicy:RolePolicy").find((p) => p.name === "mattermost-files");
        assert.ok(inline);
        assert.equal(inline.inputs.role, "mattermost-role");
        const doc = JSON.parse(String(inline.inputs.policy)) as { Statement: { Resource: string; Action: string[] }[] };
        assert.deepEqual(
            doc.Statement.map((s) => s.Resource),
            ["arn:aws:s3:::mattermost-files-20261201mock", "arn:aws:s3:::mattermost-files-20261201mock/*"],
        );
        for (const s of doc.Statement) for (const a of s.Action) assert.match(a, /^s3:[A-Za-z]+$/, "no s3:* wildcard");
        assert.equal(bucketPolicyDocument("arn:aws:s3:::x").includes('"*"'), false);
    });

    it("Mattermost uses the bucket through the role: amazons3, region, SSL, SSE, and empty access keys", () => {
        const patch = JSON.parse(stepStdin(run, "mattermost").CONFIG_PATCH) as { FileSettings: Record<string, unknown> };
        assert.deepEqual(patch.FileSettings, {
            DriverName: "amazons3",
            Directory: "/mnt/mattermost-data/mattermost/data/",
            AmazonS3Bucket: "mattermost-files-20261201mock",
            AmazonS3Region: "eu-west-1",
            AmazonS3Endpoint: "s3.eu-west-1.amazonaws.com",
            AmazonS3PathPrefix: "",
            AmazonS3AccessKeyId: "",
            AmazonS3SecretAccessKey: "",
            AmazonS3SSL: true,
            AmazonS3SSE: true,
            AmazonS3SignV2: false,
        });
        assert.equal(run.outputs.filesBucket.value, "mattermost-files-20261201mock");
    });
});

describe("managed services: tlsMode alb", function () {
    this.timeout(60000);
    let run: ProgramRun;
    before(async () => {
        run = await runProgram({ ...MINIMAL_CONFIG, ...ALB_CONFIG, ...ZONE });
    });

    it("spans two public subnets in two zones with an internet-facing ALB and a websocket-friendly idle timeout", () => {
        const publics = run.ofType(SUBNET).filter((s) => s.name.startsWith("mattermost-public"));
        assert.deepEqual(publics.map((s) => s.inputs.cidrBlock).sort(), ["10.80.0.0/24", "10.80.1.0/24"]);
        assert.deepEqual(publics.map((s) => s.inputs.availabilityZone).sort(), ["eu-west-1a", "eu-west-1b"]);
        const lb = run.one("aws:lb/loadBalancer:LoadBalancer");
        assert.equal(lb.inputs.internal, false);
        assert.equal(lb.inputs.loadBalancerType, "application");
        assert.deepEqual((lb.inputs.subnets as string[]).sort(), publics.map((s) => s.id).sort());
        assert.deepEqual(lb.inputs.securityGroups, [group(run, "mattermost-alb").id]);
        assert.ok(Number(lb.inputs.idleTimeout) > 60, "longer than Mattermost's websocket ping interval");
        assert.equal(lb.inputs.dropInvalidHeaderFields, true);
    });

    it("serves HTTPS with an ACM certificate and a TLS 1.2/1.3 policy, redirects 80, and checks Mattermost's ping on 8065", () => {
        const listeners = run.ofType("aws:lb/listener:Listener");
        const https = listeners.find((l) => l.inputs.port === 443);
        const http = listeners.find((l) => l.inputs.port === 80);
        assert.ok(https && http);
        assert.equal(https.inputs.protocol, "HTTPS");
        assert.equal(https.inputs.sslPolicy, ALB_SSL_POLICY);
        assert.equal(ALB_SSL_POLICY, "ELBSecurityPolicy-TLS13-1-2-2021-06");
        assert.equal(https.inputs.certificateArn, "arn:aws:acm:eu-west-1:123456789012:certificate/mattermost-cert");
        assert.equal(https.inputs.routingHttpResponseStrictTransportSecurityHeaderValue, "max-age=63072000");
        assert.deepEqual(http.inputs.defaultActions, [
            { type: "redirect", redirect: { protocol: "HTTPS", port: "443", statusCode: "HTTP_301" } },
        ]);
        const tg = run.one("aws:lb/targetGroup:TargetGroup");
        assert.equal(tg.inputs.port, 8065);
        assert.equal(tg.inputs.protocol, "HTTP");
        assert.equal((tg.inputs.healthCheck as { path: string }).path, "/api/v4/system/ping");
        const attachment = run.one("aws:lb/targetGroupAttachment:TargetGroupAttachment");
        assert.equal(attachment.inputs.targetId, "mattermost-instance-id");
        assert.equal(attachment.inputs.port, 8065);
        const cert = run.one("aws:acm/certificate:Certificate");
        assert.equal(cert.inputs.domainName, "chat.example.com");
        assert.equal(cert.inputs.validationMethod, "DNS");
    });

    it("validates the certificate through the zone and makes the domain an alias to the load balancer", () => {
        const records = run.ofType("aws:route53/record:Record");
        const validation = records.find((r) => r.name === "mattermost-cert-validation");
        assert.ok(validation);
        assert.equal(validation.inputs.type, "CNAME");
        assert.deepEqual(validation.inputs.records, ["_fedcba9876543210.mock.acm-validations.aws."]);
        assert.deepEqual(run.one("aws:acm/certificateValidation:CertificateValidation").inputs.validationRecordFqdns, [
            validation.inputs.name,
        ]);
        const a = records.find((r) => r.name === "mattermost-a");
        assert.ok(a);
        assert.equal(a.inputs.records, undefined, "no fixed IP");
        assert.deepEqual(a.inputs.aliases, [
            { name: "mattermost-lb-123456789.eu-west-1.elb.amazonaws.com", zoneId: "Z32O12XQLNTSW2", evaluateTargetHealth: true },
        ]);
    });

    it("the instance no longer opens 80/443 to the world; 8065 only from the load balancer, which reaches only 8065", () => {
        assert.deepEqual(ingressOf(run, "mattermost-server"), ["22 from 198.51.100.7/32", "8065 from sg:mattermost-alb"]);
        assert.deepEqual(ingressOf(run, "mattermost-alb"), ["443 from 0.0.0.0/0", "80 from 0.0.0.0/0"]);
        const albEgress = run.ofType(EGRESS).filter((r) => r.inputs.securityGroupId === group(run, "mattermost-alb").id);
        assert.deepEqual(
            albEgress.map((r) => [r.inputs.fromPort, r.inputs.referencedSecurityGroupId]),
            [[8065, group(run, "mattermost-server").id]],
        );
    });

    it("Mattermost listens on :8065 without TLS and without the forwarder; no certificate step; nginx off", () => {
        const mm = stepStdin(run, "mattermost");
        const patch = JSON.parse(mm.CONFIG_PATCH) as { ServiceSettings: Record<string, unknown> };
        assert.deepEqual(patch.ServiceSettings, {
            SiteURL: "https://chat.example.com",
            ListenAddress: ":8065",
            ConnectionSecurity: "",
            Forward80To443: false,
            UseLetsEncrypt: false,
            TLSCertFile: "",
            TLSKeyFile: "",
            TLSStrictTransport: false,
        });
        assert.deepEqual(
            stepNames(run),
            ["scripts", "volume", "postgres", "backup", "nginx", "mattermost", "start"].filter((n) => n !== "scripts"),
        );
        assert.equal(stepStdin(run, "nginx").PROXY, "off");
        assert.equal(stepStdin(run, "start").HEALTH_URL, "http://127.0.0.1:8065/api/v4/system/ping");
    });

    it("the endpoint check expects the load balancer's DNS name (it has no fixed IP) and runs after the HTTPS listener", () => {
        const check = run.one("command:local:Command");
        const env = unwrapSecrets(check.inputs.environment) as Record<string, string>;
        assert.equal(env.MM_VERIFY_ADDRESS, "mattermost-lb-123456789.eu-west-1.elb.amazonaws.com");
        assert.equal(env.MM_VERIFY_CA, "", "ACM chains to public roots");
        assert.equal(run.outputs.loadBalancerDnsName.value, "mattermost-lb-123456789.eu-west-1.elb.amazonaws.com");
        assert.equal(run.outputs.tlsMode.value, "alb");
    });

    it("without route53ZoneId: no records, the validation records are an output, and preview warns", async () => {
        const noZone = await runProgram({ ...MINIMAL_CONFIG, ...ALB_CONFIG });
        assert.equal(noZone.ofType("aws:route53/record:Record").length, 0);
        assert.equal(noZone.one("aws:acm/certificateValidation:CertificateValidation").inputs.validationRecordFqdns, undefined);
        assert.deepEqual(noZone.outputs.certificateValidationRecords.value, [
            { name: "_0123456789abcdef.chat.example.com.", type: "CNAME", value: "_fedcba9876543210.mock.acm-validations.aws." },
        ]);
        const parsed = parseSettings({ values: { ...MINIMAL_CONFIG, ...ALB_CONFIG } });
        assert.ok(
            parsed.warnings.some((w) => /mattermost:route53ZoneId/.test(w) && /certificateValidationRecords/.test(w)),
            parsed.warnings.join("\n"),
        );
    });
});

describe("managed services: all three switches together", function () {
    this.timeout(60000);
    let run: ProgramRun;
    before(async () => {
        run = await runProgram({ ...MINIMAL_CONFIG, ...RDS_CONFIG, ...S3_CONFIG, ...ALB_CONFIG, ...ZONE, snapshots: "false" });
    });

    it("builds the whole graph once: four subnets, three security groups, ALB, RDS, bucket", () => {
        assert.deepEqual(
            run
                .ofType(SUBNET)
                .map((s) => s.inputs.cidrBlock)
                .sort(),
            ["10.80.0.0/24", "10.80.1.0/24", "10.80.2.0/24", "10.80.3.0/24"],
        );
        assert.deepEqual(
            run
                .ofType(SG)
                .map((g) => g.name)
                .sort(),
            ["mattermost-alb", "mattermost-db", "mattermost-server"],
        );
        for (const t of [RDS, "aws:s3/bucket:Bucket", "aws:lb/loadBalancer:LoadBalancer", "aws:acm/certificate:Certificate"]) run.one(t);
        for (const token of ["Network", "Server", "DataVolume", "Database", "FileStorage", "LoadBalancer", "Dns"]) {
            assert.equal(run.ofType(`mattermost:index:${token}`).length, 1, token);
        }
        assert.equal(run.ofType("aws:dlm/lifecyclePolicy:LifecyclePolicy").length, 0, "snapshots off");
    });

    it("the security-group chain: world -> ALB 80/443 -> instance 8065 -> RDS 5432, and nothing else from the world", () => {
        assert.deepEqual(ingressOf(run, "mattermost-alb"), ["443 from 0.0.0.0/0", "80 from 0.0.0.0/0"]);
        assert.deepEqual(ingressOf(run, "mattermost-server"), ["22 from 198.51.100.7/32", "8065 from sg:mattermost-alb"]);
        assert.deepEqual(ingressOf(run, "mattermost-db"), ["5432 from sg:mattermost-server"]);
        const world = run.ofType(INGRESS).filter((r) => r.inputs.cidrIpv4 === "0.0.0.0/0");
        assert.deepEqual(world.map((r) => r.inputs.securityGroupId).sort(), [
            group(run, "mattermost-alb").id,
            group(run, "mattermost-alb").id,
        ]);
    });

    it("no public database: not publicly accessible, only private subnets, no world rule on its group", () => {
        const db = run.one(RDS);
        assert.equal(db.inputs.publiclyAccessible, false);
        const subnetGroup = run.one("aws:rds/subnetGroup:SubnetGroup");
        const publicIds = run
            .ofType(SUBNET)
            .filter((s) => s.name.startsWith("mattermost-public"))
            .map((s) => s.id);
        for (const id of subnetGroup.inputs.subnetIds as string[]) assert.ok(!publicIds.includes(id), id);
    });

    it("no static credentials anywhere: no IAM access keys, no key material in any input or output", () => {
        assert.equal(run.ofType("aws:iam/accessKey:AccessKey").length, 0);
        assert.equal(run.ofType("aws:iam/user:User").length, 0);
        const everything = run.resources.map((r) => plainInputs(r)).join("\n") + JSON.stringify(run.outputs);
        assert.doesNotMatch(everything, /AKIA[0-9A-Z]{16}/);
        assert.doesNotMatch(everything, /aws_secret_access_key|AWS_SECRET_ACCESS_KEY/);
        const patch = JSON.parse(stepStdin(run, "mattermost").CONFIG_PATCH) as { FileSettings: Record<string, unknown> };
        assert.equal(patch.FileSettings.AmazonS3AccessKeyId, "");
        assert.equal(patch.FileSettings.AmazonS3SecretAccessKey, "");
    });

    it("steps: rds instead of postgres/backup, nginx off, Mattermost on 8065 with RDS and S3", () => {
        assert.deepEqual(
            stepNames(run),
            ["scripts", "volume", "rds", "nginx", "mattermost", "start"].filter((n) => n !== "scripts"),
        );
        const patch = JSON.parse(stepStdin(run, "mattermost").CONFIG_PATCH) as {
            ServiceSettings: Record<string, unknown>;
            SqlSettings: Record<string, unknown>;
            FileSettings: Record<string, unknown>;
        };
        assert.equal(patch.ServiceSettings.ListenAddress, ":8065");
        assert.match(String(patch.SqlSettings.DataSource), /sslmode=verify-full/);
        assert.equal(patch.FileSettings.DriverName, "amazons3");
    });
});

describe("managed services: combinations preview refuses, naming the key and the fix", function () {
    this.timeout(60000);
    const M = MINIMAL_CONFIG;
    const BAD: { why: string; config: Record<string, string>; key: string; fix: RegExp }[] = [
        {
            why: "alb with an IP address as domain",
            config: { ...M, ...ALB_CONFIG, domain: "203.0.113.5" },
            key: "domain",
            fix: /needs a DNS name/,
        },
        {
            why: "alb with an own certificate",
            config: { ...M, ...ALB_CONFIG, certificate: "own" },
            key: "certificate",
            fix: /pulumi config rm mattermost:certificate/,
        },
        {
            why: "alb with a self-signed certificate",
            config: { ...M, ...ALB_CONFIG, certificate: "self-signed" },
            key: "certificate",
            fix: /ACM/,
        },
        {
            why: "alb with Let's Encrypt",
            config: { ...M, ...ALB_CONFIG, certificate: "letsencrypt" },
            key: "certificate",
            fix: /tlsMode nginx/,
        },
        {
            why: "acm without alb",
            config: { ...M, certificate: "acm" },
            key: "certificate",
            fix: /pulumi config set mattermost:tlsMode alb/,
        },
        {
            why: "alb in an existing subnet",
            config: { ...M, ...ALB_CONFIG, subnetId: "subnet-0123456789abcdef0" },
            key: "subnetId",
            fix: /two availability zones/,
        },
        {
            why: "rds in an existing subnet",
            config: { ...M, ...RDS_CONFIG, subnetId: "subnet-0123456789abcdef0" },
            key: "subnetId",
            fix: /pulumi config rm mattermost:subnetId/,
        },
        {
            why: "rds in a VPC too small for four subnets",
            config: { ...M, ...RDS_CONFIG, vpcCidr: "10.80.0.0/24" },
            key: "vpcCidr",
            fix: /\/22 or wider/,
        },
        {
            why: "rds and s3 with the instance-local snapshot policy on",
            config: { ...M, ...RDS_CONFIG, ...S3_CONFIG },
            key: "snapshots",
            fix: /pulumi config set mattermost:snapshots false/,
        },
        { why: "an unknown database", config: { ...M, database: "aurora" }, key: "database", fix: /"local", "rds"/ },
        { why: "an unknown file storage", config: { ...M, fileStorage: "efs" }, key: "fileStorage", fix: /"local", "s3"/ },
        {
            why: "a bad RDS instance class",
            config: { ...M, ...RDS_CONFIG, rdsInstanceClass: "t3.micro" },
            key: "rdsInstanceClass",
            fix: /db\.t4g\.medium/,
        },
        {
            why: "RDS retention beyond 35 days",
            config: { ...M, ...RDS_CONFIG, rdsBackupRetentionDays: "90" },
            key: "rdsBackupRetentionDays",
            fix: /outside 1\.\.35/,
        },
        {
            why: "RDS storage below 20 GiB",
            config: { ...M, ...RDS_CONFIG, rdsAllocatedStorageGiB: "5" },
            key: "rdsAllocatedStorageGiB",
            fix: /outside 20\.\.65536/,
        },
    ];
    for (const c of BAD) {
        it(`${c.why} -> mattermost:${c.key}`, async () => {
            const { message, resources } = await programError(c.config);
            assert.equal(resources, 0, "no resource registered");
            assert.match(message, new RegExp(`mattermost:${c.key}\\b`), message);
            assert.match(message, c.fix, message);
        });
    }

    it("fileStorage s3 without aws:region (Mattermost's AmazonS3Region) -> names aws:region and the command", () => {
        const r = parseSettings({ values: { ...M, ...S3_CONFIG } });
        assert.equal(r.settings, undefined);
        assert.ok(
            r.errors.some((e) => /mattermost:fileStorage/.test(e) && /pulumi config set aws:region eu-west-1/.test(e)),
            r.errors.join("\n"),
        );
        const ok = parseSettings({ values: { ...M, ...S3_CONFIG }, awsRegion: "eu-central-1" });
        assert.deepEqual(ok.errors, []);
        assert.equal(ok.settings?.awsRegion, "eu-central-1");
    });

    it("auto never picks alb, and the valid shapes pass", () => {
        const big = parseSettings({ values: { ...M, expectedUsers: "100000", letsencryptEmail: "ops@example.com" } });
        assert.equal(big.settings?.tlsMode, "nginx");
        const alb = parseSettings({ values: { ...M, ...ALB_CONFIG, ...RDS_CONFIG } });
        assert.deepEqual(alb.errors, []);
        assert.equal(alb.settings?.certificate, "acm", "acm is alb's default certificate");
    });
});

describe("managed services: pure helpers", () => {
    it("numbers the /24 subnets inside the VPC", () => {
        assert.deepEqual(
            [0, 1, 2, 3].map((n) => nthSubnetCidr("10.80.0.0/16", n)),
            ["10.80.0.0/24", "10.80.1.0/24", "10.80.2.0/24", "10.80.3.0/24"],
        );
        assert.equal(nthSubnetCidr("192.168.252.0/22", 3), "192.168.255.0/24");
    });

    it("makes a valid final snapshot identifier from any project and stack name", () => {
        assert.equal(finalSnapshotIdentifier("mattermost", "prod"), "mattermost-prod-final");
        assert.equal(finalSnapshotIdentifier("1x", "org/team.dev__x"), "x-org-team-dev-x-final");
    });
});
