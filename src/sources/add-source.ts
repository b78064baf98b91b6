import type { Keyring } from '../crypto/keyring.ts';
import type { Db } from '../db/client.ts';
import type { Database } from '../db/database.types.ts';
import { rpcResult } from '../db/rpc-result.ts';
import type { Result } from '../domain/result.ts';
import { sealApiKey } from '../n8n/api-key.ts';
import type { N8nExecution } from '../n8n/client.ts';
import { writeAfterProbe } from './probe-source.ts';
import { checkSourceUrl } from './source-url.ts';

type SourceRow = Database['public']['Functions']['add_n8n_source']['Returns'];

/** A source as it may be shown: everything but its sealed key. */
export type ShownSource = Omit<SourceRow, 'api_key_ciphertext'>;

export interface AddSourceInput {
  db: Db;
  keyring: Keyring;
  timeoutMs: number;
  tenantId: string;
  baseUrl: string;
  apiKey: string;
  name?: string;
  projectId?: string;
  /** Probe n8n first; a refusal stores nothing. */
  test: boolean;
}

/**
 * Registers a tenant's n8n instance, its key sealed to the tenant; a duplicate is a conflict,
 * a URL carrying credentials is refused (the API key is the only credential sent to n8n).
 */
export async function addSource(
  input: AddSourceInput,
): Promise<Result<{ source: ShownSource; latestExecution: N8nExecution | null }>> {
  const baseUrl = checkSourceUrl(input.baseUrl);
  if (!baseUrl.ok) return baseUrl;
  return writeAfterProbe({
    test: input.test,
    source: { baseUrl: baseUrl.value, apiKey: input.apiKey, projectId: input.projectId ?? null },
    timeoutMs: input.timeoutMs,
    unchanged: 'Nothing was stored.',
    write: async () =>
      rpcResult(
        await input.db.rpc('add_n8n_source', {
          tenant_id: input.tenantId,
          name: input.name ?? new URL(baseUrl.value).host,
          base_url: baseUrl.value,
          api_key_ciphertext: sealApiKey(input.keyring, input.tenantId, input.apiKey),
          ...(input.projectId ? { project_id: input.projectId } : {}),
        }),
      ),
  });
}
