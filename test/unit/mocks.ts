// One shared Pulumi mocks setup: runs the real program (index.ts) against `pulumi.runtime.setMocks`, since no
// AWS account or Pulumi engine is reachable here, and records every resource and invoke it registers.
import * as path from "node:path";

import * as pulumi from "@pulumi/pulumi";

export interface RecordedResource {
    readonly type: string;
    readonly name: string;
    readonly inputs: Record<string, unknown>;
    readonly id: string;
}

export interface ProgramRun {
    readonly resources: RecordedResource[];
    readonly invokes: { token: string; inputs: Record<string, unknown> }[];
    readonly outputs: Record<string, { value: unknown; secret: boolean }>;
    ofType(type: string): RecordedResource[];
    one(type: string): RecordedResource;
}

/** Values the mocked providers hand out for secrets; tests look for them where they must not be. */
export const MOCK_SECRET_MARKERS = ["MOCK-SSH-PRIVATE-KEY", "MOCK-RANDOM-PASSWORD", "MOCK-TLS-PRIVATE-KEY"];

class Recorder implements pulumi.runtime.Mocks {
    readonly resources: RecordedResource[] = [];
    readonly invokes: { token: string; inputs: Record<string, unknown> }[] = [];

    newResource(args: pulumi.runtime.MockResourceArgs): { id: string | undefined; state: Record<string, unknown> } {
        const id = `${args.name}-id`;
        this.resources.push({ type: args.type, name: args.name, inputs: args.inputs as Record<string, unknown>, id });
        const state: Record<string, unknown> = { ...args.inputs };
        switch (args.type) {
            case "tls:index/privateKey:PrivateKey":
                state.privateKeyOpenssh = `${MOCK_SECRET_MARKERS[0]}-${args.name}`;
                state.privateKeyPem = `${MOCK_SECRET_MARKERS[2]}-${args.name}`;
                state.publicKeyOpenssh = `ssh-ed25519 AAAAmock ${args.name}`;
                break;
            case "tls:index/selfSignedCert:SelfSignedCert":
                state.certPem = `-----BEGIN CERTIFICATE-----\nMOCK-${args.name}\n-----END CERTIFICATE-----\n`;
                break;
            case "random:index/randomPassword:RandomPassword":
                state.result = `${MOCK_SECRET_MARKERS[1]}-${args.name}`;
                break;
            case "aws:ec2/eip:Eip":
                state.publicIp = "203.0.113.10";
                state.allocationId = "eipalloc-0123456789abcdef0";
                break;
            case "aws:ec2/instance:Instance":
                state.availabilityZone = "eu-west-1a";
                state.privateIp = "10.80.0.10";
                break;
            case "aws:ec2/subnet:Subnet":
                state.availabilityZone = args.inputs.availabilityZone ?? "eu-west-1a";
                break;
            case "aws:ebs/volume:Volume":
                state.arn = `arn:aws:ec2:eu-west-1:123456789012:volume/${id}`;
                break;
            case "aws:ec2/keyPair:KeyPair":
                state.keyName = `${args.name}-key`;
                break;
            case "aws:route53/record:Record":
                state.fqdn = args.inputs.name;
                break;
            case "aws:rds/instance:Instance":
                state.address = `${args.name}.c0mock0.eu-west-1.rds.amazonaws.com`;
                state.port = 5432;
                state.arn = `arn:aws:rds:eu-west-1:123456789012:db:${args.name}`;
                break;
            case "aws:rds/subnetGroup:SubnetGroup":
                state.name = args.name;
                break;
            case "aws:rds/parameterGroup:ParameterGroup":
                state.name = args.name;
                break;
            case "aws:s3/bucket:Bucket":
                state.bucket = `${args.name}-20261201mock`;
                state.arn = `arn:aws:s3:::${args.name}-20261201mock`;
                break;
            case "aws:lb/loadBalancer:LoadBalancer":
                state.dnsName = `${args.name}-123456789.eu-west-1.elb.amazonaws.com`;
                state.zoneId = "Z32O12XQLNTSW2";
                state.arn = `arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/${args.name}/0123456789abcdef`;
                break;
            case "aws:lb/targetGroup:TargetGroup":
                state.arn = `arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/${args.name}/0123456789abcdef`;
                break;
            case "aws:acm/certificate:Certificate":
                state.arn = `arn:aws:acm:eu-west-1:123456789012:certificate/${args.name}`;
                state.domainValidationOptions = [
                    {
                        domainName: args.inputs.domainName,
                        resourceRecordName: `_0123456789abcdef.${String(args.inputs.domainName)}.`,
                        resourceRecordType: "CNAME",
                        resourceRecordValue: "_fedcba9876543210.mock.acm-validations.aws.",
                    },
                ];
                break;
            case "aws:iam/role:Role":
                state.arn = `arn:aws:iam::123456789012:role/${args.name}`;
                state.name = args.name;
                break;
        }
        return { id, state };
    }

