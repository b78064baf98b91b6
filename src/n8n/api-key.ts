import type { Keyring } from '../crypto/keyring.ts';
import { decryptSecret, encryptSecret } from '../crypto/secret-box.ts';

/** n8n API keys are bound to their tenant: a ciphertext moved to another tenant fails. */
const context = (tenantId: string) => `n8n-api-key:${tenantId}`;

export const sealApiKey = (keyring: Keyring, tenantId: string, apiKey: string) =>
  encryptSecret(keyring, apiKey, context(tenantId));

export const openApiKey = (keyring: Keyring, tenantId: string, ciphertext: string) =>
  decryptSecret(keyring, ciphertext, context(tenantId));
