const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** The parts of operator_status() that decide whether a person is needed. */
export interface AttentionInputs {
  sources: { failing: number };
  meter_reports: { late: number };
  alert_deliveries: { given_up: number };
}

/** What needs a person: failing sources, usage Stripe will not be sent, alerts given up on. */
export function needsAttention(status: AttentionInputs): string[] {
  return [
    status.sources.failing > 0 && `${plural(status.sources.failing, 'source')} failing`,
    status.meter_reports.late > 0 &&
      `${plural(status.meter_reports.late, 'late meter report')} (invoice already final)`,
    status.alert_deliveries.given_up > 0 &&
      `${plural(status.alert_deliveries.given_up, 'alert delivery')} given up`,
  ].filter((x): x is string => typeof x === 'string');
}
