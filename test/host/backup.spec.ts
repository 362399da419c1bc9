// The daily database dump (the backup step's timer job) on a real host: it writes a pg_dump onto the data volume,
// root-only, keeps the newest three, and the dump restores into a fresh PostgreSQL cluster with every row intact.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { DUMP_DIR } from "../../components/steps";
import { selfSignedPair } from "../unit/pki";
import { buildStandinRelease, deploy, serveReleases, STANDIN_CACHE } from "./driver";
import { DOMAIN, hostSettings, hostSteps, printTimings, rootSh, runtimeValues, timed } from "./fixture";
import { ensureBaseImage, startHost, stopAllHosts, TestHost } from "./testhost";

const VERSION = "10.11.4";
const timings: Record<string, number> = {};
const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "mm-backup-"));
/** A digest of the probe table's rows in a stable order, to compare the source and the restored copy. */
const DIGEST_SQL = "SELECT count(*) || ':' || md5(string_agg(id || '=' || note, ',' ORDER BY id)) FROM backup_probe";

describe("host: the database dump before each snapshot, and its restore", function () {
    this.timeout(10 * 60_000);
    let host: TestHost;
    let releases: { baseUrl: string; close(): Promise<void> };

    before(async () => {
        await ensureBaseImage();
        const sha = buildStandinRelease(VERSION, STANDIN_CACHE).sha256;
        host = await startHost({ name: "backup", disks: [{ image: path.join(workDir, "data.img"), sizeMiB: 512 }] });
        releases = await serveReleases(STANDIN_CACHE, host.hostAddress);
        const pair = selfSignedPair(DOMAIN);
        const settings = hostSettings({
            tlsMode: "direct",
            certificate: "self-signed",
            snapshotTime: "00:10",
            mattermostSha256: sha,
            mattermostDownloadBaseUrl: releases.baseUrl,
        });
        await timed(timings, "deploy", () => deploy(host, hostSteps(host, settings), runtimeValues(pair)));
    });

    after(async () => {
        await releases?.close();
        await stopAllHosts();
        fs.rmSync(workDir, { recursive: true, force: true });
        printTimings(timings);
    });

    it("enables the timer 30 minutes before the snapshot time, in UTC", async () => {
        assert.equal(await rootSh(host, "systemctl is-enabled mattermost-db-dump.timer"), "enabled");
        assert.equal(await rootSh(host, "systemctl is-active mattermost-db-dump.timer"), "active");
        assert.match(
            await rootSh(host, "systemctl show -p TimersCalendar --value mattermost-db-dump.timer"),
            /OnCalendar=\*-\*-\* 23:40:00 UTC/,
        );
    });

    it("the job dumps onto the data volume (root-only), keeps the newest three, and the dump restores with every row", async () => {
        await rootSh(
            host,
            `runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -d mattermost -c "CREATE TABLE backup_probe (id int PRIMARY KEY, note text); INSERT INTO backup_probe SELECT g, md5(g::text) FROM generate_series(1, 5000) g;"`,
        );
        const source = await rootSh(host, `runuser -u postgres -- psql -tA -d mattermost -c "${DIGEST_SQL}"`);
        assert.match(source, /^5000:[0-9a-f]{32}$/);

        const out = await timed(timings, "dump job", () =>
            rootSh(host, "systemctl start mattermost-db-dump.service && journalctl -u mattermost-db-dump.service -n 5 --no-pager -o cat"),
        );
        assert.match(out, new RegExp(`dumped mattermost to ${DUMP_DIR}/mattermost-\\d{8}T\\d{6}Z\\.dump`));
        const listing = await rootSh(host, `stat -c '%a %U %n' ${DUMP_DIR} ${DUMP_DIR}/mattermost-*.dump`);
        assert.match(listing, new RegExp(`^700 postgres ${DUMP_DIR}\\n600 postgres ${DUMP_DIR}/mattermost-\\d{8}T\\d{6}Z\\.dump$`));

        for (let i = 0; i < 3; i++) {
            await new Promise((r) => setTimeout(r, 1100)); // dump names carry the second
            await rootSh(host, "systemctl start mattermost-db-dump.service");
        }
        const dumps = (await rootSh(host, `ls -1 ${DUMP_DIR}`)).split("\n");
        assert.equal(dumps.length, 3, dumps.join(" "));
        assert.ok(!dumps.includes(listing.split("\n")[1].split("/").pop() ?? ""), "the oldest dump was removed");

        const newest = dumps.sort().pop();
        const restored = await timed(timings, "restore into a fresh cluster", () =>
            rootSh(
                host,
                [
                    "set -e",
                    "v=$(ls /usr/lib/postgresql | sort -n | tail -1)",
                    "pg_createcluster $v restore --port 5499 --start >/dev/null",
                    "runuser -u postgres -- createdb -p 5499 mattermost_restored",
                    `runuser -u postgres -- pg_restore -p 5499 --no-owner --exit-on-error -d mattermost_restored ${DUMP_DIR}/${newest}`,
                    `runuser -u postgres -- psql -p 5499 -tA -d mattermost_restored -c "${DIGEST_SQL}"`,
                ].join("\n"),
            ),
        );
        assert.equal(restored, source);
    });
});
