import { setupServer } from 'msw/node';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PREVIEW_EXPAND, previewAmounts } from '../../src/billing/invoice-preview.ts';
import { createStripeClient, STRIPE_API_VERSION } from '../../src/stripe/client.ts';
import { FakeStripe, type StripeErrorBody } from '../support/fake-stripe.ts';

/**
 * Class: the test Stripe's POST /v1/invoices/create_preview, as Stripe documents it. It
 * takes the request stripe-node makes for `invoices.createPreview` and answers an invoice
 * flowmeter can read; it refuses what Stripe refuses, in Stripe's error shape.
 */
const NOW = Date.UTC(2027, 0, 15, 12);
const START = Date.UTC(2027, 0, 1) / 1000;
const END = Date.UTC(2027, 1, 1) / 1000;
const KEY = 'sk_test_contract';
const server = setupServer();
let stripe: FakeStripe;

beforeAll(() => server.listen({ onUnhandledFrame: 'error' }));
afterAll(() => server.close());
beforeEach(() => {
  stripe = new FakeStripe({ now: () => NOW });
  server.resetHandlers(...stripe.handlers());
  stripe.addSubscription({
    id: 'sub_contract',
    customer: 'cus_contract',
    status: 'active',
    currency: 'eur',
    periodStart: START,
    periodEnd: END,
    prices: [
      { id: 'price_flat', type: 'licensed', unitAmount: 1900 },
      {
        id: 'price_metered',
        type: 'metered',
        meter: 'mtr_test_contract',
        tiers: [
          { upTo: 1000, unitAmountDecimal: '0' },
          { upTo: null, unitAmountDecimal: '0.25' },
        ],
      },
    ],
  });
});

const client = () => createStripeClient({ secretKey: KEY, maxNetworkRetries: 0, timeoutMs: 5000 });

async function meterEvent(value: number, timestamp = NOW / 1000 - 60) {
  await client().billing.meterEvents.create({
    event_name: 'n8n_executions',
    identifier: `id-${Math.random()}`,
    timestamp,
    payload: { stripe_customer_id: 'cus_contract', value: String(value) },
  });
}

async function post(form: Record<string, string>) {
  const response = await fetch('https://api.stripe.com/v1/invoices/create_preview', {
    method: 'POST',
    headers: {
      authorization: `Bearer ${KEY}`,
      'stripe-version': STRIPE_API_VERSION,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams(form).toString(),
  });
  return { status: response.status, body: (await response.json()) as StripeErrorBody };
}

describe('the fake takes what stripe-node sends for invoices.createPreview', () => {
  it("bills the period's meter events through the graduated tiers, beside the flat fee", async () => {
    await meterEvent(1000);
    await meterEvent(203);
    // outside the subscription's period: not on this invoice
    await meterEvent(50, START - 10);
    const invoice = await client().invoices.createPreview({
      customer: 'cus_contract',
      subscription: 'sub_contract',
      expand: PREVIEW_EXPAND,
    });
    expect(invoice).toMatchObject({
      object: 'invoice',
      id: expect.stringMatching(/^upcoming_in_/),
      customer: 'cus_contract',
      period_start: START,
      period_end: END,
    });
    expect(previewAmounts(invoice)).toEqual({
      ok: true,
      value: {
        currency: 'eur',
        // 203 × 0.25 = 50.75, rounded to 51 by Stripe
        total: 1951,
        amountDue: 1951,
        subtotal: 1951,
        usageQuantity: 1203,
        usageAmount: 51,
        complete: true,
      },
    });
    expect(stripe.refusals).toEqual([]);
  });

  it('names prices by id unless they are expanded, so usage lines are not told apart', async () => {
    await meterEvent(1100);
    const invoice = await client().invoices.createPreview({ subscription: 'sub_contract' });
    expect(invoice.lines.data[1]?.pricing?.price_details?.price).toBe('price_metered');
    expect(previewAmounts(invoice)).toMatchObject({ ok: true, value: { usageAmount: 0 } });
  });
});

describe('the fake refuses what Stripe refuses', () => {
  it.each<[string, Record<string, string>, Partial<StripeErrorBody['error']>]>([
    [
      'neither a subscription nor other subscription details (since 2025-03-31.basil)',
      { customer: 'cus_contract' },
      { code: 'parameter_missing', param: 'subscription' },
    ],
    [
      'an unknown customer',
      { customer: 'cus_nobody', subscription: 'sub_contract' },
      { code: 'resource_missing', param: 'customer' },
    ],
    [
      'an unknown subscription',
      { customer: 'cus_contract', subscription: 'sub_nobody' },
      { code: 'resource_missing', param: 'subscription' },
    ],
    [
      'an unknown parameter',
      { subscription: 'sub_contract', upcoming: 'true' },
      { code: 'parameter_unknown', param: 'upcoming' },
    ],
  ])('%s: 400', async (_, form, error) => {
    const answer = await post(form);
    expect(answer.status).toBe(400);
    expect(answer.body.error).toMatchObject({ type: 'invalid_request_error', ...error });
  });

  it("another customer's subscription: 400", async () => {
    stripe.addSubscription({
      id: 'sub_other',
      customer: 'cus_other',
      status: 'active',
      currency: 'eur',
      periodStart: START,
      periodEnd: END,
      prices: [],
    });
    const answer = await post({ customer: 'cus_contract', subscription: 'sub_other' });
    expect(answer.status).toBe(400);
    expect(answer.body.error).toMatchObject({ param: 'subscription' });
  });

  it('a canceled subscription has no upcoming invoice: 400 invoice_upcoming_none', async () => {
    stripe.addSubscription({
      id: 'sub_gone',
      customer: 'cus_contract',
      status: 'canceled',
      currency: 'eur',
      periodStart: START,
      periodEnd: END,
      prices: [],
    });
    await expect(
      client().invoices.createPreview({ customer: 'cus_contract', subscription: 'sub_gone' }),
    ).rejects.toMatchObject({ statusCode: 400, code: 'invoice_upcoming_none' });
  });

  it('a revoked key: 401', async () => {
    stripe.revokeKey(KEY);
    await expect(
      client().invoices.createPreview({ subscription: 'sub_contract' }),
    ).rejects.toMatchObject({ statusCode: 401 });
  });
});
