import { secretMatcher } from '../security/shared-secret.ts';
import { errorResponse } from './responses.ts';

/**
 * The check every secret-guarded endpoint makes first: `Authorization: Bearer <secret>`
 * against the accepted secrets, compared in constant time (secretMatcher). Returns the 401
 * to answer, or null when the caller presented an accepted secret. `who` names the secret
 * in the message ("runner", "operator").
 */
export function bearerGuard(
  accepted: readonly string[],
  who: string,
): (req: Request) => Response | null {
  const matches = secretMatcher(accepted);
  return (req) => {
    const token = /^Bearer\s+(.+)$/i.exec(req.headers.get('authorization') ?? '')?.[1]?.trim();
    if (matches(token)) return null;
    return errorResponse(
      'unauthorized',
      `Send ${/^[aeiou]/i.test(who) ? 'an' : 'a'} ${who} secret as Authorization: Bearer <secret>`,
      undefined,
      { 'www-authenticate': 'Bearer realm="flowmeter"' },
    );
  };
}