    call(args: pulumi.runtime.MockCallArgs): Record<string, unknown> {
        this.invokes.push({ token: args.token, inputs: args.inputs as Record<string, unknown> });
        switch (args.token) {
            case "aws:ec2/getAmi:getAmi":
                return { id: "ami-0123456789abcdef0", architecture: args.inputs.filters };
            case "aws:index/getAvailabilityZones:getAvailabilityZones":
                return { names: ["eu-west-1a", "eu-west-1b", "eu-west-1c"], zoneIds: ["euw1-az1", "euw1-az2", "euw1-az3"] };
            case "aws:ec2/getSubnet:getSubnet":
                return { id: args.inputs.id, vpcId: "vpc-0existing0000000", availabilityZone: "eu-west-1b" };
            default:
                return args.inputs as Record<string, unknown>;
        }
    }
}

/** The least config a stack needs; tests add to it. */
export const MINIMAL_CONFIG: Readonly<Record<string, string>> = {
    domain: "chat.example.com",
    mattermostSha256: "a".repeat(64),
    sshAllowedCidrs: JSON.stringify(["198.51.100.7/32"]),
};

const PROGRAM = path.join(__dirname, "..", "..", "index.ts");
const PROJECT_ROOT = path.join(__dirname, "..", "..");

function unloadProgram(): void {
    for (const key of Object.keys(require.cache)) {
        if (key.startsWith(PROJECT_ROOT) && !key.includes("node_modules") && !key.includes(`${path.sep}test${path.sep}`)) {
            delete require.cache[key];
        }
    }
}

async function settle<T>(output: pulumi.Output<T>): Promise<{ value: T; secret: boolean }> {
    const value = await new Promise<T>((resolve) => output.apply((v) => resolve(v)));
    const secret = await pulumi.isSecret(output);
    return { value, secret };
}

/** Sets the stack config (secret keys marked as `--secret` would) and fresh mocks, and unloads the program. */
async function prepareProgram(config: Record<string, string>, secretKeys: string[] = [], preview: boolean): Promise<Recorder> {
    const recorder = new Recorder();
    const allConfig: Record<string, string> = { "aws:region": "eu-west-1" };
    for (const [k, v] of Object.entries(config)) allConfig[`mattermost:${k}`] = v;
    pulumi.runtime.setAllConfig(
        allConfig,
        secretKeys.map((k) => `mattermost:${k}`),
    );
    await pulumi.runtime.setMocks(recorder, "mattermost", "test", preview);
    unloadProgram();
    return recorder;
}

/**
 * Runs index.ts with the given `mattermost:*` config (values as `pulumi config` stores them: strings, lists as
 * JSON) and returns what it registered. Secret keys are marked as such, as `pulumi config set --secret` would.
 */
export async function runProgram(
    config: Record<string, string>,
    opts: { secretKeys?: string[]; preview?: boolean } = {},
): Promise<ProgramRun> {
    const recorder = await prepareProgram(config, opts.secretKeys, opts.preview ?? false);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const program = require(PROGRAM) as Record<string, unknown>;
    const outputs: Record<string, { value: unknown; secret: boolean }> = {};
    for (const [key, value] of Object.entries(program)) {
        outputs[key] = pulumi.Output.isInstance(value) ? await settle(value as pulumi.Output<unknown>) : { value, secret: false };
    }
    // Let registrations started inside applies finish.
    let count = -1;
    while (count !== recorder.resources.length) {
        count = recorder.resources.length;
        await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return {
        resources: recorder.resources,
        invokes: recorder.invokes,
        outputs,
        ofType: (type) => recorder.resources.filter((r) => r.type === type),
        one: (type) => {
            const found = recorder.resources.filter((r) => r.type === type);
            if (found.length !== 1) throw new Error(`expected one ${type}, found ${found.length}`);
            return found[0];
        },
    };
}

/** Runs the program expecting a config error; returns its message. */
export async function programError(
    config: Record<string, string>,
    opts: { secretKeys?: string[] } = {},
): Promise<{ message: string; resources: number }> {
    const recorder = await prepareProgram(config, opts.secretKeys, true);
    try {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        require(PROGRAM);
    } catch (err) {
        return { message: err instanceof Error ? err.message : String(err), resources: recorder.resources.length };
    }
    throw new Error("expected the program to fail on its config, but it ran");
}

const SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

/** A resource's inputs as JSON with every Pulumi secret replaced by "[secret]": what state would hold in clear text. */
export function plainInputs(resource: RecordedResource): string {
    return JSON.stringify(resource.inputs, (_key, value: unknown) =>
        value !== null && typeof value === "object" && (value as Record<string, unknown>)[SECRET_SIG_KEY] === SECRET_SIG
            ? "[secret]"
            : value,
    );
}

/** Removes Pulumi's secret wrappers (for reading values a test already knows are secret). */
export function unwrapSecrets(value: unknown): unknown {
    if (Array.isArray(value)) return value.map(unwrapSecrets);
    if (value !== null && typeof value === "object") {
        const obj = value as Record<string, unknown>;
        if (obj[SECRET_SIG_KEY] === SECRET_SIG) return unwrapSecrets(obj.value);
        return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, unwrapSecrets(v)]));
    }
    return value;
}
