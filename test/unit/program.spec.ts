import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";

import { endpointCheckScript } from "../../components/endpoint";
import { MINIMAL_CONFIG, MOCK_SECRET_MARKERS, plainInputs, ProgramRun, RecordedResource, runProgram, unwrapSecrets } from "./mocks";
import { issuePair, selfSignedPair } from "./pki";

const SG_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule";

function ingressPorts(run: ProgramRun): { port: unknown; cidr: unknown; description: unknown }[] {
    return run.ofType(SG_INGRESS).map((r) => ({ port: r.inputs.fromPort, cidr: r.inputs.cidrIpv4, description: r.inputs.description }));
}

describe("program: default stack", function () {
    this.timeout(30000);
    let run: ProgramRun;
    before(async () => {
        run = await runProgram({ ...MINIMAL_CONFIG });
    });

    it("creates one component of each kind with mattermost:index type tokens", () => {
        for (const token of ["Network", "Server", "DataVolume"]) {
            assert.equal(run.ofType(`mattermost:index:${token}`).length, 1, token);
        }
        assert.equal(run.ofType("mattermost:index:Dns").length, 0, "no DNS component without route53ZoneId");
    });

    it("builds a dedicated VPC with a public subnet, gateway and default route", () => {
        assert.equal(run.one("aws:ec2/vpc:Vpc").inputs.cidrBlock, "10.80.0.0/16");
        assert.equal(run.one("aws:ec2/subnet:Subnet").inputs.cidrBlock, "10.80.0.0/24");
        run.one("aws:ec2/internetGateway:InternetGateway");
        const routes = run.one("aws:ec2/routeTable:RouteTable").inputs.routes as { cidrBlock: string; gatewayId: string }[];
        assert.deepEqual(
            routes.map((r) => r.cidrBlock),
            ["0.0.0.0/0"],
        );
        run.one("aws:ec2/routeTableAssociation:RouteTableAssociation");
    });

    it("opens 80 and 443 to the world, 22 only to the deploy CIDR, and describes every rule", () => {
        const rules = ingressPorts(run);
        assert.deepEqual(rules.map((r) => r.port).sort(), [22, 443, 80]);
        assert.deepEqual(
            rules.filter((r) => r.port !== 22).map((r) => r.cidr),
            ["0.0.0.0/0", "0.0.0.0/0"],
        );
        assert.deepEqual(
            rules.filter((r) => r.port === 22).map((r) => r.cidr),
            ["198.51.100.7/32"],
        );
        for (const r of [...run.ofType(SG_INGRESS), ...run.ofType("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")]) {
            assert.ok(typeof r.inputs.description === "string" && r.inputs.description.length > 10, `${r.name} has a description`);
        }
        assert.ok(String(run.one("aws:ec2/securityGroup:SecurityGroup").inputs.description).length > 0);
    });

    it("runs Ubuntu 24.04 from Canonical, IMDSv2 only, encrypted root volume, no public IP of its own", () => {
        const ami = run.invokes.find((i) => i.token === "aws:ec2/getAmi:getAmi");
        assert.ok(ami);
        assert.deepEqual(ami.inputs.owners, ["099720109477"]);
        assert.match(JSON.stringify(ami.inputs.filters), /ubuntu-noble-24\.04-amd64-server/);
        const instance = run.one("aws:ec2/instance:Instance");
        assert.equal(instance.inputs.instanceType, "t3.medium");
        assert.equal((instance.inputs.metadataOptions as { httpTokens: string }).httpTokens, "required");
        assert.equal((instance.inputs.rootBlockDevice as { encrypted: boolean }).encrypted, true);
        assert.equal(instance.inputs.associatePublicIpAddress, false);
    });

    it("attaches an Elastic IP through a separate association", () => {
        assert.equal(run.one("aws:ec2/eip:Eip").inputs.domain, "vpc");
        run.one("aws:ec2/eipAssociation:EipAssociation");
    });

    it("generates an ED25519 SSH key pair and gives the instance SSM access", () => {
        assert.equal(run.one("tls:index/privateKey:PrivateKey").inputs.algorithm, "ED25519");
        assert.match(String(run.one("aws:ec2/keyPair:KeyPair").inputs.publicKey), /^ssh-ed25519 /);
        assert.equal(
            run.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment").inputs.policyArn,
            "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
        );
        run.one("aws:iam/instanceProfile:InstanceProfile");
    });

    it("keeps data on a separate encrypted volume that survives instance replacement", () => {
        const volume = run.one("aws:ebs/volume:Volume");
        assert.equal(volume.inputs.encrypted, true);
        assert.equal(volume.inputs.size, 20);
        assert.equal(volume.inputs.availabilityZone, "eu-west-1a", "same zone as the instance");
        assert.equal((volume.inputs.tags as Record<string, string>)["mattermost-backup"], "mattermost-test", "project-stack");
        assert.equal(volume.inputs.snapshotId, undefined, "an empty volume unless restoring");
        const attachment = run.one("aws:ec2/volumeAttachment:VolumeAttachment");
        assert.equal(attachment.inputs.deviceName, "/dev/sdf");
        assert.equal(attachment.inputs.stopInstanceBeforeDetaching, true);
    });

    it("exports the url, IP, instance, resolved TLS mode and SSH command; the private key only as a secret", () => {
        assert.deepEqual(run.outputs.url, { value: "https://chat.example.com", secret: false });
        assert.equal(run.outputs.publicIp.value, "203.0.113.10");
        assert.equal(run.outputs.instanceId.value, "mattermost-instance-id");
        assert.equal(run.outputs.tlsMode.value, "direct");
        assert.match(String(run.outputs.sshCommand.value), /ubuntu@203\.0\.113\.10/);
        assert.equal(run.outputs.sshPrivateKey.secret, true);
    });
});

