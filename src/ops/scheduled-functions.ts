/**
 * The scheduled Netlify functions that record their runs (recordedRun), by the name they
 * record. Status raises attention for these; a test keeps the list in step with
 * netlify/functions.
 */
export const SCHEDULED_FUNCTIONS = [
  'collect-usage',
  'deliver-alerts',
  'report-usage',
  'reconcile-usage',
  'deliver-webhooks',
] as const;

export type ScheduledFunctionName = (typeof SCHEDULED_FUNCTIONS)[number];

export const isScheduledFunction = (name: string): name is ScheduledFunctionName =>
  (SCHEDULED_FUNCTIONS as readonly string[]).includes(name);
