import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseKeyring } from '../../src/crypto/keyring.ts';
import {
  DecryptionError,
  decryptSecret,
  encryptSecret,
  needsRotation,
} from '../../src/crypto/secret-box.ts';

const key = () => randomBytes(32).toString('base64');

describe('secret box', () => {
  const keyring = parseKeyring(`k1:${key()}`);

  it('round-trips a secret and never stores the plaintext', () => {
    const sealed = encryptSecret(keyring, 'n8n_api_secret_value', 'tenant:a');
    expect(sealed).toMatch(/^fm1\.k1\./);
    expect(sealed).not.toContain('n8n_api_secret_value');
    expect(decryptSecret(keyring, sealed, 'tenant:a')).toBe('n8n_api_secret_value');
  });

  it('uses a fresh IV each time', () => {
    expect(encryptSecret(keyring, 'x', 'c')).not.toBe(encryptSecret(keyring, 'x', 'c'));
  });

  it('refuses a ciphertext moved to another context (another tenant)', () => {
    const sealed = encryptSecret(keyring, 'secret', 'tenant:a');
    expect(() => decryptSecret(keyring, sealed, 'tenant:b')).toThrow(DecryptionError);
  });

  it('refuses a tampered ciphertext', () => {
    const sealed = encryptSecret(keyring, 'secret', 'tenant:a');
    const parts = sealed.split('.');
    const data = Buffer.from(parts[4] as string, 'base64url');
    data[0] = (data[0] as number) ^ 1;
    parts[4] = data.toString('base64url');
    expect(() => decryptSecret(keyring, parts.join('.'), 'tenant:a')).toThrow(/altered/);
  });

  it('decrypts with an older key after rotation and flags the ciphertext for re-encryption', () => {
    const oldKey = key();
    const before = parseKeyring(`k1:${oldKey}`);
    const sealed = encryptSecret(before, 'secret', 'ctx');
    const rotated = parseKeyring(`k2:${key()},k1:${oldKey}`);
    expect(decryptSecret(rotated, sealed, 'ctx')).toBe('secret');
    expect(needsRotation(rotated, sealed)).toBe(true);
    expect(needsRotation(rotated, encryptSecret(rotated, 'secret', 'ctx'))).toBe(false);
  });

  it('names a key the keyring no longer holds', () => {
    const sealed = encryptSecret(keyring, 'secret', 'ctx');
    expect(() => decryptSecret(parseKeyring(`k9:${key()}`), sealed, 'ctx')).toThrow(/key "k1"/);
  });

  it('rejects text that is not a ciphertext', () => {
    expect(() => decryptSecret(keyring, 'plain-api-key', 'ctx')).toThrow(
      /not a flowmeter ciphertext/,
    );
  });
});
