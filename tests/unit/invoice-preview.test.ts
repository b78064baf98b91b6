import { describe, expect, it } from 'vitest';
import {
  estimateForUnits,
  type PreviewAmounts,
  type PreviewTarget,
  previewAmounts,
  previewDrift,
} from '../../src/billing/invoice-preview.ts';

/** Class: reading Stripe's preview and comparing it with flowmeter's estimate, without I/O. */
const target: PreviewTarget = {
  tenant_id: '2f6c0e4e-8f3a-4c55-9a57-0d5b6f1c2a10',
  stripe_customer_id: 'cus_1',
  stripe_subscription_id: 'sub_1',
  period_start: '2027-01-01T00:00:00Z',
  period_end: '2027-02-01T00:00:00Z',
  limit_policy: 'overage',
  trialing: false,
  quota: 1000,
  overage_unit_amount: 0.25,
  currency: 'EUR',
  sent: 1203,
  pending: 0,
  last_sent_at: '2027-01-15T10:00:00Z',
};

const preview = (usageAmount: number, currency = 'eur'): PreviewAmounts => ({
  currency,
  total: 1900 + usageAmount,
  amountDue: 1900 + usageAmount,
  subtotal: 1900 + usageAmount,
  usageQuantity: 1203,
  usageAmount,
  complete: true,
});

describe('estimateForUnits', () => {
  it('prices the overage above the quota, fractional, on overage plans only', () => {
    expect(estimateForUnits(target, 1203)).toBe(50.75);
    expect(estimateForUnits(target, 900)).toBe(0);
    expect(estimateForUnits({ ...target, trialing: true }, 1203)).toBe(0);
    expect(estimateForUnits({ ...target, limit_policy: 'hard_limit' }, 1203)).toBe(0);
  });
});

describe('previewDrift', () => {
  it("agrees within Stripe's rounding", () => {
    expect(previewDrift(target, preview(51))).toBeUndefined();
    expect(previewDrift(target, preview(50))).toBeUndefined();
  });

  it('finds a difference beyond rounding, naming both sides', () => {
    expect(previewDrift(target, preview(53))).toEqual({
      expected: 51,
      actual: 53,
      detail:
        "Stripe's upcoming invoice for sub_1 bills 1,203 executions for 53 eur; flowmeter reported 1203 and estimates 51 eur for them",
    });
  });

  it('finds another currency a difference, whatever the amount', () => {
    expect(previewDrift(target, preview(51, 'usd'))).toMatchObject({ expected: 51, actual: 51 });
  });
});

describe('previewAmounts', () => {
  it('refuses an answer without the fields it reads, saying which', () => {
    expect(previewAmounts({ currency: 'eur', total: 10 })).toEqual({
      ok: false,
      message: expect.stringMatching(
        /^Stripe's invoice preview has an unexpected shape \(amount_due:/,
      ),
    });
  });

  it('marks a preview whose lines Stripe cut short as incomplete', () => {
    const invoice = {
      currency: 'EUR',
      total: 0,
      amount_due: 0,
      subtotal: 0,
      lines: { has_more: true, data: [] },
    };
    expect(previewAmounts(invoice)).toMatchObject({
      ok: true,
      value: { currency: 'eur', complete: false },
    });
  });
});
