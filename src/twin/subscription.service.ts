/**
 * NGSI-LD subscription management (ETSI GS CIM 009 v1.8 §5.8): create, retrieve, query, update
 * and delete, each write with its audit record and outbox event in one statement. Subscriptions
 * configure outbound integrations, so in secured mode they are the twin administrators' to manage
 * (their notifications then carry every area's entities); in open mode anyone may.
 */
import { outboxRider, type Rider } from '../kernel/index.ts';
import { auditRider, type CallContext } from '../trust/index.ts';
import { authorizeAdmin, authorizeManage } from './access.ts';
import { clip } from './entity.model.ts';
import { requireTenant, type TwinCall, type TwinRuntime } from './entity.service.ts';
import { tenantRider } from './entity.store.ts';
import { NgsiError } from './errors.ts';
import type { LdContext } from './ldcontext.ts';
import { parseSubscription, renderSubscription } from './subscription.model.ts';
import {
  deleteSubscription,
  findSubscription,
  insertSubscription,
  listSubscriptions,
  recentNotifications,
  updateSubscription,
  type SubscriptionRecord,
} from './subscription.store.ts';

/** What subscription calls need beyond the twin runtime: the SSRF guard's setting. */
export interface SubscriptionRuntime extends TwinRuntime {
  notifyPrivate: boolean;
}

const notFound = (id: string): NgsiError => new NgsiError('ResourceNotFound', `No subscription ${clip(id)}`);

function riders(tc: TwinCall, action: string, id: string): Rider[] {
  return [
    auditRider(tc.call, [
      {
        action: `twin.subscription.${action}`,
        resourceType: 'ngsi-ld-subscription',
        resourceId: id,
        details: { tenant: tc.tenant },
      },
    ]),
    outboxRider([{ topic: `twin.subscription.${action}`, payload: { tenant: tc.tenant, id } }]),
  ];
}

/** Creates a subscription (§5.8.1); AlreadyExists when the id is taken. Resolves to its id. */
export async function createSubscription(
  rt: SubscriptionRuntime,
  tc: TwinCall & { context: LdContext },
  body: unknown,
): Promise<string> {
  authorizeManage(rt.access, tc.call);
  const at = new Date();
  const subscription = parseSubscription(body, {
    terms: tc.terms,
    context: [...tc.context.sources],
    allowPrivate: rt.notifyPrivate,
    now: at,
  });
  const extra = tc.tenant === '' ? [] : [tenantRider(tc.tenant)];
  const created = await insertSubscription(rt.database.db, { tenant: tc.tenant, subscription, at }, [
    ...extra,
    ...riders(tc, 'create', subscription.id),
  ]);
  if (!created) throw new NgsiError('AlreadyExists', `Subscription ${clip(subscription.id)} exists already`);
  return subscription.id;
}

async function visible(rt: TwinRuntime, tc: TwinCall, id: string): Promise<SubscriptionRecord> {
  authorizeManage(rt.access, tc.call);
  const found = await findSubscription(rt.database.db, tc.tenant, id);
  if (!found) {
    await requireTenant(rt.database.db, tc.tenant);
    throw notFound(id);
  }
  return found;
}

/** Retrieves a subscription with its notification status (§5.8.2). */
export async function retrieveSubscription(
  rt: TwinRuntime,
  tc: TwinCall,
  id: string,
  options: { sysAttrs: boolean },
): Promise<Record<string, unknown>> {
  const r = await visible(rt, tc, id);
  return renderSubscription(r.subscription, tc.terms, { ...r, sysAttrs: options.sysAttrs, now: new Date() });
}

/** A page of the tenant's subscriptions (§5.8.3). */
export async function querySubscriptions(
  rt: TwinRuntime,
  tc: TwinCall,
  q: { limit: number; offset: number; count: boolean; sysAttrs: boolean },
): Promise<{ subscriptions: Record<string, unknown>[]; count?: number }> {
  authorizeManage(rt.access, tc.call);
  await requireTenant(rt.database.db, tc.tenant);
  const page = await listSubscriptions(rt.database.db, { tenant: tc.tenant, ...q });
  const now = new Date();
  return {
    subscriptions: page.records.map((r) =>
      renderSubscription(r.subscription, tc.terms, { ...r, sysAttrs: q.sysAttrs, now }),
    ),
    ...(page.count === undefined ? {} : { count: page.count }),
  };
}

/** Updates a subscription with the members given (§5.8.4); the result is validated whole. */
export async function patchSubscription(
  rt: SubscriptionRuntime,
  tc: TwinCall & { context: LdContext },
  id: string,
  body: unknown,
): Promise<void> {
  const r = await visible(rt, tc, id);
  const at = new Date();
  const subscription = parseSubscription(body, {
    terms: tc.terms,
    context: [...tc.context.sources],
    allowPrivate: rt.notifyPrivate,
    now: at,
    base: r.subscription,
  });
  if (
    !(await updateSubscription(
      rt.database.db,
      { tenant: tc.tenant, subscription, at },
      riders(tc, 'update', id),
    ))
  )
    throw notFound(id);
}

/** Deletes a subscription (§5.8.5); notifications it made before are still delivered. */
export async function removeSubscription(rt: TwinRuntime, tc: TwinCall, id: string): Promise<void> {
  authorizeManage(rt.access, tc.call);
  if (!(await deleteSubscription(rt.database.db, tc.tenant, id, riders(tc, 'delete', id)))) {
    await requireTenant(rt.database.db, tc.tenant);
    throw notFound(id);
  }
}

/**
 * The latest notifications of a subscription with their status, attempts and last error — what an
 * operator looks at when a receiver fails (native API; twin.admin, always signed in).
 */
export async function subscriptionNotifications(
  rt: TwinRuntime,
  call: CallContext,
  q: { tenant: string; id: string; limit: number },
): Promise<Awaited<ReturnType<typeof recentNotifications>>> {
  authorizeAdmin(rt.access === 'open' ? 'secured' : rt.access, call);
  if (!(await findSubscription(rt.database.db, q.tenant, q.id))) throw notFound(q.id);
  return recentNotifications(rt.database.db, { tenant: q.tenant, subscriptionId: q.id, limit: q.limit });
}
