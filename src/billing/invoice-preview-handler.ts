import type Stripe from 'stripe';
import { z } from 'zod';
import type { Db } from '../db/client.ts';
import { errorResponse, readJsonRequest } from '../http/responses.ts';
import type { Logger } from '../observability/logger.ts';
import { currentInvoicePreview } from './current-invoice-preview.ts';

export const invoicePreviewRequestSchema = z.strictObject({
  tenant_id: z.uuid().describe('The tenant, one the signed-in user is a member of'),
});
export type InvoicePreviewRequest = z.infer<typeof invoicePreviewRequestSchema>;

const minorUnits = z.number().int().nullable();

/** A row of tenant_invoice_preview: the cached preview of the tenant's current period. */
export const invoicePreviewResponseSchema = z.object({
  preview: z
    .object({
      tenant_id: z.uuid(),
      period_start: z.string(),
      period_end: z.string(),
      status: z.enum(['ok', 'none']).describe('none: Stripe has no upcoming invoice'),
      currency: z.string().nullable(),
      total: minorUnits.describe('After discounts and tax, in minor units'),
      amount_due: minorUnits,
      subtotal: minorUnits,
      usage_quantity: minorUnits.describe('Executions the metered lines bill'),
      usage_amount: minorUnits.describe('What Stripe bills for them, in minor units'),
      fetched_at: z.string(),
    })
    .nullable()
    .describe('Null before the first fetch or without a live Stripe subscription'),
  refresh_error: z
    .string()
    .nullable()
    .describe('Why Stripe could not be asked now; the preview is then the cached one'),
});
export type InvoicePreviewResponse = z.infer<typeof invoicePreviewResponseSchema>;

export interface InvoicePreviewHandlerDeps {
  db: Db;
  /** supabase-js as the caller, from their access token: the membership check runs as them. */
  userDb: (accessToken: string) => Db;
  stripe: Stripe | null;
  log: Logger;
  ttlSeconds: number;
}

const MAX_BODY_BYTES = 1024;

/**
 * POST /api/v1/invoice-preview `{tenant_id}`, called by the dashboards with the signed-in
 * user's access token: refreshes the tenant's cached Stripe invoice preview when it is older
 * than the cache's lifetime, and answers it. Only a member of the tenant may ask (checked as
 * that user, through tenant_usage_summary under row-level security); another tenant's id
 * answers 404 like one that does not exist. The Stripe key stays on the server.
 */
export function createInvoicePreviewHandler(deps: InvoicePreviewHandlerDeps) {
  return async (req: Request): Promise<Response> => {
    if (req.method !== 'POST') {
      return errorResponse('method_not_allowed', 'Use POST', undefined, { allow: 'POST' });
    }
    const token = /^Bearer\s+(\S+)$/i.exec(req.headers.get('authorization') ?? '')?.[1];
    if (!token) {
      return errorResponse(
        'unauthorized',
        "Send the signed-in user's access token as Authorization: Bearer <token>",
        undefined,
        { 'www-authenticate': 'Bearer realm="flowmeter"' },
      );
    }
    const request = await readJsonRequest(req, {
      maxBytes: MAX_BODY_BYTES,
      schema: invoicePreviewRequestSchema,
      invalid: 'Send {"tenant_id": "<the tenant\'s id, a UUID>"} and nothing else',
    });
    if (!request.ok) return request.response;
    const tenantId = request.value.tenant_id;
    const member = await deps.userDb(token).rpc('tenant_usage_summary', { tenant_id: tenantId });
    if (member.status === 401 || member.status === 403) {
      return errorResponse(
        'unauthorized',
        'The session has ended or the token is not valid: sign in again',
      );
    }
    if (member.error) {
      deps.log.error({ error: member.error.message }, 'invoice preview: membership check failed');
      return errorResponse('unavailable', 'The database cannot answer right now');
    }
    if ((member.data ?? []).length === 0) {
      return errorResponse('not_found', 'None of your tenants has this id');
    }
    const current = await currentInvoicePreview({
      db: deps.db,
      stripe: deps.stripe,
      log: deps.log,
      tenantId,
      maxAgeSeconds: deps.ttlSeconds,
    });
    if (!current.ok) {
      deps.log.error({ error: current.error.message }, 'invoice preview: database unavailable');
      return errorResponse('unavailable', 'The database cannot answer right now');
    }
    const answer: InvoicePreviewResponse = {
      preview: current.value.preview as InvoicePreviewResponse['preview'],
      refresh_error: current.value.refreshError,
    };
    return Response.json(answer);
  };
}
