import type { Keyring } from '../crypto/keyring.ts';
import type { Db } from '../db/client.ts';
import { fail, ok, type Result } from '../domain/result.ts';
import { type ProbeResult, probeSource } from './probe-source.ts';
import { openStoredKey, type StoredCredentials, storedCredentials } from './stored-credentials.ts';

/**
 * Decrypts a source's stored key and probes its n8n with it. The probe's own outcome is
 * the value (a refusal is news, not an error of this call); an unknown source or a key
 * no configured key decrypts is a failure.
 */
export async function testSource(input: {
  db: Db;
  keyring: Keyring;
  timeoutMs: number;
  sourceId: string;
}): Promise<Result<{ source: Omit<StoredCredentials, 'api_key_ciphertext'>; probe: ProbeResult }>> {
  const read = await storedCredentials(input);
  if (!read.ok) return read;
  const { api_key_ciphertext: _sealed, ...source } = read.value;
  const apiKey = openStoredKey(input.keyring, read.value);
  if (!apiKey.ok) {
    return fail(
      'internal',
      `cannot decrypt the source's API key: ${apiKey.error.message}. FLOWMETER_ENCRYPTION_KEYS must hold the key it was stored with`,
    );
  }
  const probe = await probeSource({
    source: { baseUrl: source.base_url, apiKey: apiKey.value, projectId: source.project_id },
    timeoutMs: input.timeoutMs,
  });
  return ok({ source, probe });
}
