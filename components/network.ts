import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

export interface NetworkArgs {
    /** Use this existing public subnet instead of creating a VPC. Default: create a dedicated VPC. */
    readonly subnetId?: string;
    /** CIDR of the dedicated VPC. Default: 10.80.0.0/16 (the public subnet takes its first /24). */
    readonly vpcCidr?: string;
    /** Availability zone for the created subnet. Default: the region's first available zone. */
    readonly availabilityZone?: string;
    /** CIDRs allowed to reach port 22. Default: none (SSH closed). */
    readonly sshAllowedCidrs?: readonly string[];
}

/** The first /24 inside a VPC CIDR (the VPC prefix is /16 to /24). */
export function firstSubnetCidr(vpcCidr: string): string {
    const [address] = vpcCidr.split("/");
    return `${address}/24`;
}

/** One ingress rule of the server's security group, as plain data so tests and docs can read it. */
export interface IngressRule {
    readonly name: string;
    readonly port: number;
    readonly cidr: string;
    readonly description: string;
}

export function ingressRules(sshAllowedCidrs: readonly string[]): IngressRule[] {
    const rules: IngressRule[] = [
        { name: "http", port: 80, cidr: "0.0.0.0/0", description: "HTTP: redirect to HTTPS and ACME HTTP-01 challenges" },
        { name: "https", port: 443, cidr: "0.0.0.0/0", description: "HTTPS: Mattermost web, API and websockets" },
    ];
    sshAllowedCidrs.forEach((cidr, i) =>
        rules.push({ name: `ssh-${i}`, port: 22, cidr, description: `SSH from ${cidr} (mattermost:sshAllowedCidrs[${i}])` }),
    );
    return rules;
}

/** A dedicated VPC with one public subnet (or an existing subnet) and the server's security group. */
export class Network extends pulumi.ComponentResource {
    public readonly vpcId: pulumi.Output<string>;
    public readonly subnetId: pulumi.Output<string>;
    public readonly availabilityZone: pulumi.Output<string>;
    public readonly securityGroupId: pulumi.Output<string>;

    constructor(name: string, args: NetworkArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mattermost:index:Network", name, {}, opts);

        if (args.subnetId !== undefined) {
            const subnet = aws.ec2.getSubnetOutput({ id: args.subnetId }, { parent: this });
            this.vpcId = subnet.vpcId;
            this.subnetId = subnet.id;
            this.availabilityZone = subnet.availabilityZone;
        } else {
            const vpcCidr = args.vpcCidr ?? "10.80.0.0/16";
            const zone =
                args.availabilityZone !== undefined
                    ? pulumi.output(args.availabilityZone)
                    : aws.getAvailabilityZonesOutput({ state: "available" }, { parent: this }).names[0];
            const vpc = new aws.ec2.Vpc(
                `${name}-vpc`,
                { cidrBlock: vpcCidr, enableDnsHostnames: true, enableDnsSupport: true, tags: { Name: `${name}-vpc` } },
                { parent: this },
            );
            const gateway = new aws.ec2.InternetGateway(`${name}-igw`, { vpcId: vpc.id, tags: { Name: `${name}-igw` } }, { parent: this });
            const subnet = new aws.ec2.Subnet(
                `${name}-public`,
                {
                    vpcId: vpc.id,
                    cidrBlock: firstSubnetCidr(vpcCidr),
                    availabilityZone: zone,
                    mapPublicIpOnLaunch: false,
                    tags: { Name: `${name}-public` },
                },
                { parent: this },
            );
            const routes = new aws.ec2.RouteTable(
                `${name}-public`,
                { vpcId: vpc.id, routes: [{ cidrBlock: "0.0.0.0/0", gatewayId: gateway.id }], tags: { Name: `${name}-public` } },
                { parent: this },
            );
            new aws.ec2.RouteTableAssociation(`${name}-public`, { subnetId: subnet.id, routeTableId: routes.id }, { parent: this });
            this.vpcId = vpc.id;
            this.subnetId = subnet.id;
            this.availabilityZone = subnet.availabilityZone;
        }

        const group = new aws.ec2.SecurityGroup(
            `${name}-server`,
            {
                vpcId: this.vpcId,
                description: "Mattermost server: HTTP/HTTPS from anywhere, SSH only from allowed CIDRs",
                tags: { Name: `${name}-server` },
            },
            { parent: this },
        );
        for (const rule of ingressRules(args.sshAllowedCidrs ?? [])) {
            new aws.vpc.SecurityGroupIngressRule(
                `${name}-${rule.name}`,
                {
                    securityGroupId: group.id,
                    ipProtocol: "tcp",
                    fromPort: rule.port,
                    toPort: rule.port,
                    cidrIpv4: rule.cidr,
                    description: rule.description,
                },
                { parent: this },
            );
        }
        new aws.vpc.SecurityGroupEgressRule(
            `${name}-egress`,
            {
                securityGroupId: group.id,
                ipProtocol: "-1",
                cidrIpv4: "0.0.0.0/0",
                description: "Outbound: OS packages, Mattermost releases, ACME, push notifications",
            },
            { parent: this },
        );
        this.securityGroupId = group.id;

        this.registerOutputs({
            vpcId: this.vpcId,
            subnetId: this.subnetId,
            availabilityZone: this.availabilityZone,
            securityGroupId: this.securityGroupId,
        });
    }
}
