// Issue 8 on real systemd hosts: a second container plays RDS (PostgreSQL with TLS, a self-signed certificate made
// by the test for its address). The app host deploys the `local` database shape (alb shape: Mattermost on :8065
// without TLS), gets rows, then switches to `database: rds`: the rds step installs the CA bundle (served by this
// machine: the containers have no internet), migrates with scripts/migrate-database.sh, and the stand-in connects
// with verified TLS. Then: the stand-in with sslmode=require, and the negative control (TLS off on the server).
import { strict as assert } from "node:assert";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";

import { buildServerSteps, RuntimeValueName, Step } from "../../components/steps";
import { DATA_MOUNT } from "../../components/steps/mattermostConfig";
import { buildStandinRelease, deploy, runStep, serveReleases, STANDIN_CACHE, StepFailed } from "./driver";
import { hostSettings, printTimings, rootSh, timed as timedInto } from "./fixture";
import { ensureBaseImage, startHost, stopAllHosts, TestHost } from "./testhost";

const VERSION = "10.11.4";
const timings: Record<string, number> = {};
const timed = <T>(name: string, fn: () => Promise<T>): Promise<T> => timedInto(timings, name, fn);
const dbPassword = randomBytes(16).toString("hex");
const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "mm-managed-"));

/** Every user table with its exact row count, as sorted "table rows" lines (the migration's own report format). */
const TABLE_COUNTS = String.raw`
SELECT string_agg(format('%s %s', t.name,
         (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %s', t.name), false, true, '')))[1]::text),
       E'\n' ORDER BY t.name)
FROM (SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) AS name FROM pg_tables
      WHERE schemaname NOT IN ('pg_catalog', 'information_schema')) t;`;
const PROBE_DIGEST = "SELECT md5(string_agg(x::text, ',' ORDER BY x.id)) FROM probe x;";
/** The stand-in adds a row at every start: digest the first n rows (the ones that existed before the switch). */
const startsDigest = (n: number): string =>
    `SELECT md5(string_agg(x::text, ',' ORDER BY x.started_at, x.version)) FROM (SELECT * FROM standin_starts ORDER BY started_at, version LIMIT ${n}) x;`;

/** Runs SQL as postgres on a host's local cluster; returns the trimmed output. */
async function sql(host: TestHost, database: string, query: string): Promise<string> {
    const r = await host.exec(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-d", database], {
        stdin: query,
    });
    if (r.code !== 0) throw new Error(`psql on ${host.name} failed: ${r.stderr}`);
    return r.stdout.trim();
}

/** Serves one file over HTTP on the given address (the RDS bundle URL stands in for AWS's). */
async function serveFile(content: string, address: string): Promise<{ url: string; close(): Promise<void> }> {
    const server = http.createServer((_req, res) => res.writeHead(200, { "content-type": "application/x-pem-file" }).end(content));
    await new Promise<void>((resolve) => server.listen(0, address, resolve));
    const port = (server.address() as { port: number }).port;
    return {
        url: `http://${address}:${port}/global-bundle.pem`,
        close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    };
}

/** The database host's PostgreSQL: TLS on or off, listening on the bridge, password auth for mmuser from the bridge. */
async function configureDatabaseHost(db: TestHost, ssl: boolean): Promise<void> {
    await rootSh(
        db,
        [
            "set -e",
            "v=$(ls /usr/lib/postgresql | sort -n | tail -1)",
            "conf=/etc/postgresql/$v/main",
            `cat > $conf/conf.d/mmth.conf <<EOF
listen_addresses = '*'
ssl = ${ssl ? "on" : "off"}
ssl_cert_file = '/etc/postgresql/mmth-tls/server.crt'
ssl_key_file = '/etc/postgresql/mmth-tls/server.key'
password_encryption = scram-sha-256
EOF`,
            `grep -q mmth $conf/pg_hba.conf || printf 'host mattermost mmuser 10.231.0.0/24 scram-sha-256 # mmth\\n' >> $conf/pg_hba.conf`,
            "systemctl restart postgresql@$v-main",
            "for i in $(seq 1 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done",
        ].join("\n"),
    );
}

