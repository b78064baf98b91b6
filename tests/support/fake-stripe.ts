import { delay, HttpResponse, http, type RequestHandler } from 'msw';
import { STRIPE_API_VERSION } from '../../src/stripe/client.ts';

/**
 * Stripe's POST /v1/billing/meter_events, POST /v1/billing/meter_event_adjustments, GET
 * /v1/billing/meters/:id/event_summaries and POST/GET /v1/customers/:id/balance_transactions,
 * as stripe-node calls them, for msw. It refuses what Stripe refuses, in Stripe's error shape
 * (`{error: {type, code?, message, param?}}` with Stripe's HTTP status), so a request real
 * Stripe would turn away fails a test:
 *
 * - a missing or malformed secret key (401), or one revoked with `revokeKey` (401);
 * - a `Stripe-Version` other than the version the client pins (400);
 * - a body that is not form-encoded, a missing or unknown parameter, `event_name` or
 *   `identifier` over 100 characters, a `timestamp` older than 35 days or more than 5
 *   minutes ahead, a `payload[value]` that is not a string of an integer (400);
 * - an `Idempotency-Key` over 255 characters, or one reused with other parameters (400);
 * - a second event with an identifier it already holds (400 `duplicate_meter_event`), as
 *   long as it keeps the identifier (`identifierWindowMs`; after it, the same identifier
 *   is a new event, counted again);
 * - event summaries without a customer, or for a window that does not start and end on
 *   whole minutes (400);
 * - a cancellation (Meter Event Adjustment) without `event_name`, `type` or
 *   `cancel[identifier]`, of a type other than `cancel`, of an identifier it does not hold,
 *   under another event name, already cancelled, or more than 24 hours after it received the
 *   event (400); a cancelled event leaves the summaries;
 * - a balance transaction without `amount` or `currency`, with an amount that is not a
 *   non-zero integer, a currency Stripe does not support, a description over 350
 *   characters, metadata over Stripe's limits (400), or for a customer it does not have
 *   (404 `resource_missing`).
 *
 * And POST /v1/invoices/create_preview for the subscriptions it is given (`addSubscription`):
 * a customer or subscription it does not hold (400 `resource_missing`), a subscription of
 * another customer, neither a subscription nor other subscription details (required since
 * 2025-03-31.basil), an unknown parameter (400), and a subscription with nothing left to
 * invoice (400 `invoice_upcoming_none`). The metered lines bill the meter events it accepted
 * for the customer within the subscription's period, through the price's graduated tiers.
 *
 * It replays an idempotent request, keeps what it accepted by identifier, and can be told
 * to fail the next requests in the ways the network and Stripe do.
 */
export type StripeFault =
  | 'ok'
  | 'server_error'
  | 'rate_limited'
  | 'drop_before'
  | 'drop_after'
  | 'timeout_after'
  /** Accepted, and answered only when the test calls releaseHeld(). */
  | 'hold_after';

export interface AcceptedEvent {
  identifier: string;
  /** The fake's clock when a Meter Event Adjustment cancelled it (ms). */
  cancelledAt?: number;
  event_name: string;
  customer: string;
  value: number;
  timestamp: number;
  /** The fake's clock when it accepted the event (ms). */
  acceptedAt: number;
}

/** One meter event request as it arrived, whatever the answer. */
export interface ReceivedRequest {
  identifier: string | null;
  value: string | null;
  idempotencyKey: string | null;
}

/** A customer balance transaction it created (negative amount: a credit). */
export interface BalanceTransaction {
  id: string;
  object: 'customer_balance_transaction';
  amount: number;
  created: number;
  credit_note: null;
  currency: string;
  customer: string;
  description: string | null;
  ending_balance: number;
  invoice: null;
  livemode: false;
  metadata: Record<string, string>;
  type: 'adjustment';
}

export interface StripeErrorBody {
  error: { type: string; code?: string; message: string; param?: string };
}

/** A price as the fake bills it: licensed (a flat amount per period) or metered by tiers. */
export type FakePrice =
  | { id: string; type: 'licensed'; unitAmount: number }
  | {
      id: string;
      type: 'metered';
      meter: string;
      /** Graduated tiers, `upTo` null for the last one; amounts in minor units, fractional. */
      tiers: Array<{ upTo: number | null; unitAmountDecimal: string }>;
    };

