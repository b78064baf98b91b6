import { setupServer } from 'msw/node';
import Stripe from 'stripe';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PREVIEW_EXPAND, previewAmounts } from '../../src/billing/invoice-preview.ts';
import { createStripeClient, STRIPE_API_VERSION } from '../../src/stripe/client.ts';
import { FakeStripe, type StripeErrorBody } from '../support/fake-stripe.ts';

/**
 * Class: requests real Stripe would refuse. The test double of Stripe checks every
 * documented constraint of the endpoints flowmeter calls and answers in Stripe's error
 * shape and status; each case here is a request it must turn away, next to the request
 * stripe-node makes, which it must take.
 */
const NOW = Date.UTC(2027, 0, 15, 12);
const KEY = 'sk_test_contract';
const server = setupServer();
let stripe: FakeStripe;

beforeAll(() => server.listen({ onUnhandledFrame: 'error' }));
afterAll(() => server.close());
beforeEach(() => {
  stripe = new FakeStripe({ now: () => NOW });
  server.resetHandlers(...stripe.handlers());
});

const client = (secretKey = KEY) =>
  createStripeClient({ secretKey, maxNetworkRetries: 0, timeoutMs: 5000 });

const valid = (overrides: Record<string, string> = {}) => ({
  event_name: 'n8n_executions',
  identifier: `flowmeter:${Math.random().toString(36).slice(2)}`,
  timestamp: String(NOW / 1000 - 60),
  'payload[stripe_customer_id]': 'cus_contract',
  'payload[value]': '7',
  ...overrides,
});

async function postTo(
  path: string,
  form: Record<string, string>,
  headers: Record<string, string | null> = {},
  body?: string,
) {
  const sent: Record<string, string> = {
    authorization: `Bearer ${KEY}`,
    'stripe-version': STRIPE_API_VERSION,
    'content-type': 'application/x-www-form-urlencoded',
  };
  for (const [name, value] of Object.entries(headers)) {
    if (value === null) delete sent[name];
    else sent[name] = value;
  }
  const response = await fetch(`https://api.stripe.com${path}`, {
    method: 'POST',
    headers: sent,
    body: body ?? new URLSearchParams(form).toString(),
  });
  return { status: response.status, body: (await response.json()) as StripeErrorBody };
}

const post = (
  form: Record<string, string>,
  headers?: Record<string, string | null>,
  body?: string,
) => postTo('/v1/billing/meter_events', form, headers, body);

/** One meter event as stripe-node sends it, with what stripe-node throws as the answer. */
const oneEventThroughStripeNode = () =>
  client()
    .billing.meterEvents.create({
      event_name: 'n8n_executions',
      payload: { stripe_customer_id: 'cus_contract', value: '1' },
    })
    .catch((e: unknown) => e);

describe('the fake takes what stripe-node sends', () => {
  it('a meter event at the limits of every constraint', async () => {
    const event = await client().billing.meterEvents.create(
      {
        event_name: 'e'.repeat(100),
        identifier: 'i'.repeat(100),
        timestamp: NOW / 1000 - 35 * 86_400 + 60,
        payload: { stripe_customer_id: 'cus_contract', value: '12' },
      },
      { idempotencyKey: 'k'.repeat(255) },
    );
    expect(event).toMatchObject({ object: 'billing.meter_event', identifier: 'i'.repeat(100) });
    await client().billing.meterEvents.create({
      event_name: 'n8n_executions',
      identifier: 'five-minutes-ahead',
      timestamp: NOW / 1000 + 300,
      payload: { stripe_customer_id: 'cus_contract', value: '1' },
    });
    expect(stripe.refusals).toEqual([]);
    expect(stripe.accepted.size).toBe(2);
  });
});

