import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

export interface FileStorageArgs {
    /** The instance role that gets the bucket (and nothing else in S3). */
    readonly roleName: pulumi.Input<string>;
    /** Days an old (replaced or deleted) version is kept. */
    readonly noncurrentVersionDays: number;
    /** Refuse any deletion through Pulumi (it is retained on delete regardless). */
    readonly protect: boolean;
}

/** The S3 actions Mattermost's file store uses, scoped to one bucket. */
export function bucketPolicyDocument(bucketArn: string): string {
    return JSON.stringify({
        Version: "2012-10-17",
        Statement: [
            {
                Sid: "ListTheBucket",
                Effect: "Allow",
                Action: ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
                Resource: bucketArn,
            },
            {
                Sid: "ObjectsInTheBucket",
                Effect: "Allow",
                Action: ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
                Resource: `${bucketArn}/*`,
            },
        ],
    });
}

/**
 * A private S3 bucket for Mattermost's files: every public access blocked, objects owned by the bucket owner (no ACLs),
 * SSE-S3 by default, TLS-only bucket policy, versioning with noncurrent versions expiring, and an inline policy on
 * the instance role for this bucket only. No access keys: Mattermost takes the role's credentials from IMDS.
 */
export class FileStorage extends pulumi.ComponentResource {
    public readonly bucketName: pulumi.Output<string>;
    public readonly bucketArn: pulumi.Output<string>;

    constructor(name: string, args: FileStorageArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mattermost:index:FileStorage", name, {}, opts);
        const bucket = new aws.s3.Bucket(
            `${name}-files`,
            { forceDestroy: false, tags: { Name: `${name}-files` } },
            { parent: this, protect: args.protect, retainOnDelete: true },
        );
        const publicBlock = new aws.s3.BucketPublicAccessBlock(
            `${name}-files`,
            { bucket: bucket.id, blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true },
            { parent: this },
        );
        new aws.s3.BucketOwnershipControls(
            `${name}-files`,
            { bucket: bucket.id, rule: { objectOwnership: "BucketOwnerEnforced" } },
            { parent: this },
        );
        new aws.s3.BucketServerSideEncryptionConfiguration(
            `${name}-files`,
            { bucket: bucket.id, rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "AES256" } }] },
            { parent: this },
        );
        const versioning = new aws.s3.BucketVersioning(
            `${name}-files`,
            { bucket: bucket.id, versioningConfiguration: { status: "Enabled" } },
            { parent: this },
        );
        new aws.s3.BucketLifecycleConfiguration(
            `${name}-files`,
            {
                bucket: bucket.id,
                rules: [
                    {
                        id: "expire-noncurrent-versions",
                        status: "Enabled",
                        filter: {},
                        noncurrentVersionExpiration: { noncurrentDays: args.noncurrentVersionDays },
                        abortIncompleteMultipartUpload: { daysAfterInitiation: 7 },
                    },
                ],
            },
            { parent: this, dependsOn: [versioning] },
        );
        new aws.s3.BucketPolicy(
            `${name}-files`,
            {
                bucket: bucket.id,
                policy: bucket.arn.apply((arn) =>
                    JSON.stringify({
                        Version: "2012-10-17",
                        Statement: [
                            {
                                Sid: "DenyInsecureTransport",
                                Effect: "Deny",
                                Principal: "*",
                                Action: "s3:*",
                                Resource: [arn, `${arn}/*`],
                                Condition: { Bool: { "aws:SecureTransport": "false" } },
                            },
                        ],
                    }),
                ),
            },
            // A policy written before the public access block could be judged public.
            { parent: this, dependsOn: [publicBlock] },
        );
        new aws.iam.RolePolicy(`${name}-files`, { role: args.roleName, policy: bucket.arn.apply(bucketPolicyDocument) }, { parent: this });
        this.bucketName = bucket.bucket;
        this.bucketArn = bucket.arn;
        this.registerOutputs({ bucketName: this.bucketName });
    }
}
