/**
 * Keys that encrypt upstream secrets (n8n API keys) at rest. The first key encrypts;
 * every key decrypts, so a new key can be put first and the old one kept until all
 * ciphertexts are re-encrypted.
 */
export interface Keyring {
  readonly activeKeyId: string;
  readonly keys: ReadonlyMap<string, Buffer>;
}

const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;

export function parseKeyring(value: string): Keyring {
  const keys = new Map<string, Buffer>();
  const entries = value
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
  if (entries.length === 0) throw new Error('must list at least one id:base64key pair');
  for (const entry of entries) {
    const separator = entry.indexOf(':');
    const id = entry.slice(0, separator);
    const material = entry.slice(separator + 1);
    if (separator < 1 || !KEY_ID.test(id)) {
      throw new Error(
        `entry "${entry.slice(0, 12)}…" must look like k1:<base64 key> (id: letters, digits, _ or -)`,
      );
    }
    const key = Buffer.from(material, 'base64');
    if (key.length !== 32) {
      throw new Error(
        `key "${id}" must be 32 random bytes in base64 (got ${key.length} bytes); generate one with: openssl rand -base64 32`,
      );
    }
    if (keys.has(id)) throw new Error(`key id "${id}" appears twice`);
    keys.set(id, key);
  }
  const [activeKeyId] = keys.keys();
  return { activeKeyId: activeKeyId as string, keys };
}
