import type { Keyring } from '../crypto/keyring.ts';
import { DecryptionError } from '../crypto/secret-box.ts';
import type { Db } from '../db/client.ts';
import type { Database } from '../db/database.types.ts';
import { rpcResult } from '../db/rpc-result.ts';
import { fail, ok, type Result } from '../domain/result.ts';
import { openApiKey } from '../n8n/api-key.ts';

export type StoredCredentials =
  Database['public']['Functions']['n8n_source_credentials']['Returns'][number];

/** A source's URL, project and sealed key; an unknown id is not_found. */
export async function storedCredentials(input: {
  db: Db;
  sourceId: string;
}): Promise<Result<StoredCredentials>> {
  const read = rpcResult(
    await input.db.rpc('n8n_source_credentials', { source_ids: [input.sourceId] }),
  );
  if (!read.ok) return read;
  const [source] = read.value;
  return source ? ok(source) : fail('not_found', `no source has the id ${input.sourceId}`);
}

/** The stored key in clear, or why none of the configured keys decrypts it. */
export function openStoredKey(
  keyring: Keyring,
  source: { tenant_id: string; api_key_ciphertext: string },
): Result<string, 'undecryptable'> {
  try {
    return ok(openApiKey(keyring, source.tenant_id, source.api_key_ciphertext));
  } catch (error) {
    if (!(error instanceof DecryptionError)) throw error;
    return fail('undecryptable', error.message);
  }
}
