import { Webhook } from 'standardwebhooks';
import type { Keyring } from '../crypto/keyring.ts';
import type { Db } from '../db/client.ts';
import type { Database } from '../db/database.types.ts';
import { rpcResult } from '../db/rpc-result.ts';
import { type Attempt, type DeliveryRunInput, deliverClaimed } from '../domain/deliver-claimed.ts';
import { type DeliverySummary, drainDeliveries } from '../domain/delivery-summary.ts';
import type { Result } from '../domain/result.ts';
import { checkEndpointUrl, type WebhookMode } from './endpoint-url.ts';
import { openSigningSecret } from './signing-secret.ts';

type ClaimedDelivery =
  Database['public']['Functions']['claim_webhook_deliveries']['Returns'][number];

export interface DeliverWebhooksInput extends DeliveryRunInput {
  db: Db;
  keyring: Keyring;
  mode: WebhookMode;
  /** publicOnlyFetch in production, so every send checks the addresses it connects to. */
  fetch: typeof fetch;
  timeoutMs: number;
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

interface WebhookAttempt extends Attempt {
  /** The receiver's answer; null when it never answered. */
  httpStatus: number | null;
}

function failureMessage(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  if (error.name === 'TimeoutError') return 'no answer within the timeout';
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
  return `${error.message}${cause}`;
}

async function send(input: DeliverWebhooksInput, d: ClaimedDelivery): Promise<WebhookAttempt> {
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
      return {
        httpStatus: response.status,
        error: null,
        details: { http_status: response.status },
      };
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

/**
 * Sends due webhook deliveries once: claims them under a lease, signs each stored body
 * with every valid secret of its endpoint, POSTs it and records the outcome (the SQL side
 * schedules retries). At least once per endpoint; every attempt for one event carries the
 * same webhook-id and body, so a receiver drops a repeat by webhook-id.
 */
export function deliverWebhooks(
  input: DeliverWebhooksInput,
): Promise<Result<DeliverWebhooksSummary>> {
  return deliverClaimed(input, {
    noun: 'webhook',
    defaults: {
      maxRows: 20,
      leaseSeconds: DEFAULT_LEASE_SECONDS,
      concurrency: DEFAULT_CONCURRENCY,
    },
    claim: async (lease) =>
      rpcResult(
        await input.db.rpc('claim_webhook_deliveries', {
          ...lease,
          ...(input.endpointIds ? { endpoint_ids: input.endpointIds } : {}),
        }),
        'claim_webhook_deliveries',
      ),
    key: (d) => ({
      event_id: d.event_id,
      endpoint_id: d.endpoint_id,
      lease_expires_at: d.lease_expires_at,
    }),
    context: (d) => ({
      webhook_id: d.event_id,
      endpoint_id: d.endpoint_id,
      event_type: d.event_type,
      attempt: d.attempt,
    }),
    send: (d) => send(input, d),
    giveBack: (keys) => input.db.rpc('return_webhook_deliveries', { keys }),
    finish: (outcome, attempt) =>
      input.db.rpc('finish_webhook_delivery', {
        ...outcome,
        ...(attempt.httpStatus === null ? {} : { http_status: attempt.httpStatus }),
      }),
  });
}

/**
 * Claims and sends batches until a claim comes back empty or, with budgetMs (a scheduled
 * run), until another batch might not end in time. A batch holds as many deliveries as can
 * all end within the time left and within the lease, each attempt ending within the timeout.
 */
export async function drainWebhooks(
  input: Omit<DeliverWebhooksInput, 'maxRows'> & { budgetMs?: number },
): Promise<Result<DeliverWebhooksSummary>> {
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
