import pLimit from 'p-limit';
import { Webhook } from 'standardwebhooks';
import type { Keyring } from '../crypto/keyring.ts';
import type { Db } from '../db/client.ts';
import type { Database } from '../db/database.types.ts';
import {
  type DeliveryOutcome,
  type DeliverySummary,
  drainDeliveries,
  summarizeDeliveries,
} from '../domain/delivery-summary.ts';
import type { Logger } from '../observability/logger.ts';
import { checkEndpointUrl, type WebhookMode } from './endpoint-url.ts';
import { openSigningSecret } from './signing-secret.ts';

type ClaimedDelivery =
  Database['public']['Functions']['claim_webhook_deliveries']['Returns'][number];

export interface DeliverWebhooksInput {
  db: Db;
  keyring: Keyring;
  mode: WebhookMode;
  /** publicOnlyFetch in production, so every send checks the addresses it connects to. */
  fetch: typeof fetch;
  log: Logger;
  timeoutMs: number;
  /** Deliveries claimed at once; the rest wait for the next claim. */
  maxRows?: number;
  /** Longer than the calling function may run, so a live run never loses its claims. */
  leaseSeconds?: number;
  /** Deliveries sent at once. */
  concurrency?: number;
  /** Only these endpoints' deliveries (an operator's targeted run); all when absent. */
  endpointIds?: string[];
  now?: () => Date;
}

export type DeliverWebhooksSummary = DeliverySummary;

const DEFAULT_LEASE_SECONDS = 60;
const DEFAULT_CONCURRENCY = 8;
/** What a receiver's error answer contributes to last_error. */
const ERROR_EXCERPT_BYTES = 300;

/** The first bytes of an answer, for last_error; the rest is never read. */
async function excerpt(response: Response): Promise<string> {
  const reader = response.body?.getReader();
  if (!reader) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < ERROR_EXCERPT_BYTES) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.length;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return Buffer.concat(chunks)
    .toString('utf8')
    .slice(0, ERROR_EXCERPT_BYTES)
    .replace(/\s+/g, ' ')
    .trim();
}

/** One signature per valid secret, newest first: Standard Webhooks' space-separated list. */
function signatures(input: DeliverWebhooksInput, d: ClaimedDelivery, timestamp: Date): string {
  return d.secret_ciphertexts
    .map((sealed) =>
      new Webhook(openSigningSecret(input.keyring, d.endpoint_id, sealed)).sign(
        d.event_id,
        timestamp,
        d.body,
      ),
    )
    .join(' ');
}

interface Attempt {
  httpStatus: number | null;
  error: string | null;
}

function failureMessage(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  if (error.name === 'TimeoutError') return 'no answer within the timeout';
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
  return `${error.message}${cause}`;
}

async function send(input: DeliverWebhooksInput, d: ClaimedDelivery): Promise<Attempt> {
  const url = checkEndpointUrl(d.url, input.mode);
  if (!url.ok) return { httpStatus: null, error: `refused: ${url.error.message}` };
  if (d.secret_ciphertexts.length === 0) {
    return { httpStatus: null, error: 'the endpoint has no valid secret: rotate its secret' };
  }
  try {
    const timestamp = (input.now ?? (() => new Date()))();
    const response = await input.fetch(url.value, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'user-agent': 'flowmeter-webhooks',
        'webhook-id': d.event_id,
        'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)),
        'webhook-signature': signatures(input, d, timestamp),
      },
      body: d.body,
      // A redirect would send the signed body somewhere the operator never registered.
      redirect: 'manual',
      signal: AbortSignal.timeout(input.timeoutMs),
    });
    if (response.status >= 200 && response.status < 300) {
      await response.body?.cancel().catch(() => {});
      return { httpStatus: response.status, error: null };
    }
    const text = await excerpt(response);
    const redirect = response.status >= 300 && response.status < 400;
    return {
      httpStatus: response.status,
      error: redirect
        ? `HTTP ${response.status}: redirects are not followed; register the final URL`
        : `HTTP ${response.status}${text ? `: ${text}` : ''}`,
    };
  } catch (error) {
    return { httpStatus: null, error: failureMessage(error) };
  }
}

