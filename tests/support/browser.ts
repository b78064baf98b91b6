import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import AxeBuilder from '@axe-core/playwright';
import {
  type Browser,
  type BrowserContext,
  chromium,
  type Page,
  type Route,
} from '@playwright/test';
import { expect } from 'vitest';
import {
  buildDashboard,
  type DashboardServer,
  startDashboardServer,
} from '../../src/local/dashboard.ts';
import { projectRoot } from '../../src/local/project.ts';
import { addMember } from './fixtures.ts';
import { serviceClient, stack, uniqueId } from './stack.ts';

/**
 * Browser tests drive the machine's Chromium (Debian package `chromium`) through
 * Playwright's library; Playwright's own browser download is not needed.
 * CHROMIUM_PATH points elsewhere.
 */
export const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Where tests write what a person looks at afterwards (screenshots); ignored by git. */
export const artifactsDir = join(projectRoot, 'test-results');

export const launchBrowser = (): Promise<Browser> =>
  chromium.launch({ executablePath: chromiumPath, args: CHROMIUM_ARGS });

export const newContext = (browser: Browser): Promise<BrowserContext> =>
  browser.newContext({
    locale: 'en-US',
    timezoneId: 'UTC',
    viewport: { width: 1280, height: 900 },
  });

/**
 * The dashboard as `npm start` serves it, against this run's local stack (or another one):
 * built into a folder of its own (test files run in parallel), served with the stack's
 * config.json.
 */
export async function startDashboard(
  target: { supabaseUrl: string; anonKey: string } = stack,
): Promise<DashboardServer & { dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'flowmeter-web-'));
  await buildDashboard({ outDir: dir });
  const server = await startDashboardServer({
    root: dir,
    supabaseUrl: target.supabaseUrl,
    anonKey: target.anonKey,
  });
  return {
    ...server,
    dir,
    close: async () => {
      await server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Signs in through the form, as a person does. */
export async function signIn(page: Page, email: string, password: string): Promise<void> {
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** axe-core's serious and critical findings on the page as it is now. */
export async function expectNoSeriousA11yViolations(page: Page): Promise<void> {
  const results = await new AxeBuilder({ page }).analyze();
  const serious = results.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => ({
      id: v.id,
      help: v.help,
      nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5),
    }));
  expect(serious).toEqual([]);
}

export async function screenshot(page: Page, name: string): Promise<string> {
  await mkdir(artifactsDir, { recursive: true });
  const path = join(artifactsDir, name);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** A tenant user who signs in with a password, created through the Auth admin API. */
export async function createSignInUser(
  tenantIds: string[],
): Promise<{ userId: string; email: string; password: string }> {
  const email = `${uniqueId('member')}@example.test`;
  const password = `pw-${randomBytes(12).toString('base64url')}`;
  const { data, error } = await serviceClient().auth.admin.createUser({
    email,
    password,
    email_confirm: true,
  });
  if (error || !data.user) throw new Error(`createUser: ${error?.message}`);
  for (const tenantId of tenantIds) await addMember(tenantId, data.user.id);
  return { userId: data.user.id, email, password };
}

/** The page's text including the widget's shadow DOM, as a person reads it. */
/** Answers an intercepted call as PostgREST does once the user's access token has expired. */
export const sessionExpired = (route: Route) =>
  route.fulfill({
    status: 401,
    contentType: 'application/json',
    body: JSON.stringify({ code: 'PGRST303', message: 'JWT expired', details: null, hint: null }),
  });

export const visibleText = (page: Page): Promise<string> =>
  page.evaluate(() => {
    const texts: string[] = [];
    const walk = (root: Node) => {
      for (const node of root.childNodes) {
        if (node.nodeType === Node.TEXT_NODE) texts.push(node.textContent ?? '');
        if (node instanceof Element && node.shadowRoot) walk(node.shadowRoot);
        walk(node);
      }
    };
    walk(document.body);
    return texts.join(' ').replace(/\s+/g, ' ');
  });
