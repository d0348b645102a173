/** NGSI-LD tenants (NGSILD-Tenant) administration: list them, drop one with all its entities. */
import { AppError, Errors } from '../kernel/index.ts';
import { recordAudit, type CallContext } from '../trust/index.ts';
import { authorizeAdmin } from './access.ts';
import { dropTenant, listTenants, type TenantInfo } from './entity.store.ts';
import type { TwinRuntime } from './entity.service.ts';
import { dropTenantHistory } from './temporal.store.ts';
import { dropTenantRegistrations } from './csource.store.ts';
import { dropTenantSubscriptions } from './subscription.store.ts';

/** Every tenant with its entity count (twin.admin). */
export async function tenants(rt: TwinRuntime, call: CallContext): Promise<TenantInfo[]> {
  authorizeAdmin(rt.access === 'open' ? 'secured' : rt.access, call);
  return listTenants(rt.database.db);
}

/** Drops a tenant, its entities, their history, its subscriptions and registrations (twin.admin), audited; the default tenant cannot be dropped. */
export async function removeTenant(rt: TwinRuntime, call: CallContext, name: string): Promise<number> {
  authorizeAdmin(rt.access === 'open' ? 'secured' : rt.access, call);
  if (name === '' || name === 'default')
    throw new AppError(Errors.conflict, { detail: 'The default tenant cannot be dropped' });
  return rt.database.transact(async (trx) => {
    const removed = await dropTenant(trx, name);
    if (removed === undefined) throw new AppError(Errors['not-found'], { detail: `No tenant ${name}` });
    await dropTenantHistory(trx, name);
    await dropTenantRegistrations(trx, name);
    await dropTenantSubscriptions(trx, name);
    await recordAudit(trx, call, {
      action: 'twin.tenant.drop',
      resourceType: 'ngsi-ld-tenant',
      resourceId: name,
      details: { entities: removed },
    });
    return removed;
  });
}
