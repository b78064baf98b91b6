import { describe, expect, it } from 'vitest';
import { batchReleases, keepLeases, type Lease } from '../../src/collector/leases.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { createSource, useN8nServer } from '../support/collector.ts';
import { faultyDb, rpcFetch } from '../support/faults.ts';
import { claimSources, leasesOf } from '../support/leases.ts';
import { superuser } from '../support/stack.ts';

/**
 * The collector's lease keeping and releasing against the real lease functions, with the
 * calls held at the HTTP boundary: what a run does when the database stops answering.
 */
const server = useN8nServer();

async function leasedSources(n: number): Promise<Lease[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) ids.push((await createSource(server)).sourceId);
  return leasesOf(await claimSources(ids, { leaseSeconds: 600 }));
}

async function leaseTokens(leases: Lease[]) {
  const { rows } = await superuser().query(
    'select source_id, lease_token from public.collector_source_state where source_id = any ($1::uuid[]) order by source_id',
    [leases.map((l) => l.source_id)],
  );
  return rows as Array<{ source_id: string; lease_token: string | null }>;
}

/** A promise and its resolver, for calls the test holds until an event. */
function deferred<T = void>() {
  let resolve: (value: T) => void = () => {};
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe('keeping leases', () => {
  it('stops at once while a renewal hangs, and the hung call changes nothing', async () => {
    const [lease] = await leasedSources(1);
    const hung = deferred();
    const db = faultyDb(
      rpcFetch((call, send) => {
        if (call.fn !== 'renew_collector_leases') return send();
        hung.resolve();
        return new Promise<Response>(() => {}); // never answers
      }),
    );
    // Renewals every 100 ms, so the first one is in flight soon.
    const leases = keepLeases({ db, leaseSeconds: 0.6, log: silentLogger });
    leases.hold([lease as Lease]);
    await hung.promise;
    await leases.stop();
    expect(leases.isLost((lease as Lease).source_id)).toBe(false);
    expect(await leaseTokens([lease as Lease])).toEqual([
      { source_id: lease?.source_id, lease_token: lease?.lease_token },
    ]);
  });
});

describe('releasing leases', () => {
  it('sends a second batch while the first is still in flight, and flush waits for both', async () => {
    const leases = await leasedSources(3);
    const arrived: Array<() => void> = [];
    const bothInFlight = deferred();
    const db = faultyDb(
      rpcFetch(async (call, send) => {
        if (call.fn !== 'release_collector_sources') return send();
        // Each release is held until the other one has been sent too.
        const held = deferred();
        arrived.push(held.resolve);
        if (arrived.length === 2) {
          bothInFlight.resolve();
          for (const release of arrived) release();
        }
        await held.promise;
        return send();
      }),
    );
    const releases = batchReleases({ db, log: silentLogger, maxBatch: 2, flushMs: 60_000 });
    for (const lease of leases) releases.add(lease); // the first two fill a batch
    await releases.flush(); // the third goes out beside the first
    await bothInFlight.promise;
    expect(arrived).toHaveLength(2);
    expect((await leaseTokens(leases)).map((r) => r.lease_token)).toEqual([null, null, null]);
  });
});
