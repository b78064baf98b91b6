/**
 * Every webhook event type, as the webhook tables' check constraints list them. Endpoints
 * subscribe to some of them; docs/webhooks.md shows each one's payload.
 */
export const WEBHOOK_EVENT_TYPES = [
  'usage.threshold_crossed',
  'tenant.blocked',
  'source.failing',
  'source.recovered',
  'collection.gap_recorded',
  'meter_report.failed',
  'meter_report.late',
  'meter_report.review',
  'meter_correction.review',
  'reconciliation.drift_found',
  'subscription.changed',
  'webhook.test',
] as const;

export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];