export interface FakeSubscription {
  id: string;
  customer: string;
  /** Stripe's statuses; `canceled` and `incomplete_expired` have no upcoming invoice. */
  status: string;
  currency: string;
  /** The current period, Unix seconds. */
  periodStart: number;
  periodEnd: number;
  prices: FakePrice[];
}

// The top-level parameters Stripe documents for create_preview; the fake models the first three.
const PREVIEW_PARAMS = ['customer', 'subscription', 'expand'];
const PREVIEW_PARAMS_NOT_MODELLED = [
  'automatic_tax',
  'currency',
  'customer_account',
  'customer_details',
  'discounts',
  'invoice_items',
  'issuer',
  'on_behalf_of',
  'preview_mode',
  'schedule',
  'schedule_details',
  'subscription_details',
];
const EXPANDED_PRICE = 'lines.data.pricing.price_details.price';

/** Graduated tiers: each unit at the price of the tier it falls in; Stripe rounds the line. */
export function graduatedAmount(
  quantity: number,
  tiers: Array<{ upTo: number | null; unitAmountDecimal: string }>,
): number {
  let amount = 0;
  let below = 0;
  for (const tier of tiers) {
    const top = tier.upTo ?? Number.POSITIVE_INFINITY;
    const units = Math.max(0, Math.min(quantity, top) - below);
    amount += units * Number(tier.unitAmountDecimal);
    below = top;
    if (quantity <= top) break;
  }
  return Math.round(amount);
}

interface Answer {
  status: number;
  body: object;
  headers?: Record<string, string>;
}

export interface FakeStripeOptions {
  base?: string;
  /** The clock the timestamp window is checked against (ms since the epoch). */
  now?: () => number;
  /** The API version it accepts; the one flowmeter pins by default. */
  apiVersion?: string;
  /**
   * How long (ms, on its clock, from accepting an event) it de-duplicates the event's
   * identifier: Stripe promises at least 24 hours, not for ever. After that an event with
   * the same identifier is a new event. Default: it never forgets.
   */
  identifierWindowMs?: number;
}

const DAY_SECONDS = 86_400;
/** Stripe cancels a meter event only within 24 hours of receiving it. */
const CANCEL_WINDOW_MS = 24 * 3600_000;
const ADJUSTMENT_PARAMS = new Set(['event_name', 'type', 'cancel[identifier]']);
const BALANCE_TRANSACTION_PARAMS = /^(amount|currency|description|metadata\[[^\]]+\])$/;
/** Part of Stripe's supported currencies (docs.stripe.com/currencies): enough to refuse a made-up one. */
const CURRENCIES = new Set([
  'usd',
  'eur',
  'gbp',
  'chf',
  'cad',
  'aud',
  'nzd',
  'jpy',
  'sek',
  'nok',
  'dkk',
  'pln',
  'czk',
  'huf',
  'brl',
  'mxn',
  'inr',
  'sgd',
  'hkd',
  'krw',
  'zar',
  'ils',
  'aed',
  'try',
  'ron',
  'bgn',
]);
const KEY = /^(sk|rk)_(test|live)_[A-Za-z0-9]+$/;
const METER_EVENT_PARAMS = new Set([
  'event_name',
  'identifier',
  'timestamp',
  'payload[stripe_customer_id]',
  'payload[value]',
]);

export const stripeError = (
  status: number,
  error: StripeErrorBody['error'],
  headers: Record<string, string> = {},
): Answer => ({ status, body: { error } satisfies StripeErrorBody, headers });

const invalid = (message: string, param?: string, code?: string) =>
  stripeError(400, {
    type: 'invalid_request_error',
    message,
    ...(code ? { code } : {}),
    ...(param ? { param } : {}),
  });

/** Stripe's first checks of a form: every parameter known, the required ones present. */
function unknownOrMissing(
  form: URLSearchParams,
  known: (name: string) => boolean,
  required: readonly string[],
): Answer | undefined {
  for (const name of form.keys()) {
    if (!known(name))
      return invalid(`Received unknown parameter: ${name}`, name, 'parameter_unknown');
  }
  for (const name of required) {
    if (!form.get(name))
      return invalid(`Missing required param: ${name}.`, name, 'parameter_missing');
  }
  return undefined;
}

const retryAfterHeader = (seconds: string | undefined): Record<string, string> =>
  seconds === undefined ? {} : { 'retry-after': seconds };

