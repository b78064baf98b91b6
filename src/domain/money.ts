/**
 * An amount in the currency's minor unit (cents), fractional like Stripe's
 * unit_amount_decimal, as money in the locale: rounded in minor units first, since a float
 * in major units misrounds half cents; currencies without minor units (JPY) stay whole.
 */
export function formatMoney(minorUnits: number, currency: string, locale?: string): string {
  const money = new Intl.NumberFormat(locale, {
    style: 'currency',
    currency: currency.toUpperCase(),
  });
  const digits = money.resolvedOptions().maximumFractionDigits ?? 2;
  return money.format(Math.round(minorUnits) / 10 ** digits);
}
