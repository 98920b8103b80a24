// The demo page in a real browser: headless Chromium (Debian's package) driven by playwright-core clicks through
// every panel of GET / and checks what the page shows, then takes the screenshot the README shows
// (UPDATE_SCREENSHOT=1 writes it to docs/demo-page.png; otherwise to a temporary file).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDemoApp } from '../../examples/demo/app.js';
import { useTestRedis } from '../support/redis.js';

const repoRoot = join(import.meta.dirname, '..', '..');
const scratch = mkdtempSync(join(tmpdir(), 'redisware-browser-'));
const screenshotPath =
  process.env.UPDATE_SCREENSHOT === '1' ? join(repoRoot, 'docs', 'demo-page.png') : join(scratch, 'demo-page.png');

/** Debian's Chromium: CHROMIUM_PATH, else what `which chromium` finds (.ci/run installs it when missing). */
function chromiumPath(): string {
  if (process.env.CHROMIUM_PATH) return process.env.CHROMIUM_PATH;
  try {
    return execFileSync('which', ['chromium'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('the browser test needs Chromium: apt-get install -y chromium (or set CHROMIUM_PATH)');
  }
}

const redis = useTestRedis('browser');
let server: Server;
let browser: Browser;
let page: Page;
const problems: string[] = [];

beforeAll(async () => {
  const app = createDemoApp(redis.client(), { prefix: redis.prefix });
  server = await new Promise<Server>((resolve) => {
    const listening = app.listen(0, '127.0.0.1', () => resolve(listening));
  });
  browser = await chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
  page = await browser.newPage({ viewport: { width: 1180, height: 900 } });
  // A script error, a CSP violation or a failed request is a failure of the page, whatever the panels show.
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    // A 401 (the wrong password tried on purpose) and a 429 (the drained limit) are answers, not failures.
    if (message.type() === 'error' && !/status of (401|429)/.test(message.text())) problems.push(message.text());
  });
  await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
  await page.locator('[data-field="connection"]', { hasText: 'live' }).waitFor();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  server?.closeAllConnections();
  server?.close();
  rmSync(scratch, { recursive: true, force: true });
});

/** Clicks `button` in `panel` and waits for the panel's `data-calls` to count it. */
async function clickAndWait(panel: string, button: string) {
  const before = Number((await page.locator(panel).getAttribute('data-calls')) ?? 0);
  await page.locator(panel).locator(button).click();
  await page.locator(`${panel}[data-calls="${before + 1}"]`).waitFor();
}

const field = (panel: string, name: string) => page.locator(`${panel} [data-field="${name}"]`).textContent();

