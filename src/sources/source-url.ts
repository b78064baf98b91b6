import { fail, ok, type Result } from '../domain/result.ts';
import { normalizeBaseUrl, SourceUrlError } from '../n8n/client.ts';

/**
 * A source's URL as it is stored, or why it is refused. The refusal never repeats the URL:
 * one carrying a user name or password must not put that password into a message or a log.
 */
export function checkSourceUrl(raw: string): Result<string, 'invalid_request'> {
  try {
    return ok(normalizeBaseUrl(raw));
  } catch (error) {
    if (error instanceof SourceUrlError) return fail('invalid_request', error.message);
    throw error;
  }
}
