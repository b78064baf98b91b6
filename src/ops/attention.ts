import { isScheduledFunction } from './scheduled-functions.ts';

const plural = (n: number, word: string, words = `${word}s`) => `${n} ${n === 1 ? word : words}`;

/** The parts of operator_status() that decide whether a person is needed. */
export interface AttentionInputs {
  sources: { failing: number };
  meter_reports: { late: number };
  alert_deliveries: { given_up: number };
  scheduled_functions: Array<{
    function_name: string;
    failures_since_success: number;
    last_error: string | null;
  }>;
}

/**
 * What needs a person: failing sources, usage Stripe will not be sent, alerts given up on,
 * and this project's scheduled functions whose latest runs failed (one failure is enough:
 * a function that fails every hour must not wait for a second to be noticed).
 */
export function needsAttention(status: AttentionInputs): string[] {
  return [
    ...status.scheduled_functions
      .filter((f) => isScheduledFunction(f.function_name) && f.failures_since_success > 0)
      .map(
        (f) =>
          `${f.function_name} failed ${plural(f.failures_since_success, 'time')} since its last success${f.last_error ? ` (${f.last_error.slice(0, 120)})` : ''}`,
      ),
    status.sources.failing > 0 && `${plural(status.sources.failing, 'source')} failing`,
    status.meter_reports.late > 0 &&
      `${plural(status.meter_reports.late, 'late meter report')} (invoice already final)`,
    status.alert_deliveries.given_up > 0 &&
      `${plural(status.alert_deliveries.given_up, 'alert delivery', 'alert deliveries')} given up`,
  ].filter((x): x is string => typeof x === 'string');
}
