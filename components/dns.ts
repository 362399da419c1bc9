import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

/** What the domain points at: the Elastic IP (A record), or the load balancer (alias A record). */
export type DnsTarget =
    | { readonly kind: "ip"; readonly publicIp: pulumi.Input<string> }
    | { readonly kind: "alias"; readonly dnsName: pulumi.Input<string>; readonly zoneId: pulumi.Input<string> };

export interface DnsArgs {
    readonly zoneId: string;
    readonly domain: string;
    readonly target: DnsTarget;
    /** Record TTL in seconds (A records only; an alias follows its target). Default: 300. */
    readonly ttl?: number;
}

/** An A record for the domain: the server's Elastic IP, or an alias to the load balancer (which has no fixed IP). */
export class Dns extends pulumi.ComponentResource {
    public readonly fqdn: pulumi.Output<string>;

    constructor(name: string, args: DnsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mattermost:index:Dns", name, {}, opts);
        const target = args.target;
        const record = new aws.route53.Record(
            `${name}-a`,
            target.kind === "ip"
                ? {
                      zoneId: args.zoneId,
                      name: args.domain,
                      type: "A",
                      ttl: args.ttl ?? 300,
                      records: [target.publicIp],
                      allowOverwrite: false,
                  }
                : {
                      zoneId: args.zoneId,
                      name: args.domain,
                      type: "A",
                      aliases: [{ name: target.dnsName, zoneId: target.zoneId, evaluateTargetHealth: true }],
                      allowOverwrite: false,
                  },
            { parent: this },
        );
        this.fqdn = record.fqdn;
        this.registerOutputs({ fqdn: this.fqdn });
    }
}