describe('the fake refuses what Stripe refuses, in Stripe’s shape', () => {
  it.each<[string, Record<string, string>, number, Partial<StripeErrorBody['error']>]>([
    [
      'an unknown parameter',
      { ...valid(), 'payload[extra]': '1' },
      400,
      { code: 'parameter_unknown', param: 'payload[extra]' },
    ],
    [
      'no event_name',
      { ...valid(), event_name: '' },
      400,
      { code: 'parameter_missing', param: 'event_name' },
    ],
    [
      'no customer',
      { ...valid(), 'payload[stripe_customer_id]': '' },
      400,
      { code: 'parameter_missing', param: 'payload[stripe_customer_id]' },
    ],
    [
      'no value',
      { ...valid(), 'payload[value]': '' },
      400,
      { code: 'parameter_missing', param: 'payload[value]' },
    ],
    [
      'event_name over 100 characters',
      valid({ event_name: 'e'.repeat(101) }),
      400,
      { param: 'event_name' },
    ],
    [
      'identifier over 100 characters',
      valid({ identifier: 'i'.repeat(101) }),
      400,
      { param: 'identifier' },
    ],
    [
      'a timestamp older than 35 days',
      valid({ timestamp: String(NOW / 1000 - 35 * 86_400 - 1) }),
      400,
      { param: 'timestamp' },
    ],
    [
      'a timestamp over 5 minutes ahead',
      valid({ timestamp: String(NOW / 1000 + 301) }),
      400,
      { param: 'timestamp' },
    ],
    [
      'a timestamp that is not an integer',
      valid({ timestamp: '1.5e9' }),
      400,
      { code: 'parameter_invalid_integer', param: 'timestamp' },
    ],
    [
      'a value that is not an integer',
      valid({ 'payload[value]': '1.5' }),
      400,
      { code: 'parameter_invalid_integer', param: 'payload[value]' },
    ],
    [
      'a value that is not a number',
      valid({ 'payload[value]': 'seven' }),
      400,
      { param: 'payload[value]' },
    ],
  ])('%s: %i', async (_, form, status, error) => {
    const answer = await post(form);
    expect(answer.status).toBe(status);
    expect(answer.body.error).toMatchObject({ type: 'invalid_request_error', ...error });
    expect(answer.body.error.message).toEqual(expect.any(String));
    expect(stripe.accepted.size).toBe(0);
  });

  it('no key, a malformed key or a revoked key: 401', async () => {
    expect((await post(valid(), { authorization: null })).status).toBe(401);
    expect((await post(valid(), { authorization: 'Bearer pk_test_abc' })).status).toBe(401);
    stripe.revokeKey(KEY);
    const revoked = await oneEventThroughStripeNode();
    expect(revoked).toBeInstanceOf(Stripe.errors.StripeAuthenticationError);
    expect((revoked as Stripe.errors.StripeError).statusCode).toBe(401);
  });

  it('an API version other than the one pinned, or none: 400', async () => {
    expect((await post(valid(), { 'stripe-version': '2024-06-20' })).body.error.message).toMatch(
      /Invalid Stripe API version/,
    );
    expect((await post(valid(), { 'stripe-version': null })).status).toBe(400);
  });

  it('a body that is not form-encoded: 400', async () => {
    const answer = await post({}, { 'content-type': 'application/json' }, JSON.stringify(valid()));
    expect(answer.status).toBe(400);
    expect(answer.body.error.message).toMatch(/form-encoded/);
  });

  it('an idempotency key over 255 characters, or reused with other parameters: 400 idempotency_error', async () => {
    const long = await post(valid(), { 'idempotency-key': 'k'.repeat(256) });
    expect(long).toMatchObject({ status: 400, body: { error: { type: 'idempotency_error' } } });
    const first = valid();
    expect((await post(first, { 'idempotency-key': 'same' })).status).toBe(200);
    const replay = await post(first, { 'idempotency-key': 'same' });
    expect(replay.status).toBe(200);
    const reused = await post({ ...first, 'payload[value]': '8' }, { 'idempotency-key': 'same' });
    expect(reused).toMatchObject({ status: 400, body: { error: { type: 'idempotency_error' } } });
    expect(stripe.totalFor('cus_contract')).toBe(7);
  });

  it('an identifier it already holds, under a new key: 400 duplicate_meter_event', async () => {
    const form = valid();
    expect((await post(form, { 'idempotency-key': 'a' })).status).toBe(200);
    const again = await post(form, { 'idempotency-key': 'b' });
    expect(again).toMatchObject({
      status: 400,
      body: {
        error: {
          type: 'invalid_request_error',
          code: 'duplicate_meter_event',
          param: 'identifier',
        },
      },
    });
  });

  it('an identifier past its de-duplication window (identifierWindowMs) is a new event, counted again', async () => {
    let at = NOW;
    stripe = new FakeStripe({ now: () => at, identifierWindowMs: 24 * 3600_000 });
    server.resetHandlers(...stripe.handlers());
    const form = valid();
    expect((await post(form, { 'idempotency-key': 'a' })).status).toBe(200);
    at += 24 * 3600_000 - 1;
    expect((await post(form, { 'idempotency-key': 'b' })).body).toMatchObject({
      error: { code: 'duplicate_meter_event' },
    });
    at += 1;
    expect((await post(form, { 'idempotency-key': 'c' })).status).toBe(200);
    expect(stripe.totalFor('cus_contract')).toBe(14);
  });

  it('a 429 reaches stripe-node as a rate limit error carrying Retry-After', async () => {
    stripe.rateLimitNext(1, '4');
    const limited = await oneEventThroughStripeNode();
    expect(limited).toBeInstanceOf(Stripe.errors.StripeRateLimitError);
    expect((limited as Stripe.errors.StripeError).headers?.['retry-after']).toBe('4');
  });

  it('event summaries without a customer, with a window that ends before it starts or not on whole minutes: 400', async () => {
    const summaries = (params: Record<string, string>) =>
      fetch(
        `https://api.stripe.com/v1/billing/meters/mtr_test_1/event_summaries?${new URLSearchParams(params)}`,
        {
          headers: { authorization: `Bearer ${KEY}`, 'stripe-version': STRIPE_API_VERSION },
        },
      );
    expect((await summaries({ start_time: '60', end_time: '120' })).status).toBe(400);
    expect(
      (await summaries({ customer: 'cus_x', start_time: '300', end_time: '120' })).status,
    ).toBe(400);
    // stripe-node's MeterListEventSummariesParams: both "Must be aligned with minute boundaries".
    for (const window of [
      { start_time: '1', end_time: '120' },
      { start_time: '60', end_time: '121' },
    ]) {
      const unaligned = await summaries({ customer: 'cus_x', ...window });
      expect(unaligned.status).toBe(400);
      expect(await unaligned.json()).toMatchObject({
        error: { type: 'invalid_request_error', message: expect.stringContaining('minute') },
      });
    }
    expect((await summaries({ customer: 'cus_x', start_time: '60', end_time: '120' })).status).toBe(
      200,
    );
  });
});

