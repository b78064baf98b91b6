import { writeFile } from 'node:fs/promises';
import { z } from 'zod';
import {
  invoicePreviewRequestSchema,
  invoicePreviewResponseSchema,
} from '../billing/invoice-preview-handler.ts';
import { decisionSchema, enforceRequestSchema } from '../enforcement/schema.ts';
import { errorBodySchema } from '../http/responses.ts';
import { projectRoot } from '../local/project.ts';

const json = (schema: z.ZodType) =>
  z.toJSONSchema(schema, { target: 'draft-2020-12', io: 'input' });
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const jsonContent = (schema: string) => ({ 'application/json': { schema: ref(schema) } });
const jsonBody = (schema: string) => ({ required: true, content: jsonContent(schema) });
const errorResponse = (description: string) => ({ description, content: jsonContent('Error') });
/** What a JSON POST endpoint refuses before it reads the body (readJsonRequest). */
const jsonPostRefusals = (maxBody: string) => ({
  '405': errorResponse('Only POST is allowed'),
  '413': errorResponse(`The body is larger than ${maxBody}`),
  '415': errorResponse('The body is not sent as application/json'),
});
const usageHeaders = {
  'X-Usage-Limit': {
    description: 'Executions included in the period (absent when unlimited)',
    schema: { type: 'integer' },
  },
  'X-Usage-Remaining': {
    description: 'Executions left before the limit',
    schema: { type: 'integer' },
  },
  'X-Usage-Reset': {
    description: 'End of the billing period, Unix seconds',
    schema: { type: 'integer' },
  },
};

/**
 * The OpenAPI 3.1 document of the HTTP API, generated from the same zod schemas the
 * handlers validate with. `npm run openapi` writes docs/openapi.json; a test fails while
 * the committed file differs from what the schemas say.
 */
export function buildOpenApiDocument() {
  return {
    openapi: '3.1.0',
    info: {
      title: 'flowmeter API',
      version: '1.0.0',
      description: 'Usage metering, limits and metered billing for hosted n8n.',
    },
    servers: [
      { url: 'https://{site}.netlify.app', variables: { site: { default: 'your-flowmeter' } } },
    ],
    paths: {
      '/api/v1/enforce': {
        post: {
          operationId: 'enforce',
          summary: 'May this tenant start a workflow run now?',
          description:
            'Call before every run. An allowed run under a hard limit or trial reserves one execution until the collector counts it, so bursts between collections cannot overshoot the limit.',
          security: [{ runnerSecret: [] }],
          requestBody: jsonBody('EnforceRequest'),
          responses: {
            '200': {
              description: 'Allowed: start the run',
              headers: usageHeaders,
              content: jsonContent('Decision'),
            },
            '402': {
              description: 'Blocked: do not start the run (limit reached or subscription inactive)',
              headers: usageHeaders,
              content: jsonContent('Decision'),
            },
            '400': errorResponse(
              'The body is not UTF-8 JSON or does not match the schema (details lists the fields; identifiers hold only letters, digits, punctuation, symbols and spaces)',
            ),
            '401': errorResponse('Missing or wrong runner secret'),
            '404': errorResponse('No tenant has that id or external reference'),
            ...jsonPostRefusals('8 KiB'),
            '500': errorResponse(
              'No decision could be made (the database refused the call, or its answer could not be read); never an allow, whatever ENFORCE_FAIL_MODE says',
            ),
            '503': errorResponse(
              'The database could not be reached and ENFORCE_FAIL_MODE is closed',
            ),
          },
        },
      },
      '/api/v1/invoice-preview': {
        post: {
          operationId: 'invoicePreview',
          summary:
            "A tenant's Stripe invoice preview, refreshed when older than its cache lifetime",
          description:
            "For the dashboards, with the signed-in user's Supabase JWT. Asks Stripe (invoices.createPreview) only when the cached preview is older than INVOICE_PREVIEW_TTL_SECONDS; answers the cached preview of the current period.",
          security: [{ userJwt: [] }],
          requestBody: jsonBody('InvoicePreviewRequest'),
          responses: {
            '200': {
              description: 'The preview (refresh_error says when Stripe could not be asked now)',
              content: jsonContent('InvoicePreviewResponse'),
            },
            '400': errorResponse('The body is not {"tenant_id": "<uuid>"}'),
            '401': errorResponse('No access token, or one that is not valid (sign in again)'),
            '404': errorResponse("None of the user's tenants has this id"),
            ...jsonPostRefusals('1 KiB'),
            '503': errorResponse('The database could not be reached'),
          },
        },
      },
    },
    components: {
      securitySchemes: {
        runnerSecret: { type: 'http', scheme: 'bearer', description: 'One of RUNNER_SECRETS' },
        userJwt: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'JWT',
          description: "The signed-in user's Supabase access token",
        },
      },
      schemas: {
        EnforceRequest: json(enforceRequestSchema),
        Decision: json(decisionSchema),
        InvoicePreviewRequest: json(invoicePreviewRequestSchema),
        InvoicePreviewResponse: json(invoicePreviewResponseSchema),
        Error: json(errorBodySchema),
      },
    },
  };
}

export const openApiFile = `${projectRoot}docs/openapi.json`;
export const renderOpenApi = () => `${JSON.stringify(buildOpenApiDocument(), null, 2)}\n`;

if (import.meta.main) {
  await writeFile(openApiFile, renderOpenApi());
  console.log(`wrote ${openApiFile}`);
}
