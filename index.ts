import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import * as tls from "@pulumi/tls";

import { DataVolume } from "./components/dataVolume";
import { Dns } from "./components/dns";
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

const data = new DataVolume(name, {
    availabilityZone: server.availabilityZone,
    instanceId: server.instanceId,
    sizeGiB: settings.dataVolumeSizeGiB,
    protect: settings.protectDataVolume,
});

if (settings.route53ZoneId !== undefined) {
    new Dns(name, { zoneId: settings.route53ZoneId, domain: settings.domain, publicIp: server.publicIp });
}

const databasePassword = new random.RandomPassword(`${name}-db-password`, { length: 32, special: false });

/** The certificate material for the chosen source; Let's Encrypt needs none up front. */
function certificateMaterial(s: Settings): { chain?: pulumi.Input<string>; key?: pulumi.Input<string> } {
    switch (s.certificate) {
        case "letsencrypt":
            return {};
        case "own":
            return { chain: s.certificateChain, key: certificateKey };
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
            return { chain: cert.certPem, key: pulumi.secret(key.privateKeyPem) };
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
    { dependsOn: [data.attachment] },
);

export const url = setup.done.urn.apply(() => `https://${settings.domain}`);
export const publicIp = server.publicIp;
export const instanceId = server.instanceId;
export const dataVolumeId = data.volumeId;
export const tlsMode = settings.tlsMode;
export const sshCommand = pulumi.interpolate`pulumi stack output --show-secrets sshPrivateKey > mattermost.key && chmod 600 mattermost.key && ssh -i mattermost.key ${SSH_USER}@${sshHost}`;
export const sshPrivateKey = server.sshPrivateKey;
