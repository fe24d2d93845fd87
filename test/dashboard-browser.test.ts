// The dashboard in a real browser: Debian's chromium driven by playwright-core. A pair runs
// the long `seq` guest; the page must load without console errors, draw every chart with its
// state names, and when "Kill primary" is pressed, light the backup's `live` state within a
// second while the released-output counter keeps rising. Then "Add backup" re-protects the
// pair (pair chart `protected` again, the joined backup `replaying`), and a second "Kill
// primary" fails over to that backup. It also saves docs/dashboard.png, of the re-protected pair.
// NOTE: this test fails (never skips) when chromium is missing: .ci/run installs it.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { createPair, type Pair } from '../runtime/pair.js';
import { guestPath } from '../runtime/guests.js';
import { startDashboard, type Dashboard } from '../runtime/dashboard/server.js';
import { startPacer, type Pacer } from '../runtime/dashboard/pace.js';
import { loadMachines } from '../runtime/diagram/machines.js';
import { chartGraph } from '../runtime/diagram/graph.js';

const CHROMIUM = process.env.FTVM_CHROMIUM ?? '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
// Every run takes the screenshot (it must not fail); it replaces the committed docs/dashboard.png
// only when asked (FTVM_UPDATE_SCREENSHOT=1), so running the tests leaves the tree clean.
const SCREENSHOT = process.env.FTVM_UPDATE_SCREENSHOT === '1' ? join(import.meta.dirname, '..', 'docs', 'dashboard.png') : join(tmpdir(), `ftvm-dashboard-${process.pid}.png`);

