import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

/** The device name the data volume is attached as; on Nitro instances it shows up as an NVMe device. */
export const DATA_DEVICE_NAME = "/dev/sdf";

/** Tag that the snapshot policy selects on. */
export const SNAPSHOT_TAG = { key: "mattermost-backup", value: "daily" } as const;

export interface DataVolumeArgs {
    readonly availabilityZone: pulumi.Input<string>;
    readonly instanceId: pulumi.Input<string>;
    /** Size in GiB. Default: 20. */
    readonly sizeGiB?: number;
    /** Refuse any deletion of the volume through Pulumi. Default: true. */
    readonly protect?: boolean;
}

/**
 * A separate encrypted EBS volume for PostgreSQL and Mattermost's files. It is its own resource with its own
 * attachment, so replacing the instance detaches and re-attaches it instead of deleting it, and it is retained
 * in AWS even if the stack is destroyed.
 */
export class DataVolume extends pulumi.ComponentResource {
    public readonly volumeId: pulumi.Output<string>;
    public readonly deviceName: string = DATA_DEVICE_NAME;
    public readonly attachment: aws.ec2.VolumeAttachment;

    constructor(name: string, args: DataVolumeArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mattermost:index:DataVolume", name, {}, opts);

        const volume = new aws.ebs.Volume(
            `${name}-volume`,
            {
                availabilityZone: args.availabilityZone,
                size: args.sizeGiB ?? 20,
                type: "gp3",
                encrypted: true,
                tags: { Name: `${name}-volume`, [SNAPSHOT_TAG.key]: SNAPSHOT_TAG.value },
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
        this.volumeId = volume.id;
        this.registerOutputs({ volumeId: this.volumeId });
    }
}
