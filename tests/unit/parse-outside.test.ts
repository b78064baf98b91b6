import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { parseOutside } from '../../src/domain/parse-outside.ts';

/** JSON can write it: an object whose `length` no comparison can turn into a number. */
const unreadable = () => JSON.parse('{"length": {"toString": ""}}') as unknown;

const schemas: Record<string, z.ZodType<unknown>> = {
  'string min': z.object({ name: z.string().min(1) }),
  'string max': z.object({ name: z.string().max(5) }),
  'string length': z.object({ name: z.string().length(3) }),
  'array min': z.object({ name: z.array(z.number()).min(1) }),
  'trimmed string': z.object({ name: z.string().trim().min(1) }),
};

describe('parseOutside', () => {
  it.each(Object.entries(schemas))(
    'refuses, where zod alone throws, a %s given an unreadable length, naming its place',
    (_, schema) => {
      const body = { name: unreadable() };
      expect(() => schema.safeParse(body)).toThrow(TypeError);
      const parsed = parseOutside(schema, body);
      expect(parsed.success).toBe(false);
      expect(parsed.error?.issues).toMatchObject([
        { path: ['name'], message: 'holds a value of the wrong type' },
      ]);
    },
  );

  it('finds the place inside arrays, and says nothing of a place it cannot find', () => {
    const schema = z.object({ data: z.array(z.object({ mode: z.string().min(1) })) });
    const page = { data: [{ mode: 'trigger' }, { mode: unreadable() }] };
    expect(parseOutside(schema, page).error?.issues[0]?.path).toEqual(['data', 1, 'mode']);
    const throwing = z.custom(() => {
      throw new TypeError('boom');
    });
    expect(parseOutside(throwing, 1).error?.issues).toMatchObject([{ path: [] }]);
  });

  it('looks at a bounded number of values, building a path only for the one it names', () => {
    // 100,000 levels deep and nothing unreadable in it: each level's path copied from its
    // parent's would take billions of steps.
    let deep: unknown = 'bottom';
    for (let i = 0; i < 100_000; i++) deep = [deep];
    const throwing = z.custom(() => {
      throw new TypeError('boom');
    });
    expect(parseOutside(throwing, deep).error?.issues).toMatchObject([{ path: [] }]);
  });

  it('answers as safeParse does otherwise', () => {
    const schema = z.object({ name: z.string().min(1) });
    expect(parseOutside(schema, { name: 'a' })).toEqual(schema.safeParse({ name: 'a' }));
    expect(parseOutside(schema, { name: '' }).error?.issues).toEqual(
      schema.safeParse({ name: '' }).error?.issues,
    );
  });
});
