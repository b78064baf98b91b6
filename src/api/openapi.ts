import { writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { decisionSchema, enforceRequestSchema } from '../enforcement/schema.ts';
import { errorBodySchema } from '../http/responses.ts';
import { projectRoot } from '../local/project.ts';

/**
 * The OpenAPI 3.1 document of the HTTP API, generated from the same zod schemas the
 * handlers validate with. `npm run openapi` writes docs/openapi.json; a test fails while
 * the committed file differs from what the schemas say.
 */
const json = (schema: z.ZodType) =>
  z.toJSONSchema(schema, { target: 'draft-2020-12', io: 'input' });
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const errorResponse = (description: string) => ({
  description,
  content: { 'application/json': { schema: ref('Error') } },
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
          requestBody: {
            required: true,
            content: { 'application/json': { schema: ref('EnforceRequest') } },
          },
          responses: {
            '200': {
              description: 'Allowed: start the run',
              headers: usageHeaders,
              content: { 'application/json': { schema: ref('Decision') } },
            },
            '402': {
              description: 'Blocked: do not start the run (limit reached or subscription inactive)',
              headers: usageHeaders,
              content: { 'application/json': { schema: ref('Decision') } },
            },
            '400': errorResponse(
              'The body is not UTF-8 JSON or does not match the schema (details lists the fields; identifiers hold only letters, digits, punctuation, symbols and spaces)',
            ),
            '401': errorResponse('Missing or wrong runner secret'),
            '404': errorResponse('No tenant has that id or external reference'),
            '405': errorResponse('Only POST is allowed'),
            '413': errorResponse('The body is larger than 8 KiB'),
            '415': errorResponse('The body is not sent as application/json'),
            '500': errorResponse(
              'No decision could be made (the database refused the call, or its answer could not be read); never an allow, whatever ENFORCE_FAIL_MODE says',
            ),
            '503': errorResponse(
              'The database could not be reached and ENFORCE_FAIL_MODE is closed',
            ),
          },
        },
      },
    },
    components: {
      securitySchemes: {
        runnerSecret: { type: 'http', scheme: 'bearer', description: 'One of RUNNER_SECRETS' },
      },
      schemas: {
        EnforceRequest: json(enforceRequestSchema),
        Decision: json(decisionSchema),
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
