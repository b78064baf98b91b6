import { describe, expect, it } from 'vitest';
import { CliError, EXIT, valueOrExit } from '../../src/cli/context.ts';
import { ERROR_CODES, fail, ok } from '../../src/domain/result.ts';
import { ERROR_STATUS, resultResponse } from '../../src/http/responses.ts';

describe('one mapper per transport for the closed set of failure codes', () => {
  it('gives every code an HTTP status and answers with the one error body', async () => {
    for (const code of ERROR_CODES) expect(ERROR_STATUS[code]).toBeGreaterThanOrEqual(400);
    const response = resultResponse(fail('unavailable', 'the database did not answer'));
    expect(response.status).toBe(503);
    expect(await response.json()).toEqual({
      error: { code: 'unavailable', message: 'the database did not answer' },
    });
    const success = resultResponse(ok({ sent: 2 }));
    expect(success.status).toBe(200);
    expect(await success.json()).toEqual({ sent: 2 });
  });

  it('gives every code an exit code: usage errors 2, an unreachable database 3, the rest 1', () => {
    const exitOf = (code: (typeof ERROR_CODES)[number]) => {
      try {
        valueOrExit(fail(code, 'no'));
      } catch (error) {
        return error instanceof CliError ? error.exitCode : undefined;
      }
    };
    const byExit = (exit: number) => ERROR_CODES.filter((c) => exitOf(c) === exit);
    expect(byExit(EXIT.usage)).toEqual([
      'invalid_request',
      'unauthorized',
      'not_found',
      'unknown_tenant',
      'conflict',
    ]);
    expect(byExit(EXIT.unavailable)).toEqual(['unavailable']);
    expect(byExit(EXIT.failed)).toEqual(['upstream_failed', 'internal']);
    expect(valueOrExit(ok(7))).toBe(7);
  });
});
