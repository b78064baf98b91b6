import { randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';

/** Long-lived API keys, derived from the JWT secret the way `supabase start` derives its own. */
export interface ApiKeys {
  anonKey: string;
  serviceRoleKey: string;
}

const TEN_YEARS_SECONDS = 10 * 365 * 24 * 3600;

export function generateJwtSecret(): string {
  return randomBytes(32).toString('base64url');
}

export async function signJwt(
  secret: string,
  claims: Record<string, unknown>,
  expiresInSeconds = 3600,
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuedAt(now)
    .setExpirationTime(now + expiresInSeconds)
    .sign(new TextEncoder().encode(secret));
}

export async function deriveApiKeys(secret: string): Promise<ApiKeys> {
  const [anonKey, serviceRoleKey] = await Promise.all([
    signJwt(secret, { iss: 'flowmeter-local', role: 'anon' }, TEN_YEARS_SECONDS),
    signJwt(secret, { iss: 'flowmeter-local', role: 'service_role' }, TEN_YEARS_SECONDS),
  ]);
  return { anonKey, serviceRoleKey };
}
