import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

import { APP_PORT } from "./network";
import { HSTS_MAX_AGE_SECONDS } from "./steps/mattermostConfig";

/** TLS 1.3 and 1.2 with forward-secret AEAD suites only (AWS's predefined policy). */
export const ALB_SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06";
/**
 * Seconds an idle connection stays open. Any byte resets it; Mattermost's server pings every websocket about once a
 * minute, so the default 60 s would cut quiet websockets at the edge of a ping. 300 s leaves a missed ping of margin
 * and covers slow uploads, without holding half-dead connections for an hour.
 */
export const ALB_IDLE_TIMEOUT_SECONDS = 300;
export const HEALTH_CHECK_PATH = "/api/v4/system/ping";

/** One DNS record ACM asks for to validate the certificate. */
export interface ValidationRecord {
    readonly name: string;
    readonly type: string;
    readonly value: string;
}

export interface LoadBalancerArgs {
    readonly domain: string;
    readonly vpcId: pulumi.Input<string>;
    /** Public subnets in two availability zones. */
    readonly subnetIds: pulumi.Input<string>[];
    readonly securityGroupId: pulumi.Input<string>;
    readonly instanceId: pulumi.Input<string>;
    /** Validate the certificate through this Route53 zone; without it the operator creates the record. */
    readonly zoneId?: string;
}

/**
 * An internet-facing Application Load Balancer: an ACM certificate for the domain (validated by DNS), HTTPS on 443
 * with a TLS 1.2/1.3 policy and HSTS, port 80 redirecting to 443, and a target group to Mattermost on 8065.
 */
export class LoadBalancer extends pulumi.ComponentResource {
    public readonly dnsName: pulumi.Output<string>;
    /** The load balancer's hosted zone (for a Route53 alias record). */
    public readonly zoneId: pulumi.Output<string>;
    public readonly validationRecords: pulumi.Output<ValidationRecord[]>;
    public readonly httpsListener: aws.lb.Listener;

    constructor(name: string, args: LoadBalancerArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mattermost:index:LoadBalancer", name, {}, opts);
        const certificate = new aws.acm.Certificate(
            `${name}-cert`,
            { domainName: args.domain, validationMethod: "DNS", keyAlgorithm: "EC_prime256v1", tags: { Name: `${name}-cert` } },
            { parent: this },
        );
        this.validationRecords = certificate.domainValidationOptions.apply((options) =>
            options.map((o) => ({ name: o.resourceRecordName, type: o.resourceRecordType, value: o.resourceRecordValue })),
        );
        let validation: aws.acm.CertificateValidation;
        if (args.zoneId !== undefined) {
            const record = new aws.route53.Record(
                `${name}-cert-validation`,
                {
                    zoneId: args.zoneId,
                    name: this.validationRecords.apply((r) => r[0].name),
                    type: this.validationRecords.apply((r) => r[0].type),
                    records: [this.validationRecords.apply((r) => r[0].value)],
                    ttl: 300,
                    allowOverwrite: true,
                },
                { parent: this },
            );
            validation = new aws.acm.CertificateValidation(
                `${name}-cert`,
                { certificateArn: certificate.arn, validationRecordFqdns: [record.fqdn] },
                { parent: this },
            );
        } else {
            // Nobody here can create the record: say what it is while `pulumi up` waits for it.
            this.validationRecords.apply((records) => {
                for (const r of records) {
                    pulumi.log.warn(
                        `ACM waits for the DNS record ${r.name} ${r.type} ${r.value} to validate the certificate for ${args.domain}: create it in your DNS (also in the output certificateValidationRecords).`,
                        this,
                    );
                }
            });
            validation = new aws.acm.CertificateValidation(
                `${name}-cert`,
                { certificateArn: certificate.arn },
                { parent: this, customTimeouts: { create: "60m" } },
            );
        }

        const alb = new aws.lb.LoadBalancer(
            `${name}-lb`,
            {
                loadBalancerType: "application",
                internal: false,
                securityGroups: [args.securityGroupId],
                subnets: args.subnetIds,
                idleTimeout: ALB_IDLE_TIMEOUT_SECONDS,
                dropInvalidHeaderFields: true,
                enableHttp2: true,
                tags: { Name: `${name}-lb` },
            },
            { parent: this },
        );
        const targets = new aws.lb.TargetGroup(
            `${name}-app`,
            {
                vpcId: args.vpcId,
                targetType: "instance",
                port: APP_PORT,
                protocol: "HTTP",
                deregistrationDelay: 30,
                healthCheck: {
                    enabled: true,
                    path: HEALTH_CHECK_PATH,
                    port: "traffic-port",
                    protocol: "HTTP",
                    matcher: "200",
                    interval: 15,
                    timeout: 5,
                    healthyThreshold: 2,
                    unhealthyThreshold: 3,
                },
                tags: { Name: `${name}-app` },
            },
            { parent: this },
        );
        new aws.lb.TargetGroupAttachment(
            `${name}-app`,
            { targetGroupArn: targets.arn, targetId: args.instanceId, port: APP_PORT },
            { parent: this },
        );
        this.httpsListener = new aws.lb.Listener(
            `${name}-https`,
            {
                loadBalancerArn: alb.arn,
                port: 443,
                protocol: "HTTPS",
                sslPolicy: ALB_SSL_POLICY,
                certificateArn: validation.certificateArn,
                routingHttpResponseStrictTransportSecurityHeaderValue: `max-age=${HSTS_MAX_AGE_SECONDS}`,
                defaultActions: [{ type: "forward", targetGroupArn: targets.arn }],
            },
            { parent: this },
        );
        new aws.lb.Listener(
            `${name}-http`,
            {
                loadBalancerArn: alb.arn,
                port: 80,
                protocol: "HTTP",
                defaultActions: [{ type: "redirect", redirect: { protocol: "HTTPS", port: "443", statusCode: "HTTP_301" } }],
            },
            { parent: this },
        );
        this.dnsName = alb.dnsName;
        this.zoneId = alb.zoneId;
        this.registerOutputs({ dnsName: this.dnsName, validationRecords: this.validationRecords });
    }
}
