import type { Config } from '@netlify/functions';
import {
  backgroundHandOff,
  collectionSettings,
  collectorDependencies,
  runCollection,
} from '../../src/collector/from-config.ts';
import { loadCollectorConfig, SCHEDULED_FUNCTION_LIMIT_MS } from '../../src/config/env.ts';
import { scheduledFunction } from '../../src/ops/scheduled-run.ts';
import { runUpkeep, withUpkeep } from '../../src/ops/upkeep.ts';

/**
 * Every 10 minutes: the storage upkeep (runUpkeep; its failure makes the run read as failed,
 * after collecting), then pull new n8n executions for every due source. Within its 30 s it
 * collects what it can finish and fans the rest out to collect-usage-background.
 */
export default scheduledFunction('collect-usage', loadCollectorConfig, (config, invokedAt) => {
  const deps = collectorDependencies(config);
  return {
    ...deps,
    // The work is cut two database deadlines before the limit; recording its outcome fits
    // in what is left.
    work: async (log) => {
      // Before collecting: next month's partition must exist before its first execution.
      const upkeep = await runUpkeep({
        db: deps.db,
        retentionMonths: config.EXECUTION_RETENTION_MONTHS,
        log,
      });
      const collected = await runCollection({
        ...deps,
        log,
        settings: collectionSettings(
          config,
          config.COLLECTOR_BUDGET_SECONDS,
          Date.now() - invokedAt,
          SCHEDULED_FUNCTION_LIMIT_MS,
        ),
        trigger: 'schedule',
        handOff: backgroundHandOff(config, log),
      });
      return withUpkeep(upkeep, collected);
    },
  };
});

export const config: Config = { schedule: '*/10 * * * *' };
