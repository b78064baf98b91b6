import type { Keyring } from '../crypto/keyring.ts';
import type { Db } from '../db/client.ts';
import { rpcResult } from '../db/rpc-result.ts';
import type { Result } from '../domain/result.ts';
import { sealApiKey } from '../n8n/api-key.ts';
import type { N8nExecution } from '../n8n/client.ts';
import type { ShownSource } from './add-source.ts';
import { writeAfterProbe } from './probe-source.ts';
import { storedCredentials } from './stored-credentials.ts';

/**
 * Replaces a source's n8n API key (rotated or revoked in n8n), sealed to its tenant; with
 * `test`, only a key n8n accepts. Collection retries the source at once.
 */
export async function setSourceKey(input: {
  db: Db;
  keyring: Keyring;
  timeoutMs: number;
  sourceId: string;
  apiKey: string;
  test: boolean;
}): Promise<Result<{ source: ShownSource; latestExecution: N8nExecution | null }>> {
  const read = await storedCredentials(input);
  if (!read.ok) return read;
  const stored = read.value;
  return writeAfterProbe({
    test: input.test,
    source: { baseUrl: stored.base_url, apiKey: input.apiKey, projectId: stored.project_id },
    timeoutMs: input.timeoutMs,
    unchanged: 'The stored key was not changed.',
    write: async () =>
      rpcResult(
        await input.db.rpc('set_n8n_source_key', {
          source_id: input.sourceId,
          api_key_ciphertext: sealApiKey(input.keyring, stored.tenant_id, input.apiKey),
        }),
      ),
  });
}
