import { randomUUID } from 'node:crypto';
import type { Keyring } from '../crypto/keyring.ts';
import type { Db } from '../db/client.ts';
import type { Database } from '../db/database.types.ts';
import { rpcResult } from '../db/rpc-result.ts';
import { ok, type Result } from '../domain/result.ts';
import { checkEndpoint, type HostResolver, type WebhookMode } from './endpoint-url.ts';
import type { WebhookEventType } from './event-types.ts';
import { generateSigningSecret, sealSigningSecret } from './signing-secret.ts';

export type WebhookEndpoint = Database['public']['Functions']['add_webhook_endpoint']['Returns'];

export interface AddEndpointInput {
  db: Db;
  keyring: Keyring;
  mode: WebhookMode;
  resolve: HostResolver;
  url: string;
  eventTypes: WebhookEventType[];
  description?: string;
}

/**
 * Registers a receiver for some event types with a new signing secret, returned here only:
 * the database holds it sealed. A URL the mode does not allow stores nothing.
 */
export async function addEndpoint(
  input: AddEndpointInput,
): Promise<Result<{ endpoint: WebhookEndpoint; secret: string }>> {
  const url = await checkEndpoint(input.url, input.mode, input.resolve);
  if (!url.ok) return url;
  const id = randomUUID();
  const secret = generateSigningSecret();
  const endpoint = rpcResult(
    await input.db.rpc('add_webhook_endpoint', {
      id,
      url: url.value,
      event_types: input.eventTypes,
      secret_ciphertext: sealSigningSecret(input.keyring, id, secret),
      ...(input.description ? { description: input.description } : {}),
    }),
  );
  return endpoint.ok ? ok({ endpoint: endpoint.value, secret }) : endpoint;
}
