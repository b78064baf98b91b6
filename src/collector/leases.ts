import type { Db } from '../db/client.ts';
import type { Logger } from '../observability/logger.ts';

export interface Lease {
  source_id: string;
  lease_token: string;
}

/**
 * Keeps a run's leases alive for as long as the run holds them: every third of the lease
 * period, one call renews all of them, whether a source is being worked, waits in the pool
 * or waits to be handed over. A lease the database no longer honours (it expired, or
 * another run took the source) is reported lost, so its source is not started.
 */
export function keepLeases(input: { db: Db; leaseSeconds: number; log: Logger }) {
  const held = new Map<string, string>();
  const lost = new Set<string>();
  let renewing: Promise<void> = Promise.resolve();

  const renew = async () => {
    if (held.size === 0) return;
    const leases = [...held];
    const { data, error } = await input.db.rpc('renew_collector_leases', {
      source_ids: leases.map(([id]) => id),
      lease_tokens: leases.map(([, token]) => token),
    });
    if (error) {
      // The leases live on until they expire; the next renewal tries again.
      input.log.error({ error: error.message }, 'could not renew leases');
      return;
    }
    const renewed = new Set(data ?? []);
    for (const [id] of leases) {
      if (renewed.has(id) || !held.has(id)) continue;
      held.delete(id);
      lost.add(id);
    }
  };
  const timer = setInterval(
    () => {
      renewing = renewing.then(renew);
    },
    (input.leaseSeconds * 1000) / 3,
  );
  timer.unref();

  return {
    hold(leases: Lease[]) {
      for (const l of leases) held.set(l.source_id, l.lease_token);
    },
    /** The run gave the lease up (released it or handed it over): stop renewing it. */
    drop(sourceId: string) {
      held.delete(sourceId);
    },
    isLost: (sourceId: string) => lost.has(sourceId),
    async stop() {
      clearInterval(timer);
      await renewing;
    },
  };
}

export interface Release extends Lease {
  error?: string;
}

/**
 * Releases leases in batches: a source's turn ends with its lease freed within
 * `flushMs` (one call for many sources instead of one each), and `flush` frees the rest.
 */
export function batchReleases(input: { db: Db; log: Logger; flushMs?: number; maxBatch?: number }) {
  const flushMs = input.flushMs ?? 250;
  const maxBatch = input.maxBatch ?? 200;
  let pending: Release[] = [];
  let timer: NodeJS.Timeout | undefined;
  let sending: Promise<void> = Promise.resolve();

  const send = async (batch: Release[]) => {
    const { error } = await input.db.rpc('release_collector_sources', {
      source_ids: batch.map((r) => r.source_id),
      lease_tokens: batch.map((r) => r.lease_token),
      errors: batch.map((r) => r.error ?? null) as string[],
    });
    // Unreleased leases expire by themselves; the sources are collected again after that.
    if (error)
      input.log.error({ error: error.message, sources: batch.length }, 'could not release leases');
  };
  const flush = () => {
    clearTimeout(timer);
    timer = undefined;
    if (pending.length === 0) return sending;
    const batch = pending;
    pending = [];
    sending = sending.then(() => send(batch));
    return sending;
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
