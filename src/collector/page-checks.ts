/*
 * What a page of n8n's execution list must be before anything of it is stored. n8n pages
 * backwards from the newest id; a page that does not move the walk down would walk forever
 * (and, with ids that go up, bill executions that were never run), and a timestamp far from
 * now would be billed into a period far from the one it ran in (and make a partition for
 * it). Pure: the caller refuses the page, and stops the source, with the message.
 */

import { decodeCursor } from '../n8n/cursor.ts';
import type { N8nExecution, N8nPage } from '../n8n/schemas.ts';

/** How far ahead of this clock n8n's may run before its timestamps are not believed. */
export const CLOCK_SKEW_MS = 5 * 60_000;
/** Older than this, a startedAt is not an execution the walk can meet: n8n prunes far sooner. */
export const MAX_EXECUTION_AGE_MS = 400 * 24 * 3600_000;

export interface PageContext {
  /** The cursor the page was asked with; null for the first page of a walk. */
  cursor: string | null;
  /** The lowest id the walk has seen on earlier pages (or the cursor's), when resuming. */
  lowestSeenId: number | null;
}

export type PageCheck = { ok: true } | { ok: false; message: string };

const refuse = (message: string): PageCheck => ({ ok: false, message });

export function checkPage(context: PageContext, page: N8nPage): PageCheck {
  const ids = page.data.map((e) => Number(e.id));
  for (let i = 1; i < ids.length; i++) {
    if ((ids[i] as number) >= (ids[i - 1] as number)) {
      return refuse(
        `the page lists id ${ids[i]} after id ${ids[i - 1]}, but n8n lists ids strictly descending: something between flowmeter and n8n reorders or repeats its answers`,
      );
    }
  }
  const first = ids[0];
  if (context.lowestSeenId !== null && first !== undefined && first >= context.lowestSeenId) {
    return refuse(
      `the page after id ${context.lowestSeenId} starts at id ${first}, not below it: the cursor does not move the walk on (a cache or proxy answering the same page again?)`,
    );
  }
  if (page.nextCursor !== null) {
    if (page.nextCursor === context.cursor) {
      return refuse(
        'n8n handed back the cursor it was asked with: the walk would never end (a cache or proxy answering the same page again?)',
      );
    }
    if (ids.length === 0) {
      return refuse(
        'n8n sent an empty page with a cursor to another one: an empty page is the last one, so the walk would never end',
      );
    }
    const next = decodeCursor(page.nextCursor).lastId;
    const lowest = ids.at(-1) as number;
    if (next !== null && next > lowest) {
      return refuse(
        `n8n's next cursor points below id ${next}, above the page's last id ${lowest}: the walk would go back up instead of down`,
      );
    }
  }
  return { ok: true };
}

/**
 * The executions the walk would store (above the floor, inside the backfill), with times
 * that can be believed: an old execution below the floor is not this walk's concern.
 */
export function checkTimes(executions: readonly N8nExecution[], now: number): PageCheck {
  for (const e of executions) {
    for (const [field, value] of [
      ['startedAt', e.startedAt],
      ['stoppedAt', e.stoppedAt],
    ] as const) {
      if (value === null) continue;
      const at = Date.parse(value);
      if (at > now + CLOCK_SKEW_MS) {
        return refuse(
          `execution ${e.id} has ${field} ${value}, more than ${CLOCK_SKEW_MS / 60_000} minutes ahead of this clock: fix the clock of the n8n host (or of this one); nothing of the page is counted until then`,
        );
      }
      if (at < now - MAX_EXECUTION_AGE_MS) {
        return refuse(
          `execution ${e.id} has ${field} ${value}, more than ${MAX_EXECUTION_AGE_MS / 86_400_000} days ago: no listed execution can be that old; check the n8n host's clock`,
        );
      }
    }
  }
  return { ok: true };
}
