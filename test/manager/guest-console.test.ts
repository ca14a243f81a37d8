// The web console with real QEMU guests (`lab up hotplug`), in headless chromium driven by
// playwright-core: the page shows the running topology; a click on di/fn0 and then on host-a
// hot-plugs the function into host-a (lspci and nvme list in the guest show it, and so does the
// page); a click on the assigned function takes it away again (the manager's refusals are shown
// as it gives them: console-page.test.ts). CONSOLE_SCREENSHOT=FILE saves
// the page after the assign (docs/console.png comes from such a run).
import test from 'ava';
import { chromium, type Browser, type Page } from 'playwright-core';
import { TestLab } from '../support/lab-harness.ts';
import { until } from '../support/until.ts';

const lab = new TestLab('console');
let browser: Browser;
let page: Page;

test.before(async () => {
  await lab.up('hotplug');
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium' });
  page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
  const r = await lab.run(['console']);
  if (r.code !== 0) throw new Error(`lab console: exit ${r.code}\n${r.stderr}`);
  await page.goto(r.stdout.trim());
  await page.locator('[data-link="di0"]').waitFor({ timeout: 30_000 });
});
test.after.always(async () => {
  await browser?.close();
  await lab.dispose();
});

const guest = (vm: string, command: string) => lab.sh(vm, command, 120);
const text = async (selector: string) => (await page.locator(selector).textContent()) ?? '';
const message = () => text('#message');

test.serial('[qemu] the page shows the running topology: hosts with free slots, the DI functions, the links', async (t) => {
  for (const h of ['host-a', 'host-b']) t.regex(await text(`[data-host="${h}"]`), /slot 0: freeslot 1: free/);
  for (const f of ['fn0', 'fn1']) t.regex(await text(`[data-function="di/${f}"]`), new RegExp(`${f} 01:00\\.\\dnvmefree`));
  t.deepEqual(await page.locator('[data-link]').evaluateAll((ls) => ls.map((l) => l.getAttribute('data-link')).sort()), ['di0', 'di1', 'hi-host-a0', 'hi-host-a1', 'hi-host-b0', 'hi-host-b1', 'manager0']);
  t.regex(await text('[data-counters="di0"]'), /^rx \d+ tx \d+/);
});

test.serial('[qemu] click di/fn0, then host-a: the function is hot-plugged into the guest and drawn in host-a\'s slot', async (t) => {
  await page.locator('[data-function="di/fn0"]').click();
  await page.locator('[data-host="host-a"]').click({ position: { x: 20, y: 10 } });
  await until(async () => !(await message()).endsWith('…'), 'the assign to finish', { timeoutMs: 120_000, everyMs: 250 });
  t.regex(await message(), /^assign di\/fn0 to host-a: done in \d+ ms$/);
  await until(async () => (await guest('host-a', 'cat /sys/class/nvme/nvme*/serial 2>/dev/null; true')).includes('PCIEOE-HOTPLUG-FN0'), 'host-a nvme driver bound to di/fn0', { timeoutMs: 60_000, everyMs: 500 });
  t.regex(await guest('host-a', 'lspci -nn -d 1234:4e56'), /Non-Volatile memory controller.*\[1234:4e56\]/);
  t.regex(await guest('host-a', 'nvme list'), /PCIEOE-HOTPLUG-FN0/);
  t.regex(await text('[data-slot="host-a#0"]'), /slot 0: di\/fn0/);
  t.regex(await text('[data-function="di/fn0"]'), /→ host-a/);
  t.regex(await text('#events'), /assigned di\/fn0 to host-a slot 0 \(\d+ ms\)/);
  if (process.env.CONSOLE_SCREENSHOT) await page.screenshot({ path: process.env.CONSOLE_SCREENSHOT });
});

test.serial('[qemu] click the assigned function: it is unassigned, the guest lets it go and the page shows the slot free', async (t) => {
  await page.locator('[data-function="di/fn0"]').click();
  await until(async () => !(await message()).endsWith('…'), 'the unassign to finish', { timeoutMs: 120_000, everyMs: 250 });
  t.regex(await message(), /^unassign di\/fn0 from host-a: done in \d+ ms$/);
  await until(async () => !(await guest('host-a', 'cat /sys/class/nvme/nvme*/serial 2>/dev/null; true')).includes('PCIEOE-HOTPLUG-FN0'), 'di/fn0 gone from host-a', { timeoutMs: 60_000, everyMs: 500 });
  await until(async () => /slot 0: free/.test(await text('[data-slot="host-a#0"]')), 'the page to show host-a slot 0 free', { timeoutMs: 10_000, everyMs: 100 });
  t.regex(await text('[data-function="di/fn0"]'), /nvmefree/);
  t.regex(await text('#events'), /unassigned di\/fn0 from host-a slot 0 \(\d+ ms\)/);
});
