import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

import { DB_NAME, DB_PORT, DB_USER } from "./steps/mattermostConfig";

/** The PostgreSQL major version on RDS (Mattermost supports PostgreSQL 13 and later; 16 is current on RDS). */
export const RDS_ENGINE_VERSION = "16";
export const RDS_PARAMETER_FAMILY = "postgres16";
/** The RDS certificate authority the instance's certificate comes from (in the RDS bundle the server trusts). */
export const RDS_CA_IDENTIFIER = "rds-ca-rsa2048-g1";

export interface DatabaseArgs {
    readonly subnetGroupName: pulumi.Input<string>;
    readonly securityGroupId: pulumi.Input<string>;
    /** The master password: a Pulumi secret (from @pulumi/random). */
    readonly password: pulumi.Input<string>;
    readonly instanceClass: string;
    readonly multiAz: boolean;
    readonly backupRetentionDays: number;
    readonly allocatedStorageGiB: number;
    /** Refuse any deletion through Pulumi (it is retained on delete regardless). */
    readonly protect: boolean;
    /** Names the final snapshot; unique per stack. */
    readonly finalSnapshotIdentifier: string;
}

/**
 * Amazon RDS for PostgreSQL: encrypted, private (no public address, reachable on 5432 only from the server's
 * security group), TLS enforced by a parameter group, deletion protection, a final snapshot, automated backups.
 */
export class Database extends pulumi.ComponentResource {
    /** The endpoint's host name (verify-full checks the certificate against it). */
    public readonly address: pulumi.Output<string>;
    public readonly port: pulumi.Output<number>;
    public readonly instanceArn: pulumi.Output<string>;

    constructor(name: string, args: DatabaseArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mattermost:index:Database", name, {}, opts);
        const parameters = new aws.rds.ParameterGroup(
            `${name}-pg`,
            {
                family: RDS_PARAMETER_FAMILY,
                description: "Mattermost: connections only over TLS",
                parameters: [{ name: "rds.force_ssl", value: "1", applyMethod: "immediate" }],
            },
            { parent: this },
        );
        const instance = new aws.rds.Instance(
            `${name}-db`,
            {
                engine: "postgres",
                engineVersion: RDS_ENGINE_VERSION,
                instanceClass: args.instanceClass,
                allocatedStorage: args.allocatedStorageGiB,
                storageType: "gp3",
                storageEncrypted: true,
                dbName: DB_NAME,
                username: DB_USER,
                password: pulumi.secret(args.password),
                port: DB_PORT,
                dbSubnetGroupName: args.subnetGroupName,
                vpcSecurityGroupIds: [args.securityGroupId],
                parameterGroupName: parameters.name,
                caCertIdentifier: RDS_CA_IDENTIFIER,
                publiclyAccessible: false,
                multiAz: args.multiAz,
                backupRetentionPeriod: args.backupRetentionDays,
                copyTagsToSnapshot: true,
                deletionProtection: true,
                skipFinalSnapshot: false,
                finalSnapshotIdentifier: args.finalSnapshotIdentifier,
                autoMinorVersionUpgrade: true,
                // Changes that restart the database wait for the maintenance window.
                applyImmediately: false,
                tags: { Name: `${name}-db` },
            },
            { parent: this, protect: args.protect, retainOnDelete: true },
        );
        this.address = instance.address;
        this.port = instance.port;
        this.instanceArn = instance.arn;
        this.registerOutputs({ address: this.address, port: this.port });
    }
}

/** A final snapshot identifier: letters, digits and single hyphens, starting with a letter, at most 255 characters. */
export function finalSnapshotIdentifier(project: string, stack: string): string {
    const cleaned = `${project}-${stack}-final`
        .toLowerCase()
        .replace(/[^a-z0-9-]+/g, "-")
        .replace(/-+/g, "-")
        .replace(/^[^a-z]+/, "");
    return cleaned.slice(0, 255).replace(/-$/, "");
}
