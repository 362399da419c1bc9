/**
 * Proves the test-host library itself: a systemd-nspawn Debian 12 host boots,
 * is reachable over SSH as ubuntu with sudo, runs systemd as PID 1, sees an
 * attached disk it can format and mount, and leaves nothing behind on stop.
 * Needs root and the packages from test/install-deps.sh.
 */
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { cleanupStale, ensureBaseImage, lastImageBuildMs, startHost, stopAllHosts, type TestHost } from "./testhost";

function hostCmd(argv: string[]): string {
    const [cmd, ...args] = argv;
    const r = spawnSync(cmd as string, args, { encoding: "utf8" });
    return `${r.stdout ?? ""}${r.stderr ?? ""}`;
}

describe("test host library (systemd-nspawn)", function () {
    let tmp = "";
    let host: TestHost | undefined;

    before(async function () {
        this.timeout(15 * 60_000);
        await cleanupStale();
        const t = Date.now();
        const rootfs = await ensureBaseImage();
        console.log(
            `      base image ${rootfs} ready in ${Date.now() - t} ms` + (lastImageBuildMs !== undefined ? " (built)" : " (cached)"),
        );
        tmp = fs.mkdtempSync(path.join(os.tmpdir(), "mmth-spec-"));
    });

    after(async function () {
        this.timeout(120_000);
        await stopAllHosts();
        if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    });

    it("boots with systemd as PID 1 and ssh as ubuntu with passwordless sudo", async function () {
        this.timeout(180_000);
        host = await startHost({ name: "spec1", disks: [{ image: path.join(tmp, "data.img"), sizeMiB: 64 }] });
        console.log(`      boot + ssh ready in ${host.bootMs} ms (${host.address} via ${host.hostAddress})`);

        const id = await host.ssh(["id", "-un"]);
        assert.equal(id.code, 0, id.stderr);
        assert.equal(id.stdout.trim(), "ubuntu");

        const sudo = await host.ssh("sudo -n true && echo sudo-ok");
        assert.equal(sudo.code, 0, sudo.stderr);
        assert.equal(sudo.stdout.trim(), "sudo-ok");
        assert.equal(sudo.stderr, "");

        const pid1 = await host.exec(["cat", "/proc/1/comm"]);
        assert.equal(pid1.stdout.trim(), "systemd");
        const state = await host.ssh(["systemctl", "is-system-running"]);
        assert.match(state.stdout.trim(), /^(running|degraded)$/);

        // stdin and quoting reach the remote side intact
        const echo = await host.ssh(["cat"], { stdin: 'it\'s "quoted" $HOME\n' });
        assert.equal(echo.stdout, 'it\'s "quoted" $HOME\n');
        const words = await host.ssh(["printf", "%s|", "a b", "c'd", "$x"]);
        assert.equal(words.stdout, "a b|c'd|$x|");

        // the container reaches a server on the host side of the veth
        const ping = await host.ssh(["ping", "-c1", "-W2", host.hostAddress]);
        assert.equal(ping.code, 0, ping.stdout + ping.stderr);
    });

    it("exposes the disk as a block device that can be formatted and mounted by UUID", async function () {
        this.timeout(120_000);
        assert.ok(host);
        assert.deepEqual(host.diskDevices, ["/dev/xvdf"]);
        const dev = host.diskDevices[0] as string;
        const script = [
            "set -eu",
            `test -b "$(readlink -f ${dev})"`,
            `if ! blkid ${dev} >/dev/null; then mkfs.ext4 -q -L mmdata ${dev}; fi`,
            `uuid=$(blkid -s UUID -o value ${dev})`,
            "mkdir -p /mnt/data",
            'echo "UUID=$uuid /mnt/data ext4 defaults,nofail 0 2" >> /etc/fstab',
            "mount /mnt/data",
            "echo persisted > /mnt/data/marker",
            "findmnt -n -o SOURCE,FSTYPE /mnt/data",
        ].join("\n");
        const r = await host.ssh(["sudo", "-n", "bash", "-c", script]);
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.match(r.stdout, /ext4/);
        const marker = await host.exec(["cat", "/mnt/data/marker"]);
        assert.equal(marker.stdout.trim(), "persisted");

        const tmpFile = path.join(tmp, "copy.txt");
        fs.writeFileSync(tmpFile, "copied\n");
        await host.copyTo(tmpFile, "/home/ubuntu/copy.txt");
        const copied = await host.ssh(["cat", "/home/ubuntu/copy.txt"]);
        assert.equal(copied.stdout, "copied\n");

        assert.match(await host.journal("ssh.service", 20), /sshd|ssh/i);
    });

    it("stops cleanly (twice) and leaves no mount, loop device, veth or process", async function () {
        this.timeout(120_000);
        assert.ok(host);
        const h = host;
        const loop = h.loopDevices[0] as string;
        const leader = h.leaderPid;
        await h.stop();
        await h.stop();
        assert.doesNotMatch(fs.readFileSync("/proc/self/mounts", "utf8"), /mmth-spec1/);
        assert.doesNotMatch(hostCmd(["losetup", "--list", "--noheadings", "-O", "NAME,BACK-FILE"]), new RegExp(`${loop}\\s`));
        assert.doesNotMatch(hostCmd(["ip", "-o", "link", "show"]), /mmth-/);
        assert.doesNotMatch(hostCmd(["ip", "netns", "list"]), /mmth-spec1/);
        assert.equal(fs.existsSync(`/proc/${leader}`), false, "container init still running");
        assert.equal(fs.existsSync("/var/tmp/mmth-spec1"), false);
    });

    it("reuses a disk image (data survives) and runs two hosts at once", async function () {
        this.timeout(300_000);
        const [a, b] = await Promise.all([
            startHost({ name: "spec-a", disks: [{ image: path.join(tmp, "data.img"), sizeMiB: 64 }] }),
            startHost({ name: "spec-b" }),
        ]);
        assert.notEqual(a.address, b.address);
        // hosts reach each other (database host + app host)
        const ab = await a.ssh(["ping", "-c1", "-W2", b.address]);
        assert.equal(ab.code, 0, ab.stdout + ab.stderr);
        const hostname = await b.ssh(["hostname"]);
        assert.equal(hostname.stdout.trim(), "spec-b");
        const r = await a.ssh("sudo -n mkdir -p /mnt/data && sudo -n mount /dev/xvdf /mnt/data && cat /mnt/data/marker");
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout.trim(), "persisted");
        // base image is pristine: the first host's fstab edit did not leak
        const fstab = await b.exec(["cat", "/etc/fstab"]);
        assert.doesNotMatch(fstab.stdout, /mnt\/data/);
        // postgresql and nginx are installed but not enabled in the base image
        const en = await b.exec(["systemctl", "is-enabled", "postgresql", "nginx"]);
        assert.deepEqual(en.stdout.trim().split("\n"), ["disabled", "disabled"]);
        await Promise.all([a.stop(), b.stop()]);
        assert.doesNotMatch(hostCmd(["ip", "-o", "link", "show"]), /mmth-/);
    });
});
