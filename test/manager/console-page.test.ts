// The web console in a real browser (Debian's chromium, headless, driven by playwright-core)
// against real processes without guests (console-support.ts): the page draws the hosts with
// their slots, the DI's functions and every link with counters that move; a link set down
// shows as down; a click-assign that the manager refuses shows the manager's error and
// changes nothing. The assign that works is in guest-console.test.ts (QEMU).
import test from 'ava';
import { chromium, type Browser, type Page } from 'playwright-core';
import { until } from '../support/until.ts';
import { GuestlessLab } from './console-support.ts';

const lab = new GuestlessLab();
let browser: Browser;
let page: Page;

test.before(async () => {
  await lab.start();
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium' });
  page = await browser.newPage();
  const r = await lab.lab(['console']);
  await page.goto(r.stdout.trim());
  await page.locator('[data-link="di0"]').waitFor({ timeout: 30_000 });
});
test.after.always(async () => {
  await browser?.close();
  await lab.stop();
});

test.serial('the page draws the hosts and their slots, the DI functions and the links with moving counters', async (t) => {
  t.is(await page.locator('#state').textContent(), 'connected to the manager');
  for (const h of ['host-a', 'host-b']) t.regex((await page.locator(`[data-host="${h}"]`).textContent())!, new RegExp(`host ${h}HI hi-${h}slot 0: freeslot 1: free`));
  t.regex((await page.locator('[data-function="di/fn0"]').textContent())!, /fn0 01:00\.0nvmefree/);
  t.regex((await page.locator('[data-function="di/fn1"]').textContent())!, /fn1 01:00\.1nvmefree/);
  t.is(await page.locator('[data-link]').count(), 7, 'two per HI and DI, one for the manager');
  const counters = () => page.locator('[data-counters="di0"]').textContent();
  const first = (await counters())!;
  t.regex(first, /^rx \d+ tx \d+/);
  await until(async () => (await counters()) !== first, 'the di0 counters move on the page', { timeoutMs: 30_000, everyMs: 250 });
});

test.serial('a link set down (lab fault) is drawn down, and up again', async (t) => {
  t.is((await lab.lab(['fault', 'hi-host-b1', 'down'])).code, 0);
  await page.locator('[data-link="hi-host-b1"].down').waitFor({ timeout: 10_000 });
  t.regex((await page.locator('[data-link="hi-host-b1"]').textContent())!, /hi-host-b1 DOWN/);
  t.regex((await page.locator('#events').textContent())!, /fault hi-host-b1: down true/, 'pushed by the manager as it happened');
  t.is((await lab.lab(['fault', 'hi-host-b1', 'up'])).code, 0);
  await page.locator('[data-link="hi-host-b1"]:not(.down)').waitFor({ timeout: 10_000 });
  t.notRegex((await page.locator('[data-link="hi-host-b1"]').textContent())!, /DOWN/, 'drawn up again');
});

test.serial('click a function, then a host: the manager\'s refusal is shown and nothing changes', async (t) => {
  await page.locator('[data-function="di/fn0"]').click();
  t.regex((await page.locator('#message').textContent())!, /di\/fn0 selected: click a host/);
  t.is(await page.locator('[data-function="di/fn0"].selected').count(), 1);
  await page.locator('[data-host="host-a"]').click({ position: { x: 20, y: 10 } });
  await page.locator('#message.error').waitFor({ timeout: 60_000 });
  // No VM here to hot-plug into: the manager says so, and the table is as it was.
  t.regex((await page.locator('#message').textContent())!, /^assign di\/fn0 to host-a: .*host-a/);
  t.regex((await page.locator('[data-function="di/fn0"]').textContent())!, /nvmefree/);
  if (process.env.CONSOLE_SCREENSHOT) await page.screenshot({ path: process.env.CONSOLE_SCREENSHOT, fullPage: true });
  t.is(await page.locator('.slot.used').count(), 0);
});
