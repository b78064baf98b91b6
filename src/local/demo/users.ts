import { addMember } from '../../accounts/add-member.ts';
import { addOperator } from '../../accounts/operators.ts';
import type { Db } from '../../db/client.ts';

export interface DemoSignIn {
  email: string;
  password: string;
}

export const DEMO_OPERATOR_EMAIL = 'operator@demo.flowmeter.test';
const demoTenantEmail = (externalRef: string) =>
  `${externalRef.replace(/^demo-/, '')}@demo.flowmeter.test`;

/**
 * The demo's sign-ins: one viewer per demo tenant and one operator, made through the same
 * services as `flowmeter members add` and `flowmeter operators add`. The addresses are
 * fixed and the passwords come from the caller (kept in .flowmeter/local.env), and every
 * start sets them again: re-running `npm start` on the same data reuses the users, and the
 * printed sign-ins always work, even when local.env was deleted and new passwords made.
 */
export async function seedDemoUsers(options: {
  db: Db;
  tenants: ReadonlyArray<{ externalRef: string; name: string }>;
  passwords: { tenant: string; operator: string };
}): Promise<{ tenants: Array<DemoSignIn & { tenant: string }>; operator: DemoSignIn }> {
  const { db, passwords } = options;
  const tenants: Array<DemoSignIn & { tenant: string }> = [];
  for (const tenant of options.tenants) {
    const email = demoTenantEmail(tenant.externalRef);
    const added = await addMember({
      db,
      tenant: tenant.externalRef,
      email,
      role: 'viewer',
      access: { kind: 'password', password: passwords.tenant },
      resetPassword: true,
    });
    if (!added.ok) throw new Error(`demo user ${email}: ${added.error.message}`);
    tenants.push({ email, password: passwords.tenant, tenant: tenant.name });
  }
  const operator = await addOperator({
    db,
    email: DEMO_OPERATOR_EMAIL,
    access: { kind: 'password', password: passwords.operator },
    resetPassword: true,
  });
  if (!operator.ok) throw new Error(`demo operator: ${operator.error.message}`);
  return { tenants, operator: { email: DEMO_OPERATOR_EMAIL, password: passwords.operator } };
}