// POST /v1/invoices/create_preview ----------------------------------------------------

const START = Date.UTC(2027, 0, 1) / 1000;
const END = Date.UTC(2027, 1, 1) / 1000;
/** The subscription the create_preview cases preview. */
const subscribe = () => {
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
};

async function meterEvent(value: number, timestamp = NOW / 1000 - 60) {
  await client().billing.meterEvents.create({
    event_name: 'n8n_executions',
    identifier: `id-${Math.random()}`,
    timestamp,
    payload: { stripe_customer_id: 'cus_contract', value: String(value) },
  });
}

const postPreview = (form: Record<string, string>) => postTo('/v1/invoices/create_preview', form);

describe('the fake takes what stripe-node sends for invoices.createPreview', () => {
  beforeEach(subscribe);

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

describe('create_preview: the fake refuses what Stripe refuses', () => {
  beforeEach(subscribe);

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
    const answer = await postPreview(form);
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
    const answer = await postPreview({ customer: 'cus_contract', subscription: 'sub_other' });
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

async function heldEvent(identifier = `flowmeter:${Math.random().toString(36).slice(2)}`) {
  expect((await post(valid({ identifier }))).status).toBe(200);
  return identifier;
}

describe('meter event adjustments, as Stripe takes and refuses them', () => {
  it('stripe-node cancels an event it holds; the summaries no longer count it', async () => {
    const identifier = await heldEvent();
    const adjustment = await client().billing.meterEventAdjustments.create(
      { event_name: 'n8n_executions', type: 'cancel', cancel: { identifier } },
      { idempotencyKey: `${identifier}:cancel` },
    );
    expect(adjustment).toMatchObject({
      object: 'billing.meter_event_adjustment',
      type: 'cancel',
      cancel: { identifier },
      event_name: 'n8n_executions',
    });
    expect(stripe.totalFor('cus_contract')).toBe(0);
    expect(stripe.refusals).toEqual([]);
  });

  it.each<[string, (id: string) => Record<string, string>, Partial<StripeErrorBody['error']>]>([
    [
      'no event_name',
      (id) => ({ type: 'cancel', 'cancel[identifier]': id }),
      { code: 'parameter_missing', param: 'event_name' },
    ],
    [
      'no type',
      (id) => ({ event_name: 'n8n_executions', 'cancel[identifier]': id }),
      { code: 'parameter_missing', param: 'type' },
    ],
    [
      'a type other than cancel',
      (id) => ({ event_name: 'n8n_executions', type: 'restore', 'cancel[identifier]': id }),
      { param: 'type' },
    ],
    [
      'no identifier to cancel',
      () => ({ event_name: 'n8n_executions', type: 'cancel' }),
      { code: 'parameter_missing', param: 'cancel[identifier]' },
    ],
    [
      'an unknown parameter',
      (id) => ({ event_name: 'n8n_executions', type: 'cancel', 'cancel[identifier]': id, x: '1' }),
      { code: 'parameter_unknown', param: 'x' },
    ],
    [
      'an identifier it does not hold',
      () => ({ event_name: 'n8n_executions', type: 'cancel', 'cancel[identifier]': 'unknown' }),
      { code: 'resource_missing', param: 'cancel[identifier]' },
    ],
    [
      'another event name than the event was sent under',
      (id) => ({ event_name: 'other_meter', type: 'cancel', 'cancel[identifier]': id }),
      { param: 'event_name' },
    ],
  ])('%s: 400', async (_, form, error) => {
    const identifier = await heldEvent();
    const answer = await postTo('/v1/billing/meter_event_adjustments', form(identifier));
    expect(answer.status).toBe(400);
    expect(answer.body.error).toMatchObject({ type: 'invalid_request_error', ...error });
    expect(stripe.totalFor('cus_contract')).toBe(7);
  });

  it('refuses to cancel twice, and more than 24 hours after it received the event', async () => {
    let now = NOW;
    stripe = new FakeStripe({ now: () => now });
    server.resetHandlers(...stripe.handlers());
    const cancel = (identifier: string) =>
      postTo('/v1/billing/meter_event_adjustments', {
        event_name: 'n8n_executions',
        type: 'cancel',
        'cancel[identifier]': identifier,
      });
    const once = await heldEvent();
    expect((await cancel(once)).status).toBe(200);
    expect((await cancel(once)).body.error).toMatchObject({ param: 'cancel[identifier]' });

    const old = await heldEvent();
    now += 24 * 3600_000 + 1000;
    const late = await cancel(old);
    expect(late.status).toBe(400);
    expect(late.body.error.message).toMatch(/within 24 hours/);
    expect(stripe.totalFor('cus_contract')).toBe(7);
  });

  it('replays a cancellation under the same idempotency key instead of refusing it', async () => {
    const identifier = await heldEvent();
    const form = { event_name: 'n8n_executions', type: 'cancel', 'cancel[identifier]': identifier };
    const key = { 'idempotency-key': 'cancel-once' };
    expect((await postTo('/v1/billing/meter_event_adjustments', form, key)).status).toBe(200);
    expect((await postTo('/v1/billing/meter_event_adjustments', form, key)).status).toBe(200);
    expect((await postTo('/v1/billing/meter_events', valid(), key)).body.error.type).toBe(
      'idempotency_error',
    );
  });
});

describe('customer balance transactions, as Stripe takes and refuses them', () => {
  it('stripe-node credits a customer and lists the credit back, newest first', async () => {
    const created = await client().customers.createBalanceTransaction(
      'cus_contract',
      {
        amount: -1250,
        currency: 'eur',
        description: 'flowmeter correction',
        metadata: { flowmeter_correction: 'flowmeter:correction:abc' },
      },
      { idempotencyKey: 'credit-1' },
    );
    expect(created).toMatchObject({
      object: 'customer_balance_transaction',
      amount: -1250,
      currency: 'eur',
      customer: 'cus_contract',
      type: 'adjustment',
      metadata: { flowmeter_correction: 'flowmeter:correction:abc' },
    });
    expect(created.id).toMatch(/^cbtxn_/);
    await client().customers.createBalanceTransaction('cus_contract', {
      amount: -1,
      currency: 'eur',
    });
    const listed = [];
    for await (const t of client().customers.listBalanceTransactions('cus_contract', {
      limit: 1,
    })) {
      listed.push(t.amount);
    }
    expect(listed).toEqual([-1, -1250]);
    expect(stripe.balanceOf('cus_contract')).toBe(-1251);
  });

  it.each<[string, Record<string, string>, Partial<StripeErrorBody['error']>]>([
    ['no amount', { currency: 'usd' }, { code: 'parameter_missing', param: 'amount' }],
    ['no currency', { amount: '-100' }, { code: 'parameter_missing', param: 'currency' }],
    ['an amount of 0', { amount: '0', currency: 'usd' }, { param: 'amount' }],
    ['an amount that is not an integer', { amount: '-1.5', currency: 'usd' }, { param: 'amount' }],
    [
      'a currency Stripe does not support',
      { amount: '-100', currency: 'xyz' },
      { param: 'currency' },
    ],
    ['an upper-case currency', { amount: '-100', currency: 'USD' }, { param: 'currency' }],
    [
      'a description over 350 characters',
      { amount: '-100', currency: 'usd', description: 'd'.repeat(351) },
      { param: 'description' },
    ],
    [
      'a metadata key over 40 characters',
      { amount: '-100', currency: 'usd', [`metadata[${'k'.repeat(41)}]`]: 'v' },
      {},
    ],
    [
      'an unknown parameter',
      { amount: '-100', currency: 'usd', customer_account: 'x' },
      { code: 'parameter_unknown' },
    ],
  ])('%s: 400', async (_, form, error) => {
    const answer = await postTo('/v1/customers/cus_contract/balance_transactions', form);
    expect(answer.status).toBe(400);
    expect(answer.body.error).toMatchObject({ type: 'invalid_request_error', ...error });
    expect(stripe.balanceOf('cus_contract')).toBe(0);
  });

  it('a customer it does not have: 404 resource_missing, nothing credited', async () => {
    stripe.rejectCustomer('cus_gone');
    const answer = await client()
      .customers.createBalanceTransaction('cus_gone', { amount: -100, currency: 'usd' })
      .catch((e: unknown) => e);
    expect(answer).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    expect(answer).toMatchObject({ statusCode: 404, code: 'resource_missing' });
    expect(stripe.balanceOf('cus_gone')).toBe(0);
  });
});
