import { describe, expect, it } from 'vitest';
import { isLocalSupabase, newUserAccess } from '../../src/accounts/access.ts';

describe('how a new user gets in', () => {
  it('uses the password the operator gave, on any project', () => {
    for (const supabaseUrl of ['http://127.0.0.1:54321', 'https://abc.supabase.co']) {
      expect(newUserAccess({ supabaseUrl, password: 's3cret-pass' })).toEqual({
        kind: 'password',
        password: 's3cret-pass',
      });
    }
  });

  it('generates a password on a Supabase on this machine, invites on a hosted one', () => {
    for (const url of ['http://127.0.0.1:54321', 'http://localhost:54321', 'http://[::1]:54321']) {
      expect(isLocalSupabase(url)).toBe(true);
      expect(newUserAccess({ supabaseUrl: url })).toEqual({ kind: 'generated_password' });
    }
    for (const url of [
      'https://abc.supabase.co',
      'http://127.0.0.2.nip.io',
      'http://localhost.example.com',
    ]) {
      expect(isLocalSupabase(url)).toBe(false);
      expect(newUserAccess({ supabaseUrl: url })).toEqual({ kind: 'invite' });
    }
  });
});
