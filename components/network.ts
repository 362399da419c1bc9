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
    /**
     * `tlsMode: alb`: a second public subnet in another zone, the load balancer's security group (80/443 from the
     * world), and the instance reachable on 8065 only from it (80/443 on the instance closed).
     */
    readonly loadBalancer?: boolean;
    /** `database: rds`: two private subnets in two zones, a DB subnet group, and 5432 only from the server. */
    readonly database?: boolean;
}

/** The n-th /24 inside a VPC CIDR (n = 0 is the first; the VPC prefix is /16 to /24, at most /22 for n up to 3). */
export function nthSubnetCidr(vpcCidr: string, n: number): string {
    const [address] = vpcCidr.split("/");
    const octets = address.split(".").map(Number);
    const base = ((octets[0] << 24) >>> 0) + (octets[1] << 16) + (octets[2] << 8);
    const value = base + n * 256;
    return `${[24, 16, 8, 0].map((shift) => (value >>> shift) & 255).join(".")}/24`;
}

/** The first /24 inside a VPC CIDR (the VPC prefix is /16 to /24). */
export function firstSubnetCidr(vpcCidr: string): string {
    return nthSubnetCidr(vpcCidr, 0);
}

/** Mattermost's port behind the load balancer. */
export const APP_PORT = 8065;
export const DATABASE_PORT = 5432;

/** One ingress rule of the server's security group, as plain data so tests and docs can read it. */
export interface IngressRule {
    readonly name: string;
    readonly port: number;
    readonly cidr: string;
    readonly description: string;
}

/** The world-facing web rules of whatever terminates TLS: the instance (direct, nginx) or the load balancer (alb). */
export const WEB_RULES: readonly IngressRule[] = [
    { name: "http", port: 80, cidr: "0.0.0.0/0", description: "HTTP: redirect to HTTPS and ACME HTTP-01 challenges" },
    { name: "https", port: 443, cidr: "0.0.0.0/0", description: "HTTPS: Mattermost web, API and websockets" },
];

/** The instance's CIDR rules: 80/443 from the world unless a load balancer fronts it, and SSH from the listed CIDRs. */
export function ingressRules(sshAllowedCidrs: readonly string[], opts: { loadBalancer?: boolean } = {}): IngressRule[] {
    const rules: IngressRule[] = opts.loadBalancer ? [] : [...WEB_RULES];
    sshAllowedCidrs.forEach((cidr, i) =>
        rules.push({ name: `ssh-${i}`, port: 22, cidr, description: `SSH from ${cidr} (mattermost:sshAllowedCidrs[${i}])` }),
    );
    return rules;
}

/**
 * A dedicated VPC with one public subnet (or an existing subnet) and the server's security group; with a load
 * balancer a second public subnet and the load balancer's group, with RDS two private subnets, a DB subnet group and
 * the database's group. The security groups chain: world -> load balancer 80/443 -> instance 8065 -> RDS 5432.
 */
export class Network extends pulumi.ComponentResource {
    public readonly vpcId: pulumi.Output<string>;
    public readonly subnetId: pulumi.Output<string>;
    public readonly availabilityZone: pulumi.Output<string>;
    public readonly securityGroupId: pulumi.Output<string>;
    /** The public subnets in two zones (load balancer). */
    public readonly publicSubnetIds?: pulumi.Output<string>[];
    public readonly loadBalancerSecurityGroupId?: pulumi.Output<string>;
    /** The DB subnet group over the two private subnets (RDS). */
    public readonly databaseSubnetGroupName?: pulumi.Output<string>;
    public readonly databaseSecurityGroupId?: pulumi.Output<string>;

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