describe('dashboard in chromium', () => {
  let browser: BrowserContext;
  let page: Page;
  let dash: Dashboard;
  let pair: Pair;
  let profile: string;
  let run: Promise<unknown> | undefined;
  let pacer: Pacer | undefined;
  const consoleErrors: string[] = [];
  /** Requests to anywhere but the dashboard itself: the page must work offline. */
  const foreign: string[] = [];

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium), as .ci/run does`);
    dash = await startDashboard({ port: 0 });
    pair = createPair({ image: readFileSync(guestPath('seq')), inspect: dash.inspect });
    dash.attach(pair, { guest: 'seq' });
    profile = mkdtempSync(join(tmpdir(), 'ftvm-chromium-'));
    // A fresh profile each run (playwright passes it as --user-data-dir).
    browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: ARGS, viewport: { width: 1400, height: 1800 } });
    page = browser.pages()[0] ?? (await browser.newPage());
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    page.on('pageerror', (e) => consoleErrors.push(e.message));
    page.on('request', (r) => { if (!r.url().startsWith(dash.url)) foreign.push(r.url()); });
  });

  afterAll(async () => {
    pacer?.stop();
    await browser?.close();
    await pair?.stop();
    await run?.catch(() => {});
    await dash?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  it('loads offline without console errors and draws every chart with its state names', async () => {
    await page.goto(dash.url);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 10_000 });
    const machines = await loadMachines();
    for (const [name, m] of machines) {
      const card = page.locator(`.card[data-chart="${name}"]`);
      await expect(card.count(), `no card for chart ${name}`).resolves.toBe(1);
      const names = await card.locator('g.state > text.name').allTextContents();
      const expected = chartGraph(m).states.filter((s) => s.parent !== undefined).map((s) => s.key);
      expect(names.sort(), `states of ${name}`).toEqual(expected.sort());
    }
    expect(consoleErrors).toEqual([]);
    expect(foreign).toEqual([]);
  });

  it('lights the running actors, and the backup goes live within a second of "Kill primary"', async () => {
    // Alone after a failover, the primary ends `seq` in about a second: too soon for the
    // re-protection steps below. Run this thread (pair, dashboard) at a third of its speed.
    pacer = startPacer(1 / 3);
    run = pair.start();
    const outputs = async (): Promise<number> => Number(await page.locator('#outputs').textContent());
    // Both nodes running, protected: the primary chart lights `flowing`, the backup chart `replaying`, the pair chart `protected`.
    await page.waitForSelector('.card[data-chart="primary"] g.state.lit-primary[data-state="protected.flowing"]', { timeout: 10_000 });
    await page.waitForSelector('.card[data-chart="backup"] g.state.lit-backup[data-state="replaying"]', { timeout: 10_000 });
    await page.waitForSelector('.card[data-chart="pair"] g.state.lit-pair[data-state="protected"]', { timeout: 10_000 });
    // Re-protection only makes sense for an unprotected pair: the button waits for it.
    await expect(page.locator('#add-backup').isDisabled()).resolves.toBe(true);
    await page.waitForFunction(() => Number(document.getElementById('outputs')!.textContent) > 2000, undefined, { timeout: 20_000 });
    await expect(page.locator('#failovers').textContent()).resolves.toBe('0');
    await expect(page.locator('#live').textContent()).resolves.toBe('primary');

    await page.click('#kill-primary');
    const killedAt = Date.now();
    const atKill = await outputs();
    // DESIGN: failover "well under a second"; the page updates every 200 ms.
    await page.waitForSelector('.card[data-chart="backup"] g.state.lit-backup[data-state="live"]', { timeout: 1000 });
    const litAfterMs = Date.now() - killedAt;
    expect(litAfterMs).toBeLessThan(1000);
    // The backup's node now runs a primary chart, live without a backup; the pair is unprotected.
    await page.waitForSelector('.card[data-chart="primary"] g.state.lit-backup[data-state="alone"]', { timeout: 2000 });
    await page.waitForSelector('.card[data-chart="pair"] g.state.lit-pair[data-state="unprotected"]', { timeout: 2000 });
    await expect(page.locator('#message').textContent()).resolves.toContain('killed the primary');
    await page.waitForFunction((n) => Number(document.getElementById('outputs')!.textContent) > n + 500, atKill, { timeout: 10_000 });
    await expect(page.locator('#failovers').textContent()).resolves.toBe('1');
    await expect(page.locator('#live').textContent()).resolves.toBe('backup');
    expect(consoleErrors).toEqual([]);
  });

  it('"Add backup" re-protects the pair; a second "Kill primary" fails over to the joined backup', async () => {
    // The button is enabled once the page has seen the pair unprotected (click waits for that).
    await page.click('#add-backup', { timeout: 2000 });
    const addedAt = Date.now();
    await page.waitForFunction(() => /adding a backup/.test(document.getElementById('message')!.textContent!), undefined, { timeout: 2000 });
    // The pair chart goes reprotecting -> protected; the joined node's backup chart
    // (receivingSnapshot ->) replaying, in the joined colour; the live primary's chart `protected`.
    await page.waitForSelector('.card[data-chart="pair"] g.state.lit-pair[data-state="protected"]', { timeout: 5000 });
    await page.waitForSelector('.card[data-chart="backup"] g.state.lit-joined[data-state="replaying"]', { timeout: 5000 });
    expect(Date.now() - addedAt).toBeLessThan(5000);
    await page.waitForSelector('.card[data-chart="primary"] g.state.lit-backup[data-state="protected.flowing"]', { timeout: 5000 });
    await expect(page.locator('.card[data-chart="backup"] .actors .a-joined').textContent()).resolves.toMatch(/^backup-1 node: replaying/);
    await expect(page.locator('#events li.reprotect').first().textContent()).resolves.toMatch(/pair: reprotect backup-1 joins backup at icount \d+/);
    await expect(page.locator('#add-backup').isDisabled()).resolves.toBe(true);
    // A second request is refused with the pair's reason (the page's button is disabled; the
    // request goes from here, since chromium logs any 4xx answer as a console error).
    const r = await fetch(`${dash.url}api/add-backup`, { method: 'POST' });
    const again = { status: r.status, body: (await r.json()) as { message: string } };
    expect(again.status).toBe(409);
    expect(again.body.message).toMatch(/not unprotected/);

    // Let the sparklines gather a little, then keep the picture of the re-protected pair for the docs.
    await page.waitForTimeout(800);
    // The top of the page: controls, counters, small charts, timeline, then the pair, primary, backup and channel charts.
    const png = await page.screenshot({ path: SCREENSHOT, fullPage: false });
    expect(png.subarray(1, 4).toString()).toBe('PNG');

    // Kill the live primary (the first backup's node): backup-1 takes over.
    await page.click('#kill-primary');
    const atKill = Number(await page.locator('#outputs').textContent());
    await page.waitForFunction(() => /killed the primary \(backup\)/.test(document.getElementById('message')!.textContent!), undefined, { timeout: 2000 });
    await page.waitForSelector('.card[data-chart="backup"] g.state.lit-joined[data-state="live"]', { timeout: 2000 });
    await page.waitForSelector('.card[data-chart="primary"] g.state.lit-joined[data-state="alone"]', { timeout: 2000 });
    await page.waitForFunction(() => document.getElementById('failovers')!.textContent === '2', undefined, { timeout: 2000 });
    await expect(page.locator('#live').textContent()).resolves.toBe('backup-1');
    await page.waitForFunction((n) => Number(document.getElementById('outputs')!.textContent) > n + 500, atKill, { timeout: 10_000 });
    await page.waitForSelector('.card[data-chart="pair"] g.state.lit-pair[data-state="unprotected"]', { timeout: 2000 });
    expect(consoleErrors).toEqual([]);
  });
});
