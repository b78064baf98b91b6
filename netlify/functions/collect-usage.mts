import type { Config } from '@netlify/functions';
import {
  backgroundHandOff,
  collectionSettings,
  collectorDependencies,
  runCollection,
} from '../../src/collector/from-config.ts';
import { loadCollectorConfig } from '../../src/config/env.ts';

/** Every 10 minutes: pull new n8n executions for every due source, within 30 s. */
export default async () => {
  const config = loadCollectorConfig();
  const deps = collectorDependencies(config);
  const summary = await runCollection({
    ...deps,
    settings: collectionSettings(config, config.COLLECTOR_BUDGET_SECONDS),
    trigger: 'schedule',
    handOff: backgroundHandOff(config, deps.log),
  });
  return Response.json(summary);
};

export const config: Config = { schedule: '*/10 * * * *' };
