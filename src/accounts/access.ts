import type { NewUserAccess } from './ensure-user.ts';

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

/**
 * A Supabase on this machine (the local stack, or `supabase start`) has nobody to e-mail
 * an invitation to; a hosted project has.
 */
export const isLocalSupabase = (supabaseUrl: string) =>
  LOOPBACK_HOSTS.has(new URL(supabaseUrl).hostname);

/**
 * How a user that does not exist yet gets in: the operator's password when given; on a
 * local stack a password made here and printed once; elsewhere an invitation by e-mail.
 */
export function newUserAccess(options: { supabaseUrl: string; password?: string }): NewUserAccess {
  if (options.password !== undefined) return { kind: 'password', password: options.password };
  if (isLocalSupabase(options.supabaseUrl)) return { kind: 'generated_password' };
  return { kind: 'invite' };
}
