import { z } from 'zod';

/**
 * A number as PostgreSQL's JSON or PostgREST hands it over: a JSON number, or the text of a
 * bigint or numeric. A null or empty value is refused, not read as 0, so a count the
 * database did not send cannot pass for zero.
 */
export const dbNumber = z.union([z.number(), z.string().trim().min(1)]).pipe(z.coerce.number());
