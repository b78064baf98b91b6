/*
 * Messages a person can act on, for the failures the dashboard meets: sign-in answers of
 * Supabase Auth and failed usage API calls. Pure, so each case is unit-tested.
 */

export interface FailureLike {
  name?: string;
  message?: string;
  status?: number;
  code?: string;
}

const NETWORK = /failed to fetch|fetch failed|networkerror|load failed|network request failed/i;

const isNetworkFailure = (error: FailureLike) =>
  error.name === 'AuthRetryableFetchError' || NETWORK.test(error.message ?? '');

export function signInErrorMessage(error: FailureLike): string {
  if (isNetworkFailure(error) || error.status === 0) {
    return 'The sign-in service cannot be reached. Check your connection and try again.';
  }
  if (
    error.code === 'invalid_credentials' ||
    /invalid login credentials/i.test(error.message ?? '')
  ) {
    return 'Wrong email or password.';
  }
  if (error.code === 'email_not_confirmed') {
    return 'This email address is not confirmed yet. Follow the link in the invitation first.';
  }
  if (error.status === 429 || error.code === 'over_request_rate_limit') {
    return 'Too many sign-in attempts. Wait a minute, then try again.';
  }
  if (error.code === 'user_banned') return 'This account is disabled. Ask your operator.';
  if (error.status !== undefined && error.status >= 500) {
    return 'The sign-in service has a problem right now. Try again in a moment.';
  }
  return `Sign-in failed: ${error.message ?? 'unknown error'}.`;
}

/** What a person is told when the API no longer takes their session. */
export const SESSION_ENDED = 'Your session has ended. Sign in again.';

/** A usage API failure; `expired` means the session is gone and the user must sign in again. */
export function loadErrorMessage(error: FailureLike): { message: string; expired: boolean } {
  if (isNetworkFailure(error)) {
    return {
      message:
        'The usage service cannot be reached. Check your connection; the page retries by itself.',
      expired: false,
    };
  }
  if (error.code === 'PGRST303' || error.code === 'PGRST301' || error.code === '42501') {
    return { message: SESSION_ENDED, expired: true };
  }
  return {
    message: `Usage could not be loaded: ${error.message ?? 'unknown error'}.`,
    expired: false,
  };
}

/**
 * Why a usage API action (marking an alert read) failed, to follow "Not …:". Nothing retries
 * an action, so the person is told to try again, not to wait for the page.
 */
export function actionErrorMessage(error: FailureLike): { message: string; expired: boolean } {
  if (isNetworkFailure(error)) {
    return {
      message: 'The usage service cannot be reached. Check your connection, then try again.',
      expired: false,
    };
  }
  const { expired } = loadErrorMessage(error);
  return { message: expired ? SESSION_ENDED : `${error.message ?? 'unknown error'}.`, expired };
}

/** An operator RPC failure: 403 is "not an operator" (no data shown), never an empty page. */
export function operatorErrorMessage(error: FailureLike): {
  message: string;
  notOperator: boolean;
  expired: boolean;
} {
  if (error.code === '42501') {
    return {
      message:
        'This account is not an operator, so the operator console shows nothing. Sign in with an operator account, or ask for one (`flowmeter operators add --email <address>`).',
      notOperator: true,
      expired: false,
    };
  }
  if (error.code === 'PT404') {
    return { message: `Not found: ${error.message ?? ''}`, notOperator: false, expired: false };
  }
  if (error.code === 'PT409') {
    return {
      message: `Not done: ${error.message ?? 'it does not apply'}.`,
      notOperator: false,
      expired: false,
    };
  }
  if (isNetworkFailure(error)) {
    return {
      message: 'The database cannot be reached. Check your connection, then reload the page.',
      notOperator: false,
      expired: false,
    };
  }
  const { expired } = loadErrorMessage(error);
  return {
    message: expired
      ? SESSION_ENDED
      : `The console could not load this: ${error.message ?? 'unknown error'}.`,
    notOperator: false,
    expired,
  };
}
