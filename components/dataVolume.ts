import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

/** The device name the data volume is attached as; on Nitro instances it shows up as an NVMe device. */
export const DATA_DEVICE_NAME = "/dev/sdf";

/** Key of the tag that the snapshot policy selects the volume on; its value names the stack. */
export const SNAPSHOT_TAG_KEY = "mattermost-backup";

export interface DataVolumeArgs {
    readonly availabilityZone: pulumi.Input<string>;
    readonly instanceId: pulumi.Input<string>;
    /** Size in GiB. Default: 20. */
    readonly sizeGiB?: number;
    /** Refuse any deletion of the volume through Pulumi. Default: true. */
    readonly protect?: boolean;
    /** Value of the `mattermost-backup` tag the snapshot policy selects on (unique per stack). */
    readonly snapshotTagValue: string;
    /** Create the volume from this EBS snapshot (restore). Default: an empty volume. */
    readonly snapshotId?: string;
}

/**
 * A separate encrypted EBS volume for PostgreSQL and Mattermost's files. It is its own resource with its own
 * attachment, so replacing the instance detaches and re-attaches it instead of deleting it, and it is retained
 * in AWS even if the stack is destroyed.
 */
export class DataVolume extends pulumi.ComponentResource {
    public readonly volumeId: pulumi.Output<string>;
    public readonly volumeArn: pulumi.Output<string>;
    public readonly deviceName: string = DATA_DEVICE_NAME;
    public readonly attachment: aws.ec2.VolumeAttachment;
    /** The instance, running again after the (re)attachment: depend on this to use the volume. */
    public readonly instanceRunning: aws.ec2transitgateway.InstanceState;

    constructor(name: string, args: DataVolumeArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mattermost:index:DataVolume", name, {}, opts);

        const volume = new aws.ebs.Volume(
            `${name}-volume`,
            {
                availabilityZone: args.availabilityZone,
                size: args.sizeGiB ?? 20,
                type: "gp3",
                encrypted: true,
                snapshotId: args.snapshotId,
                tags: { Name: `${name}-volume`, [SNAPSHOT_TAG_KEY]: args.snapshotTagValue },
            },
            { parent: this, retainOnDelete: true, protect: args.protect ?? true },
        );
        this.attachment = new aws.ec2.VolumeAttachment(
            `${name}-attachment`,
            {
                deviceName: DATA_DEVICE_NAME,
                volumeId: volume.id,
                instanceId: args.instanceId,
                // Stop the instance before detaching so PostgreSQL and the filesystem shut down cleanly.
                stopInstanceBeforeDetaching: true,
            },
            // There is one data volume: the old attachment must go before a new instance can take it.
            { parent: this, deleteBeforeReplace: true },
        );
        // Detaching stopped the instance (a restore replaces the volume); start it again before anything uses it.
        this.instanceRunning = new aws.ec2transitgateway.InstanceState(
            `${name}-instance-running`,
            { instanceId: args.instanceId, state: "running" },
            { parent: this, dependsOn: [this.attachment], replacementTrigger: volume.id },
        );
        this.volumeId = volume.id;
        this.volumeArn = volume.arn;
        this.registerOutputs({ volumeId: this.volumeId });
    }
}