            if (args.loadBalancer || args.database) {
                // A second zone: the region's first available zone that is not the server's.
                const zones = aws.getAvailabilityZonesOutput({ state: "available" }, { parent: this }).names;
                const otherZone = pulumi.all([zone, zones]).apply(([first, names]) => {
                    const other = names.find((n) => n !== first);
                    if (other === undefined) throw new Error(`the region has no availability zone besides ${first}`);
                    return other;
                });
                if (args.loadBalancer) {
                    const second = new aws.ec2.Subnet(
                        `${name}-public-b`,
                        {
                            vpcId: vpc.id,
                            cidrBlock: nthSubnetCidr(vpcCidr, 1),
                            availabilityZone: otherZone,
                            mapPublicIpOnLaunch: false,
                            tags: { Name: `${name}-public-b` },
                        },
                        { parent: this },
                    );
                    new aws.ec2.RouteTableAssociation(
                        `${name}-public-b`,
                        { subnetId: second.id, routeTableId: routes.id },
                        { parent: this },
                    );
                    this.publicSubnetIds = [subnet.id, second.id];
                }
                if (args.database) {
                    // No route out: the database is reachable only inside the VPC.
                    const privateRoutes = new aws.ec2.RouteTable(
                        `${name}-private`,
                        { vpcId: vpc.id, tags: { Name: `${name}-private` } },
                        { parent: this },
                    );
                    const privateSubnets = (
                        [
                            ["a", 2, zone],
                            ["b", 3, otherZone],
                        ] as const
                    ).map(([suffix, n, az]) => {
                        const privateSubnet = new aws.ec2.Subnet(
                            `${name}-private-${suffix}`,
                            {
                                vpcId: vpc.id,
                                cidrBlock: nthSubnetCidr(vpcCidr, n),
                                availabilityZone: az,
                                mapPublicIpOnLaunch: false,
                                tags: { Name: `${name}-private-${suffix}` },
                            },
                            { parent: this },
                        );
                        new aws.ec2.RouteTableAssociation(
                            `${name}-private-${suffix}`,
                            { subnetId: privateSubnet.id, routeTableId: privateRoutes.id },
                            { parent: this },
                        );
                        return privateSubnet;
                    });
                    const subnetGroup = new aws.rds.SubnetGroup(
                        `${name}-db`,
                        {
                            subnetIds: privateSubnets.map((p) => p.id),
                            description: "Mattermost database: private subnets in two availability zones",
                            tags: { Name: `${name}-db` },
                        },
                        { parent: this },
                    );
                    this.databaseSubnetGroupName = subnetGroup.name;
                }
            }
        }
        if ((args.loadBalancer && this.publicSubnetIds === undefined) || (args.database && this.databaseSubnetGroupName === undefined)) {
            throw new Error("a load balancer or RDS needs the subnets of the dedicated VPC; an existing subnetId cannot provide them");
        }

        const group = new aws.ec2.SecurityGroup(
            `${name}-server`,
            {
                vpcId: this.vpcId,
                description: args.loadBalancer
                    ? "Mattermost server: 8065 only from the load balancer, SSH only from allowed CIDRs"
                    : "Mattermost server: HTTP/HTTPS from anywhere, SSH only from allowed CIDRs",
                tags: { Name: `${name}-server` },
            },
            { parent: this },
        );
        for (const rule of ingressRules(args.sshAllowedCidrs ?? [], { loadBalancer: args.loadBalancer })) {
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

        if (args.loadBalancer) {
            const albGroup = new aws.ec2.SecurityGroup(
                `${name}-alb`,
                {
                    vpcId: this.vpcId,
                    description: "Mattermost load balancer: HTTP/HTTPS from anywhere, out only to the server on 8065",
                    tags: { Name: `${name}-alb` },
                },
                { parent: this },
            );
            for (const rule of WEB_RULES) {
                new aws.vpc.SecurityGroupIngressRule(
                    `${name}-alb-${rule.name}`,
                    {
                        securityGroupId: albGroup.id,
                        ipProtocol: "tcp",
                        fromPort: rule.port,
                        toPort: rule.port,
                        cidrIpv4: rule.cidr,
                        description: rule.name === "http" ? "HTTP: redirected to HTTPS by the load balancer" : rule.description,
                    },
                    { parent: this },
                );
            }
            new aws.vpc.SecurityGroupEgressRule(
                `${name}-alb-to-app`,
                {
                    securityGroupId: albGroup.id,
                    ipProtocol: "tcp",
                    fromPort: APP_PORT,
                    toPort: APP_PORT,
                    referencedSecurityGroupId: group.id,
                    description: "To Mattermost on the instance (requests and health checks)",
                },
                { parent: this },
            );
            new aws.vpc.SecurityGroupIngressRule(
                `${name}-app-from-alb`,
                {
                    securityGroupId: group.id,
                    ipProtocol: "tcp",
                    fromPort: APP_PORT,
                    toPort: APP_PORT,
                    referencedSecurityGroupId: albGroup.id,
                    description: "Mattermost (plain HTTP) only from the load balancer, which terminates TLS",
                },
                { parent: this },
            );
            this.loadBalancerSecurityGroupId = albGroup.id;
        }

        if (args.database) {
            const dbGroup = new aws.ec2.SecurityGroup(
                `${name}-db`,
                {
                    vpcId: this.vpcId,
                    description: "Mattermost database: PostgreSQL only from the Mattermost server",
                    tags: { Name: `${name}-db` },
                },
                { parent: this },
            );
            new aws.vpc.SecurityGroupIngressRule(
                `${name}-db-from-app`,
                {
                    securityGroupId: dbGroup.id,
                    ipProtocol: "tcp",
                    fromPort: DATABASE_PORT,
                    toPort: DATABASE_PORT,
                    referencedSecurityGroupId: group.id,
                    description: "PostgreSQL from the Mattermost server only",
                },
                { parent: this },
            );
            this.databaseSecurityGroupId = dbGroup.id;
        }

        this.registerOutputs({
            vpcId: this.vpcId,
            subnetId: this.subnetId,
            availabilityZone: this.availabilityZone,
            securityGroupId: this.securityGroupId,
        });
    }
}
