export interface DashboardConfig {
  supabaseUrl: string;
  supabaseAnonKey: string;
  /**
   * The invoice-preview function, which refreshes Stripe's preview of a tenant's invoice.
   * On Netlify it is on the site's own origin; a served config.json names it only where
   * the functions run beside the page (npm start), so a page without them asks nothing.
   */
  invoicePreviewUrl?: string;
}

/** Where the function is on a Netlify deploy: the site's own origin. */
const NETLIFY_INVOICE_PREVIEW_URL = '/api/v1/invoice-preview';

export type ConfigResult =
  | { ok: true; value: DashboardConfig }
  | { ok: false; error: { code: 'missing_config'; message: string } };

function parse(value: unknown): DashboardConfig | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { supabaseUrl, supabaseAnonKey, invoicePreviewUrl } = value as Record<string, unknown>;
  if (typeof supabaseUrl !== 'string' || typeof supabaseAnonKey !== 'string') return undefined;
  if (!URL.canParse(supabaseUrl) || supabaseAnonKey === '') return undefined;
  return {
    supabaseUrl,
    supabaseAnonKey,
    ...(typeof invoicePreviewUrl === 'string' && invoicePreviewUrl !== ''
      ? { invoicePreviewUrl }
      : {}),
  };
}

/**
 * Where the dashboard finds Supabase. First `config.json` next to the page — `npm start`
 * serves one naming the local stack, so one build works on any port — then the values
 * Vite baked in at build time (VITE_SUPABASE_URL, VITE_SUPABASE_ANON_KEY), which is how a
 * Netlify deploy is configured. Only the public anon key ever reaches the browser.
 */
export async function loadConfig(
  fetchConfig: () => Promise<Response>,
  built: { VITE_SUPABASE_URL?: string; VITE_SUPABASE_ANON_KEY?: string },
): Promise<ConfigResult> {
  try {
    const response = await fetchConfig();
    if (response.ok) {
      const served = parse(await response.json());
      if (served) return { ok: true, value: served };
    }
  } catch {
    // No config.json (a Netlify deploy): the build-time values below apply.
  }
  const fromBuild = parse({
    supabaseUrl: built.VITE_SUPABASE_URL,
    supabaseAnonKey: built.VITE_SUPABASE_ANON_KEY,
  });
  if (fromBuild) {
    return { ok: true, value: { ...fromBuild, invoicePreviewUrl: NETLIFY_INVOICE_PREVIEW_URL } };
  }
  return {
    ok: false,
    error: {
      code: 'missing_config',
      message:
        'This dashboard is not configured: set VITE_SUPABASE_URL and VITE_SUPABASE_ANON_KEY when building it, or serve a config.json beside it.',
    },
  };
}
