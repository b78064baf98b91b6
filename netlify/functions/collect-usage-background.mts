import { z } from 'zod';
import {
  collectionSettings,
  collectorDependencies,
  INTERNAL_SECRET_HEADER,
  runCollection,
} from '../../src/collector/from-config.ts';
import {
  BACKGROUND_FUNCTION_LIMIT_MS,
  loadCollectorConfig,
  MAX_SLICE_SOURCES,
} from '../../src/config/env.ts';
import { parseOutside } from '../../src/domain/parse-outside.ts';
import { matchesAnySecret } from '../../src/security/shared-secret.ts';

const handOffSchema = z.object({
  run_id: z.uuid(),
  leases: z
    .array(z.object({ source_id: z.uuid(), lease_token: z.uuid() }))
    .min(1)
    .max(MAX_SLICE_SOURCES),
});

/**
 * Background function (up to 15 minutes): collects the slice of sources collect-usage
 * handed it (due sources beyond what the scheduled run can finish, or walks it could not
 * finish in 30 s), keeping the leases it was handed alive so no other run takes them.
 */
export default async (req: Request) => {
  const invokedAt = Date.now();
  const config = loadCollectorConfig();
  const deps = collectorDependencies(config);
  const secret = config.FLOWMETER_INTERNAL_SECRET;
  if (!secret || !matchesAnySecret(req.headers.get(INTERNAL_SECRET_HEADER), [secret])) {
    deps.log.warn({}, 'background collection refused: missing or wrong internal secret');
    return new Response('unauthorized', { status: 401 });
  }
  const parsed = parseOutside(handOffSchema, await req.json().catch(() => null));
  if (!parsed.success) {
    deps.log.warn({ issues: parsed.error.issues }, 'background collection refused: bad body');
    return new Response('bad request', { status: 400 });
  }
  const result = await runCollection({
    ...deps,
    log: deps.log.child({ handed_off_by: parsed.data.run_id }),
    settings: collectionSettings(
      config,
      config.COLLECTOR_BACKGROUND_BUDGET_SECONDS,
      Date.now() - invokedAt,
      BACKGROUND_FUNCTION_LIMIT_MS,
    ),
    trigger: 'background',
    select: { leases: parsed.data.leases },
  });
  if (!result.ok) deps.log.error({ error: result.error.message }, 'background collection failed');
  return new Response(null, { status: 202 });
};
