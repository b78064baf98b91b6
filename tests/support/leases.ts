import type { SupabaseClient } from '@supabase/supabase-js';
import { z } from 'zod';
import { type ClaimedSource, claimedSourceSchema } from '../../src/collector/sync-source.ts';
import type { Database } from '../../src/db/database.types.ts';
import { serviceClient } from './stack.ts';

/**
 * Leases these sources now, due or not, the way a run claims them, parsed as the collector
 * parses a claim. Throws when the database refuses or a source is not claimed.
 */
export async function claimSources(
  sourceIds: string[],
  options: { leaseSeconds?: number } = {},
  db: SupabaseClient<Database> = serviceClient(),
): Promise<ClaimedSource[]> {
  const { data, error } = await db.rpc('claim_collector_sources', {
    source_ids: sourceIds,
    ignore_schedule: true,
    max_sources: Math.max(sourceIds.length, 1),
    ...(options.leaseSeconds === undefined ? {} : { lease_seconds: options.leaseSeconds }),
  });
  if (error) throw new Error(`claim_collector_sources: ${error.message}`);
  const claimed = z.array(claimedSourceSchema).parse(data);
  if (claimed.length !== sourceIds.length)
    throw new Error(
      `claim_collector_sources: ${claimed.length} of ${sourceIds.length} sources claimed`,
    );
  return claimed;
}

/** The lease of each source claimed, as a run hands it over. */
export const leasesOf = (claimed: ClaimedSource[]) =>
  claimed.map((s) => ({ source_id: s.source_id, lease_token: s.lease_token }));

/** claimSources for one source. */
export async function claimSource(
  sourceId: string,
  options: { leaseSeconds?: number } = {},
  db: SupabaseClient<Database> = serviceClient(),
): Promise<ClaimedSource> {
  const [claimed] = await claimSources([sourceId], options, db);
  if (!claimed) throw new Error(`claim_collector_sources: source ${sourceId} was not claimed`);
  return claimed;
}
