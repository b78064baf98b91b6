import { z } from 'zod';

/**
 * The characters an identifier in a request may hold: letters, combining marks, digits,
 * punctuation, symbols (emoji included) and the plain space. Refused: control characters
 * (NUL, which PostgreSQL cannot store, tab, newline, DEL, C1), format characters
 * (zero-width and bidirectional controls, which make two different ids look alike),
 * unpaired UTF-16 surrogates (not text at all), private-use and unassigned code points,
 * and every other kind of space or separator.
 */
const IDENTIFIER = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]*$/u;
const IDENTIFIER_CHARACTER = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]$/u;

/** Names the first refused character and where it is, so the sender can find it. */
function refusedCharacter(input: unknown): string {
  const text = typeof input === 'string' ? input : '';
  let position = 0;
  for (const character of text) {
    if (!IDENTIFIER_CHARACTER.test(character)) {
      const codePoint = (character.codePointAt(0) ?? 0).toString(16).toUpperCase();
      return `must hold only letters, digits, punctuation, symbols and spaces; found U+${codePoint.padStart(4, '0')} at position ${position}`;
    }
    position += 1;
  }
  return 'must hold only letters, digits, punctuation, symbols and spaces';
}

/** Refuses text with characters outside IDENTIFIER, naming the first one and where it is. */
export const identifierCharacters = (text: z.ZodString) =>
  text.regex(IDENTIFIER, { error: (issue) => refusedCharacter(issue.input) });

const identifier = (text = z.string()) => identifierCharacters(text.min(1).max(200));

/** POST /api/v1/enforce: the runner asks before starting a run. */
export const enforceRequestSchema = z
  .object({
    tenant: identifier(z.string().trim()).describe(
      "The tenant's id (UUID) or the operator's external reference for it",
    ),
    workflowId: identifier().optional().describe('The n8n workflow about to run'),
    runRef: identifier()
      .optional()
      .describe(
        "The runner's own reference for this run, unique per run. A retry with the same runRef (after a lost answer) gets the same reservation and reserves nothing more",
      ),
    dryRun: z.boolean().optional().describe('Answer without reserving usage for a run'),
  })
  .strict();

export type EnforceRequest = z.infer<typeof enforceRequestSchema>;

export const DECISION_REASONS = [
  'within_limit',
  'overage_allowed',
  'limit_reached',
  'unlimited',
  'trial',
  'grace_period',
  'subscription_inactive',
  'fail_open',
] as const;

export const decisionSchema = z.object({
  allowed: z.boolean(),
  reason: z.enum(DECISION_REASONS),
  tenantId: z.uuid().nullable(),
  committed: z
    .number()
    .int()
    .nullable()
    .describe(
      'Committed usage: billable executions collected plus runs allowed and not collected yet (reserved), this one included; remaining, percent and level are of it',
    ),
  limit: z
    .number()
    .int()
    .nullable()
    .describe('Executions included in the period; null when unlimited'),
  remaining: z.number().int().nullable(),
  percent: z.number().nullable(),
  level: z.enum(['normal', 'warning', 'limit', 'overage']),
  periodStart: z.iso.datetime({ offset: true }).nullable(),
  periodEnd: z.iso.datetime({ offset: true }).nullable(),
  reservationId: z.number().int().nullable(),
});

export type Decision = z.infer<typeof decisionSchema>;
