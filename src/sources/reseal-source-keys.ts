import type { Keyring } from '../crypto/keyring.ts';
import { needsRotation } from '../crypto/secret-box.ts';
import type { Db } from '../db/client.ts';
import { rpcResult } from '../db/rpc-result.ts';
import { ok, type Result } from '../domain/result.ts';
import { sealApiKey } from '../n8n/api-key.ts';
import { openStoredKey, type StoredCredentials } from './stored-credentials.ts';

export interface ResealSummary {
  /** The active key everything is resealed under. */
  key: string;
  sources: number;
  resealed: number;
  /** Given a new key by `sources set-key` (or removed) between the read and the write: left alone. */
  changedMeanwhile: number;
  /** Ids of sources whose key none of the configured keys decrypts. */
  undecryptable: string[];
}

/** Every source's sealed key (these tenants' only), page by page until one comes back empty. */
async function everySealedKey(
  db: Db,
  tenantIds: string[] | undefined,
): Promise<Result<StoredCredentials[]>> {
  const all: StoredCredentials[] = [];
  for (;;) {
    const after = all.at(-1)?.id;
    const page = rpcResult(
      await db.rpc('n8n_source_credentials', {
        ...(tenantIds ? { tenant_ids: tenantIds } : {}),
        ...(after ? { after_id: after } : {}),
      }),
    );
    if (!page.ok) return page;
    if (page.value.length === 0) return ok(all);
    all.push(...page.value);
  }
}

/**
 * After a new key is put first in the keyring: re-encrypts every stored n8n API key under
 * it, so the older keys can be removed. A key replaced meanwhile is left alone (the write
 * expects the ciphertext it read), and so is one that decrypts with no configured key.
 */
export async function resealSourceKeys(input: {
  db: Db;
  keyring: Keyring;
  tenantIds?: string[];
  onProgress?: (event: { type: 'due'; sources: number } | { type: 'done' }) => void;
}): Promise<Result<ResealSummary>> {
  const { db, keyring } = input;
  const read = await everySealedKey(db, input.tenantIds);
  if (!read.ok) return read;
  const stored = read.value;
  const due = stored.filter((s) => needsRotation(keyring, s.api_key_ciphertext));
  const summary: ResealSummary = {
    key: keyring.activeKeyId,
    sources: stored.length,
    resealed: 0,
    changedMeanwhile: 0,
    undecryptable: [],
  };
  input.onProgress?.({ type: 'due', sources: due.length });
  for (const source of due) {
    const apiKey = openStoredKey(keyring, source);
    if (!apiKey.ok) summary.undecryptable.push(source.id);
    else {
      const response = await db.rpc('set_n8n_source_key', {
        source_id: source.id,
        api_key_ciphertext: sealApiKey(keyring, source.tenant_id, apiKey.value),
        expected_ciphertext: source.api_key_ciphertext,
      });
      // set_n8n_source_key's own answers: the key changed, or the source was removed, since
      // it was read (a missing function is 404 too, and is a failure).
      const code = response.error?.code;
      if (code === 'PT409' || code === 'PT404') summary.changedMeanwhile += 1;
      else {
        const written = rpcResult(response);
        if (!written.ok) return written;
        summary.resealed += 1;
      }
    }
    input.onProgress?.({ type: 'done' });
  }
  return ok(summary);
}
