import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import * as tls from "@pulumi/tls";

import { SnapshotPolicy } from "./components/backups";
import { Database, finalSnapshotIdentifier } from "./components/database";
import { DataVolume, SNAPSHOT_TAG_KEY } from "./components/dataVolume";
import { Dns, DnsTarget } from "./components/dns";
import { VerifiedEndpoint } from "./components/endpoint";
import { FileStorage } from "./components/fileStorage";
import { LoadBalancer } from "./components/loadBalancer";
import { Network } from "./components/network";
import { ServerSetup } from "./components/remote";
import { Server, SSH_USER } from "./components/server";
import { loadSettings, Settings } from "./components/settings";
import { buildServerSteps, RuntimeValueName } from "./components/steps";

const { settings, certificateKey } = loadSettings();
const name = "mattermost";

const network = new Network(name, {
    subnetId: settings.subnetId,
    vpcCidr: settings.vpcCidr,
    availabilityZone: settings.availabilityZone,
    sshAllowedCidrs: settings.sshAllowedCidrs,
    loadBalancer: settings.tlsMode === "alb",
    database: settings.database === "rds",
});

const server = new Server(name, {
    subnetId: network.subnetId,
    securityGroupId: network.securityGroupId,
    instanceType: settings.instanceType,
    architecture: settings.architecture,
});

// Unique per stack, so two stacks in one account never snapshot (or expire) each other's volumes.
const snapshotTagValue = `${pulumi.getProject()}-${pulumi.getStack()}`;
const data = new DataVolume(name, {
    availabilityZone: server.availabilityZone,
    instanceId: server.instanceId,
    sizeGiB: settings.dataVolumeSizeGiB,
    protect: settings.protectDataVolume,
    snapshotTagValue,
    snapshotId: settings.dataVolumeSnapshotId,
});

if (settings.snapshots) {
    new SnapshotPolicy(name, {
        volumeArn: data.volumeArn,
        targetTag: { key: SNAPSHOT_TAG_KEY, value: snapshotTagValue },
        time: settings.snapshotTime,
        retainCount: settings.snapshotRetainCount,
    });
}

const databasePassword = new random.RandomPassword(`${name}-db-password`, { length: 32, special: false });

/** The database: local PostgreSQL on the data volume needs nothing here; RDS is its own resource. */
function managedDatabase(): Database | undefined {
    switch (settings.database) {
        case "local":
            return undefined;
        case "rds":
            if (network.databaseSubnetGroupName === undefined || network.databaseSecurityGroupId === undefined) {
                throw new Error("database rds needs the network's DB subnet group and security group");
            }
            return new Database(name, {
                subnetGroupName: network.databaseSubnetGroupName,
                securityGroupId: network.databaseSecurityGroupId,
                password: databasePassword.result,
                instanceClass: settings.rdsInstanceClass,
                multiAz: settings.rdsMultiAz,
                backupRetentionDays: settings.rdsBackupRetentionDays,
                allocatedStorageGiB: settings.rdsAllocatedStorageGiB,
                protect: settings.protectDataVolume,
                finalSnapshotIdentifier: finalSnapshotIdentifier(pulumi.getProject(), pulumi.getStack()),
            });
        default: {
            const unreachable: never = settings.database;
            throw new Error(`unknown database ${String(unreachable)}`);
        }
    }
}
const database = managedDatabase();

/** File storage: the data volume needs nothing here; S3 is a bucket plus the instance role's access to it. */
function managedFileStorage(): FileStorage | undefined {
    switch (settings.fileStorage) {
        case "local":
            return undefined;
        case "s3":
            return new FileStorage(name, {
                roleName: server.roleName,
                noncurrentVersionDays: settings.s3NoncurrentVersionDays,
                protect: settings.protectDataVolume,
            });
        default: {
            const unreachable: never = settings.fileStorage;
            throw new Error(`unknown fileStorage ${String(unreachable)}`);
        }
    }
}
const fileStorage = managedFileStorage();

/** Where users reach the server: the Elastic IP, or the load balancer in front of it. */
function frontDoor(): { loadBalancer?: LoadBalancer; expectedAddress: pulumi.Output<string>; dnsTarget: DnsTarget } {
    switch (settings.tlsMode) {
        case "direct":
        case "nginx":
            return { expectedAddress: server.publicIp, dnsTarget: { kind: "ip", publicIp: server.publicIp } };
        case "alb": {
            if (network.publicSubnetIds === undefined || network.loadBalancerSecurityGroupId === undefined) {
                throw new Error("tlsMode alb needs the network's second public subnet and the load balancer's security group");
            }
            const loadBalancer = new LoadBalancer(name, {
                domain: settings.domain,
                vpcId: network.vpcId,
                subnetIds: network.publicSubnetIds,
                securityGroupId: network.loadBalancerSecurityGroupId,
                instanceId: server.instanceId,
                zoneId: settings.route53ZoneId,
            });
            return {
                loadBalancer,
                // The load balancer has no fixed address: the check resolves its DNS name instead.
                expectedAddress: loadBalancer.dnsName,
                dnsTarget: { kind: "alias", dnsName: loadBalancer.dnsName, zoneId: loadBalancer.zoneId },
            };
        }
        default: {
            const unreachable: never = settings.tlsMode;
            throw new Error(`unknown tlsMode ${String(unreachable)}`);
        }
    }
}
const front = frontDoor();

