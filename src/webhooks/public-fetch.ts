import type { LookupAddress } from 'node:dns';
import { isIP } from 'node:net';
import { Agent, fetch as undiciFetch } from 'undici';
import { type HostResolver, refusedAddress, resolveHost } from './endpoint-url.ts';

export class NonPublicAddressError extends Error {
  override readonly name = 'NonPublicAddressError';
}

type LookupCallback = (
  error: Error | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

/**
 * A fetch that connects only to public addresses: the host is resolved when the connection
 * is made and every address it resolves to is checked, and the connection goes to a checked
 * address. A DNS answer that changes between the check when the endpoint was added (or an
 * earlier send) and this one cannot point a delivery at the internal network.
 */
export function publicOnlyFetch(resolve: HostResolver = resolveHost): typeof fetch {
  const agent = new Agent({
    connect: {
      lookup(hostname: string, options: { all?: boolean }, callback: LookupCallback) {
        resolve(hostname).then(
          (addresses) => {
            const refused = refusedAddress(hostname, addresses);
            if (refused) {
              callback(new NonPublicAddressError(`refused: the endpoint URL ${refused}`), '');
              return;
            }
            const found = addresses.map((address) => ({ address, family: isIP(address) }));
            if (options.all) callback(null, found);
            else
              callback(
                null,
                (found[0] as LookupAddress).address,
                (found[0] as LookupAddress).family,
              );
          },
          (error: Error) => callback(error, ''),
        );
      },
    },
  });
  return ((input: string | URL | Request, init?: RequestInit) =>
    undiciFetch(input as string, {
      ...(init as object),
      dispatcher: agent,
    })) as unknown as typeof fetch;
}
