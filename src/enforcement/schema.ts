import { z } from 'zod';

/** POST /api/v1/enforce: the runner asks before starting a run. */
export const enforceRequestSchema = z
  .object({
    tenant: z
      .string()
      .trim()
      .min(1)
      .max(200)
      .describe("The tenant's id (UUID) or the operator's external reference for it"),
    workflowId: z.string().min(1).max(200).optional().describe('The n8n workflow about to run'),
    runRef: z
      .string()
      .min(1)
      .max(200)
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

export const errorBodySchema = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    details: z.unknown().optional(),
  }),
});
