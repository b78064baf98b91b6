import type { SetupServer } from 'msw/node';
import { type ReporterSettings, runReporter } from '../../src/billing/report-usage.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { manualClock, reporterTestSettings, stripeClient } from './billing.ts';
import { useN8nServer } from './collector.ts';
import { FakeStripe } from './fake-stripe.ts';
import { succeeded } from './result.ts';
import { serviceClient } from './stack.ts';

type ManualClock = ReturnType<typeof manualClock>;

/** A fake Stripe answering on `server`, on the clock's time when given one. */
function fakeStripeOn(server: SetupServer, clock?: ManualClock) {
  const stripe = new FakeStripe(clock ? { now: clock.now } : {});
  server.use(...stripe.handlers());
  return stripe;
}

/**
 * This test file's msw (useN8nServer) for tests that talk to Stripe: each `fakeStripe()`
 * puts a new fake Stripe on it, which answers from then on.
 */
export function useStripeServer() {
  const server = useN8nServer();
  return { server, fakeStripe: () => fakeStripeOn(server) };
}

/** useStripeServer with one fake Stripe for the whole test file. */
export function useFakeStripe() {
  const { server, fakeStripe } = useStripeServer();
  return { server, stripe: fakeStripe() };
}

/**
 * Reporter runs over the given tenants only (other test files' reports are theirs), with
 * `settings` over those no test is limited by, through `stripe` (a 5 s timeout unless
 * given). On a manual clock a run never sleeps.
 */
export function reporterRun(settings: Partial<ReporterSettings>, clock?: ManualClock) {
  return (
    tenantIds: string[],
    overrides: Partial<ReporterSettings> = {},
    stripe = stripeClient(5000),
  ) =>
    succeeded(
      runReporter({
        db: serviceClient(),
        stripe,
        settings: { ...reporterTestSettings, ...settings, ...overrides },
        log: silentLogger,
        tenantIds,
        ...(clock ? { now: clock.now, sleep: clock.sleep } : {}),
      }),
    );
}

/** A fake Stripe and reporter runs sharing one manual clock that starts at `start`. */
export function reporterOnManualClock(
  server: SetupServer,
  start: number,
  settings: Partial<ReporterSettings>,
) {
  const clock = manualClock(start);
  return { clock, stripe: fakeStripeOn(server, clock), run: reporterRun(settings, clock) };
}