describe('the demo page in Chromium', () => {
  it('drains the rate limit: RateLimit counts down, then 429 with Retry-After', async () => {
    const remaining: string[] = [];
    for (let i = 0; i < 5; i++) {
      await clickAndWait('#rate-limit', '#limited-call');
      expect(await field('#rate-limit', 'status')).toBe('200 OK');
      remaining.push(/r=(\d+)/.exec((await field('#rate-limit', 'ratelimit')) ?? '')?.[1] ?? '?');
    }
    expect(remaining).toEqual(['4', '3', '2', '1', '0']);
    expect(await field('#rate-limit', 'ratelimit-policy')).toMatch(/^"default";\s*q=5;\s*w=60$/);
    expect(await field('#rate-limit', 'retry-after')).toBe('–');
    await clickAndWait('#rate-limit', '#limited-call');
    expect(await field('#rate-limit', 'status')).toBe('429 Too Many Requests');
    expect(Number(await field('#rate-limit', 'retry-after'))).toBeGreaterThan(0);
  });

  it('refuses a wrong password, saying which demo users there are', async () => {
    await page.locator('#device-1 [data-role="password"]').fill('not-the-password');
    await clickAndWait('#device-1', '[data-action="login"]');
    expect(await field('#device-1', 'who')).toBe(
      'failed: wrong user name or password (demo users: ada / lovelace, grace / hopper)',
    );
    expect(await page.locator('#sessions .note').textContent()).toMatch(/ada\s*\/\s*lovelace/);
  });

  it('logs in on two devices, and "log out everywhere" on one logs the other out', async () => {
    for (const device of ['#device-1', '#device-2']) {
      await page.locator(`${device} [data-role="password"]`).fill('lovelace');
    }
    await clickAndWait('#device-1', '[data-action="login"]');
    expect(await field('#device-1', 'who')).toMatch(/^logged in as ada · 1 session\(s\) of ada/);
    await clickAndWait('#device-2', '[data-action="login"]');
    expect(await field('#device-2', 'who')).toMatch(/^logged in as ada · 2 session\(s\) of ada/);
    await clickAndWait('#device-1', '[data-action="me"]');
    expect(await field('#device-1', 'who')).toMatch(/^logged in as ada · 2 session\(s\)/);
    await clickAndWait('#device-1', '[data-action="logout-everywhere"]');
    expect(await field('#device-1', 'who')).toBe('logged out everywhere: 2 session(s) destroyed');
    await clickAndWait('#device-2', '[data-action="me"]');
    expect(await field('#device-2', 'who')).toBe('not logged in');
  });

  it('shows the slow route as a MISS, then a HIT with Age, and a MISS again after invalidating', async () => {
    const history = page.locator('#cache-history li');
    const call = async (count: number) => {
      await page.locator('#cached-call').click();
      await expect.poll(() => history.count()).toBe(count);
    };
    await call(1);
    expect(await field('#cache', 'x-cache')).toBe('MISS');
    expect(Number(await history.nth(0).getAttribute('data-ms'))).toBeGreaterThanOrEqual(500); // the handler sleeps
    await call(2);
    expect(await field('#cache', 'x-cache')).toBe('HIT');
    expect(await field('#cache', 'age')).toMatch(/^\d+ s$/);
    await page.locator('#cached-invalidate').click();
    await expect.poll(() => history.count()).toBe(3);
    expect(await history.nth(2).textContent()).toBe('invalidated 1 entry');
    await call(4);
    expect(await field('#cache', 'x-cache')).toBe('MISS');
  });

  it('counts the onEvent stream live, as the panels were used', async () => {
    const count = (type: string) =>
      page
        .locator(`#event-counts tr[data-type="${type}"] [data-count]`)
        .textContent({ timeout: 1_000 })
        .then(Number, () => 0);
    await expect
      .poll(async () => ({
        allowed: await count('rateLimit.allowed'),
        blocked: await count('rateLimit.blocked'),
        created: await count('session.created'),
        destroyed: await count('session.destroyed'),
        expired: await count('session.expired'),
        miss: await count('cache.miss'),
        hit: await count('cache.hit'),
        stored: await count('cache.stored'),
        invalidated: await count('cache.invalidated'),
      }))
      // Allowed by a limiter: the five calls of /limited, and the three logins (the wrong password's too: the login
      // limiter counts it). Three sessions created: the two logins, and the anonymous one device 2's "who am I?"
      // starts (counting its visits) once its own session was destroyed elsewhere (expired, seen from its side).
      // Device 2 sends no cookies: its events are counted here because it sends the page's viewer header.
      .toEqual({
        allowed: 8,
        blocked: 1,
        created: 3,
        destroyed: 2,
        expired: 1,
        miss: 2,
        hit: 1,
        stored: 2,
        invalidated: 1,
      });
    expect(await page.locator('#event-log li').count()).toBe(8);
  });

  it('ran without a script error or a blocked resource, and leaves a screenshot', async () => {
    expect(problems).toEqual([]);
    await page.screenshot({ path: screenshotPath, fullPage: true });
    const png = readFileSync(screenshotPath);
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    expect(png.readUInt32BE(16)).toBe(1180); // the viewport's width
  });
});