describe("host: database rds on a second host (TLS) and the migration from the local database", function () {
    this.timeout(30 * 60_000);
    let app: TestHost;
    let db: TestHost;
    let releases: { baseUrl: string; close(): Promise<void> };
    let bundle: { url: string; close(): Promise<void> };
    let sha: string;
    let sourceCounts: string;
    let sourceProbeDigest: string;
    let sourceStarts: number;
    let sourceStartsDigest: string;
    let caPem: string;

    const values = (): Partial<Record<RuntimeValueName, string>> => ({
        dataVolumeId: "vol-0123456789abcdef0",
        databasePassword: dbPassword,
        databaseHost: db.address,
    });
    const settings = (database: "local" | "rds") =>
        hostSettings({
            tlsMode: "alb",
            database,
            mattermostSha256: sha,
            mattermostDownloadBaseUrl: releases.baseUrl,
        });
    /** The program's own steps; only the bundle URL points at this machine (no internet in the containers). */
    const stepsFor = (database: "local" | "rds"): Step[] =>
        buildServerSteps(settings(database), { dataDevice: app.diskDevices[0], healthTimeoutSeconds: 90 }).map((s) =>
            s.name === "rds" ? { ...s, vars: { ...s.vars, CA_URL: bundle.url } } : s,
        );

    before(async () => {
        await timed("base image", () => ensureBaseImage());
        sha = await timed("stand-in release", async () => buildStandinRelease(VERSION, STANDIN_CACHE).sha256);
        // Two hosts at once on the bridge: they reach each other at their 10.231.0.x addresses.
        app = await timed("boot app host", () =>
            startHost({ name: "mgd-app", disks: [{ image: path.join(workDir, "data.img"), sizeMiB: 512 }] }),
        );
        db = await timed("boot database host", () => startHost({ name: "mgd-db" }));
        releases = await serveReleases(STANDIN_CACHE, app.hostAddress);
        // The "RDS" certificate: self-signed for the database host's address, made by the test, on that host.
        caPem = await rootSh(
            db,
            `set -e
install -d -m 0755 /etc/postgresql/mmth-tls && cd /etc/postgresql/mmth-tls
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj '/CN=${db.address}' \
  -addext 'subjectAltName=IP:${db.address}' -keyout server.key -out server.crt 2>/dev/null
chown postgres:postgres server.key server.crt && chmod 600 server.key
cat server.crt`,
        );
        bundle = await serveFile(caPem + "\n", app.hostAddress);
        await configureDatabaseHost(db, true);
        await sql(db, "postgres", `CREATE ROLE mmuser LOGIN PASSWORD '${dbPassword}';\nCREATE DATABASE mattermost OWNER mmuser;`);
    });

    after(async () => {
        await bundle?.close();
        await releases?.close();
        await stopAllHosts();
        fs.rmSync(workDir, { recursive: true, force: true });
        printTimings(timings);
    });

    it("the local shape runs and holds rows (the data to migrate)", async () => {
        const runs = await timed("deploy local", () => deploy(app, stepsFor("local"), values()));
        assert.deepEqual(
            runs.map((r) => r.step),
            ["volume", "postgres", "backup", "nginx", "mattermost", "start"],
        );
        assert.match(await rootSh(app, "curl -sS http://127.0.0.1:8065/api/v4/system/ping"), /"status":"OK"/);
        await sql(
            app,
            "mattermost",
            `CREATE TABLE probe (id serial PRIMARY KEY, body text NOT NULL);
INSERT INTO probe (body) SELECT md5(g::text) FROM generate_series(1, 2500) g;
ALTER TABLE probe OWNER TO mmuser;`,
        );
        sourceCounts = await sql(app, "mattermost", TABLE_COUNTS);
        assert.deepEqual(
            sourceCounts.split("\n").map((l) => l.split(" ")[0]),
            ["public.probe", "public.standin_starts"],
        );
        assert.match(sourceCounts, /^public\.probe 2500$/m);
        sourceProbeDigest = await sql(app, "mattermost", PROBE_DIGEST);
        sourceStarts = Number(/^public\.standin_starts (\d+)$/m.exec(sourceCounts)?.[1]);
        assert.ok(sourceStarts >= 1);
        sourceStartsDigest = await sql(app, "mattermost", startsDigest(sourceStarts));
    });

    it("switching to rds migrates every row (same per-table counts and digests) and connects with verify-full", async () => {
        const runs = await timed("deploy rds (migration)", () => deploy(app, stepsFor("rds"), values()));
        assert.deepEqual(
            runs.map((r) => r.step),
            ["volume", "rds", "nginx", "mattermost", "start"],
        );
        const rds = runs.find((r) => r.step === "rds");
        assert.ok(
            rds?.changes.some((c) => /migrated database mattermost to 10\.231\.0\.\d+ \(\d+ tables verified\)/.test(c)),
            rds?.stdout,
        );
        assert.ok(rds?.changes.some((c) => c.includes("/etc/mattermost/rds-ca.pem")));
        // The script's own check, recorded at the switch: every table with the source's row count.
        const marker = await rootSh(app, `cat ${DATA_MOUNT}/.mattermost-database-migrated`);
        assert.equal(marker.split("\n").slice(1).join("\n"), sourceCounts);
        // Independently, on the database host: the same rows, byte for byte (the stand-in has started once more since).
        assert.equal(await sql(db, "mattermost", PROBE_DIGEST), sourceProbeDigest);
        assert.equal(await sql(db, "mattermost", startsDigest(sourceStarts)), sourceStartsDigest);
        assert.match(await sql(db, "mattermost", TABLE_COUNTS), /^public\.probe 2500$/m);
        // Mattermost runs on the database host now, over TLS, verifying its certificate and name.
        assert.match(await rootSh(app, "curl -sS http://127.0.0.1:8065/api/v4/system/ping"), /"status":"OK"/);
        assert.match(
            await rootSh(app, "cat /etc/mattermost/secrets.env"),
            new RegExp(
                `@${db.address.replace(/\./g, "\\.")}:5432/mattermost\\?sslmode=verify-full&sslrootcert=/etc/mattermost/rds-ca\\.pem`,
            ),
        );
        const sessions = await sql(
            db,
            "postgres",
            "SELECT DISTINCT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.usename = 'mmuser' AND a.client_addr IS NOT NULL",
        );
        assert.equal(sessions, "t", "every mmuser session from the app host is TLS");
        // The local data stays on the volume; the local cluster is stopped and disabled; the migration is recorded.
        assert.match(await rootSh(app, `ls ${DATA_MOUNT}/postgresql/*/main/PG_VERSION`), /PG_VERSION/);
        assert.equal((await app.exec(["systemctl", "is-active", "postgresql@15-main"])).stdout.trim(), "inactive");
    });

    it("a second run changes nothing (the migration runs once)", async () => {
        const runs = await timed("second rds run", () => deploy(app, stepsFor("rds"), values()));
        assert.deepEqual(
            runs.flatMap((r) => r.changes.map((c) => `${r.step}: ${c}`)),
            [],
        );
    });

    it("refuses to guess when the target already has tables but no migration was recorded", async () => {
        const marker = `${DATA_MOUNT}/.mattermost-database-migrated`;
        await rootSh(app, `mv ${marker} ${marker}.saved`);
        try {
            const rdsStep = stepsFor("rds").find((st) => st.name === "rds");
            assert.ok(rdsStep);
            await assert.rejects(
                () => runStep(app, rdsStep, values()),
                (err: Error) =>
                    err instanceof StepFailed &&
                    /already has 2 tables, but a local database .* was never migrated/.test(err.run.stderr) &&
                    /sudo touch/.test(err.run.stderr),
            );
            // Nothing was touched: the target still holds exactly what was migrated.
            assert.equal(await sql(db, "mattermost", PROBE_DIGEST), sourceProbeDigest);
        } finally {
            await rootSh(app, `mv ${marker}.saved ${marker}`);
        }
    });

    it("the stand-in connects with sslmode=require; with TLS off on the server, sslmode=require refuses (negative control)", async () => {
        const requireDsn = `postgres://mmuser:${dbPassword}@${db.address}:5432/mattermost?sslmode=require&connect_timeout=5`;
        await rootSh(
            app,
            `printf 'MM_SQLSETTINGS_DATASOURCE=%s\\nSTANDIN_DB_RETRY_SECONDS=5\\n' '${requireDsn}' > /etc/mattermost/secrets.env && systemctl restart mattermost`,
        );
        let ping = "";
        for (let i = 0; i < 30 && !/"status":"OK"/.test(ping); i++) {
            await new Promise((r) => setTimeout(r, 1000));
            ping = (await app.exec(["curl", "-sS", "http://127.0.0.1:8065/api/v4/system/ping"])).stdout;
        }
        assert.match(ping, /"status":"OK"/, "sslmode=require against the TLS server");

        await timed("TLS off on the database host", () => configureDatabaseHost(db, false));
        await rootSh(app, "systemctl restart mattermost");
        let journal = "";
        for (let i = 0; i < 40 && !/SSL is not enabled on the server/.test(journal); i++) {
            await new Promise((r) => setTimeout(r, 1000));
            journal = await app.journal("mattermost", 60);
        }
        assert.match(journal, /SSL is not enabled on the server/);
        assert.notEqual((await app.exec(["curl", "-sS", "--max-time", "3", "http://127.0.0.1:8065/api/v4/system/ping"])).code, 0);
    });
});
