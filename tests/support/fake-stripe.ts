import { delay, HttpResponse, http, type RequestHandler } from 'msw';

/**
 * Stripe's POST /v1/billing/meter_events, as stripe-node calls it (form-encoded, with an
 * Idempotency-Key), for msw. Keeps what it accepted by identifier; replays an idempotent
 * request; refuses a second event with an identifier it already has; and can be told to
 * fail the next requests in the ways the network and Stripe do.
 */
export type StripeFault =
  | 'ok'
  | 'server_error'
  | 'rate_limited'
  | 'drop_before'
  | 'drop_after'
  | 'timeout_after';

export interface AcceptedEvent {
  identifier: string;
  event_name: string;
  customer: string;
  value: number;
  timestamp: number;
}

export class FakeStripe {
  readonly accepted = new Map<string, AcceptedEvent>();
  /** identifiers sent again with a different value: must stay empty. */
  readonly conflicts: string[] = [];
  requests = 0;
  private readonly idempotent = new Map<string, { body: string; response: object }>();
  private faults: StripeFault[] = [];
  private nextFault: (() => StripeFault) | undefined;

  readonly base: string;

  constructor(base = 'https://api.stripe.com') {
    this.base = base;
  }

  private readonly missingCustomers = new Set<string>();

  /** Answers 400 resource_missing for this customer, as Stripe does for a deleted one. */
  rejectCustomer(customer: string) {
    this.missingCustomers.add(customer);
  }

  failNext(...faults: StripeFault[]) {
    this.faults.push(...faults);
  }

  /** Decide a fault for every request (e.g. from a seeded generator); undefined = none. */
  faultEach(pick: (() => StripeFault) | undefined) {
    this.nextFault = pick;
  }

  /** Stripe keeps idempotency keys for 24 hours; identifiers it de-duplicates longer. */
  forgetIdempotencyKeys() {
    this.idempotent.clear();
  }

  totalFor(customer: string): number {
    let total = 0;
    for (const e of this.accepted.values()) if (e.customer === customer) total += e.value;
    return total;
  }

  private accept(form: URLSearchParams): { status: number; body: object } {
    const identifier = form.get('identifier') ?? '';
    const customer = form.get('payload[stripe_customer_id]') ?? '';
    if (this.missingCustomers.has(customer)) {
      return {
        status: 400,
        body: {
          error: {
            type: 'invalid_request_error',
            code: 'resource_missing',
            message: `No such customer: '${customer}'`,
          },
        },
      };
    }
    const value = Number(form.get('payload[value]'));
    const existing = this.accepted.get(identifier);
    if (existing) {
      if (existing.value !== value) this.conflicts.push(identifier);
      return {
        status: 400,
        body: {
          error: {
            type: 'invalid_request_error',
            code: 'resource_already_exists',
            message: `A meter event with identifier ${identifier} already exists.`,
          },
        },
      };
    }
    const event: AcceptedEvent = {
      identifier,
      event_name: form.get('event_name') ?? '',
      customer: form.get('payload[stripe_customer_id]') ?? '',
      value,
      timestamp: Number(form.get('timestamp')),
    };
    this.accepted.set(identifier, event);
    return {
      status: 200,
      body: {
        object: 'billing.meter_event',
        created: Math.floor(Date.now() / 1000),
        event_name: event.event_name,
        identifier,
        livemode: false,
        payload: { stripe_customer_id: event.customer, value: String(value) },
        timestamp: event.timestamp,
      },
    };
  }

  /** Stripe's meter event summaries: accepted values per customer within [start, end). */
  private summaries(meterId: string, url: URL) {
    const customer = url.searchParams.get('customer');
    const start = Number(url.searchParams.get('start_time'));
    const end = Number(url.searchParams.get('end_time'));
    let total = this.summaryOffset.get(customer ?? '') ?? 0;
    for (const e of this.accepted.values()) {
      if (e.customer === customer && e.timestamp >= start && e.timestamp < end) total += e.value;
    }
    return HttpResponse.json({
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
    });
  }

  /** Makes Stripe's summary for a customer disagree by `delta` (as a lost event would). */
  readonly summaryOffset = new Map<string, number>();

  handlers(): RequestHandler[] {
    return [
      http.get(`${this.base}/v1/billing/meters/:meter/event_summaries`, ({ request, params }) =>
        this.summaries(String(params.meter), new URL(request.url)),
      ),
      http.post(`${this.base}/v1/billing/meter_events`, async ({ request }) => {
        this.requests += 1;
        const text = await request.text();
        const form = new URLSearchParams(text);
        const fault = this.faults.shift() ?? this.nextFault?.() ?? 'ok';
        const error = (
          status: number,
          type: string,
          message: string,
          headers: Record<string, string> = {},
        ) => HttpResponse.json({ error: { type, message } }, { status, headers });
        if (fault === 'server_error') return error(500, 'api_error', 'Stripe had a problem');
        if (fault === 'rate_limited') {
          return error(429, 'invalid_request_error', 'Too many requests', { 'retry-after': '0' });
        }
        if (fault === 'drop_before') return HttpResponse.error();

        const key = request.headers.get('idempotency-key');
        const previous = key ? this.idempotent.get(key) : undefined;
        let outcome: { status: number; body: object };
        if (previous) {
          outcome =
            previous.body === text
              ? { status: 200, body: previous.response }
              : {
                  status: 400,
                  body: {
                    error: {
                      type: 'idempotency_error',
                      message:
                        'Keys for idempotent requests can only be used with the same parameters they were first used with.',
                    },
                  },
                };
        } else {
          outcome = this.accept(form);
          if (key && outcome.status === 200)
            this.idempotent.set(key, { body: text, response: outcome.body });
        }
        if (fault === 'drop_after') return HttpResponse.error();
        // Longer than the client's timeout in these tests; msw answers late rather than never.
        if (fault === 'timeout_after') await delay(120);
        return HttpResponse.json(outcome.body, {
          status: outcome.status,
          headers: previous ? { 'idempotent-replayed': 'true' } : {},
        });
      }),
    ];
  }
}
