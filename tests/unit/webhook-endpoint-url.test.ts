import { describe, expect, it } from 'vitest';
import {
  checkEndpoint,
  checkEndpointUrl,
  nonPublicAddress,
} from '../../src/webhooks/endpoint-url.ts';
import { NonPublicAddressError, publicOnlyFetch } from '../../src/webhooks/public-fetch.ts';

const resolvesTo =
  (...addresses: string[]) =>
  async () =>
    addresses;

describe('webhook endpoint URLs', () => {
  it.each([
    ['http://hooks.example.com/x', /must start with https/],
    ['ftp://hooks.example.com/x', /must start with https/],
    ['not a url', /is not a URL/],
    ['https://user:secret@hooks.example.com/x', /user name or password/],
    ['https://hooks.example.com/x#frag', /#fragment/],
    ['https://127.0.0.1/x', /loopback/],
    ['https://[::1]/x', /loopback/],
    ['https://[::ffff:10.0.0.1]/x', /private/],
    ['https://10.1.2.3/x', /private/],
    ['https://172.20.0.1/x', /private/],
    ['https://192.168.1.1/x', /private/],
    ['https://169.254.169.254/latest/meta-data', /link-local/],
    ['https://[fd00:ec2::254]/x', /unique local/],
    ['https://[fe80::1]/x', /link-local/],
    ['https://0.0.0.0/x', /unspecified/],
    ['https://localhost/x', /internal host/],
    ['https://api.localhost/x', /internal host/],
    ['https://metadata.google.internal/computeMetadata/v1/', /internal host/],
    ['https://intranet/x', /internal host/],
    [`https://hooks.example.com/${'a'.repeat(2000)}`, /longer than 2,000/],
  ])('production refuses %.60s', (url, message) => {
    const result = checkEndpointUrl(url, 'production');
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.error.code).toBe('invalid_request');
      expect(result.error.message).toMatch(message);
      expect(result.error.message).not.toContain('secret@');
    }
  });

  it('production accepts https to a public host and keeps the query', () => {
    expect(checkEndpointUrl(' https://hooks.example.com/in?token=abc ', 'production')).toEqual({
      ok: true,
      value: 'https://hooks.example.com/in?token=abc',
    });
    expect(checkEndpointUrl('https://93.184.216.34/x', 'production').ok).toBe(true);
  });

  it('local mode accepts http and receivers on this machine, never credentials', () => {
    expect(checkEndpointUrl('http://127.0.0.1:8080/hook', 'local').ok).toBe(true);
    expect(checkEndpointUrl('http://localhost/hook', 'local').ok).toBe(true);
    expect(checkEndpointUrl('http://u:p@localhost/hook', 'local').ok).toBe(false);
  });

  it('production resolves the host and refuses it when any address is not public', async () => {
    const good = await checkEndpoint(
      'https://hooks.example.com/x',
      'production',
      resolvesTo('93.184.216.34'),
    );
    expect(good.ok).toBe(true);
    const mixed = await checkEndpoint(
      'https://hooks.example.com/x',
      'production',
      resolvesTo('93.184.216.34', '10.0.0.5'),
    );
    expect(!mixed.ok && mixed.error.message).toMatch(/resolves to 10\.0\.0\.5, a private address/);
    const missing = await checkEndpoint('https://nowhere.example.com/x', 'production', async () => {
      throw new Error('getaddrinfo ENOTFOUND nowhere.example.com');
    });
    expect(!missing.ok && missing.error.message).toMatch(/does not resolve/);
  });

  it('classifies addresses', () => {
    expect(nonPublicAddress('8.8.8.8')).toBeUndefined();
    expect(nonPublicAddress('2606:4700:4700::1111')).toBeUndefined();
    expect(nonPublicAddress('100.64.0.1')).toMatch(/carrier NAT/);
    expect(nonPublicAddress('::ffff:127.0.0.1')).toMatch(/loopback/);
    expect(nonPublicAddress('64:ff9b::a00:1')).toMatch(/NAT64/);
  });

  it('at send time, a host whose DNS now answers a private address is refused before connecting', async () => {
    const rebinding = publicOnlyFetch(resolvesTo('127.0.0.1'));
    const error = await rebinding('https://hooks.example.com/x', { method: 'POST' }).catch(
      (e: Error) => e,
    );
    expect(error).toBeInstanceOf(Error);
    const cause = (error as Error).cause;
    expect(cause).toBeInstanceOf(NonPublicAddressError);
    expect((cause as Error).message).toMatch(/resolves to 127\.0\.0\.1, a loopback address/);
  });
});