export class FakeStripe {
  readonly accepted = new Map<string, AcceptedEvent>();
  /** identifiers sent again with a different value: must stay empty. */
  readonly conflicts: string[] = [];
  /** Every refusal answered, for tests that assert nothing was refused. */
  readonly refusals: StripeErrorBody['error'][] = [];
  requests = 0;
  readonly received: ReceivedRequest[] = [];
  /** Meter Event Adjustment requests as they arrived (the identifier each asked to cancel). */
  readonly adjustmentRequests: Array<string | null> = [];
  /** Balance transactions it created, by customer, oldest first. */
  readonly balanceTransactions = new Map<string, BalanceTransaction[]>();
  private readonly held: Array<() => void> = [];
  private readonly idempotent = new Map<string, { path: string; body: string; response: Answer }>();
  private faults: StripeFault[] = [];
  private nextFault: (() => StripeFault) | undefined;
  private readonly revokedKeys = new Set<string>();
  private readonly missingCustomers = new Set<string>();
  readonly subscriptions = new Map<string, FakeSubscription>();
  /** Every create_preview request's form, as sent. */
  readonly previewRequests: URLSearchParams[] = [];
  private previewFaults: Array<'server_error' | 'drop_before'> = [];
  private rateLimit: { retryAfter?: string } | undefined;
  private rateLimitedRequests = 0;
  /** The Retry-After (seconds) of a `rate_limited` fault; undefined sends none. */
  retryAfter: () => string | undefined = () => '0';

  readonly base: string;
  private readonly now: () => number;
  private readonly apiVersion: string;
  private readonly identifierWindowMs: number;

  constructor(options: FakeStripeOptions = {}) {
    this.base = options.base ?? 'https://api.stripe.com';
    this.now = options.now ?? Date.now;
    this.apiVersion = options.apiVersion ?? STRIPE_API_VERSION;
    this.identifierWindowMs = options.identifierWindowMs ?? Number.POSITIVE_INFINITY;
  }

  /** Answers 400 resource_missing for this customer, as Stripe does for a deleted one. */
  rejectCustomer(customer: string) {
    this.missingCustomers.add(customer);
  }

  /** The customer exists again (the operator linked the tenant to a live one). */
  restoreCustomer(customer: string) {
    this.missingCustomers.delete(customer);
  }

  /** A subscription (and its customer) the fake can preview invoices for. */
  addSubscription(subscription: FakeSubscription) {
    this.subscriptions.set(subscription.id, subscription);
  }

  /** The next create_preview requests fail this way, in order. */
  failPreviewNext(...faults: Array<'server_error' | 'drop_before'>) {
    this.previewFaults.push(...faults);
  }

  /** The key is revoked (rolled in the Dashboard): 401 for every request made with it. */
  revokeKey(key: string) {
    this.revokedKeys.add(key);
  }

  failNext(...faults: StripeFault[]) {
    this.faults.push(...faults);
  }

  /** Answers every request held by a `hold_after` fault. */
  releaseHeld() {
    for (const release of this.held.splice(0)) release();
  }

  /** Decide a fault for every request (e.g. from a seeded generator); undefined = none. */
  faultEach(pick: (() => StripeFault) | undefined) {
    this.nextFault = pick;
  }

  /**
   * Answers the next `requests` meter event requests with 429, with this Retry-After
   * (seconds) or none, as Stripe's rate limiter does.
   */
  rateLimitNext(requests: number, retryAfter?: string) {
    this.rateLimitedRequests = requests;
    this.rateLimit = retryAfter === undefined ? {} : { retryAfter };
  }

  /** Stripe keeps idempotency keys for 24 hours; identifiers it de-duplicates longer. */
  forgetIdempotencyKeys() {
    this.idempotent.clear();
  }

  totalFor(customer: string): number {
    let total = 0;
    for (const e of this.accepted.values()) {
      if (e.customer === customer && e.cancelledAt === undefined) total += e.value;
    }
    return total;
  }

  /** Σ of the customer's balance transactions (negative: credited). */
  balanceOf(customer: string): number {
    return (this.balanceTransactions.get(customer) ?? []).reduce((n, t) => n + t.amount, 0);
  }

  /** What Stripe checks of every request before it looks at the parameters. */
  private checkRequest(request: Request): Answer | undefined {
    const authorization = request.headers.get('authorization') ?? '';
    const key = authorization.replace(/^Bearer /, '');
    if (!authorization.startsWith('Bearer ') || !KEY.test(key) || this.revokedKeys.has(key)) {
      return stripeError(401, {
        type: 'invalid_request_error',
        message: `Invalid API Key provided: ${key.slice(0, 8)}${'*'.repeat(Math.max(0, key.length - 12))}${key.slice(-4)}`,
      });
    }
    const version = request.headers.get('stripe-version');
    if (version !== this.apiVersion) {
      return invalid(
        version
          ? `Invalid Stripe API version: ${version}`
          : `This fake accepts only requests pinned to ${this.apiVersion} (Stripe-Version header)`,
      );
    }
    return undefined;
  }

