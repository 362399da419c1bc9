import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import * as tls from "@pulumi/tls";

import { SnapshotPolicy } from "./components/backups";
import { DataVolume, SNAPSHOT_TAG_KEY } from "./components/dataVolume";
import { Dns } from "./components/dns";
import { VerifiedEndpoint } from "./components/endpoint";
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

const dns =
    settings.route53ZoneId !== undefined
        ? new Dns(name, { zoneId: settings.route53ZoneId, domain: settings.domain, publicIp: server.publicIp })
        : undefined;

const databasePassword = new random.RandomPassword(`${name}-db-password`, { length: 32, special: false });

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
        expectedAddress: server.publicIp,
        caPem: certificate.trustedCa,
        timeoutSeconds: settings.endpointTimeoutSeconds,
        ssh: { host: sshHost, user: SSH_USER, privateKey: server.sshPrivateKey },
        triggers: Object.values(setup.commands).map((c) => c.id),
    },
    // The record, when the stack manages it, must exist before the check resolves the domain.
    { dependsOn: dns ? [setup.done, dns] : [setup.done] },
);

export const url = endpoint.url;
export const publicIp = server.publicIp;
export const instanceId = server.instanceId;
export const dataVolumeId = data.volumeId;
export const tlsMode = settings.tlsMode;
export const sshCommand = pulumi.interpolate`pulumi stack output --show-secrets sshPrivateKey > mattermost.key && chmod 600 mattermost.key && ssh -i mattermost.key ${SSH_USER}@${sshHost}`;
export const sshPrivateKey = server.sshPrivateKey;
