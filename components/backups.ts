import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

export interface SnapshotPolicyArgs {
    /** The data volume's ARN: the only volume the policy's role may snapshot. */
    readonly volumeArn: pulumi.Input<string>;
    /** Tag (key and value) that selects the data volume; snapshots carry it too. */
    readonly targetTag: { readonly key: string; readonly value: string };
    /** UTC "HH:MM" of the daily snapshot. Default: "03:00". */
    readonly time?: string;
    /** Snapshots kept. Default: 7. */
    readonly retainCount?: number;
}

/** The data volume's snapshot role's permissions: snapshot this volume, tag and expire only its own snapshots. */
export function snapshotRolePolicy(volumeArn: string, tag: { key: string; value: string }): aws.iam.PolicyDocument {
    const ownSnapshots = { StringEquals: { [`aws:ResourceTag/${tag.key}`]: tag.value } };
    return {
        Version: "2012-10-17",
        Statement: [
            {
                Sid: "Describe",
                Effect: "Allow",
                Action: ["ec2:DescribeInstances", "ec2:DescribeVolumes", "ec2:DescribeSnapshots"],
                Resource: "*",
            },
            {
                Sid: "SnapshotTheDataVolume",
                Effect: "Allow",
                Action: "ec2:CreateSnapshot",
                Resource: [volumeArn, "arn:aws:ec2:*::snapshot/*"],
            },
            {
                Sid: "TagNewSnapshots",
                Effect: "Allow",
                Action: "ec2:CreateTags",
                Resource: "arn:aws:ec2:*::snapshot/*",
                Condition: { StringEquals: { "ec2:CreateAction": "CreateSnapshot" } },
            },
            {
                Sid: "ExpireOwnSnapshots",
                Effect: "Allow",
                Action: "ec2:DeleteSnapshot",
                Resource: "arn:aws:ec2:*::snapshot/*",
                Condition: ownSnapshots,
            },
        ],
    };
}

/**
 * Daily EBS snapshots of the data volume by Data Lifecycle Manager, with a role that can do nothing else. Snapshots
 * a deleted policy made are kept (DLM does not delete them).
 */
export class SnapshotPolicy extends pulumi.ComponentResource {
    public readonly policyId: pulumi.Output<string>;

    constructor(name: string, args: SnapshotPolicyArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mattermost:index:SnapshotPolicy", name, {}, opts);
        const role = new aws.iam.Role(
            `${name}-snapshot-role`,
            {
                description: "Data Lifecycle Manager: daily snapshots of the Mattermost data volume",
                assumeRolePolicy: JSON.stringify({
                    Version: "2012-10-17",
                    Statement: [{ Effect: "Allow", Principal: { Service: "dlm.amazonaws.com" }, Action: "sts:AssumeRole" }],
                }),
            },
            { parent: this },
        );
        const rolePolicy = new aws.iam.RolePolicy(
            `${name}-snapshot-role-policy`,
            {
                role: role.id,
                policy: pulumi.output(args.volumeArn).apply((arn) => JSON.stringify(snapshotRolePolicy(arn, args.targetTag))),
            },
            { parent: this },
        );
        const policy = new aws.dlm.LifecyclePolicy(
            `${name}-snapshots`,
            {
                description: `Daily snapshots of the Mattermost data volume (${args.targetTag.value})`,
                executionRoleArn: role.arn,
                state: "ENABLED",
                policyDetails: {
                    resourceTypes: ["VOLUME"],
                    targetTags: { [args.targetTag.key]: args.targetTag.value },
                    schedules: [
                        {
                            name: "daily",
                            createRule: { interval: 24, intervalUnit: "HOURS", times: args.time ?? "03:00" },
                            retainRule: { count: args.retainCount ?? 7 },
                            copyTags: true,
                            tagsToAdd: { [args.targetTag.key]: args.targetTag.value },
                        },
                    ],
                },
                tags: { Name: `${name}-snapshots` },
            },
            { parent: this, dependsOn: [rolePolicy] },
        );
        this.policyId = policy.id;
        this.registerOutputs({ policyId: this.policyId });
    }
}