  /** The parameters of POST /v1/billing/meter_events, checked as Stripe documents them. */
  private checkMeterEvent(form: URLSearchParams): Answer | undefined {
    const refused = unknownOrMissing(form, (name) => METER_EVENT_PARAMS.has(name), [
      'event_name',
      'payload[stripe_customer_id]',
      'payload[value]',
    ]);
    if (refused) return refused;
    for (const name of ['event_name', 'identifier']) {
      const value = form.get(name);
      if (value !== null && value.length > 100) {
        return invalid(
          `Invalid string: ${value.slice(0, 20)}...; must be at most 100 characters`,
          name,
        );
      }
    }
    const value = form.get('payload[value]') ?? '';
    if (!/^-?\d+$/.test(value)) {
      return invalid(
        `Invalid payload[value]: must be a string of a whole number, got ${JSON.stringify(value)}`,
        'payload[value]',
        'parameter_invalid_integer',
      );
    }
    const timestamp = form.get('timestamp');
    if (timestamp !== null) {
      if (!/^\d+$/.test(timestamp)) {
        return invalid('Invalid integer: timestamp', 'timestamp', 'parameter_invalid_integer');
      }
      const nowSeconds = Math.floor(this.now() / 1000);
      const at = Number(timestamp);
      if (at < nowSeconds - 35 * DAY_SECONDS) {
        return invalid(
          'Timestamp must be within the past 35 calendar days.',
          'timestamp',
          'timestamp_too_far_in_past',
        );
      }
      if (at > nowSeconds + 300) {
        return invalid(
          'Timestamp must not be more than 5 minutes in the future.',
          'timestamp',
          'timestamp_in_future',
        );
      }
    }
    return undefined;
  }

  private accept(form: URLSearchParams): Answer {
    const identifier = form.get('identifier') ?? `fake_${this.accepted.size + 1}`;
    const customer = form.get('payload[stripe_customer_id]') ?? '';
    if (this.missingCustomers.has(customer)) {
      return invalid(
        `No such customer: '${customer}'`,
        'payload[stripe_customer_id]',
        'resource_missing',
      );
    }
    const value = Number(form.get('payload[value]'));
    const existing = this.accepted.get(identifier);
    if (existing && this.now() - existing.acceptedAt >= this.identifierWindowMs) {
      // Past its window the identifier is free again; the event it named still counts.
      this.accepted.delete(identifier);
      this.accepted.set(`${identifier} (forgotten ${existing.acceptedAt})`, existing);
    } else if (existing) {
      if (existing.value !== value) this.conflicts.push(identifier);
      return invalid(
        `An event already exists with identifier ${identifier}.`,
        'identifier',
        'duplicate_meter_event',
      );
    }
    const event: AcceptedEvent = {
      identifier,
      event_name: form.get('event_name') ?? '',
      customer,
      value,
      timestamp: Number(form.get('timestamp') ?? Math.floor(this.now() / 1000)),
      acceptedAt: this.now(),
    };
    this.accepted.set(identifier, event);
    return {
      status: 200,
      body: {
        object: 'billing.meter_event',
        created: Math.floor(this.now() / 1000),
        event_name: event.event_name,
        identifier,
        livemode: false,
        payload: { stripe_customer_id: event.customer, value: String(value) },
        timestamp: event.timestamp,
      },
    };
  }

