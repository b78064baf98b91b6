import { styleText } from 'node:util';
import { collectionSettings, collectorDependencies } from '../collector/from-config.ts';
import { type RunSummary, runCollection, type SourceEvent } from '../collector/run-collection.ts';
import type { CollectorConfig } from '../config/env.ts';
import { createLogger } from '../observability/pino-logger.ts';

export interface CollectOptions {
  source?: string[];
  json?: boolean;
}

/** Human progress lines on stderr, so --json output on stdout stays machine-readable. */
function progressPrinter(write: (line: string) => void) {
  const names = new Map<string, string>();
  return (event: SourceEvent) => {
    if (event.type === 'claimed') {
      for (const s of event.sources) {
        names.set(s.source_id, `${s.base_url} (source ${s.source_id.slice(0, 8)})`);
      }
      write(`collecting ${event.sources.length} source${event.sources.length === 1 ? '' : 's'}`);
    } else if (event.type === 'page') {
      write(
        `  ${names.get(event.source.source_id)}: page ${event.stats.pages}, ${event.stats.executionsIngested} new executions, ${event.stats.billableCounted} billable`,
      );
    } else {
      const { outcome } = event;
      const label = names.get(event.source.source_id);
      if (outcome.status === 'failed') write(styleText('red', `✗ ${label}: ${outcome.error}`));
      else if (outcome.status === 'ok') {
        write(
          styleText(
            'green',
            `✓ ${label}: ${outcome.executionsIngested} new executions, ${outcome.billableCounted} billable`,
          ),
        );
      } else
        write(
          styleText(
            'yellow',
            `… ${label}: ${outcome.status}; the next run resumes where this one stopped`,
          ),
        );
    }
  };
}

/** `flowmeter collect`: a collector run now, for the given sources or every enabled one. */
export async function collectNow(
  config: CollectorConfig,
  options: CollectOptions,
  io: { out: (text: string) => void; err: (text: string) => void },
): Promise<RunSummary> {
  const deps = collectorDependencies(config, { log: createLogger('silent') });
  const summary = await runCollection({
    ...deps,
    // No 30-second limit here: an operator's run may take as long as the backlog needs.
    settings: collectionSettings(config, 24 * 3600),
    trigger: 'manual',
    ...(options.source?.length ? { select: { sourceIds: options.source } } : {}),
    onSourceEvent: options.json ? undefined : progressPrinter(io.err),
  });
  if (options.json) io.out(JSON.stringify(summary, null, 2));
  else {
    io.err(
      `run ${summary.runId}: ${summary.sourcesOk} ok, ${summary.sourcesFailed} failed, ${summary.executionsIngested} new executions, ${summary.billableCounted} billable`,
    );
  }
  return summary;
}