const dns =
    settings.route53ZoneId !== undefined
        ? new Dns(name, { zoneId: settings.route53ZoneId, domain: settings.domain, target: front.dnsTarget })
        : undefined;

/** The certificate material for the chosen source; Let's Encrypt needs none up front. */
function certificateMaterial(s: Settings): { chain?: pulumi.Input<string>; key?: pulumi.Input<string>; trustedCa?: pulumi.Input<string> } {
    switch (s.certificate) {
        case "letsencrypt":
            return { trustedCa: s.endpointCaBundle };
        case "own":
            return { chain: s.certificateChain, key: certificateKey, trustedCa: s.endpointCaBundle };
        case "self-signed": {
            const key = new tls.PrivateKey(`${name}-tls`, { algorithm: "ECDSA", ecdsaCurve: "P256" });
            const cert = new tls.SelfSignedCert(`${name}-tls`, {
                privateKeyPem: key.privateKeyPem,
                subject: { commonName: s.domain, organization: "Mattermost (self-signed)" },
                dnsNames: s.domainIsIp ? [] : [s.domain],
                ipAddresses: s.domainIsIp ? [s.domain] : [],
                validityPeriodHours: 24 * 365,
                earlyRenewalHours: 24 * 30,
                allowedUses: ["digital_signature", "server_auth"],
            });
            return { chain: cert.certPem, key: pulumi.secret(key.privateKeyPem), trustedCa: cert.certPem };
        }
        case "acm":
            // ACM's certificates chain to Amazon's public roots; nothing lands on the server.
            return {};
        default: {
            const unreachable: never = s.certificate;
            throw new Error(`unknown certificate source ${String(unreachable)}`);
        }
    }
}
const certificate = certificateMaterial(settings);

const runtimeValues: Partial<Record<RuntimeValueName, pulumi.Input<string>>> = {
    dataVolumeId: data.volumeId,
    databasePassword: databasePassword.result,
    certificateChain: certificate.chain,
    certificateKey: certificate.key,
    databaseHost: database?.address,
    filesBucket: fileStorage?.bucketName,
};

// Where Pulumi's SSH connection goes: the Elastic IP, or the private IP when deploying from inside the network.
const sshHost = settings.sshAddress === "private" ? server.privateIp : server.publicIp;

const setup = new ServerSetup(
    name,
    {
        steps: buildServerSteps(settings),
        hostId: server.instanceId,
        connection: {
            host: sshHost,
            user: SSH_USER,
            privateKey: server.sshPrivateKey,
            // A fresh instance needs a minute or two before sshd answers.
            dialErrorLimit: 60,
            perDialTimeout: 10,
        },
        runtimeValues,
    },
    { dependsOn: [data.instanceRunning] },
);

const endpoint = new VerifiedEndpoint(
    name,
    {
        domain: settings.domain,
        expectedAddress: front.expectedAddress,
        caPem: certificate.trustedCa,
        timeoutSeconds: settings.endpointTimeoutSeconds,
        ssh: { host: sshHost, user: SSH_USER, privateKey: server.sshPrivateKey },
        triggers: Object.values(setup.commands).map((c) => c.id),
    },
    // The record, when the stack manages it, must exist before the check resolves the domain; so must the HTTPS
    // listener of a load balancer.
    {
        dependsOn: [setup.done, ...(dns ? [dns] : []), ...(front.loadBalancer ? [front.loadBalancer.httpsListener] : [])],
    },
);

export const url = endpoint.url;
export const publicIp = server.publicIp;
export const instanceId = server.instanceId;
export const dataVolumeId = data.volumeId;
export const tlsMode = settings.tlsMode;
export const sshCommand = pulumi.interpolate`pulumi stack output --show-secrets sshPrivateKey > mattermost.key && chmod 600 mattermost.key && ssh -i mattermost.key ${SSH_USER}@${sshHost}`;
export const sshPrivateKey = server.sshPrivateKey;
export const databaseEndpoint = database?.address;
export const filesBucket = fileStorage?.bucketName;
export const loadBalancerDnsName = front.loadBalancer?.dnsName;
/** The DNS records ACM validates the certificate with (tlsMode alb); create them yourself without route53ZoneId. */
export const certificateValidationRecords = front.loadBalancer?.validationRecords;