  /**
   * What every POST goes through: the key and version, a form-encoded body, the idempotency
   * key (a replay answers the first answer; other parameters under the same key are
   * refused), then `handle` — whose answer is saved under the key once the parameters
   * passed validation, as Stripe does, refusals included.
   */
  private idempotentPost(
    request: Request,
    text: string,
    handle: (form: URLSearchParams) => { refused: Answer } | { answer: Answer },
  ): Answer {
    const refused = this.checkRequest(request);
    if (refused) return refused;
    if (!/^application\/x-www-form-urlencoded\b/.test(request.headers.get('content-type') ?? '')) {
      return invalid(
        'Stripe accepts form-encoded request bodies only (application/x-www-form-urlencoded).',
      );
    }
    const key = request.headers.get('idempotency-key');
    if (key !== null && key.length > 255) {
      return stripeError(400, {
        type: 'idempotency_error',
        message: 'Idempotency keys can be at most 255 characters long.',
      });
    }
    const path = new URL(request.url).pathname;
    const previous = key ? this.idempotent.get(key) : undefined;
    if (previous) {
      return previous.body === text && previous.path === path
        ? { ...previous.response, headers: { 'idempotent-replayed': 'true' } }
        : stripeError(400, {
            type: 'idempotency_error',
            message:
              'Keys for idempotent requests can only be used with the same parameters they were first used with.',
          });
    }
    const outcome = handle(new URLSearchParams(text));
    if ('refused' in outcome) return outcome.refused;
    if (key) this.idempotent.set(key, { path, body: text, response: outcome.answer });
    return outcome.answer;
  }

  /** Checks and answers one meter event request (form body as sent), faults aside. */
  private meterEvent(request: Request, text: string): Answer {
    return this.idempotentPost(request, text, (form) => {
      const refusedParameters = this.checkMeterEvent(form);
      return refusedParameters ? { refused: refusedParameters } : { answer: this.accept(form) };
    });
  }

  /** POST /v1/billing/meter_event_adjustments: cancels one event it holds, within 24 hours. */
  private adjustment(request: Request, text: string): Answer {
    return this.idempotentPost(request, text, (form) => {
      const refused = unknownOrMissing(form, (name) => ADJUSTMENT_PARAMS.has(name), [
        'event_name',
        'type',
      ]);
      if (refused) return { refused };
      if (form.get('type') !== 'cancel') {
        return {
          refused: invalid(
            `Invalid type: must be one of cancel, got ${JSON.stringify(form.get('type'))}`,
            'type',
            'parameter_invalid_string',
          ),
        };
      }
      const identifier = form.get('cancel[identifier]');
      if (!identifier) {
        return {
          refused: invalid(
            'Missing required param: cancel[identifier].',
            'cancel[identifier]',
            'parameter_missing',
          ),
        };
      }
      return { answer: this.cancel(form.get('event_name') ?? '', identifier) };
    });
  }

  private cancel(eventName: string, identifier: string): Answer {
    const event = this.accepted.get(identifier);
    if (!event) {
      return invalid(
        `No meter event with identifier ${identifier} was found.`,
        'cancel[identifier]',
        'resource_missing',
      );
    }
    if (event.event_name !== eventName) {
      return invalid(
        `The meter event with identifier ${identifier} was sent under another event name.`,
        'event_name',
      );
    }
    if (event.cancelledAt !== undefined) {
      return invalid(
        `The meter event with identifier ${identifier} has already been cancelled.`,
        'cancel[identifier]',
      );
    }
    if (this.now() - event.acceptedAt > CANCEL_WINDOW_MS) {
      return invalid(
        'Meter events can only be cancelled within 24 hours of Stripe receiving them.',
        'cancel[identifier]',
      );
    }
    event.cancelledAt = this.now();
    return {
      status: 200,
      body: {
        object: 'billing.meter_event_adjustment',
        cancel: { identifier },
        event_name: eventName,
        livemode: false,
        status: 'pending',
        type: 'cancel',
      },
    };
  }

