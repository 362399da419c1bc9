import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";

import { Architecture } from "./settings";

/** Canonical's AWS account, the publisher of the official Ubuntu AMIs. */
export const CANONICAL_OWNER_ID = "099720109477";

export function ubuntuAmiNamePattern(arch: Architecture): string {
    switch (arch) {
        case "x86_64":
            return "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*";
        case "arm64":
            return "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-server-*";
        default: {
            const unreachable: never = arch;
            throw new Error(`unknown architecture ${String(unreachable)}`);
        }
    }
}

/** The login user of Ubuntu's cloud images (passwordless sudo). */
export const SSH_USER = "ubuntu";

export interface ServerArgs {
    readonly subnetId: pulumi.Input<string>;
    readonly securityGroupId: pulumi.Input<string>;
    /** EC2 instance type. Default: t3.medium. */
    readonly instanceType?: string;
    /** CPU architecture of the AMI. Default: x86_64. */
    readonly architecture?: Architecture;
    /** Size of the encrypted root volume. Default: 16 GiB (data lives on the separate data volume). */
    readonly rootVolumeSizeGiB?: number;
}

/**
 * The EC2 instance: Ubuntu 24.04 LTS, IMDSv2 only, encrypted root volume, a generated SSH key pair, SSM access,
 * and an Elastic IP that outlives instance replacement (so DNS keeps pointing at the right place).
 */
export class Server extends pulumi.ComponentResource {
    public readonly instanceId: pulumi.Output<string>;
    public readonly publicIp: pulumi.Output<string>;
    /** The instance's address inside its VPC (for deploying from a peered network or VPN). */
    public readonly privateIp: pulumi.Output<string>;
    public readonly availabilityZone: pulumi.Output<string>;
    /** OpenSSH private key for user `ubuntu`; a Pulumi secret. */
    public readonly sshPrivateKey: pulumi.Output<string>;
    /** The instance role's name (for inline policies such as the file bucket's). */
    public readonly roleName: pulumi.Output<string>;

    constructor(name: string, args: ServerArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mattermost:index:Server", name, {}, opts);
        const architecture = args.architecture ?? "x86_64";

        const ami = aws.ec2.getAmiOutput(
            {
                owners: [CANONICAL_OWNER_ID],
                mostRecent: true,
                filters: [
                    { name: "name", values: [ubuntuAmiNamePattern(architecture)] },
                    { name: "architecture", values: [architecture] },
                    { name: "virtualization-type", values: ["hvm"] },
                ],
            },
            { parent: this },
        );

        const sshKey = new tls.PrivateKey(`${name}-ssh`, { algorithm: "ED25519" }, { parent: this });
        const keyPair = new aws.ec2.KeyPair(`${name}-ssh`, { publicKey: sshKey.publicKeyOpenssh }, { parent: this });

        const role = new aws.iam.Role(
            `${name}-role`,
            {
                description: "Mattermost server instance role (SSM Session Manager access)",
                assumeRolePolicy: JSON.stringify({
                    Version: "2012-10-17",
                    Statement: [{ Effect: "Allow", Principal: { Service: "ec2.amazonaws.com" }, Action: "sts:AssumeRole" }],
                }),
            },
            { parent: this },
        );
        new aws.iam.RolePolicyAttachment(
            `${name}-ssm`,
            { role: role.name, policyArn: "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore" },
            { parent: this },
        );
        const profile = new aws.iam.InstanceProfile(`${name}-profile`, { role: role.name }, { parent: this });

        const instance = new aws.ec2.Instance(
            `${name}-instance`,
            {
                ami: ami.id,
                instanceType: args.instanceType ?? "t3.medium",
                subnetId: args.subnetId,
                vpcSecurityGroupIds: [args.securityGroupId],
                keyName: keyPair.keyName,
                iamInstanceProfile: profile.name,
                associatePublicIpAddress: false,
                metadataOptions: { httpEndpoint: "enabled", httpTokens: "required", httpPutResponseHopLimit: 1 },
                rootBlockDevice: {
                    encrypted: true,
                    volumeType: "gp3",
                    volumeSize: args.rootVolumeSizeGiB ?? 16,
                    deleteOnTermination: true,
                },
                tags: { Name: name },
            },
            // A newer Ubuntu AMI must not silently replace the server on the next `pulumi up`;
            // operators roll it deliberately with `pulumi up --replace <instance urn>`.
            { parent: this, ignoreChanges: ["ami"] },
        );

        const eip = new aws.ec2.Eip(`${name}-eip`, { domain: "vpc", tags: { Name: `${name}-eip` } }, { parent: this });
        new aws.ec2.EipAssociation(`${name}-eip`, { allocationId: eip.allocationId, instanceId: instance.id }, { parent: this });

        this.instanceId = instance.id;
        this.publicIp = eip.publicIp;
        this.privateIp = instance.privateIp;
        this.availabilityZone = instance.availabilityZone;
        this.sshPrivateKey = pulumi.secret(sshKey.privateKeyOpenssh);
        this.roleName = role.name;

        this.registerOutputs({
            instanceId: this.instanceId,
            publicIp: this.publicIp,
            privateIp: this.privateIp,
            availabilityZone: this.availabilityZone,
            sshPrivateKey: this.sshPrivateKey,
        });
    }
}