async function deliverOne(
  input: DeliverWebhooksInput,
  d: ClaimedDelivery,
): Promise<DeliveryOutcome> {
  const log = input.log.child({
    webhook_id: d.event_id,
    endpoint_id: d.endpoint_id,
    event_type: d.event_type,
    attempt: d.attempt,
  });
  const attempt = await send(input, d);
  const { data, error } = await input.db.rpc('finish_webhook_delivery', {
    event_id: d.event_id,
    endpoint_id: d.endpoint_id,
    delivered: attempt.error === null,
    ...(attempt.httpStatus === null ? {} : { http_status: attempt.httpStatus }),
    ...(attempt.error === null ? {} : { error: attempt.error }),
  });
  if (error) {
    // The lease runs out and the delivery is sent again, same id and body: a repeat the
    // receiver can drop by webhook-id, never a loss.
    log.error(
      { error: error.message, sent: attempt.error === null },
      'could not record the outcome',
    );
  }
  if (attempt.error === null) {
    log.info({ http_status: attempt.httpStatus }, 'webhook delivered');
    return 'delivered';
  }
  const gaveUp = data?.status === 'failed' && data.next_attempt_at === null;
  log[gaveUp ? 'error' : 'warn'](
    { error: attempt.error, next_attempt_at: data?.next_attempt_at ?? null },
    gaveUp ? 'webhook delivery given up' : 'webhook delivery failed; will retry',
  );
  return gaveUp ? 'gave_up' : 'failed';
}

/**
 * Sends due webhook deliveries once: claims them under a lease, signs each stored body
 * with every valid secret of its endpoint, POSTs it and records the outcome (the SQL side
 * schedules retries). At least once per endpoint; every attempt for one event carries the
 * same webhook-id and body.
 */
export async function deliverWebhooks(
  input: DeliverWebhooksInput,
): Promise<DeliverWebhooksSummary> {
  const { data, error } = await input.db.rpc('claim_webhook_deliveries', {
    max_rows: input.maxRows ?? 20,
    lease_seconds: input.leaseSeconds ?? DEFAULT_LEASE_SECONDS,
    ...(input.endpointIds ? { endpoint_ids: input.endpointIds } : {}),
  });
  if (error) throw new Error(`claim_webhook_deliveries failed: ${error.message}`);
  const claimed = data ?? [];
  const limit = pLimit(input.concurrency ?? DEFAULT_CONCURRENCY);
  const outcomes = await Promise.all(claimed.map((d) => limit(() => deliverOne(input, d))));
  const summary = summarizeDeliveries(claimed.length, outcomes);
  if (summary.claimed > 0) input.log.info({ ...summary }, 'webhook deliveries sent');
  return summary;
}

/**
 * Claims and sends batches until a claim comes back empty or, with budgetMs (a scheduled
 * run), until another batch might not end in time. A batch holds as many deliveries as can
 * all end within the time left and within the lease, each attempt ending within the timeout.
 */
export async function drainWebhooks(
  input: Omit<DeliverWebhooksInput, 'maxRows'> & { budgetMs?: number },
): Promise<DeliverWebhooksSummary> {
  const started = Date.now();
  const leaseMarginMs = 10_000;
  const withinLeaseMs = (input.leaseSeconds ?? DEFAULT_LEASE_SECONDS) * 1000 - leaseMarginMs;
  return drainDeliveries(() => {
    const left =
      input.budgetMs === undefined ? withinLeaseMs : input.budgetMs - (Date.now() - started);
    const rounds = Math.floor(Math.min(left, withinLeaseMs) / input.timeoutMs);
    if (rounds < 1) return undefined;
    return deliverWebhooks({
      ...input,
      maxRows: rounds * (input.concurrency ?? DEFAULT_CONCURRENCY),
    });
  });
}