describe("program: the verified endpoint", function () {
    this.timeout(60000);
    const stagingRoot = selfSignedPair("staging-root.example.test").chain;

    it("runs the endpoint check on the operator's machine after every server step, with the journal key as a secret", async () => {
        const run = await runProgram(MINIMAL_CONFIG);
        const check = run.one("command:local:Command");
        assert.equal(check.name, "mattermost-endpoint-check");
        assert.equal(check.inputs.create, "node -");
        assert.equal(check.inputs.stdin, endpointCheckScript());
        const env = unwrapSecrets(check.inputs.environment) as Record<string, string>;
        assert.equal(env.MM_VERIFY_DOMAIN, "chat.example.com");
        assert.equal(env.MM_VERIFY_ADDRESS, "203.0.113.10");
        assert.equal(env.MM_VERIFY_TIMEOUT_SECONDS, "600");
        assert.equal(env.MM_VERIFY_CA, "", "Let's Encrypt production: the public roots");
        assert.match(env.MM_VERIFY_SSH_KEY, new RegExp(MOCK_SECRET_MARKERS[0]));
        assert.ok(!plainInputs(check).includes(MOCK_SECRET_MARKERS[0]));
        // Its triggers hold every step's id, so it cannot run before the last step and re-runs when one changes.
        const stepIds = run
            .ofType("command:remote:Command")
            .filter((c) => c.name !== "mattermost-scripts-dir")
            .map((c) => c.id);
        assert.ok(stepIds.length >= 5);
        for (const id of stepIds) assert.ok((check.inputs.triggers as unknown[]).includes(id), id);
        assert.deepEqual(run.outputs.url, { value: "https://chat.example.com", secret: false });
    });

    it("trusts the generated certificate for self-signed, the configured CA for staging, and honours the timeout", async () => {
        const selfSigned = await runProgram({ ...MINIMAL_CONFIG, certificate: "self-signed", endpointTimeoutSeconds: "120" });
        const env1 = unwrapSecrets(selfSigned.one("command:local:Command").inputs.environment) as Record<string, string>;
        assert.match(env1.MM_VERIFY_CA, /MOCK-mattermost-tls/);
        assert.equal(env1.MM_VERIFY_TIMEOUT_SECONDS, "120");
        const staging = await runProgram({
            ...MINIMAL_CONFIG,
            tlsMode: "nginx",
            letsencryptEmail: "a@example.com",
            acmeServer: "staging",
            endpointCaBundle: stagingRoot,
        });
        const env2 = unwrapSecrets(staging.one("command:local:Command").inputs.environment) as Record<string, string>;
        assert.equal(env2.MM_VERIFY_CA, stagingRoot);
    });

    it("the check script is Node-only CommonJS and runs only when asked", () => {
        const script = endpointCheckScript();
        const required = [...script.matchAll(/require\("([^"]+)"\)/g)].map((m) => m[1]);
        assert.ok(required.length > 0 && required.every((m) => m.startsWith("node:")), required.join(", "));
        assert.match(script, /process\.env\.MM_VERIFY_RUN === "1"/);
    });
});

describe("program: backups and restore", function () {
    this.timeout(60000);

    it("snapshots the data volume daily through DLM by default, selected by this stack's tag", async () => {
        const run = await runProgram(MINIMAL_CONFIG);
        const policy = run.one("aws:dlm/lifecyclePolicy:LifecyclePolicy");
        assert.equal(policy.inputs.state, "ENABLED");
        const details = policy.inputs.policyDetails as {
            resourceTypes: string[];
            targetTags: Record<string, string>;
            schedules: {
                createRule: { interval: number; intervalUnit: string; times: string };
                retainRule: { count: number };
                tagsToAdd: Record<string, string>;
            }[];
        };
        assert.deepEqual(details.resourceTypes, ["VOLUME"]);
        assert.deepEqual(details.targetTags, { "mattermost-backup": "mattermost-test" });
        const volume = run.one("aws:ebs/volume:Volume");
        assert.equal(
            (volume.inputs.tags as Record<string, string>)["mattermost-backup"],
            "mattermost-test",
            "the policy selects this volume",
        );
        assert.deepEqual(details.schedules[0].createRule, { interval: 24, intervalUnit: "HOURS", times: "03:00" });
        assert.equal(details.schedules[0].retainRule.count, 7);
        assert.deepEqual(details.schedules[0].tagsToAdd, { "mattermost-backup": "mattermost-test" });
        assert.equal(policy.inputs.executionRoleArn, "arn:aws:iam::123456789012:role/mattermost-snapshot-role");
    });

    it("its role is assumable only by DLM and may snapshot only the data volume and expire only its own snapshots", async () => {
        const run = await runProgram(MINIMAL_CONFIG);
        const role = run.ofType("aws:iam/role:Role").find((r) => r.name === "mattermost-snapshot-role");
        assert.ok(role);
        const trust = JSON.parse(String(role.inputs.assumeRolePolicy)) as { Statement: { Principal: { Service: string } }[] };
        assert.deepEqual(
            trust.Statement.map((st) => st.Principal.Service),
            ["dlm.amazonaws.com"],
        );
        const attached = run
            .ofType("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
            .filter((a) => String(a.inputs.role).includes("snapshot"));
        assert.deepEqual(attached, [], "no managed policy, only the inline one");
        const inline = run.one("aws:iam/rolePolicy:RolePolicy");
        const doc = JSON.parse(String(inline.inputs.policy)) as {
            Statement: { Action: string | string[]; Resource: string | string[]; Condition?: Record<string, Record<string, string>> }[];
        };
        const actions = doc.Statement.flatMap((st) => (Array.isArray(st.Action) ? st.Action : [st.Action])).sort();
        assert.deepEqual(actions, [
            "ec2:CreateSnapshot",
            "ec2:CreateTags",
            "ec2:DeleteSnapshot",
            "ec2:DescribeInstances",
            "ec2:DescribeSnapshots",
            "ec2:DescribeVolumes",
        ]);
        for (const st of doc.Statement) {
            const resources = Array.isArray(st.Resource) ? st.Resource : [st.Resource];
            const actionList = Array.isArray(st.Action) ? st.Action : [st.Action];
            if (resources.includes("*"))
                assert.ok(
                    actionList.every((a) => a.startsWith("ec2:Describe")),
                    "only Describe on *",
                );
            if (actionList.includes("ec2:CreateSnapshot"))
                assert.ok(resources.includes("arn:aws:ec2:eu-west-1:123456789012:volume/mattermost-volume-id"));
            if (actionList.includes("ec2:DeleteSnapshot"))
                assert.deepEqual(st.Condition, { StringEquals: { "aws:ResourceTag/mattermost-backup": "mattermost-test" } });
        }
    });

    it("takes the schedule and retention from config, and snapshots: false removes the policy and its role", async () => {
        const run = await runProgram({ ...MINIMAL_CONFIG, snapshotTime: "22:15", snapshotRetainCount: "30" });
        const details = run.one("aws:dlm/lifecyclePolicy:LifecyclePolicy").inputs.policyDetails as {
            schedules: { createRule: { times: string }; retainRule: { count: number } }[];
        };
        assert.equal(details.schedules[0].createRule.times, "22:15");
        assert.equal(details.schedules[0].retainRule.count, 30);
        const off = await runProgram({ ...MINIMAL_CONFIG, snapshots: "false" });
        assert.deepEqual(off.ofType("aws:dlm/lifecyclePolicy:LifecyclePolicy"), []);
        assert.ok(!off.ofType("aws:iam/role:Role").some((r) => r.name === "mattermost-snapshot-role"));
    });

    it("restores by config: dataVolumeSnapshotId creates the data volume from the snapshot", async () => {
        const run = await runProgram({ ...MINIMAL_CONFIG, dataVolumeSnapshotId: "snap-0123456789abcdef0" });
        assert.equal(run.one("aws:ebs/volume:Volume").inputs.snapshotId, "snap-0123456789abcdef0");
        // Swapping the volume stops the instance to detach the old one; a new volume id replaces (re-runs) the
        // resource that starts it again, before the server steps.
        const running = run.one("aws:ec2transitgateway/instanceState:InstanceState");
        assert.equal(running.inputs.state, "running");
        assert.equal(running.inputs.instanceId, "mattermost-instance-id");
        const source = fs.readFileSync(path.join(__dirname, "..", "..", "components", "dataVolume.ts"), "utf8");
        assert.match(source, /dependsOn: \[this\.attachment\], replacementTrigger: volume\.id/);
        assert.match(fs.readFileSync(path.join(__dirname, "..", "..", "index.ts"), "utf8"), /dependsOn: \[data\.instanceRunning\]/);
    });
});

describe("program: options and policies", function () {
    this.timeout(60000);

    it("marks the data volume retainOnDelete+protect and the attachment deleteBeforeReplace", async () => {
        // Resource options are not visible to mocks; read them where they are declared.
        const source = fs.readFileSync(path.join(__dirname, "..", "..", "components", "dataVolume.ts"), "utf8");
        assert.match(source, /retainOnDelete: true, protect: args\.protect \?\? true/);
        assert.match(source, /deleteBeforeReplace: true/);
    });

    it("opens SSH only to the listed CIDRs, one described rule each", async () => {
        const run = await runProgram({ ...MINIMAL_CONFIG, sshAllowedCidrs: JSON.stringify(["198.51.100.7/32", "203.0.113.0/24"]) });
        const ssh = ingressPorts(run).filter((r) => r.port === 22);
        assert.deepEqual(
            ssh.map((r) => r.cidr),
            ["198.51.100.7/32", "203.0.113.0/24"],
        );
        assert.ok(ssh.every((r) => String(r.description).includes("SSH from")));
    });

    it("with sshAddress private, installs over the instance's private IP and prints that in sshCommand", async () => {
        const run = await runProgram({ ...MINIMAL_CONFIG, sshAllowedCidrs: JSON.stringify(["10.0.0.0/16"]), sshAddress: "private" });
        assert.deepEqual(
            ingressPorts(run)
                .filter((r) => r.port === 22)
                .map((r) => r.cidr),
            ["10.0.0.0/16"],
        );
        // The connection carries the SSH key, so the whole object is a secret.
        const host = (r: RecordedResource) => (unwrapSecrets(r.inputs.connection) as { host: string }).host;
        const commands = [...run.ofType("command:remote:Command"), run.one("command:remote:CopyToRemote")];
        assert.ok(commands.length > 5);
        for (const c of commands) assert.equal(host(c), "10.80.0.10", c.name);
        assert.match(String(run.outputs.sshCommand.value), /ubuntu@10\.80\.0\.10$/);
        const publicRun = await runProgram({ ...MINIMAL_CONFIG });
        for (const c of publicRun.ofType("command:remote:Command")) assert.equal(host(c), "203.0.113.10", c.name);
    });

    it("creates the Route53 A record only when route53ZoneId is set, pointing at the Elastic IP", async () => {
        const run = await runProgram({ ...MINIMAL_CONFIG, route53ZoneId: "Z0123456789ABCDEFGHIJ" });
        const record = run.one("aws:route53/record:Record");
        assert.equal(record.inputs.name, "chat.example.com");
        assert.equal(record.inputs.type, "A");
        assert.deepEqual(record.inputs.records, ["203.0.113.10"]);
        assert.equal(record.inputs.zoneId, "Z0123456789ABCDEFGHIJ");
    });

    it("uses an existing subnet without creating a VPC, in that subnet's zone", async () => {
        const run = await runProgram({ ...MINIMAL_CONFIG, subnetId: "subnet-0123456789abcdef0" });
        assert.equal(run.ofType("aws:ec2/vpc:Vpc").length, 0);
        assert.equal(run.ofType("aws:ec2/subnet:Subnet").length, 0);
        assert.equal(run.one("aws:ec2/instance:Instance").inputs.subnetId, "subnet-0123456789abcdef0");
        assert.equal(run.one("aws:ec2/securityGroup:SecurityGroup").inputs.vpcId, "vpc-0existing0000000");
    });

    it("picks the arm64 AMI and a Graviton default type for architecture arm64", async () => {
        const run = await runProgram({ ...MINIMAL_CONFIG, architecture: "arm64" });
        assert.equal(run.one("aws:ec2/instance:Instance").inputs.instanceType, "t4g.medium");
        const ami = run.invokes.find((i) => i.token === "aws:ec2/getAmi:getAmi");
        assert.match(JSON.stringify(ami?.inputs.filters), /ubuntu-noble-24\.04-arm64-server/);
    });

    const pair = issuePair("chat.example.com");
    const combos: { tlsMode: string; certificate: string; expected: string; extra?: Record<string, string> }[] = [];
    for (const certificate of ["letsencrypt", "own", "self-signed"]) {
        for (const [tlsMode, expected, users] of [
            ["direct", "direct", "50"],
            ["nginx", "nginx", "50"],
            ["auto", "direct", "200"],
            ["auto", "nginx", "201"],
        ]) {
            combos.push({ tlsMode, certificate, expected, extra: { expectedUsers: users } });
        }
    }
    for (const combo of combos) {
        it(`tlsMode ${combo.tlsMode} (${combo.extra?.expectedUsers} users) with certificate ${combo.certificate} resolves to ${combo.expected}`, async () => {
            const config: Record<string, string> = {
                ...MINIMAL_CONFIG,
                tlsMode: combo.tlsMode,
                certificate: combo.certificate,
                ...combo.extra,
            };
            const secretKeys: string[] = [];
            if (combo.certificate === "own") {
                config.certificateChain = pair.chain;
                config.endpointCaBundle = pair.ca;
                config.certificateKey = pair.key;
                secretKeys.push("certificateKey");
            }
            if (combo.certificate === "letsencrypt") config.letsencryptEmail = "admin@example.com";
            const run = await runProgram(config, { secretKeys });
            assert.equal(run.outputs.tlsMode.value, combo.expected);
            assert.deepEqual(
                ingressPorts(run)
                    .map((r) => r.port)
                    .sort(),
                [22, 443, 80],
            );
            run.one("aws:ec2/instance:Instance");
            run.one("aws:ebs/volume:Volume");
            // No private key (plain or as the base64 a step's stdin carries) outside a Pulumi secret.
            const forbidden = [...MOCK_SECRET_MARKERS, "PRIVATE KEY-----", Buffer.from(pair.key).toString("base64").slice(0, 40)];
            for (const r of run.resources) {
                const text = plainInputs(r);
                for (const f of forbidden) assert.ok(!text.includes(f), `${r.type} ${r.name} holds ${f.slice(0, 20)} in clear text`);
            }
        });
    }
});

describe("policy checks (as the policy rule sets operators run)", function () {
    this.timeout(60000);
    let run: ProgramRun;
    before(async () => {
        run = await runProgram({
            ...MINIMAL_CONFIG,
            route53ZoneId: "Z0123456789ABCDEFGHIJ",
            sshAllowedCidrs: JSON.stringify(["198.51.100.7/32"]),
        });
    });

    it("CKV_AWS_24: no SSH from 0.0.0.0/0", () => {
        const open = run.ofType(SG_INGRESS).filter((r) => r.inputs.fromPort === 22 && r.inputs.cidrIpv4 === "0.0.0.0/0");
        assert.equal(open.length, 0);
    });

    it("CKV_AWS_79: IMDSv2 required on every instance", () => {
        for (const i of run.ofType("aws:ec2/instance:Instance")) {
            assert.equal((i.inputs.metadataOptions as { httpTokens?: string } | undefined)?.httpTokens, "required");
        }
    });

    it("CKV_AWS_3: every EBS volume encrypted", () => {
        for (const v of run.ofType("aws:ebs/volume:Volume")) assert.equal(v.inputs.encrypted, true);
        for (const i of run.ofType("aws:ec2/instance:Instance")) {
            assert.equal((i.inputs.rootBlockDevice as { encrypted?: boolean }).encrypted, true);
            for (const d of (i.inputs.ebsBlockDevices as { encrypted?: boolean }[] | undefined) ?? []) assert.equal(d.encrypted, true);
        }
    });

    it("CKV_AWS_23: every security group rule has a description", () => {
        const rules = run.resources.filter((r) => /securityGroup(Ingress|Egress)Rule/.test(r.type));
        assert.ok(rules.length >= 3);
        for (const r of rules) assert.ok(String(r.inputs.description ?? "").trim().length > 0, r.name);
    });

    it("AWS-0029: no secret in user data, no secret in a plain output", () => {
        for (const i of run.ofType("aws:ec2/instance:Instance")) {
            const userData = String(i.inputs.userData ?? "") + String(i.inputs.userDataBase64 ?? "");
            for (const marker of MOCK_SECRET_MARKERS) assert.ok(!userData.includes(marker));
        }
        for (const [name, out] of Object.entries(run.outputs)) {
            if (out.secret) continue;
            // Outputs of switches that are off (databaseEndpoint, filesBucket, ...) are undefined.
            const text = JSON.stringify(out.value ?? null);
            for (const marker of MOCK_SECRET_MARKERS) assert.ok(!text.includes(marker), `plain output ${name} leaks ${marker}`);
        }
    });

    it("the SSH private key is held only by the key resource and a secret output", () => {
        const holders = run.resources.filter((r) => JSON.stringify(r.inputs).includes(MOCK_SECRET_MARKERS[0]));
        assert.ok(
            holders.length > 0 && holders.every((r) => r.type.startsWith("command:remote:") || r.name === "mattermost-endpoint-check"),
            "only the SSH commands and the endpoint check (to read the journal) use it",
        );
        for (const r of run.resources) assert.ok(!plainInputs(r).includes(MOCK_SECRET_MARKERS[0]), `${r.name} holds it in clear text`);
        assert.equal(run.outputs.sshPrivateKey.secret, true);
        assert.ok(String(run.outputs.sshPrivateKey.value).startsWith(MOCK_SECRET_MARKERS[0]));
    });
});
