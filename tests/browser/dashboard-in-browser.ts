import type { Browser, Page } from '@playwright/test';
import { afterAll, beforeAll } from 'vitest';
import {
  expectNoSeriousA11yViolations,
  launchBrowser,
  newContext,
  screenshot,
  startDashboard,
} from '../support/browser.ts';

/** Building the site and starting Chromium take longer than the default hook allows on a busy machine. */
const START_TIMEOUT = 180_000;

export interface DashboardInBrowser {
  /** Where the dashboard is served. */
  readonly url: string;
  readonly browser: Browser;
  /** A page in a context of its own (no session yet), as a new visitor opens the site. */
  newPage(): Promise<Page>;
}

/**
 * The dashboard as `npm start` serves it and the browser that opens it, for one test file.
 * Registered before the file's own hooks, it starts before them and closes after them.
 * `target`: the stack the dashboard talks to, when not the run's shared one.
 */
export function useDashboardInBrowser(
  target?: () => { supabaseUrl: string; anonKey: string },
): DashboardInBrowser {
  let started: { dashboard: { url: string; close(): Promise<void> }; browser: Browser } | undefined;
  const get = () => {
    if (!started) throw new Error('the dashboard of this file has not started yet');
    return started;
  };
  beforeAll(async () => {
    const [dashboard, browser] = await Promise.all([startDashboard(target?.()), launchBrowser()]);
    started = { dashboard, browser };
  }, START_TIMEOUT);
  afterAll(async () => {
    await started?.browser.close();
    await started?.dashboard.close();
  });
  return {
    get url() {
      return get().dashboard.url;
    },
    get browser() {
      return get().browser;
    },
    newPage: async () => (await newContext(get().browser)).newPage(),
  };
}

/** A page as a person sees it: no serious accessibility finding, and a screenshot to look at. */
export async function expectAccessibleAndPictured(page: Page, name: string): Promise<void> {
  await expectNoSeriousA11yViolations(page);
  await screenshot(page, name);
}
