import { styleText } from 'node:util';
import { collectionSettings, collectorDependencies } from '../collector/from-config.ts';
import { type RunSummary, runCollection, type SourceEvent } from '../collector/run-collection.ts';
import type { CollectorConfig } from '../config/env.ts';
import { plural } from '../domain/words.ts';
import { createLogger } from '../observability/pino-logger.ts';
import { type CliIo, valueOrExit } from './context.ts';
import { createProgress, isTerminal } from './progress.ts';

export interface CollectOptions {
  source?: string[];
  json?: boolean;
}

/** Human progress on stderr, so --json output on stdout stays machine-readable. */
function progressPrinter(io: Pick<CliIo, 'err' | 'stderr'>) {
  const write = io.err;
  // On a terminal a bar counts finished sources and each outcome is printed above it; in a
  // log, a line per page says how far each source has got.
  const bar = isTerminal(io) ? createProgress(io, 'collecting', 'source') : undefined;
  const names = new Map<string, string>();
  const report = (event: SourceEvent) => {
    if (event.type === 'claimed') {
      for (const s of event.sources) {
        names.set(s.source_id, `${s.base_url} (source ${s.source_id.slice(0, 8)})`);
      }
      if (bar) bar.start(event.sources.length);
      else write(`collecting ${plural(event.sources.length, 'source')}`);
    } else if (event.type === 'page') {
      if (bar) return;
      write(
        `  ${names.get(event.source.source_id)}: page ${event.stats.pages}, ${plural(event.stats.executionsIngested, 'new execution')}, ${event.stats.billableCounted} billable`,
      );
    } else {
      const { outcome } = event;
      const label = names.get(event.source.source_id);
      const line = (text: string) => (bar ? bar.line(text) : write(text));
      if (outcome.status === 'failed') line(styleText('red', `✗ ${label}: ${outcome.error}`));
      else if (outcome.status === 'ok') {
        line(
          styleText(
            'green',
            `✓ ${label}: ${plural(outcome.executionsIngested, 'new execution')}, ${outcome.billableCounted} billable`,
          ),
        );
      } else
        line(
          styleText(
            'yellow',
            `… ${label}: ${outcome.status}; the next run resumes where this one stopped`,
          ),
        );
      bar?.increment();
    }
  };
  return { report, stop: () => bar?.stop() };
}

/** `flowmeter collect`: a collector run now, for the given sources or every enabled one. */
export async function collectNow(
  config: CollectorConfig,
  options: CollectOptions,
  io: Pick<CliIo, 'out' | 'err' | 'stderr'>,
): Promise<RunSummary> {
  const deps = collectorDependencies(config, { log: createLogger('silent') });
  const progress = options.json ? undefined : progressPrinter(io);
  const result = await runCollection({
    ...deps,
    // No 30-second limit here: an operator's run may take as long as the backlog needs.
    settings: collectionSettings(config, 24 * 3600),
    trigger: 'manual',
    ...(options.source?.length ? { select: { sourceIds: options.source } } : {}),
    onSourceEvent: progress?.report,
  }).finally(() => progress?.stop());
  const summary = valueOrExit(result);
  if (options.json) io.out(JSON.stringify(summary, null, 2));
  else {
    io.err(
      `run ${summary.runId}: ${summary.sourcesOk} ok, ${summary.sourcesFailed} failed, ${plural(summary.executionsIngested, 'new execution')}, ${summary.billableCounted} billable`,
    );
  }
  return summary;
}
