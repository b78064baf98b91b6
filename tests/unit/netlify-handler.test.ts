import { describe, expect, it, vi } from 'vitest';
import { ConfigError } from '../../src/config/env.ts';
import { configuredHandler } from '../../src/http/netlify-handler.ts';

const request = () => new Request('https://flowmeter.test/api/v1/x');

describe('configuredHandler', () => {
  it('answers 500 without details while the environment is bad, and builds once it is fixed', async () => {
    const stdout = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    let fixed = false;
    const build = vi.fn(() => {
      if (!fixed) throw new ConfigError(['SUPABASE_URL is required']);
      return async () => new Response('ok');
    });
    const handler = configuredHandler('test-fn', build);
    try {
      const refused = await handler(request());
      expect(refused.status).toBe(500);
      const body = await refused.text();
      expect(body).toMatch(/misconfigured/);
      expect(body).not.toMatch(/SUPABASE_URL/);

      fixed = true;
      expect(await (await handler(request())).text()).toBe('ok');
      expect(await (await handler(request())).text()).toBe('ok');
      expect(build).toHaveBeenCalledTimes(2);
    } finally {
      stdout.mockRestore();
    }
  });

  it('throws any other error from building', async () => {
    const handler = configuredHandler('test-fn', () => {
      throw new Error('boom');
    });
    await expect(handler(request())).rejects.toThrow('boom');
  });
});
