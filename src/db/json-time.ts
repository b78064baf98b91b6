import { z } from 'zod';

/**
 * A timestamptz as PostgreSQL writes it in JSON (`2026-12-02T10:00:00.123456+00:00`).
 * Health rules compare these times, and one they cannot read would count as on time, so
 * anything else is refused where the answer enters TypeScript.
 */
export const dbTimestamp = z.iso.datetime({ offset: true });
