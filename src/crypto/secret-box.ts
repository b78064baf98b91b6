/*
 * AES-256-GCM for secrets stored in the database. The ciphertext names its key, so keys
 * rotate without a flag day, and is bound to its context (associated data, e.g. the
 * tenant id): a ciphertext copied into another tenant's row fails to decrypt.
 *
 * Format: fm1.<key id>.<iv>.<tag>.<ciphertext>, each part base64url.
 */

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { Keyring } from './keyring.ts';

const VERSION = 'fm1';

export function encryptSecret(keyring: Keyring, plaintext: string, context: string): string {
  const key = keyring.keys.get(keyring.activeKeyId) as Buffer;
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(context, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  const tag = cipher.getAuthTag();
  return [
    VERSION,
    keyring.activeKeyId,
    iv.toString('base64url'),
    tag.toString('base64url'),
    ciphertext.toString('base64url'),
  ].join('.');
}

export class DecryptionError extends Error {
  override readonly name = 'DecryptionError';
}

export function decryptSecret(keyring: Keyring, sealed: string, context: string): string {
  const [version, keyId, iv, tag, ciphertext, ...rest] = sealed.split('.');
  if (version !== VERSION || !keyId || !iv || !tag || ciphertext === undefined || rest.length) {
    throw new DecryptionError('not a flowmeter ciphertext (expected fm1.<key>.<iv>.<tag>.<data>)');
  }
  const key = keyring.keys.get(keyId);
  if (!key)
    throw new DecryptionError(
      `encrypted with key "${keyId}", which FLOWMETER_ENCRYPTION_KEYS does not hold`,
    );
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
    decipher.setAAD(Buffer.from(context, 'utf8'));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([
      decipher.update(Buffer.from(ciphertext, 'base64url')),
      decipher.final(),
    ]).toString('utf8');
  } catch {
    throw new DecryptionError(
      'ciphertext was altered, belongs to another record, or the key is wrong',
    );
  }
}

/** True when the ciphertext should be re-encrypted under the active key. */
export const needsRotation = (keyring: Keyring, sealed: string) =>
  sealed.split('.')[1] !== keyring.activeKeyId;
