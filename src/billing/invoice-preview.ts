import { z } from 'zod';
import type { Database } from '../db/database.types.ts';
import { parseOutside } from '../domain/parse-outside.ts';
import { plural } from '../domain/words.ts';

/**
 * Stripe's upcoming-invoice preview beside flowmeter's estimate, without I/O: what the
 * preview bills (read from Stripe's answer, checked), flowmeter's price for a number of
 * executions, and whether the two disagree beyond rounding.
 */
export type PreviewTarget =
  Database['public']['Functions']['invoice_preview_targets']['Returns'][number];

/** The price of each metered line, expanded, so usage lines are told from the flat fee. */
export const PREVIEW_EXPAND = ['lines.data.pricing.price_details.price'];

/**
 * Stripe rounds each tier's amount of a graduated price to the minor unit; the two tiers of
 * a flowmeter price (included, overage) can each round by half a unit.
 */
const ROUNDING_TOLERANCE = 1;

const expandedPrice = z.object({
  recurring: z.object({ usage_type: z.string() }).nullable(),
});

const previewInvoiceSchema = z.object({
  currency: z.string(),
  total: z.number().int(),
  amount_due: z.number().int(),
  subtotal: z.number().int(),
  lines: z.object({
    has_more: z.boolean(),
    data: z.array(
      z.object({
        amount: z.number().int(),
        quantity: z.number().int().nullable(),
        pricing: z
          .object({
            price_details: z.object({ price: z.union([z.string(), expandedPrice]) }).optional(),
          })
          .nullable(),
      }),
    ),
  }),
});

export interface PreviewAmounts {
  currency: string;
  total: number;
  amountDue: number;
  subtotal: number;
  /** Executions the metered lines bill: the usage Stripe holds for the period. */
  usageQuantity: number;
  /** What Stripe bills for them, in the currency's minor unit. */
  usageAmount: number;
  /** Every line was in the answer (Stripe lists at most 10 lines inline). */
  complete: boolean;
}

/** The preview's amounts, or a message saying what in Stripe's answer was unexpected. */
export function previewAmounts(
  invoice: unknown,
): { ok: true; value: PreviewAmounts } | { ok: false; message: string } {
  const parsed = parseOutside(previewInvoiceSchema, invoice);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return {
      ok: false,
      message: `Stripe's invoice preview has an unexpected shape (${issue?.path.join('.')}: ${issue?.message})`,
    };
  }
  const p = parsed.data;
  const usage = p.lines.data.filter((line) => {
    const price = line.pricing?.price_details?.price;
    return typeof price === 'object' && price.recurring?.usage_type === 'metered';
  });
  return {
    ok: true,
    value: {
      currency: p.currency.toLowerCase(),
      total: p.total,
      amountDue: p.amount_due,
      subtotal: p.subtotal,
      usageQuantity: usage.reduce((sum, line) => sum + (line.quantity ?? 0), 0),
      usageAmount: usage.reduce((sum, line) => sum + line.amount, 0),
      complete: !p.lines.has_more,
    },
  };
}

/**
 * flowmeter's price for `units` executions of the period, in minor units (fractional): the
 * overage above the quota at the plan's unit amount; nothing on a trial or a plan that does
 * not bill overage — the rule of tenant_usage_summary's estimated_overage_amount.
 */
export function estimateForUnits(target: PreviewTarget, units: number): number {
  if (target.limit_policy !== 'overage' || target.trialing || target.quota === null) return 0;
  return Math.max(0, units - target.quota) * target.overage_unit_amount;
}

export interface PreviewDrift {
  expected: number;
  actual: number;
  detail: string;
}

/**
 * Whether Stripe's preview bills what flowmeter reported differently from flowmeter's own
 * estimate for it, beyond rounding (or in another currency). Undefined when they agree.
 */
export function previewDrift(
  target: PreviewTarget,
  preview: PreviewAmounts,
): PreviewDrift | undefined {
  const estimate = estimateForUnits(target, target.sent);
  const expected = Math.round(estimate);
  const sameCurrency = preview.currency === target.currency.toLowerCase();
  if (sameCurrency && Math.abs(preview.usageAmount - estimate) <= ROUNDING_TOLERANCE) {
    return undefined;
  }
  return {
    expected,
    actual: preview.usageAmount,
    detail: `Stripe's upcoming invoice for ${target.stripe_subscription_id} bills ${plural(preview.usageQuantity, 'execution')} for ${preview.usageAmount} ${preview.currency}; flowmeter reported ${target.sent} and estimates ${expected} ${target.currency.toLowerCase()} for them`,
  };
}
