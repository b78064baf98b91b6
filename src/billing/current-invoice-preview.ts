import type Stripe from 'stripe';
import type { Db } from '../db/client.ts';
import type { Database } from '../db/database.types.ts';
import { callFailed } from '../db/rpc-result.ts';
import { ok, type Result } from '../domain/result.ts';
import type { Logger } from '../observability/logger.ts';
import { refreshInvoicePreviews } from './refresh-invoice-previews.ts';

export type CachedInvoicePreview =
  Database['public']['Functions']['tenant_invoice_preview']['Returns'][number];

export interface CurrentInvoicePreviewInput {
  db: Db;
  /** Null without STRIPE_SECRET_KEY: the cached preview is read, never refreshed. */
  stripe: Stripe | null;
  log: Logger;
  tenantId: string;
  maxAgeSeconds: number;
}

export interface CurrentInvoicePreview {
  /** Null before the first fetch, or for a tenant without a live Stripe subscription. */
  preview: CachedInvoicePreview | null;
  /** Why Stripe's preview could not be refreshed now; the cached one, if any, is older. */
  refreshError: string | null;
}

/**
 * A tenant's invoice preview for its current period: refreshed from Stripe first when the
 * cached one is older than `maxAgeSeconds`, then read from the cache.
 */
export async function currentInvoicePreview(
  input: CurrentInvoicePreviewInput,
): Promise<Result<CurrentInvoicePreview>> {
  let refreshError: string | null = null;
  if (input.stripe) {
    const refreshed = await refreshInvoicePreviews({
      db: input.db,
      stripe: input.stripe,
      log: input.log,
      tenantIds: [input.tenantId],
      maxAgeSeconds: input.maxAgeSeconds,
    });
    if (!refreshed.ok) return refreshed;
    refreshError = refreshed.value.failed[0]?.message ?? null;
  }
  const { data, error, status } = await input.db.rpc('tenant_invoice_preview', {
    tenant_id: input.tenantId,
  });
  if (error) return callFailed('tenant_invoice_preview', { error, status });
  return ok({ preview: data?.[0] ?? null, refreshError });
}
