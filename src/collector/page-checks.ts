/*
 * What a page of n8n's execution list must be before anything of it is stored. n8n pages
 * backwards from the newest id; a page that does not move the walk down would walk forever
 * (and, with ids that go up, bill executions that were never run), and a timestamp far from
 * now would be billed into a period far from the one it ran in (and make a partition for
 * it). Pure: the caller refuses the page, and stops the source, with the message.
 */

import { MAX_PAGE_SIZE } from '../n8n/client.ts';
import { decodeCursor } from '../n8n/cursor.ts';
import type { N8nExecution, N8nPage } from '../n8n/schemas.ts';
import { MAX_HOLE_SPAN } from './walk.ts';

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

/**
 * How far a walk's newest id may lie above the next id known below it (the next id on the
 * page, or the highest id an earlier walk listed) before it is fetched by id to be believed:
 * a full page of n8n's list (250) of the longest runs of unlisted ids the walk still probes
 * one by one (MAX_HOLE_SPAN), 250,000 ids. The newest id becomes the next walk's floor, so one
 * that n8n never assigned would make every later walk stop at once; one that n8n did assign
 * is above everything real, so a jump that large is either many executions this listing does
 * not show (another project's, unsaved ones), which n8n confirms by id, or not real.
 */
export const MAX_ID_JUMP = MAX_PAGE_SIZE * MAX_HOLE_SPAN;

export interface WalkTopContext {
  /** The page was asked without a cursor: the first of a walk, its first id the walk's top. */
  firstPage: boolean;
  /** The highest id a completed walk of the source listed; 0 before the first completed. */
  highWaterId: number;
}

/**
 * How far below the highest id an earlier walk listed a walk's newest may lie before n8n's
 * ids count as restarted: the newest listed executions can vanish (deleted, or queued ones of
 * a workflow that saves no successful run), but not more than a run of ids the walk probes
 * one by one (MAX_HOLE_SPAN), nor half of all ids ever assigned.
 */
const restartSlack = (highWaterId: number) => Math.min(MAX_HOLE_SPAN, Math.ceil(highWaterId / 2));

/**
 * Ids the walk cannot work with: beyond what a number holds exactly (the walk counts holes
 * and floors with them; no n8n assigns such ids, 32-bit integers on Postgres and MySQL), or,
 * on a walk's first page, a newest id far below the highest an earlier walk listed: n8n's ids
 * restarted, and every new execution would reuse an id already collected and be skipped.
 */
export function checkWalkIds(context: WalkTopContext, page: N8nPage): PageCheck {
  const beyond = page.data.find((e) => !Number.isSafeInteger(Number(e.id)));
  if (beyond) {
    return refuse(
      `n8n lists execution id ${beyond.id}, beyond ${Number.MAX_SAFE_INTEGER}: no n8n assigns ids that high (they are 32-bit integers on Postgres and MySQL), so something between flowmeter and n8n alters its answers or its database holds a corrupt row; nothing of the page is stored, and the source is retried with backoff`,
    );
  }
  const top = page.data[0] ? Number(page.data[0].id) : null;
  const { highWaterId } = context;
  const slack = restartSlack(highWaterId);
  if (context.firstPage && top !== null && top + slack < highWaterId) {
    return refuse(
      `n8n's newest execution is id ${top}, more than ${slack} below id ${highWaterId}, the highest an earlier walk listed: its ids restarted (n8n reinstalled, or its database restored from an older backup, at the same address), so new executions would reuse ids already collected and be skipped. Add the instance as a new source (\`flowmeter sources add\`) and disable this one (\`flowmeter sources disable\`); if instead its newest executions were deleted, this clears once n8n's ids pass ${highWaterId}`,
    );
  }
  return { ok: true };
}

/**
 * The newest id of a walk's first page when it lies more than MAX_ID_JUMP above the next id
 * known below it, with that id: the walk fetches it by id before believing the page.
 */
export function topToConfirm(
  context: WalkTopContext,
  page: N8nPage,
): { id: number; below: number } | null {
  if (!context.firstPage || page.data.length === 0) return null;
  const [top, next] = page.data.map((e) => Number(e.id));
  const below = Math.max(context.highWaterId, next ?? 0);
  if (below === 0 || (top as number) - below <= MAX_ID_JUMP) return null;
  return { id: top as number, below };
}

/** Why a page whose far newest id n8n does not confirm by id is refused. */
export const unconfirmedTop = (top: { id: number; below: number }) =>
  `n8n lists execution ${top.id}, ${top.id - top.below} ids above id ${top.below}, the next it is known to have (more than ${MAX_ID_JUMP}, a full page of the longest runs of unlisted ids the walk probes one by one), but does not answer it when asked by id: its list is not to be believed (something between flowmeter and n8n alters its answers, such as a proxy or cache, or its database holds a corrupt row). Nothing of the page is stored and the source is retried with backoff; if this repeats, check what answers at the source's address`;
