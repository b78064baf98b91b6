import { describe, expect, it } from 'vitest';
import { decodeCursor } from '../../src/n8n/cursor.ts';

const encoded = (content: unknown) => Buffer.from(JSON.stringify(content)).toString('base64');

describe('decodeCursor', () => {
  it("reads n8n's cursor", () => {
    const cursor = encoded({ lastId: '1234', limit: 250 });
    expect(decodeCursor(cursor).lastId).toBe(1234);
    expect(decodeCursor(cursor)).toEqual({ lastId: 1234, limit: 250 });
  });

  it.each([null, '', 'not base64 json', Buffer.from('{"lastId":"x"}').toString('base64')])(
    'returns null for %j',
    (cursor) => {
      expect(decodeCursor(cursor).lastId).toBeNull();
    },
  );

  it.each([
    undefined,
    encoded(null),
    encoded(7),
    encoded({ lastId: '9', limit: 0 }),
    encoded({ lastId: '9', limit: 2.5 }),
    encoded({ lastId: '9', limit: '250' }),
  ])('holds no limit in %j', (cursor) => {
    expect(decodeCursor(cursor).limit).toBeNull();
  });
});
