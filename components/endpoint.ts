// The last resource of `pulumi up`: waits until https://<domain>/ answers with a verified certificate, from the
// machine running Pulumi (outside the server, as users will reach it), and fails with a diagnosis when it does not.
import * as fs from "node:fs";
import * as path from "node:path";

import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import * as ts from "typescript";

let cachedScript: string | undefined;

/** `endpointCheck.ts` as one CommonJS script for `node -` (it imports only Node's modules). Deterministic. */
export function endpointCheckScript(): string {
    if (cachedScript === undefined) {
        const source = fs.readFileSync(path.join(__dirname, "endpointCheck.ts"), "utf8");
        cachedScript = ts.transpileModule(source, {
            compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, removeComments: true },
        }).outputText;
    }
    return cachedScript;
}

export interface VerifiedEndpointArgs {
    readonly domain: string;
    /** The Elastic IP the domain must resolve to. */
    readonly expectedAddress: pulumi.Input<string>;
    /** PEM of the only CA to trust. Default: the public roots of the Node.js running Pulumi. */
    readonly caPem?: pulumi.Input<string>;
    /** How long to wait before diagnosing. */
    readonly timeoutSeconds: number;
    /** SSH access used only to read the server's journal for a diagnosis. */
    readonly ssh: { readonly host: pulumi.Input<string>; readonly user: string; readonly privateKey: pulumi.Input<string> };
    /** The check re-runs when any of these change (the server steps' ids). */
    readonly triggers: pulumi.Input<unknown>[];
}

export class VerifiedEndpoint extends pulumi.ComponentResource {
    /** `https://<domain>`, known only after the endpoint answered. */
    public readonly url: pulumi.Output<string>;

    constructor(name: string, args: VerifiedEndpointArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mattermost:index:VerifiedEndpoint", name, {}, opts);
        const check = new command.local.Command(
            `${name}-endpoint-check`,
            {
                create: "node -",
                stdin: endpointCheckScript(),
                environment: {
                    MM_VERIFY_RUN: "1",
                    MM_VERIFY_DOMAIN: args.domain,
                    MM_VERIFY_ADDRESS: args.expectedAddress,
                    MM_VERIFY_TIMEOUT_SECONDS: String(args.timeoutSeconds),
                    MM_VERIFY_CA: args.caPem ?? "",
                    MM_VERIFY_SSH_HOST: args.ssh.host,
                    MM_VERIFY_SSH_USER: args.ssh.user,
                    MM_VERIFY_SSH_KEY: pulumi.secret(args.ssh.privateKey),
                },
                triggers: [args.domain, args.expectedAddress, args.caPem ?? "", ...args.triggers],
            },
            // The check waits up to timeoutSeconds, then spends a little longer on the diagnosis.
            { parent: this, customTimeouts: { create: `${Math.ceil(args.timeoutSeconds / 60) + 3}m` } },
        );
        this.url = check.stdout.apply(() => `https://${args.domain}`);
        this.registerOutputs({ url: this.url });
    }
}
