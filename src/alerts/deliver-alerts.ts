import type { Db } from '../db/client.ts';
import type { Database } from '../db/database.types.ts';
import { rpcResult } from '../db/rpc-result.ts';
import { type Attempt, type DeliveryRunInput, deliverClaimed } from '../domain/deliver-claimed.ts';
import { type DeliverySummary, drainDeliveries } from '../domain/delivery-summary.ts';
import { fail, ok, type Result } from '../domain/result.ts';
import { type AlertChannel, DEFAULT_CHANNEL_TIMEOUT_MS } from './channels/channel.ts';
import type { AlertMessage } from './channels/message.ts';

type ClaimedDelivery = Database['public']['Functions']['claim_alert_deliveries']['Returns'][number];

/** Builds the channel for one alert_channels row from its target (webhook URL or address). */
export interface AlertChannelFactories {
  slack?: (webhookUrl: string) => AlertChannel;
  /** Absent when no e-mail provider is configured: e-mail deliveries then fail and retry. */
  email?: (address: string) => AlertChannel;
}

export interface DeliverAlertsInput extends DeliveryRunInput {
  db: Db;
  channels: AlertChannelFactories;
  /** Channels sent to at once; one channel's messages always go one at a time, in order. */
  concurrency?: number;
  /** Only these tenants' alerts (an operator's targeted run); all when absent. */
  tenantIds?: string[];
}

export type DeliverAlertsSummary = DeliverySummary;

export const NO_EMAIL_PROVIDER =
  'no e-mail provider configured: set RESEND_API_KEY and ALERT_EMAIL_FROM';

const toAlertMessage = (d: ClaimedDelivery): AlertMessage => ({
  tenantId: d.tenant_id,
  tenantName: d.tenant_name,
  planName: d.plan_name,
  limitPolicy: d.limit_policy,
  threshold: d.threshold,
  used: d.used,
  quota: d.quota,
  periodStart: new Date(d.period_start),
  periodEnd: new Date(d.period_end),
});

/** The channel of a delivery; a kind this deployment has no sender for is not configured. */
function channelFor(
  d: ClaimedDelivery,
  factories: AlertChannelFactories,
): Result<AlertChannel, 'not_configured'> {
  const factory = d.channel_kind === 'slack' ? factories.slack : factories.email;
  if (!factory) {
    return fail(
      'not_configured',
      d.channel_kind === 'email' ? NO_EMAIL_PROVIDER : `no sender for ${d.channel_kind} channels`,
    );
  }
  return ok(factory(d.channel_target));
}

/** One attempt: a failure's message is the attempt's error, as operators read it. */
async function send(input: DeliverAlertsInput, d: ClaimedDelivery): Promise<Attempt> {
  const channel = channelFor(d, input.channels);
  if (!channel.ok) return { error: channel.error.message };
  try {
    const sent = await channel.value.send(toAlertMessage(d), d.delivery_key);
    return { error: sent.ok ? null : sent.error.message };
  } catch (error) {
    // A fault of ours with this one delivery (its message could not be rendered) is
    // recorded on it and retried, as any failed attempt, instead of ending the run for
    // every other channel's deliveries.
    return { error: error instanceof Error ? error.message : String(error) };
  }
}

/**
 * Sends due alert deliveries: claims them under a lease, sends each through its channel
 * with its stable delivery key, and records the outcome (the SQL side schedules retries).
 * At least once per channel; e-mail is de-duplicated by Resend through the key, Slack is
 * not. A failing channel never holds up the others.
 */
export function deliverAlerts(input: DeliverAlertsInput): Promise<Result<DeliverAlertsSummary>> {
  return deliverClaimed(input, {
    noun: 'alert',
    defaults: { maxRows: 50, leaseSeconds: DEFAULT_LEASE_SECONDS, concurrency: 4 },
    claim: async (lease) =>
      rpcResult(
        await input.db.rpc('claim_alert_deliveries', {
          ...lease,
          ...(input.tenantIds ? { tenant_ids: input.tenantIds } : {}),
        }),
        'claim_alert_deliveries',
      ),
    laneOf: (d) => d.channel_id,
    key: (d) => ({
      alert_id: d.alert_id,
      channel_id: d.channel_id,
      lease_expires_at: d.lease_expires_at,
    }),
    context: (d) => ({
      delivery_key: d.delivery_key,
      channel_kind: d.channel_kind,
      tenant_id: d.tenant_id,
      threshold: d.threshold,
      attempt: d.attempt,
    }),
    send: (d) => send(input, d),
    giveBack: (keys) => input.db.rpc('return_alert_deliveries', { keys }),
    finish: (outcome) => input.db.rpc('finish_alert_delivery', outcome),
  });
}

const DEFAULT_LEASE_SECONDS = 120;

/**
 * How many deliveries one claim may take so that all of them are sent and recorded before
 * the claim's lease runs out: in the worst case they share one channel, which sends one
 * at a time, each attempt ending within the channel timeout. A run that outlived its lease
 * would see the next run claim and send the same deliveries again.
 */
export function batchWithinLease(
  leaseSeconds: number,
  channelTimeoutMs = DEFAULT_CHANNEL_TIMEOUT_MS,
) {
  const marginMs = 10_000;
  return Math.max(1, Math.floor((leaseSeconds * 1000 - marginMs) / channelTimeoutMs));
}

/**
 * Everything due, now: claims and sends batches that each fit in their lease until a claim
 * comes back empty (an operator's run, which has no time limit). Failed deliveries back
 * off for at least 30 s, so the loop ends.
 */
export async function drainAlerts(
  input: Omit<DeliverAlertsInput, 'maxRows'>,
): Promise<Result<DeliverAlertsSummary>> {
  const maxRows = batchWithinLease(input.leaseSeconds ?? DEFAULT_LEASE_SECONDS);
  return drainDeliveries(() => deliverAlerts({ ...input, maxRows }));
}
