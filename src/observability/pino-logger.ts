import { pino } from 'pino';
import type { Logger } from './logger.ts';

/** JSON lines on stdout, as Netlify's function logs expect; secrets are redacted by path. */
export function createLogger(level: string, fields: object = {}): Logger {
  return pino({
    level,
    base: { service: 'flowmeter', ...fields },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: {
      paths: ['*.apiKey', '*.api_key', '*.api_key_ciphertext', '*.lease_token', 'authorization'],
      censor: '[redacted]',
    },
    formatters: { level: (label) => ({ level: label }) },
  }) as unknown as Logger;
}
