import { describe, expect, it } from 'vitest';
import { DEFAULT_CHANNEL_TIMEOUT_MS } from '../../src/alerts/channels/channel.ts';
import { batchWithinLease } from '../../src/alerts/deliver-alerts.ts';

describe('batchWithinLease', () => {
  it('fits every send of a claim, one after another, inside the lease with a margin', () => {
    for (const lease of [20, 50, 120, 600]) {
      const rows = batchWithinLease(lease);
      expect(rows * DEFAULT_CHANNEL_TIMEOUT_MS).toBeLessThanOrEqual(lease * 1000 - 10_000);
      expect((rows + 1) * DEFAULT_CHANNEL_TIMEOUT_MS).toBeGreaterThan(lease * 1000 - 10_000);
    }
  });

  it('always claims at least one', () => {
    expect(batchWithinLease(1)).toBe(1);
  });
});