  /** POST /v1/customers/:customer/balance_transactions. */
  private createBalanceTransaction(request: Request, text: string, customer: string): Answer {
    return this.idempotentPost(request, text, (form) => {
      const refused = unknownOrMissing(form, (name) => BALANCE_TRANSACTION_PARAMS.test(name), [
        'amount',
        'currency',
      ]);
      if (refused) return { refused };
      const amount = form.get('amount') ?? '';
      if (!/^-?[1-9]\d{0,11}$/.test(amount)) {
        return {
          refused: invalid(
            `Invalid amount: must be a non-zero integer, got ${JSON.stringify(amount)}`,
            'amount',
            'parameter_invalid_integer',
          ),
        };
      }
      const currency = form.get('currency') ?? '';
      if (!CURRENCIES.has(currency)) {
        return {
          refused: invalid(
            `Invalid currency: ${currency}. Stripe currently supports these currencies: ${[...CURRENCIES].join(', ')}`,
            'currency',
          ),
        };
      }
      const description = form.get('description');
      if (description !== null && description.length > 350) {
        return {
          refused: invalid('Invalid string: must be at most 350 characters', 'description'),
        };
      }
      const metadata: Record<string, string> = {};
      for (const [name, value] of form) {
        const key = /^metadata\[([^\]]+)\]$/.exec(name)?.[1];
        if (key === undefined) continue;
        if (key.length > 40 || value.length > 500) {
          return {
            refused: invalid(
              'Metadata keys can be at most 40 characters and values at most 500 characters.',
              name,
            ),
          };
        }
        metadata[key] = value;
      }
      if (Object.keys(metadata).length > 50) {
        return { refused: invalid('Metadata can have at most 50 keys.', 'metadata') };
      }
      if (this.missingCustomers.has(customer)) {
        return {
          answer: stripeError(404, {
            type: 'invalid_request_error',
            code: 'resource_missing',
            message: `No such customer: '${customer}'`,
            param: 'customer',
          }),
        };
      }
      const list = this.balanceTransactions.get(customer) ?? [];
      const transaction: BalanceTransaction = {
        id: `cbtxn_${customer.slice(4)}${list.length + 1}`,
        object: 'customer_balance_transaction',
        amount: Number(amount),
        created: Math.floor(this.now() / 1000),
        credit_note: null,
        currency,
        customer,
        description,
        ending_balance: this.balanceOf(customer) + Number(amount),
        invoice: null,
        livemode: false,
        metadata,
        type: 'adjustment',
      };
      this.balanceTransactions.set(customer, [...list, transaction]);
      return { answer: { status: 200, body: transaction } };
    });
  }

  /** GET /v1/customers/:customer/balance_transactions: newest first, paginated. */
  private listBalanceTransactions(request: Request, customer: string): Answer {
    const refused = this.checkRequest(request);
    if (refused) return refused;
    const url = new URL(request.url);
    const limit = Number(url.searchParams.get('limit') ?? '10');
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
      return invalid('Invalid limit: must be an integer from 1 to 100', 'limit');
    }
    if (this.missingCustomers.has(customer)) {
      return stripeError(404, {
        type: 'invalid_request_error',
        code: 'resource_missing',
        message: `No such customer: '${customer}'`,
        param: 'customer',
      });
    }
    const newestFirst = [...(this.balanceTransactions.get(customer) ?? [])].reverse();
    const after = url.searchParams.get('starting_after');
    const from = after ? newestFirst.findIndex((t) => t.id === after) + 1 : 0;
    const data = newestFirst.slice(from, from + limit);
    return {
      status: 200,
      body: {
        object: 'list',
        url: `/v1/customers/${customer}/balance_transactions`,
        has_more: from + limit < newestFirst.length,
        data,
      },
    };
  }

  /** Stripe's meter event summaries: accepted values per customer within [start, end). */
  private summaries(request: Request, meterId: string): Answer {
    const refused = this.checkRequest(request);
    if (refused) return refused;
    const url = new URL(request.url);
    for (const name of ['customer', 'start_time', 'end_time']) {
      if (!url.searchParams.get(name)) {
        return invalid(`Missing required param: ${name}.`, name, 'parameter_missing');
      }
    }
    const customer = url.searchParams.get('customer') ?? '';
    if (this.missingCustomers.has(customer)) {
      return invalid(`No such customer: '${customer}'`, 'customer', 'resource_missing');
    }
    const start = Number(url.searchParams.get('start_time'));
    const end = Number(url.searchParams.get('end_time'));
    if (!Number.isInteger(start) || !Number.isInteger(end) || start >= end) {
      return invalid('start_time must be an integer before end_time', 'start_time');
    }
    // stripe-node's MeterListEventSummariesParams: both "Must be aligned with minute boundaries".
    for (const [name, at] of [
      ['start_time', start],
      ['end_time', end],
    ] as const) {
      if (at % 60 !== 0) {
        return invalid(`${name} must be aligned with minute boundaries.`, name);
      }
    }
    let total = this.summaryOffset.get(customer) ?? 0;
    for (const e of this.accepted.values()) {
      if (
        e.customer === customer &&
        e.cancelledAt === undefined &&
        e.timestamp >= start &&
        e.timestamp < end
      ) {
        total += e.value;
      }
    }
    return {
      status: 200,
      body: {
        object: 'list',
        url: `/v1/billing/meters/${meterId}/event_summaries`,
        has_more: false,
        data: [
          {
            id: `mtrsum_${start}`,
            object: 'billing.meter_event_summary',
            aggregated_value: total,
            end_time: end,
            livemode: false,
            meter: meterId,
            start_time: start,
          },
        ],
      },
    };
  }

  private invoiceLine(subscription: FakeSubscription, price: FakePrice, expand: boolean) {
    let quantity = 1;
    let amount = 0;
    if (price.type === 'licensed') {
      amount = price.unitAmount;
    } else {
      quantity = 0;
      for (const e of this.accepted.values()) {
        if (
          e.customer === subscription.customer &&
          e.timestamp >= subscription.periodStart &&
          e.timestamp < subscription.periodEnd
        ) {
          quantity += e.value;
        }
      }
      quantity += this.summaryOffset.get(subscription.customer) ?? 0;
      amount = graduatedAmount(quantity, price.tiers);
    }
    const priceObject = {
      id: price.id,
      object: 'price',
      currency: subscription.currency,
      billing_scheme: price.type === 'metered' ? 'tiered' : 'per_unit',
      recurring: {
        interval: 'month',
        interval_count: 1,
        usage_type: price.type,
        meter: price.type === 'metered' ? price.meter : null,
      },
      unit_amount: price.type === 'licensed' ? price.unitAmount : null,
    };
    return {
      id: `il_tmp_${price.id}`,
      object: 'line_item',
      amount,
      currency: subscription.currency,
      description: null,
      discount_amounts: [],
      discountable: true,
      discounts: [],
      invoice: null,
      livemode: false,
      metadata: {},
      parent: {
        type: 'subscription_item_details',
        invoice_item_details: null,
        subscription_item_details: {
          invoice_item: null,
          proration: false,
          proration_details: { credited_items: null },
          subscription: subscription.id,
          subscription_item: `si_${price.id}`,
        },
      },
      period: { start: subscription.periodStart, end: subscription.periodEnd },
      pretax_credit_amounts: [],
      pricing: {
        type: 'price_details',
        price_details: { price: expand ? priceObject : price.id, product: `prod_${price.id}` },
        unit_amount_decimal: null,
      },
      quantity,
      quantity_decimal: String(quantity),
      subtotal: amount,
      taxes: [],
    };
  }

  /** POST /v1/invoices/create_preview, checked as Stripe documents it. */
  private preview(request: Request, form: URLSearchParams): Answer {
    const refused = this.checkRequest(request);
    if (refused) return refused;
    if (!/^application\/x-www-form-urlencoded\b/.test(request.headers.get('content-type') ?? '')) {
      return invalid(
        'Stripe accepts form-encoded request bodies only (application/x-www-form-urlencoded).',
      );
    }
    const expand: string[] = [];
    for (const [name, value] of form) {
      const top = name.replace(/\[.*$/, '');
      if (PREVIEW_PARAMS_NOT_MODELLED.includes(top)) {
        throw new Error(`the test Stripe does not model create_preview's ${top}`);
      }
      if (!PREVIEW_PARAMS.includes(top)) {
        return invalid(`Received unknown parameter: ${name}`, name, 'parameter_unknown');
      }
      if (top === 'expand') expand.push(value);
    }
    const subscriptionId = form.get('subscription');
    if (!subscriptionId) {
      return invalid(
        'You must pass one of subscription, subscription_details.items, schedule, schedule_details.phases or invoice_items to preview an invoice.',
        'subscription',
        'parameter_missing',
      );
    }
    const customer = form.get('customer');
    const known = [...this.subscriptions.values()].some((s) => s.customer === customer);
    if (customer !== null && (!known || this.missingCustomers.has(customer))) {
      return invalid(`No such customer: '${customer}'`, 'customer', 'resource_missing');
    }
    const subscription = this.subscriptions.get(subscriptionId);
    if (!subscription) {
      return invalid(
        `No such subscription: '${subscriptionId}'`,
        'subscription',
        'resource_missing',
      );
    }
    if (customer !== null && subscription.customer !== customer) {
      return invalid(
        `The subscription ${subscriptionId} does not belong to customer ${customer}.`,
        'subscription',
      );
    }
    if (subscription.status === 'canceled' || subscription.status === 'incomplete_expired') {
      return invalid(
        `No upcoming invoices for customer: ${subscription.customer}`,
        undefined,
        'invoice_upcoming_none',
      );
    }
    const lines = subscription.prices.map((price) =>
      this.invoiceLine(subscription, price, expand.includes(EXPANDED_PRICE)),
    );
    const subtotal = lines.reduce((sum, line) => sum + line.amount, 0);
    return {
      status: 200,
      body: {
        id: `upcoming_in_${subscription.id.slice(4)}`,
        object: 'invoice',
        customer: subscription.customer,
        currency: subscription.currency,
        status: 'draft',
        livemode: false,
        parent: {
          type: 'subscription_details',
          quote_details: null,
          subscription_details: { metadata: {}, subscription: subscription.id },
        },
        period_start: subscription.periodStart,
        period_end: subscription.periodEnd,
        subtotal,
        subtotal_excluding_tax: subtotal,
        total: subtotal,
        total_excluding_tax: subtotal,
        amount_due: subtotal,
        amount_paid: 0,
        amount_remaining: subtotal,
        starting_balance: 0,
        lines: {
          object: 'list',
          data: lines,
          has_more: false,
          total_count: lines.length,
          url: `/v1/invoices/upcoming_in_${subscription.id.slice(4)}/lines`,
        },
      },
    };
  }

  /** Makes Stripe's summary for a customer disagree by `delta` (as a lost event would). */
  readonly summaryOffset = new Map<string, number>();

  private respond(answer: Answer) {
    if (answer.status >= 400) this.refusals.push((answer.body as StripeErrorBody).error);
    return HttpResponse.json(answer.body, {
      status: answer.status,
      headers: answer.headers ?? {},
    });
  }

  /** A POST answered through the faults it was told to inject (rate limit first). */
  private async withFaults(answer: () => Answer) {
    if (this.rateLimitedRequests > 0) {
      this.rateLimitedRequests -= 1;
      return this.respond(
        stripeError(
          429,
          {
            type: 'invalid_request_error',
            code: 'rate_limit',
            message: 'Request rate limit exceeded. Retry after a short wait.',
          },
          retryAfterHeader(this.rateLimit?.retryAfter),
        ),
      );
    }
    const fault = this.faults.shift() ?? this.nextFault?.() ?? 'ok';
    if (fault === 'server_error') {
      return this.respond(stripeError(500, { type: 'api_error', message: 'Stripe had a problem' }));
    }
    if (fault === 'rate_limited') {
      return this.respond(
        stripeError(
          429,
          { type: 'invalid_request_error', code: 'rate_limit', message: 'Too many requests' },
          retryAfterHeader(this.retryAfter()),
        ),
      );
    }
    if (fault === 'drop_before') return HttpResponse.error();
    const answered = answer();
    if (fault === 'drop_after') return HttpResponse.error();
    // Longer than the client's timeout in these tests; msw answers late rather than never.
    if (fault === 'timeout_after') await delay(120);
    if (fault === 'hold_after') await new Promise<void>((release) => this.held.push(release));
    return this.respond(answered);
  }

  handlers(): RequestHandler[] {
    return [
      http.get(`${this.base}/v1/billing/meters/:meter/event_summaries`, ({ request, params }) =>
        this.respond(this.summaries(request, String(params.meter))),
      ),
      http.post(`${this.base}/v1/invoices/create_preview`, async ({ request }) => {
        const form = new URLSearchParams(await request.text());
        this.previewRequests.push(form);
        const fault = this.previewFaults.shift();
        if (fault === 'drop_before') return HttpResponse.error();
        if (fault === 'server_error') {
          return this.respond(
            stripeError(500, { type: 'api_error', message: 'Stripe had a problem' }),
          );
        }
        return this.respond(this.preview(request, form));
      }),
      http.post(`${this.base}/v1/billing/meter_events`, async ({ request }) => {
        this.requests += 1;
        const text = await request.text();
        const form = new URLSearchParams(text);
        this.received.push({
          identifier: form.get('identifier'),
          value: form.get('payload[value]'),
          idempotencyKey: request.headers.get('idempotency-key'),
        });
        return this.withFaults(() => this.meterEvent(request, text));
      }),
      http.post(`${this.base}/v1/billing/meter_event_adjustments`, async ({ request }) => {
        const text = await request.text();
        this.adjustmentRequests.push(new URLSearchParams(text).get('cancel[identifier]'));
        return this.withFaults(() => this.adjustment(request, text));
      }),
      http.post(
        `${this.base}/v1/customers/:customer/balance_transactions`,
        async ({ request, params }) => {
          const text = await request.text();
          return this.withFaults(() =>
            this.createBalanceTransaction(request, text, String(params.customer)),
          );
        },
      ),
      http.get(`${this.base}/v1/customers/:customer/balance_transactions`, ({ request, params }) =>
        this.respond(this.listBalanceTransactions(request, String(params.customer))),
      ),
    ];
  }
}
