// Renders the config reference (Pulumi.yaml's `config:` block and the README table) from CONFIG_KEYS, so the
// three never drift apart; a unit test compares the committed files with this output.
import { CONFIG_KEYS, CONFIG_NAMESPACE, ConfigKeyDoc } from "./settings";

function yamlDefault(k: ConfigKeyDoc): string | undefined {
    if (k.required) return undefined;
    if (k.default === undefined) return '""';
    switch (k.type) {
        case "integer":
        case "boolean":
        case "array":
            return k.default;
        case "string":
            // Defaults that depend on another key are computed by the program; declare them empty.
            return k.default.includes(" ") ? '""' : JSON.stringify(k.default);
        default: {
            const unreachable: never = k.type;
            throw new Error(`unknown type ${String(unreachable)}`);
        }
    }
}

export function renderPulumiYamlConfig(): string {
    const lines = ["config:"];
    for (const k of CONFIG_KEYS) {
        lines.push(`  ${CONFIG_NAMESPACE}:${k.key}:`);
        lines.push(`    type: ${k.type}`);
        if (k.type === "array") lines.push("    items:", "      type: string");
        lines.push(`    description: ${JSON.stringify(k.description)}`);
        const d = yamlDefault(k);
        if (d !== undefined) lines.push(`    default: ${d}`);
    }
    return lines.join("\n") + "\n";
}

export function renderReadmeTable(): string {
    const rows = ["| key | type | default | description |", "| --- | --- | --- | --- |"];
    for (const k of CONFIG_KEYS) {
        const def = k.required ? "**required**" : k.default === undefined ? "unset" : `\`${k.default}\``;
        const type = k.secret ? `${k.type} (secret)` : k.type;
        rows.push(`| \`${CONFIG_NAMESPACE}:${k.key}\` | ${type} | ${def} | ${k.description.replace(/\|/g, "\\|")} |`);
    }
    return rows.join("\n") + "\n";
}

if (require.main === module) {
    process.stdout.write(process.argv[2] === "readme" ? renderReadmeTable() : renderPulumiYamlConfig());
}
