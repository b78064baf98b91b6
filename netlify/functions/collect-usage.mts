import type { Config } from '@netlify/functions';
import {
  backgroundHandOff,
  collectionSettings,
  collectorDependencies,
  runCollection,
} from '../../src/collector/from-config.ts';
import { loadCollectorConfig } from '../../src/config/env.ts';
import { recordedRun } from '../../src/observability/scheduled-run.ts';

/**
 * Every 10 minutes: pull new n8n executions for every due source. Within its 30 s it
 * collects what it can finish and fans the rest out to collect-usage-background.
 */
export default async () => {
  const config = loadCollectorConfig();
  const deps = collectorDependencies(config);
  const summary = await recordedRun(
    { db: deps.db, functionName: 'collect-usage', log: deps.log },
    (log) =>
      runCollection({
        ...deps,
        log,
        settings: collectionSettings(config, config.COLLECTOR_BUDGET_SECONDS),
        trigger: 'schedule',
        handOff: backgroundHandOff(config, log),
      }),
  );
  return Response.json(summary);
};

export const config: Config = { schedule: '*/10 * * * *' };
