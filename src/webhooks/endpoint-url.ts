import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { fail, ok, type Result } from '../domain/result.ts';

/**
 * Endpoint URLs are the operator's input and point our servers at a host: in production a
 * URL naming (or resolving to) a private, loopback, link-local or metadata address would
 * let whoever adds an endpoint probe the network flowmeter runs in. Local mode (npm start,
 * tests) accepts http and any host, for receivers on the same machine.
 */
export type WebhookMode = 'production' | 'local';

/** Every address a host name resolves to. */
export type HostResolver = (hostname: string) => Promise<string[]>;

export const resolveHost: HostResolver = async (hostname) =>
  (await lookup(hostname, { all: true, verbatim: true })).map((a) => a.address);

const RANGES: ReadonlyArray<readonly [string, number, 'ipv4' | 'ipv6', string]> = [
  ['0.0.0.0', 8, 'ipv4', 'an unspecified address'],
  ['10.0.0.0', 8, 'ipv4', 'a private address'],
  ['100.64.0.0', 10, 'ipv4', 'a shared (carrier NAT) address'],
  ['127.0.0.0', 8, 'ipv4', 'a loopback address'],
  ['169.254.0.0', 16, 'ipv4', 'a link-local address (cloud metadata lives here)'],
  ['172.16.0.0', 12, 'ipv4', 'a private address'],
  ['192.0.0.0', 24, 'ipv4', 'a protocol-assignment address'],
  ['192.0.2.0', 24, 'ipv4', 'a documentation address'],
  ['192.168.0.0', 16, 'ipv4', 'a private address'],
  ['198.18.0.0', 15, 'ipv4', 'a benchmarking address'],
  ['198.51.100.0', 24, 'ipv4', 'a documentation address'],
  ['203.0.113.0', 24, 'ipv4', 'a documentation address'],
  ['224.0.0.0', 4, 'ipv4', 'a multicast address'],
  ['240.0.0.0', 4, 'ipv4', 'a reserved address'],
  ['::', 128, 'ipv6', 'an unspecified address'],
  ['::1', 128, 'ipv6', 'a loopback address'],
  ['64:ff9b::', 96, 'ipv6', 'a translated (NAT64) address'],
  ['64:ff9b:1::', 48, 'ipv6', 'a translated (NAT64) address'],
  ['100::', 64, 'ipv6', 'a discard address'],
  ['2001:db8::', 32, 'ipv6', 'a documentation address'],
  ['fc00::', 7, 'ipv6', 'a private (unique local) address'],
  ['fe80::', 10, 'ipv6', 'a link-local address'],
  ['fec0::', 10, 'ipv6', 'a site-local address'],
  ['ff00::', 8, 'ipv6', 'a multicast address'],
];

const blocked = RANGES.map(([network, prefix, family, reason]) => {
  const list = new BlockList();
  list.addSubnet(network, prefix, family);
  return { list, family, reason };
});

/** The IPv4 address inside an IPv4-mapped IPv6 one, in either notation URLs and DNS use. */
function ipv4Mapped(address: string): string | undefined {
  const dotted = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(address)?.[1];
  if (dotted) return dotted;
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(address);
  if (!hex) return undefined;
  const [high, low] = [
    Number.parseInt(hex[1] as string, 16),
    Number.parseInt(hex[2] as string, 16),
  ];
  return [high >> 8, high & 255, low >> 8, low & 255].join('.');
}

/** Why an IP address is not a public one, or undefined when it is. */
export function nonPublicAddress(address: string): string | undefined {
  const bare = address.replace(/^\[|\]$/g, '').toLowerCase();
  const mapped = ipv4Mapped(bare);
  if (mapped) return nonPublicAddress(mapped);
  const version = isIP(bare);
  if (version === 0) return 'not an IP address';
  const family = version === 4 ? 'ipv4' : 'ipv6';
  return blocked.find((b) => b.family === family && b.list.check(bare, family))?.reason;
}

/** Names that mean this machine or the cloud's metadata service, whatever DNS says. */
function internalName(hostname: string): boolean {
  return (
    !hostname.includes('.') ||
    hostname === 'localhost' ||
    hostname.endsWith('.localhost') ||
    hostname.endsWith('.internal') ||
    hostname.endsWith('.local')
  );
}

const refuse = (why: string) =>
  fail('invalid_request', `the endpoint URL ${why}. Nothing was stored.`);

/**
 * The URL as stored, or why it is refused (without repeating it: it may carry a token).
 * Checks the URL alone; checkEndpointHost also resolves its host.
 */
export function checkEndpointUrl(
  raw: string,
  mode: WebhookMode,
): Result<string, 'invalid_request'> {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    return refuse('is not a URL: give the full address, e.g. https://hooks.example.com/flowmeter');
  }
  const schemes = mode === 'local' ? ['https:', 'http:'] : ['https:'];
  if (!schemes.includes(url.protocol)) {
    return refuse(`must start with https:// (got ${url.protocol}//)`);
  }
  if (url.username !== '' || url.password !== '') {
    return refuse(
      'must not carry a user name or password: the signature authenticates each delivery',
    );
  }
  if (url.hash !== '') return refuse('must not have a #fragment');
  const href = url.toString();
  if (href.length > 2000) return refuse('is longer than 2,000 characters');
  if (mode === 'local') return ok(href);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (isIP(host) !== 0) {
    const reason = nonPublicAddress(host);
    if (reason) return refuse(`names ${reason}; production endpoints must be public hosts`);
  } else if (internalName(host.toLowerCase())) {
    return refuse(
      `names an internal host (${host}); production endpoints must have a public DNS name`,
    );
  }
  return ok(href);
}

/** Every address the host resolves to must be public (production mode). */
async function checkEndpointHost(
  href: string,
  resolve: HostResolver,
): Promise<Result<string, 'invalid_request'>> {
  const host = new URL(href).hostname.replace(/^\[|\]$/g, '');
  if (isIP(host) !== 0) return ok(href);
  let addresses: string[];
  try {
    addresses = await resolve(host);
  } catch (error) {
    return refuse(`names a host that does not resolve (${host}: ${(error as Error).message})`);
  }
  const refused = refusedAddress(host, addresses);
  return refused ? refuse(refused) : ok(href);
}

/** Why a host's addresses may not be connected to, or undefined when all are public. */
export function refusedAddress(host: string, addresses: readonly string[]): string | undefined {
  if (addresses.length === 0) return `names a host with no address (${host})`;
  for (const address of addresses) {
    const reason = nonPublicAddress(address);
    if (reason) return `names ${host}, which resolves to ${address}, ${reason}`;
  }
  return undefined;
}

/** The URL checks for the given mode: the URL alone, then (production) every address. */
export async function checkEndpoint(
  raw: string,
  mode: WebhookMode,
  resolve: HostResolver,
): Promise<Result<string, 'invalid_request'>> {
  const url = checkEndpointUrl(raw, mode);
  if (!url.ok || mode === 'local') return url;
  return checkEndpointHost(url.value, resolve);
}
