import { randomBytes } from 'node:crypto';
import type { Keyring } from '../crypto/keyring.ts';
import { decryptSecret, encryptSecret } from '../crypto/secret-box.ts';

/** Standard Webhooks secrets: whsec_ and 24 to 64 random bytes in base64. */
export const generateSigningSecret = () => `whsec_${randomBytes(32).toString('base64')}`;

/** Bound to its endpoint: a ciphertext copied to another endpoint's row fails to decrypt. */
const context = (endpointId: string) => `webhook-endpoint-secret:${endpointId}`;

export const sealSigningSecret = (keyring: Keyring, endpointId: string, secret: string) =>
  encryptSecret(keyring, secret, context(endpointId));

export const openSigningSecret = (keyring: Keyring, endpointId: string, ciphertext: string) =>
  decryptSecret(keyring, ciphertext, context(endpointId));
