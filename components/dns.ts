import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

export interface DnsArgs {
    readonly zoneId: string;
    readonly domain: string;
    readonly publicIp: pulumi.Input<string>;
    /** Record TTL in seconds. Default: 300. */
    readonly ttl?: number;
}

/** An A record for the domain pointing at the server's Elastic IP. */
export class Dns extends pulumi.ComponentResource {
    public readonly fqdn: pulumi.Output<string>;

    constructor(name: string, args: DnsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mattermost:index:Dns", name, {}, opts);
        const record = new aws.route53.Record(
            `${name}-a`,
            { zoneId: args.zoneId, name: args.domain, type: "A", ttl: args.ttl ?? 300, records: [args.publicIp], allowOverwrite: false },
            { parent: this },
        );
        this.fqdn = record.fqdn;
        this.registerOutputs({ fqdn: this.fqdn });
    }
}
