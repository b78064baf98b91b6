import { setTimeout as sleep } from 'node:timers/promises';
import { API_MAX_ROWS } from '../db/api-max-rows.ts';
import type { Db } from '../db/client.ts';
import type { Logger } from '../observability/logger.ts';

export interface Lease {
  source_id: string;
  lease_token: string;
}

/** Renewals per lease period while they succeed. */
const RENEWALS_PER_LEASE = 6;
/** The pause before the first retry of a failed renewal; it doubles with each failure. */
const FIRST_RETRY_MS = 250;

/** Waits `ms` unless `signal` aborts first; says whether the wait ran its course. */
const waited = (ms: number, signal: AbortSignal) =>
  sleep(ms, true, { signal, ref: false }).catch(() => false);

/**
 * Keeps a run's leases alive for as long as the run holds them: one call renews all of
 * them, whether a source is being worked, waits in the pool or waits to be handed over,
 * six times per lease period. A renewal that fails, or gets no answer within a sixth of the
 * lease, is retried after a pause that starts at a quarter second and doubles (at most a
 * sixth of the lease), so only a database that fails every attempt for a whole lease period
 * loses the run its leases. A lease the database no longer honours (it expired, or another
 * run took the source) is reported lost, so its source is not started.
 */
export function keepLeases(input: { db: Db; leaseSeconds: number; log: Logger }) {
  const everyMs = (input.leaseSeconds * 1000) / RENEWALS_PER_LEASE;
  const held = new Map<string, string>();
  const lost = new Set<string>();
  const stopped = new AbortController();

  /** One attempt; false when it must be retried. */
  const renew = async (): Promise<boolean> => {
    if (held.size === 0) return true;
    const leases = [...held];
    const renewed = new Set<string>();
    // A call answers at most API_MAX_ROWS renewed ids: a run holding more (the CLI claims
    // every due source) renews them in as many calls, so that none reads as lost.
    for (let i = 0; i < leases.length; i += API_MAX_ROWS) {
      const chunk = leases.slice(i, i + API_MAX_ROWS);
      const attempt = new AbortController();
      const signal = AbortSignal.any([attempt.signal, stopped.signal]);
      const call = input.db
        .rpc('renew_collector_leases', {
          source_ids: chunk.map(([id]) => id),
          lease_tokens: chunk.map(([, token]) => token),
        })
        .abortSignal(signal);
      // A call that hangs is given up on, so that the next attempt is not held behind it.
      const answer = await Promise.race([call, waited(everyMs, signal).then(() => undefined)]);
      attempt.abort();
      if (stopped.signal.aborted) return true;
      const error = answer ? answer.error : { message: `no answer within ${everyMs} ms` };
      if (error) {
        input.log.error({ error: error.message }, 'could not renew leases; retrying');
        return false;
      }
      for (const id of answer?.data ?? []) renewed.add(id);
    }
    for (const [id] of leases) {
      if (renewed.has(id) || !held.has(id)) continue;
      held.delete(id);
      lost.add(id);
    }
    return true;
  };
  const renewing = (async () => {
    let retryMs = FIRST_RETRY_MS;
    let pauseMs = everyMs;
    while (await waited(pauseMs, stopped.signal)) {
      if (await renew()) {
        retryMs = FIRST_RETRY_MS;
        pauseMs = everyMs;
      } else {
        pauseMs = Math.min(retryMs, everyMs);
        retryMs *= 2;
      }
    }
  })();

  return {
    hold(leases: Lease[]) {
      for (const l of leases) held.set(l.source_id, l.lease_token);
    },
    /** The run gave the lease up (released it or handed it over): stop renewing it. */
    drop(sourceId: string) {
      held.delete(sourceId);
    },
    isLost: (sourceId: string) => lost.has(sourceId),
    /** Ends the renewals, a call in flight included: the run releases its leases next. */
    async stop() {
      stopped.abort();
      await renewing;
    },
  };
}

/**
 * How a source's turn ended. No deferral: a verdict, `error` when it failed. `cut`: worked,
 * but the turn ended before its walk did; `unworked`: never started. A deferral records
 * neither a success nor a failure (release_collector_sources says how each is scheduled).
 */
export interface Release extends Lease {
  error?: string;
  deferral?: 'cut' | 'unworked';
}

/**
 * Releases leases in batches: a source's turn ends with its lease freed within
 * `flushMs` (one call for many sources instead of one each), and `flush` frees the rest.
 * Batches go out side by side, never one behind another: each frees other sources, and a run
 * at its end waits for one call's deadline, not one per batch still in flight.
 */
export function batchReleases(input: { db: Db; log: Logger; flushMs?: number; maxBatch?: number }) {
  const flushMs = input.flushMs ?? 250;
  const maxBatch = input.maxBatch ?? 200;
  let pending: Release[] = [];
  let timer: NodeJS.Timeout | undefined;
  const sending = new Set<Promise<void>>();

  const send = async (batch: Release[]) => {
    const { error } = await input.db.rpc('release_collector_sources', {
      source_ids: batch.map((r) => r.source_id),
      lease_tokens: batch.map((r) => r.lease_token),
      errors: batch.map((r) => r.error ?? null) as string[],
      deferrals: batch.map((r) => r.deferral ?? null) as string[],
    });
    // Unreleased leases expire by themselves; the sources are collected again after that.
    if (error)
      input.log.error({ error: error.message, sources: batch.length }, 'could not release leases');
  };
  const flush = async () => {
    clearTimeout(timer);
    timer = undefined;
    if (pending.length > 0) {
      const sent = send(pending);
      pending = [];
      sending.add(sent);
      const done = () => sending.delete(sent);
      sent.then(done, done);
    }
    await Promise.all(sending);
  };

  return {
    add(release: Release) {
      pending.push(release);
      if (pending.length >= maxBatch) void flush();
      else timer ??= setTimeout(() => void flush(), flushMs);
    },
    flush,
  };
}
