import Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import { retryAfterMs, stripeFailureKind } from '../../src/stripe/errors.ts';

/**
 * Class: Stripe's answers, read by their status and error code. A duplicate identifier
 * means an earlier attempt reached Stripe (recorded as sent); matching its message text
 * instead would break the day Stripe rewords it, or mistake another refusal for it.
 */
const raw = (statusCode: number, fields: { code?: string; message?: string; type?: string }) =>
  Stripe.errors.StripeError.generate({
    statusCode,
    type: fields.type ?? 'invalid_request_error',
    message: fields.message ?? 'refused',
    ...(fields.code ? { code: fields.code } : {}),
  } as never);

describe('stripeFailureKind', () => {
  it('a 400 duplicate_meter_event is a duplicate, whatever the message says', () => {
    expect(
      stripeFailureKind(raw(400, { code: 'duplicate_meter_event', message: 'Ein Ereignis …' })),
    ).toBe('duplicate');
  });

  it('the duplicate sentence without the code is not taken for a duplicate', () => {
    expect(
      stripeFailureKind(
        raw(400, { message: 'An event already exists with identifier flowmeter:x:1:2.' }),
      ),
    ).toBe('refused');
    expect(
      stripeFailureKind(
        raw(400, { code: 'resource_missing', message: 'identifier already exists elsewhere' }),
      ),
    ).toBe('refused');
  });

  it('reads a refused key, a rate limit, a refusal and unavailability from the status', () => {
    expect(stripeFailureKind(raw(401, { message: 'Invalid API Key provided' }))).toBe('auth');
    expect(stripeFailureKind(raw(403, { message: 'The provided key does not have access' }))).toBe(
      'auth',
    );
    expect(stripeFailureKind(raw(429, { code: 'rate_limit' }))).toBe('rate_limited');
    expect(stripeFailureKind(raw(400, { code: 'rate_limit' }))).toBe('rate_limited');
    expect(stripeFailureKind(raw(400, { code: 'parameter_missing' }))).toBe('refused');
    expect(stripeFailureKind(raw(500, { type: 'api_error' }))).toBe('unavailable');
    expect(stripeFailureKind(new Stripe.errors.StripeConnectionError({ message: 'reset' }))).toBe(
      'unavailable',
    );
    expect(stripeFailureKind(new Error('socket hang up'))).toBe('unavailable');
  });
});

describe('retryAfterMs', () => {
  const limited = (retryAfter?: string) =>
    Object.assign(raw(429, { code: 'rate_limit' }), {
      headers: retryAfter === undefined ? {} : { 'retry-after': retryAfter },
    });

  it('reads seconds and HTTP dates; nothing when Stripe names no wait', () => {
    const now = Date.UTC(2027, 0, 1);
    expect(retryAfterMs(limited('2'), now)).toBe(2000);
    expect(retryAfterMs(limited('0.5'), now)).toBe(500);
    expect(retryAfterMs(limited(new Date(now + 7000).toUTCString()), now)).toBe(7000);
    expect(retryAfterMs(limited(new Date(now - 7000).toUTCString()), now)).toBe(0);
    expect(retryAfterMs(limited(), now)).toBeUndefined();
    expect(retryAfterMs(limited('soon'), now)).toBeUndefined();
    expect(retryAfterMs(new Error('x'), now)).toBeUndefined();
  });
});
