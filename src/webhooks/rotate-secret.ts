import type { Keyring } from '../crypto/keyring.ts';
import type { Db } from '../db/client.ts';
import { rpcResult } from '../db/rpc-result.ts';
import { ok, type Result } from '../domain/result.ts';
import type { WebhookEndpoint } from './add-endpoint.ts';
import { generateSigningSecret, sealSigningSecret } from './signing-secret.ts';

export interface RotateSecretInput {
  db: Db;
  keyring: Keyring;
  endpointId: string;
  /** How long the secrets valid until now keep signing beside the new one. */
  graceSeconds: number;
}

/** A new signing secret, returned here only; deliveries carry both signatures meanwhile. */
export async function rotateSecret(
  input: RotateSecretInput,
): Promise<Result<{ endpoint: WebhookEndpoint; secret: string }>> {
  const secret = generateSigningSecret();
  const endpoint = rpcResult(
    await input.db.rpc('rotate_webhook_secret', {
      endpoint_id: input.endpointId,
      secret_ciphertext: sealSigningSecret(input.keyring, input.endpointId, secret),
      grace_seconds: input.graceSeconds,
    }),
  );
  return endpoint.ok ? ok({ endpoint: endpoint.value, secret }) : endpoint;
}
