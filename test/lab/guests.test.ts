// Real QEMU, real guest kernel, real fio: the lab's main job and its guest controls.
import test from 'ava';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TestLab } from '../support/lab-harness.ts';

const lab = new TestLab('guests');
test.after.always(() => lab.dispose());

/** Running, not merely a zombie waiting for PID 1 to reap it. */
const alive = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
};
const filesUnder = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)]));

test.serial('lab demo: default topology up, fio verify=crc32c passes on the NVMe disk of both guests, down', async (t) => {
  const r = await lab.run(['demo', 'default']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /=== host-a \/dev\/nvme\dn1 \(QEMUNVMeCtrl, serial host-a-nvme0\): fio verify=crc32c PASS ===/);
  t.regex(r.stdout, /=== host-b \/dev\/nvme\dn1 \(QEMUNVMeCtrl, serial host-b-nvme0\): fio verify=crc32c PASS ===/);
  t.regex(r.stdout, /err= 0/);
  t.regex(r.stdout, /PASS: 2\/2 NVMe namespaces verified/);
  t.regex((await lab.run(['status'])).stdout, /no lab is up/);
});

test.serial('up, status with placement, exec, qmp, down leaves nothing running', async (t) => {
  const topo = join(lab.stateDir, 'pinned.yaml');
  writeFileSync(
    topo,
    `name: pinned
vms:
  - { name: one, cpus: 1, memory: 512M, pin: "0", devices: [{ type: nvme, id: disk, size: 64M }] }
  - { name: two, cpus: 2, memory: 512M, pin: "1", devices: [{ type: pcie-switch, id: sw, slots: 2 }] }
`,
  );
  const up = await lab.run(['up', topo]);
  t.is(up.code, 0, up.stderr);
  const pids = [...up.stdout.matchAll(/pid (\d+)/g)].map((m) => Number(m[1]));
  t.is(pids.length, 2);

  const status = (await lab.run(['status'])).stdout;
  t.regex(status, /vm {6}one +pid \d+ +running {2}cpus 0, last on 0/);
  t.regex(status, /vm {6}two +pid \d+ +running {2}cpus 1, last on 1/);

  const echo = await lab.exec('one', 'echo out; echo err >&2; hostname; exit 7');
  t.is(echo.code, 7);
  t.is(echo.stdout, 'out\none\n');
  t.is(echo.stderr, 'err\n');
  // Several words are passed as one command, quoted.
  const words = await lab.run(['exec', 'two', '--', 'printf', '%s|', 'a b', "c'd"]);
  t.is(words.stdout, "a b|c'd|");

  const lspci = await lab.exec('two', 'lspci -n');
  t.regex(lspci.stdout, /104c:8232/, 'x3130 upstream port'); // TI XIO3130 upstream
  t.is(lspci.stdout.match(/104c:8233/g)?.length, 2, 'two xio3130 downstream slots');
  const nvme = await lab.exec('one', 'cat /sys/class/nvme/nvme0/serial; cat /sys/block/nvme0n1/size');
  t.regex(nvme.stdout, /^one-disk\s*\n131072\n$/);

  // Data written before a guest reboot is read back after it, by a new kernel.
  const write = 'dd if=/dev/urandom of=/dev/nvme0n1 bs=64k count=8 oflag=direct 2>/dev/null; sync';
  const sum = 'dd if=/dev/nvme0n1 bs=64k count=8 iflag=direct 2>/dev/null | md5sum; cat /proc/sys/kernel/random/boot_id';
  t.is((await lab.exec('one', write)).code, 0);
  const [md5Before, bootBefore] = (await lab.exec('one', sum)).stdout.split('\n');
  const rebooted = await lab.run(['reboot', 'one']);
  t.is(rebooted.code, 0, rebooted.stderr);
  const [md5After, bootAfter] = (await lab.exec('one', sum)).stdout.split('\n');
  t.not(bootAfter, bootBefore, 'a new boot');
  t.is(md5After, md5Before);

  const qmp = await lab.run(['qmp', 'one', 'query-status']);
  t.is(qmp.code, 0);
  t.is(JSON.parse(qmp.stdout).status, 'running');
  const bad = await lab.run(['qmp', 'one', 'no-such-command']);
  t.is(bad.code, 1);
  t.regex(bad.stdout, /CommandNotFound/);

  const down = await lab.run(['down']);
  t.regex(down.stdout, /stopped .*one.*two|stopped .*two.*one/);
  t.deepEqual(pids.filter(alive), []);
  t.deepEqual(filesUnder(lab.stateDir).filter((f) => /\.(sock|pid)$|lab\.json$/.test(f)), [], 'no sockets or state left');
  t.true(filesUnder(lab.stateDir).some((f) => f.endsWith('one/console.log')), 'logs are kept for reading');
});

test.serial('--accel kvm is used only if a probe guest boots with it', async (t) => {
  const topo = join(lab.stateDir, 'kvm.yaml');
  writeFileSync(topo, 'name: kvm\nvms:\n  - { name: k, cpus: 1, memory: 512M }\n');
  const r = await lab.run(['up', topo, '--accel', 'kvm']);
  if (r.code === 0) {
    // A host where KVM works: the lab must really be running under it.
    t.regex(r.stdout, /accel kvm/);
    t.is((await lab.exec('k', 'true')).code, 0);
    await lab.run(['down']);
  } else {
    // Here (nested PVM) it does not, or the machine has no /dev/kvm at all: refused with
    // the reason, and nothing left running.
    t.regex(
      r.stderr,
      /--accel kvm: (a guest does not boot under KVM on this host: .*; use the default, tcg \(log: .*kvm-probe\/qemu\.log\)|\/dev\/kvm does not exist)/,
    );
    t.regex((await lab.run(['status'])).stdout, /no lab is up/);
  }
});
