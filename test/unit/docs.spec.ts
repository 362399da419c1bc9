import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";

import { renderPulumiYamlConfig, renderReadmeTable } from "../../components/configDocs";
import YAML from "yaml";

import { CONFIG_KEYS, parseSettings } from "../../components/settings";

const ROOT = path.join(__dirname, "..", "..");

describe("config documentation stays in step with the code", () => {
    it("Pulumi.yaml declares every key, exactly as rendered from CONFIG_KEYS", () => {
        const yaml = fs.readFileSync(path.join(ROOT, "Pulumi.yaml"), "utf8");
        assert.ok(yaml.includes(renderPulumiYamlConfig()), "regenerate with: npx ts-node components/configDocs.ts");
        for (const k of CONFIG_KEYS) assert.match(yaml, new RegExp(`^  mattermost:${k.key}:$`, "m"));
    });

    it("the README's config table lists every key, exactly as rendered", () => {
        const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
        assert.ok(readme.includes(renderReadmeTable()), "regenerate with: npx ts-node components/configDocs.ts readme");
    });

    it("the example stacks hold no secrets and only known keys", () => {
        const known = new Set(CONFIG_KEYS.map((k) => k.key));
        for (const stack of ["Pulumi.dev.yaml", "Pulumi.prod.yaml"]) {
            const text = fs.readFileSync(path.join(ROOT, stack), "utf8");
            assert.ok(!/secure:|PRIVATE KEY/.test(text), `${stack} holds a secret`);
            for (const m of text.matchAll(/^\s+mattermost:(\w+):/gm)) assert.ok(known.has(m[1]), `${stack}: unknown key ${m[1]}`);
        }
    });
});

describe("example stacks", () => {
    for (const stack of ["Pulumi.dev.yaml", "Pulumi.prod.yaml"]) {
        it(`${stack} is a valid stack config`, () => {
            const doc = YAML.parse(fs.readFileSync(path.join(ROOT, stack), "utf8")) as { config: Record<string, unknown> };
            const values: Record<string, string> = {};
            for (const [key, value] of Object.entries(doc.config)) {
                if (!key.startsWith("mattermost:")) continue;
                values[key.slice("mattermost:".length)] = typeof value === "string" ? value : JSON.stringify(value);
            }
            const result = parseSettings({ values });
            assert.deepEqual(result.errors, []);
        });
    }
});
