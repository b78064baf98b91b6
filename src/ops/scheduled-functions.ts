import { differenceInMinutes } from 'date-fns';
import { plural } from '../domain/words.ts';

/**
 * The scheduled Netlify functions that record their runs (recordedRun), by the name they
 * record, with the interval their schedule (netlify.toml or the function's own config)
 * runs them at and the command that does the same work by hand. Status raises attention for
 * these; a test keeps the list and the intervals in step with netlify/ and netlify.toml.
 */
export const SCHEDULED_FUNCTIONS = {
  'collect-usage': { everyMinutes: 10, byHand: 'flowmeter collect' },
  'deliver-alerts': { everyMinutes: 5, byHand: 'flowmeter alerts deliver' },
  'report-usage': { everyMinutes: 60, byHand: 'flowmeter report' },
  'reconcile-usage': { everyMinutes: 24 * 60, byHand: 'flowmeter reconcile' },
  'deliver-webhooks': { everyMinutes: 1, byHand: 'flowmeter webhooks deliver' },
} as const satisfies Record<string, { everyMinutes: number; byHand: string }>;

export type ScheduledFunctionName = keyof typeof SCHEDULED_FUNCTIONS;

export const isScheduledFunction = (name: string): name is ScheduledFunctionName =>
  Object.hasOwn(SCHEDULED_FUNCTIONS, name);

/**
 * How long after its latest start a scheduled function counts as overdue: two intervals
 * (one missed tick is Netlify's jitter or a deploy) plus five minutes.
 */
const overdueAfterMinutes = (name: ScheduledFunctionName) =>
  2 * SCHEDULED_FUNCTIONS[name].everyMinutes + 5;

/** Whether a function whose latest run started at `lastStartedAt` is overdue at `now`. */
export const isOverdue = (
  name: ScheduledFunctionName,
  lastStartedAt: string | Date,
  now: string | Date,
) => differenceInMinutes(now, lastStartedAt) > overdueAfterMinutes(name);

/** A function's schedule in words: the shipped ones read "every minute", "hourly", "daily". */
export function scheduleInWords(name: ScheduledFunctionName) {
  const minutes = SCHEDULED_FUNCTIONS[name].everyMinutes;
  if (minutes === 1) return 'every minute';
  if (minutes === 60) return 'hourly';
  if (minutes === 24 * 60) return 'daily';
  return `every ${plural(minutes, 'minute')}`;
}

/** What a status table needs of one function's latest run. */
interface LatestRun {
  function_name: string;
  last_started_at: string;
}

/**
 * Every scheduled function this project ships, run or not, then any other the database has
 * runs of, each with its schedule (null for one this project does not ship) and whether it
 * is overdue at `now` by the rule status applies. `flowmeter status` and the console's
 * health page show the same rows.
 */
export function scheduledFunctionRows<R extends LatestRun>(runs: readonly R[], now: string | Date) {
  const byName = new Map<string, R>(runs.map((run) => [run.function_name, run]));
  const names = [...new Set([...Object.keys(SCHEDULED_FUNCTIONS), ...byName.keys()])];
  return names.map((name) => {
    const run = byName.get(name);
    const known = isScheduledFunction(name);
    return {
      name,
      run,
      schedule: known ? scheduleInWords(name) : null,
      overdue: Boolean(known && run && isOverdue(name, run.last_started_at, now)),
    };
  });
}
