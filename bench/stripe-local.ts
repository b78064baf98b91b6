import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A Stripe-compatible meter events endpoint on loopback for benchmarks: answers after a
 * configurable latency, and like Stripe answers 429 when more than `ratePerSecond`
 * requests arrive within any one second. Records when each request arrived.
 */
export interface LocalStripe {
  url: string;
  arrivals: number[];
  rejected: number;
  close(): Promise<void>;
}

export async function startLocalStripe(options: {
  latencyMs: number;
  ratePerSecond: number;
}): Promise<LocalStripe> {
  const arrivals: number[] = [];
  const recent: number[] = [];
  const state = { rejected: 0 };
  const server: Server = createServer((req, res) => {
    const now = performance.now();
    while (recent.length && (recent[0] as number) <= now - 1000) recent.shift();
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (recent.length >= options.ratePerSecond) {
        state.rejected += 1;
        res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '1' });
        res.end(
          JSON.stringify({
            error: { type: 'invalid_request_error', message: 'Too many requests' },
          }),
        );
        return;
      }
      recent.push(now);
      arrivals.push(now);
      const form = new URLSearchParams(Buffer.concat(chunks).toString());
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            object: 'billing.meter_event',
            created: Math.floor(Date.now() / 1000),
            event_name: form.get('event_name'),
            identifier: form.get('identifier'),
            livemode: false,
            payload: {
              stripe_customer_id: form.get('payload[stripe_customer_id]'),
              value: form.get('payload[value]'),
            },
            timestamp: Number(form.get('timestamp')),
          }),
        );
      }, options.latencyMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    arrivals,
    get rejected() {
      return state.rejected;
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
