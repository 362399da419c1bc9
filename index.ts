import * as pulumi from "@pulumi/pulumi";

import { DataVolume } from "./components/dataVolume";
import { Dns } from "./components/dns";
import { Network } from "./components/network";
import { Server, SSH_USER } from "./components/server";
import { loadSettings } from "./components/settings";

const { settings } = loadSettings();
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

const data = new DataVolume(name, {
    availabilityZone: server.availabilityZone,
    instanceId: server.instanceId,
    sizeGiB: settings.dataVolumeSizeGiB,
    protect: settings.protectDataVolume,
});

if (settings.route53ZoneId !== undefined) {
    new Dns(name, { zoneId: settings.route53ZoneId, domain: settings.domain, publicIp: server.publicIp });
}

export const url = `https://${settings.domain}`;
export const publicIp = server.publicIp;
export const instanceId = server.instanceId;
export const dataVolumeId = data.volumeId;
export const tlsMode = settings.tlsMode;
export const sshCommand = pulumi.interpolate`pulumi stack output --show-secrets sshPrivateKey > mattermost.key && chmod 600 mattermost.key && ssh -i mattermost.key ${SSH_USER}@${server.publicIp}`;
export const sshPrivateKey = server.sshPrivateKey;
