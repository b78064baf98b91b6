import { describe, expect, it } from 'vitest';
import { plural } from '../../src/domain/words.ts';

describe('plural', () => {
  it('says "1 new execution", never "1 new executions"', () => {
    expect(plural(1, 'new execution')).toBe('1 new execution');
    expect(plural(0, 'new execution')).toBe('0 new executions');
    expect(plural(1200, 'source key')).toBe('1,200 source keys');
    expect(plural(2, 'alert delivery', 'alert deliveries')).toBe('2 alert deliveries');
  });

  it('says "-1 execution" of a correction that takes one back', () => {
    expect(plural(-1, 'execution')).toBe('-1 execution');
    expect(plural(-3, 'execution')).toBe('-3 executions');
  });
});
