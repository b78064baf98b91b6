import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  CLOCK_SKEW_MS,
  checkTimes,
  MAX_EXECUTION_AGE_MS,
} from '../../src/collector/page-checks.ts';
import type { N8nExecution } from '../../src/n8n/schemas.ts';

/**
 * Timestamps outside any plausible window: ahead of this clock by more than a small skew,
 * or older than any execution a walk can meet. The clock is injected.
 */

const NOW = Date.parse('2026-12-01T12:00:00.000Z');
const execution = (
  id: number,
  startedAt: number | null,
  stoppedAt: number | null,
): N8nExecution => ({
  id: String(id),
  mode: 'trigger',
  status: 'success',
  startedAt: startedAt === null ? null : new Date(startedAt).toISOString(),
  stoppedAt: stoppedAt === null ? null : new Date(stoppedAt).toISOString(),
  workflowId: 'wf1',
  retryOf: null,
  retrySuccessId: null,
  waitTill: null,
});

const plausible = fc.integer({ min: NOW - MAX_EXECUTION_AGE_MS, max: NOW + CLOCK_SKEW_MS });
const future = fc.integer({
  min: NOW + CLOCK_SKEW_MS + 1,
  max: Date.parse('9999-12-31T00:00:00Z'),
});
const ancient = fc.integer({
  min: Date.parse('0001-01-01T00:00:00Z'),
  max: NOW - MAX_EXECUTION_AGE_MS - 1,
});

describe('checkTimes', () => {
  it('accepts every execution started and stopped within the window (or not yet)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.option(plausible), fc.option(plausible)), { maxLength: 50 }),
        (times) => {
          const page = times.map(([start, stop], i) => execution(i + 1, start, stop));
          expect(checkTimes(page, NOW)).toEqual({ ok: true });
        },
      ),
    );
  });

  it('refuses a page with one time ahead of the clock beyond the skew, naming the execution', () => {
    fc.assert(
      fc.property(
        fc.array(plausible, { maxLength: 20 }),
        future,
        fc.boolean(),
        (fine, bad, onStop) => {
          const page = fine.map((t, i) => execution(i + 1, t, t));
          page.push(execution(999, onStop ? NOW : bad, onStop ? bad : NOW));
          const check = checkTimes(page, NOW);
          expect(check.ok).toBe(false);
          if (!check.ok)
            expect(check.message).toMatch(
              /^execution 999 has (startedAt|stoppedAt) .* ahead of this clock/,
            );
        },
      ),
    );
  });

  it('refuses a page with one time older than any listed execution can be', () => {
    fc.assert(
      fc.property(fc.array(plausible, { maxLength: 20 }), ancient, (fine, bad) => {
        const page = [...fine.map((t, i) => execution(i + 2, t, t)), execution(1, bad, bad)];
        const check = checkTimes(page, NOW);
        expect(check.ok).toBe(false);
        if (!check.ok) expect(check.message).toMatch(/^execution 1 has startedAt .* days ago/);
      }),
    );
  });
});
