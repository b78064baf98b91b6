import Stripe from 'stripe';

/** The Stripe API version flowmeter is written against. */
export const STRIPE_API_VERSION = '2026-10-28.endive' as const;

export interface StripeClientOptions {
  secretKey: string;
  /** e.g. http://127.0.0.1:12111 for a local Stripe-compatible endpoint. */
  apiBase?: string | undefined;
  maxNetworkRetries?: number;
  timeoutMs?: number;
  httpClient?: Stripe.HttpClient;
}

/**
 * Every call flowmeter makes to Stripe goes through a client made here: one pinned API
 * version, stripe-node's own retries (which honour Retry-After and reuse idempotency
 * keys), a timeout, and an optional base URL for a Stripe-compatible local endpoint.
 */
export function createStripeClient(options: StripeClientOptions): Stripe {
  const base = options.apiBase ? new URL(options.apiBase) : undefined;
  return new Stripe(options.secretKey, {
    apiVersion: STRIPE_API_VERSION,
    maxNetworkRetries: options.maxNetworkRetries ?? 2,
    timeout: options.timeoutMs ?? 10_000,
    appInfo: { name: 'flowmeter' },
    telemetry: false,
    ...(base
      ? {
          host: base.hostname,
          port: Number(base.port || (base.protocol === 'https:' ? 443 : 80)),
          protocol: base.protocol.replace(':', '') as 'http' | 'https',
        }
      : {}),
    ...(options.httpClient ? { httpClient: options.httpClient } : {}),
  });
}

export type { Stripe };
