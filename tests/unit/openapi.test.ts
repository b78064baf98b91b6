import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { buildOpenApiDocument, openApiFile, renderOpenApi } from '../../src/api/openapi.ts';
import { decisionSchema, enforceRequestSchema } from '../../src/enforcement/schema.ts';
import { ERROR_STATUS } from '../../src/http/responses.ts';

describe('OpenAPI document', () => {
  it('is what the zod schemas say (run `npm run openapi` after changing them)', async () => {
    expect(await readFile(openApiFile, 'utf8')).toBe(renderOpenApi());
  });

  it('describes every field of the request and the decision', () => {
    const { schemas } = buildOpenApiDocument().components;
    expect(Object.keys(schemas.EnforceRequest.properties ?? {}).sort()).toEqual(
      Object.keys(enforceRequestSchema.shape).sort(),
    );
    expect(Object.keys(schemas.Decision.properties ?? {}).sort()).toEqual(
      Object.keys(decisionSchema.shape).sort(),
    );
  });

  it('documents every status the enforce endpoint can answer', () => {
    const responses = Object.keys(buildOpenApiDocument().paths['/api/v1/enforce'].post.responses);
    const statuses = new Set(
      [
        'invalid_request',
        'unauthorized',
        'unknown_tenant',
        'method_not_allowed',
        'payload_too_large',
        'unsupported_media_type',
        'unavailable',
      ].map((c) => String(ERROR_STATUS[c as keyof typeof ERROR_STATUS])),
    );
    for (const status of ['200', '402', ...statuses]) expect(responses).toContain(status);
  });
});
