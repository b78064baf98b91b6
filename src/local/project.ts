import { fileURLToPath } from 'node:url';

/** The repository root: where supabase/, package.json and node_modules/ live. */
export const projectRoot = fileURLToPath(new URL('../../', import.meta.url));
