// The Pulumi driver: turns the step list into command resources over SSH, one per step, in order.
import * as fs from "node:fs";

import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";

import {
    encodeStdin,
    plainInputHash,
    PREPARE_SCRIPTS_DIR_COMMAND,
    readTemplate,
    REMOTE_SCRIPTS_DIR,
    RuntimeValueName,
    runtimeValueNames,
    SCRIPTS_DIR,
    sha256,
    Step,
    stepCommand,
    stepVariables,
} from "./steps";

export interface ServerSetupArgs {
    readonly steps: readonly Step[];
    /** How to reach the host. */
    readonly connection: command.types.input.remote.ConnectionArgs;
    /** Values only known at deploy time; secret ones must be Pulumi secrets. */
    readonly runtimeValues: Readonly<Partial<Record<RuntimeValueName, pulumi.Input<string>>>>;
    /** Identity of the host (the instance id): a new host re-runs every step. */
    readonly hostId: pulumi.Input<string>;
}

/** Hash of every file in scripts/, so a change to any script re-uploads them. */
export function scriptsDirHash(): string {
    const files = fs.readdirSync(SCRIPTS_DIR).sort();
    return sha256(files.map((f) => `${f}\0${readTemplate(f)}`).join("\0"));
}

/**
 * Copies scripts/ to the host and runs each step with its variables on standard input. Each step's `triggers`
 * are its own content hashes, so `pulumi preview --diff` names the step that changes; secret inputs enter the
 * triggers only as a secret hash.
 */
export class ServerSetup extends pulumi.ComponentResource {
    /** The last step's command; depend on it to run after the server is installed. */
    public readonly done: pulumi.Resource;
    public readonly commands: Record<string, command.remote.Command> = {};

    constructor(name: string, args: ServerSetupArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mattermost:index:ServerSetup", name, {}, opts);

        const scriptsHash = scriptsDirHash();
        const mkdir = new command.remote.Command(
            `${name}-scripts-dir`,
            {
                connection: args.connection,
                create: PREPARE_SCRIPTS_DIR_COMMAND,
                triggers: [scriptsHash, args.hostId],
            },
            { parent: this },
        );
        const upload = new command.remote.CopyToRemote(
            `${name}-scripts`,
            {
                connection: args.connection,
                source: new pulumi.asset.FileArchive(SCRIPTS_DIR),
                remotePath: REMOTE_SCRIPTS_DIR,
                triggers: [scriptsHash, args.hostId],
            },
            { parent: this, dependsOn: [mkdir] },
        );

        let previous: pulumi.Resource = upload;
        for (const step of args.steps) {
            const needed = runtimeValueNames(step);
            const values: Record<string, pulumi.Input<string>> = {};
            for (const n of needed) {
                const v = args.runtimeValues[n];
                if (v === undefined) throw new Error(`step ${step.name} needs runtime value ${n}`);
                values[n] = v;
            }
            const resolved = pulumi.all(values).apply((plain) => stepVariables(step, plain));
            const stdin = resolved.apply((vars) => encodeStdin(vars));
            const hasSecret = Object.values(step.runtimeVars).some((v) => v.secret);
            const runtimeHash = resolved.apply((vars) =>
                sha256(
                    JSON.stringify(
                        Object.keys(step.runtimeVars)
                            .sort()
                            .map((k) => vars[k]),
                    ),
                ),
            );
            const cmd = new command.remote.Command(
                `${name}-${step.name}`,
                {
                    connection: args.connection,
                    create: stepCommand(step),
                    stdin: hasSecret ? pulumi.secret(stdin) : stdin,
                    triggers: [plainInputHash(step), hasSecret ? pulumi.secret(runtimeHash) : runtimeHash, args.hostId],
                    addPreviousOutputInEnv: false,
                },
                { parent: this, dependsOn: [previous] },
            );
            this.commands[step.name] = cmd;
            previous = cmd;
        }
        this.done = previous;
        this.registerOutputs({});
    }
}
