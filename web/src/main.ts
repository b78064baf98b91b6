import { createClient } from '@supabase/supabase-js';
import type { Database } from '../../src/db/database.types.ts';
import { loadConfig } from './config.ts';
import './dashboard.ts';
import './styles.css';

const dashboard = document.querySelector('flowmeter-dashboard');
const config = await loadConfig(
  () => fetch(new URL('config.json', document.baseURI), { cache: 'no-store' }),
  import.meta.env,
);
if (dashboard) {
  if (config.ok) {
    dashboard.invoicePreviewUrl = config.value.invoicePreviewUrl;
    dashboard.client = createClient<Database>(
      config.value.supabaseUrl,
      config.value.supabaseAnonKey,
    );
  } else {
    dashboard.configError = config.error.message;
  }
}

declare global {
  interface HTMLElementTagNameMap {
    'flowmeter-dashboard': import('./dashboard.ts').FlowmeterDashboard;
  }
}
