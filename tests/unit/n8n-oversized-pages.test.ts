import fc from 'fast-check';
import { HttpResponse, http } from 'msw';
import { describe, expect, it } from 'vitest';
import { createN8nClient } from '../../src/n8n/client.ts';
import { useMockServer } from '../support/msw.ts';
import { failureOf } from '../support/n8n-failure.ts';

/**
 * A page larger than asked, and very large or deeply nested bodies: refused with a clear
 * error, in bounded memory (the body is not read past the limit), never a stack overflow.
 */

const BASE_URL = 'https://big.n8n.example';
const API_KEY = 'n8n_api_oversized_key';
const server = useMockServer();

const client = (maxBodyBytes?: number) =>
  createN8nClient({
    baseUrl: BASE_URL,
    apiKey: API_KEY,
    retries: 0,
    timeoutMs: 10_000,
    ...(maxBodyBytes ? { maxBodyBytes } : {}),
  });

const item = (id: number) => ({
  id: String(id),
  finished: true,
  mode: 'trigger',
  status: 'success',
  startedAt: '2026-11-20T10:00:00.000Z',
  stoppedAt: '2026-11-20T10:00:01.000Z',
  workflowId: 'wf1',
});

const serveJson = (json: object) =>
  server.use(http.get(`${BASE_URL}/api/v1/executions`, () => HttpResponse.json(json)));
const serve = (body: string | ReadableStream<Uint8Array>, init: ResponseInit = {}) =>
  server.use(http.get(`${BASE_URL}/api/v1/executions`, () => new HttpResponse(body, init)));

describe('a page larger than asked', () => {
  it('is refused for every limit and any number of items above it', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 250 }),
        fc.integer({ min: 1, max: 300 }),
        async (limit, extra) => {
          const count = Math.min(limit + extra, 600);
          serveJson({
            data: Array.from({ length: count }, (_, i) => item(count - i)),
            nextCursor: null,
          });
          const error = await failureOf(client().listExecutions({ limit }));
          expect(error.kind).toBe('malformed');
          expect(error.message).toContain(
            `sent ${count} executions for a page of at most ${limit}`,
          );
        },
      ),
      { numRuns: 30 },
    );
  });

  it('is accepted up to the limit inside a resumed cursor (n8n lets the cursor win)', async () => {
    serveJson({ data: Array.from({ length: 20 }, (_, i) => item(100 - i)), nextCursor: null });
    const cursor = Buffer.from(JSON.stringify({ lastId: '101', limit: 20 })).toString('base64');
    const page = await client().listExecutions({ limit: 5, cursor });
    expect(page.data).toHaveLength(20);
  });
});

describe('a very large body', () => {
  it('declared by Content-Length is refused unread', async () => {
    let pulled = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled += 1;
        controller.enqueue(new Uint8Array(64 * 1024).fill(32));
      },
    });
    serve(body, { headers: { 'content-length': String(50 * 1024 * 1024) } });
    const error = await failureOf(client().listExecutions({ limit: 10 }));
    expect(error.kind).toBe('too_large');
    expect(error.message).toMatch(/larger than 4194304 bytes/);
    // A stream prefetches a few chunks of 64 kB; far less than the limit was read.
    expect(pulled).toBeLessThan(16);
  });

  it('streamed without a length (tens of MB) is cut at the limit, not buffered', async () => {
    let sent = 0;
    const chunk = new TextEncoder().encode(`${JSON.stringify(item(1))},`.repeat(1000));
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"data":['));
      },
      pull(controller) {
        if (sent > 50 * 1024 * 1024) return controller.close();
        sent += chunk.byteLength;
        controller.enqueue(chunk);
      },
    });
    serve(body);
    const error = await failureOf(client(1024 * 1024).listExecutions({ limit: 10 }));
    expect(error.kind).toBe('too_large');
    expect(error.retryable).toBe(false);
    // Reading stopped soon after the limit: a few chunks past it at most, not 50 MB.
    expect(sent).toBeLessThan(4 * 1024 * 1024);
  });

  it('nested a million levels deep gives an unreadable-page error, not a stack overflow', async () => {
    const depth = 1_000_000;
    const nested = `${'['.repeat(depth)}${']'.repeat(depth)}`;
    for (const body of [
      `{"data":${nested},"nextCursor":null}`,
      `{"data":[{"id":${nested},"mode":"trigger","status":"success","startedAt":null,"workflowId":"w"}],"nextCursor":null}`,
      `{"data":[],"nextCursor":${nested}}`,
    ]) {
      serve(body, { headers: { 'content-type': 'application/json' } });
      const error = await failureOf(client().listExecutions({ limit: 10 }));
      expect(error.kind).toBe('malformed');
      expect(error.message).toMatch(/unreadable executions page/);
      expect(error.message.length).toBeLessThan(600);
    }
  });
});
