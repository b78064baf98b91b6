import { randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';

/** Long-lived API keys, derived from the JWT secret the way `supabase start` derives its own. */
export interface ApiKeys {
  anonKey: string;
  serviceRoleKey: string;
}

// Fixed issue and expiry times make the keys a pure function of the secret: a restart of
// the local stack reproduces them, so shells and tools holding them keep working.
const KEYS_ISSUED_AT = 1_767_225_600; // 2026-01-01T00:00:00Z
const KEYS_EXPIRE_AT = KEYS_ISSUED_AT + 50 * 365 * 24 * 3600;

export function generateJwtSecret(): string {
  return randomBytes(32).toString('base64url');
}

export async function signJwt(
  secret: string,
  claims: Record<string, unknown>,
  expiresInSeconds = 3600,
  issuedAt = Math.floor(Date.now() / 1000),
): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuedAt(issuedAt)
    .setExpirationTime(issuedAt + expiresInSeconds)
    .sign(new TextEncoder().encode(secret));
}

export async function deriveApiKeys(secret: string): Promise<ApiKeys> {
  const [anonKey, serviceRoleKey] = await Promise.all([
    signJwt(
      secret,
      { iss: 'flowmeter-local', role: 'anon' },
      KEYS_EXPIRE_AT - KEYS_ISSUED_AT,
      KEYS_ISSUED_AT,
    ),
    signJwt(
      secret,
      { iss: 'flowmeter-local', role: 'service_role' },
      KEYS_EXPIRE_AT - KEYS_ISSUED_AT,
      KEYS_ISSUED_AT,
    ),
  ]);
  return { anonKey, serviceRoleKey };
}
