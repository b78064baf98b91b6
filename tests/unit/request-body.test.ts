import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  createStripeWebhookHandler,
  MAX_BODY_BYTES,
} from '../../src/billing/stripe-webhook-handler.ts';
import { readBodyWithin } from '../../src/http/request-body.ts';
import { readJsonRequest } from '../../src/http/responses.ts';
import { silentLogger } from '../../src/observability/logger.ts';

/**
 * A POST whose body streams `total` bytes in 1 KiB chunks with no Content-Length (chunked),
 * counting how many bytes the reader pulled.
 */
function streamed(total: number, headers: Record<string, string> = {}) {
  const pulled = { bytes: 0, cancelled: false };
  const chunk = new TextEncoder().encode(' '.repeat(1024));
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (pulled.bytes >= total) return controller.close();
      pulled.bytes += chunk.byteLength;
      controller.enqueue(chunk);
    },
    cancel() {
      pulled.cancelled = true;
    },
  });
  const req = new Request('http://localhost/api', {
    method: 'POST',
    headers,
    body,
    duplex: 'half',
  } as RequestInit & { duplex: 'half' });
  return { req, pulled };
}

describe('readBodyWithin', () => {
  it('stops reading a body sent without Content-Length once it passes the limit', async () => {
    const { req, pulled } = streamed(64 * 1024 * 1024);
    expect(await readBodyWithin(req, 8 * 1024)).toBeUndefined();
    // Cut just past the limit, not read to its 64 MiB end.
    expect(pulled.bytes).toBeLessThan(64 * 1024);
    expect(pulled.cancelled).toBe(true);
  });

  it('refuses a declared Content-Length above the limit before reading a byte', async () => {
    const { req, pulled } = streamed(16 * 1024, { 'content-length': String(16 * 1024) });
    expect(await readBodyWithin(req, 8 * 1024)).toBeUndefined();
    // Nothing beyond the one chunk a stream pulls ahead by itself.
    expect(pulled.bytes).toBeLessThanOrEqual(1024);
  });

  it('returns a body within the limit whole, and an empty one as no bytes', async () => {
    const { req } = streamed(8 * 1024);
    expect((await readBodyWithin(req, 8 * 1024))?.byteLength).toBe(8 * 1024);
    expect(await readBodyWithin(new Request('http://localhost/api'), 10)).toEqual(new Uint8Array());
  });
});

describe('the Stripe webhook endpoint', () => {
  it('answers 413 for a chunked body past 1 MiB without reading it to its end or touching anything', async () => {
    const untouched = new Proxy(
      {},
      {
        get: () => {
          throw new Error("an oversized body reached the handler's dependencies");
        },
      },
    );
    const handler = createStripeWebhookHandler({
      db: untouched as never,
      stripe: untouched as never,
      webhookSecret: 'whsec_test',
      log: silentLogger,
    });
    const { req, pulled } = streamed(64 * 1024 * 1024, { 'stripe-signature': 't=1,v1=00' });
    expect((await handler(req)).status).toBe(413);
    expect(pulled.bytes).toBeLessThan(MAX_BODY_BYTES + 64 * 1024);
  });
});

describe('readJsonRequest', () => {
  const spec = { maxBytes: 8 * 1024, schema: z.unknown(), invalid: 'no' };
  const status = async (req: Request) => {
    const read = await readJsonRequest(req, spec);
    return read.ok ? 200 : read.response.status;
  };

  it('answers 413 for a chunked body past the limit, without reading it to its end', async () => {
    const { req, pulled } = streamed(64 * 1024 * 1024, { 'content-type': 'application/json' });
    expect(await status(req)).toBe(413);
    expect(pulled.bytes).toBeLessThan(64 * 1024);
  });

  it('takes application/json with parameters, and refuses other types that begin alike with 415', async () => {
    const post = (type: string) =>
      new Request('http://localhost/api', {
        method: 'POST',
        headers: { 'content-type': type },
        body: '{}',
      });
    expect(await status(post('application/json'))).toBe(200);
    expect(await status(post('Application/JSON; charset=utf-8'))).toBe(200);
    expect(await status(post('application/json-patch+json'))).toBe(415);
    expect(await status(post('application/json5'))).toBe(415);
  });
});
