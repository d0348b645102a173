/**
 * SQL for NGSI-LD subscriptions and the notification queue (twin.subscriptions,
 * twin.notifications): subscription CRUD (writes carry their riders), the candidates of an entity
 * change, periodic subscriptions falling due (claimed by moving `next_due`, so each run happens
 * once across replicas), and the queue's enqueue / claim / outcome statements. Rows are claimed
 * with a lease, as the outbox relay does, so a sender that dies only delays its rows.
 */
import { sql, type Kysely, type QueryExecutorProvider } from 'kysely';
import { writeWith, type KernelTables, type Rider } from '../kernel/index.ts';
import type { NotificationStatus, StoredSubscription } from './subscription.model.ts';

type Db = QueryExecutorProvider;
type Writer = Kysely<KernelTables>;

interface SubscriptionDbRow {
  tenant: string;
  id: string;
  body: StoredSubscription;
  created_at: Date;
  modified_at: Date;
  times_sent: string | number;
  times_failed: string | number;
  last_notification: Date | null;
  last_success: Date | null;
  last_failure: Date | null;
  last_failure_reason: string | null;
}

/** A stored subscription with its notification status. */
export interface SubscriptionRecord extends NotificationStatus {
  tenant: string;
  subscription: StoredSubscription;
  createdAt: string;
  modifiedAt: string;
}

const iso = (d: Date | null): string | undefined => (d ? d.toISOString() : undefined);

const toRecord = (r: SubscriptionDbRow): SubscriptionRecord => ({
  tenant: r.tenant,
  subscription: r.body,
  createdAt: r.created_at.toISOString(),
  modifiedAt: r.modified_at.toISOString(),
  timesSent: Number(r.times_sent),
  timesFailed: Number(r.times_failed),
  lastNotification: iso(r.last_notification),
  lastSuccess: iso(r.last_success),
  lastFailure: iso(r.last_failure),
  lastFailureReason: r.last_failure_reason ?? undefined,
});

const COLUMNS = sql`s.tenant, s.id, s.body, s.created_at, s.modified_at, s.times_sent, s.times_failed,
  s.last_notification, s.last_success, s.last_failure, s.last_failure_reason`;

/** The indexed columns derived from a subscription. */
function derived(s: StoredSubscription) {
  return {
    types: s.entities ? [...new Set(s.entities.map((e) => e.type))] : null,
    watched: s.watchedAttributes ?? null,
    expiresAt: s.expiresAt ?? null,
    interval: s.timeInterval ?? null,
    throttling: s.throttling ?? null,
  };
}

/** Inserts a subscription with its riders; false (nothing written) when the id is taken. */
export async function insertSubscription(
  db: Writer,
  w: { tenant: string; subscription: StoredSubscription; at: Date },
  riders: Rider[],
): Promise<boolean> {
  const s = w.subscription;
  const d = derived(s);
  const rows = await writeWith(
    db,
    sql<{ id: string }>`insert into twin.subscriptions
        (tenant, id, body, types, watched, is_active, expires_at, time_interval, next_due, throttling, created_at, modified_at)
      values (${w.tenant}, ${s.id}, ${JSON.stringify(s)}::jsonb, ${d.types}::text[], ${d.watched}::text[], ${s.isActive},
        ${d.expiresAt}::timestamptz, ${d.interval}::float8, ${d.interval === null ? null : w.at}::timestamptz,
        ${d.throttling}::float8, ${w.at}, ${w.at})
      on conflict (tenant, id) do nothing returning id`,
    riders,
  );
  return rows.length > 0;
}

/** Rewrites a subscription (PATCH) with its riders; false when it no longer exists. */
export async function updateSubscription(
  db: Writer,
  w: { tenant: string; subscription: StoredSubscription; at: Date },
  riders: Rider[],
): Promise<boolean> {
  const s = w.subscription;
  const d = derived(s);
  const rows = await writeWith(
    db,
    sql<{
      id: string;
    }>`update twin.subscriptions set body = ${JSON.stringify(s)}::jsonb, types = ${d.types}::text[],
        watched = ${d.watched}::text[], is_active = ${s.isActive}, expires_at = ${d.expiresAt}::timestamptz,
        next_due = case when ${d.interval}::float8 is null then null
          when time_interval is distinct from ${d.interval}::float8 then ${w.at}::timestamptz else next_due end,
        time_interval = ${d.interval}::float8, throttling = ${d.throttling}::float8, modified_at = ${w.at}
      where tenant = ${w.tenant} and id = ${s.id} returning id`,
    riders,
  );
  return rows.length > 0;
}

/**
 * Deletes a subscription with its riders; false when there was none. Notifications it made before
 * are still delivered (they were due when made); delivered and failed ones are pruned later.
 */
export async function deleteSubscription(
  db: Writer,
  tenant: string,
  id: string,
  riders: Rider[],
): Promise<boolean> {
  const rows = await writeWith(
    db,
    sql<{ id: string }>`delete from twin.subscriptions where tenant = ${tenant} and id = ${id} returning id`,
    riders,
  );
  return rows.length > 0;
}

/** One subscription with its status. */
export async function findSubscription(
  db: Db,
  tenant: string,
  id: string,
): Promise<SubscriptionRecord | undefined> {
  const { rows } = await sql<SubscriptionDbRow>`select ${COLUMNS} from twin.subscriptions s
    where s.tenant = ${tenant} and s.id = ${id}`.execute(db);
  const r = rows[0];
  return r ? toRecord(r) : undefined;
}

/** A page of a tenant's subscriptions by id, and (optionally) how many there are. */
export async function listSubscriptions(
  db: Db,
  q: { tenant: string; limit: number; offset: number; count: boolean },
): Promise<{ records: SubscriptionRecord[]; count?: number }> {
  const { rows } = await sql<SubscriptionDbRow>`select ${COLUMNS} from twin.subscriptions s
    where s.tenant = ${q.tenant} order by s.id limit ${q.limit} offset ${q.offset}`.execute(db);
  if (!q.count) return { records: rows.map(toRecord) };
  const c = await sql<{
    n: string;
  }>`select count(*) as n from twin.subscriptions where tenant = ${q.tenant}`.execute(db);
  return { records: rows.map(toRecord), count: Number(c.rows[0]?.n ?? 0) };
}

/** The subscriptions an entity change of these types may concern: active, unexpired, not periodic. */
export async function candidateSubscriptions(
  db: Db,
  tenant: string,
  types: string[],
): Promise<(SubscriptionRecord & { lastNotificationMs: number | null })[]> {
  const { rows } = await sql<SubscriptionDbRow>`select ${COLUMNS} from twin.subscriptions s
    where s.tenant = ${tenant} and s.is_active and s.time_interval is null
      and (s.expires_at is null or s.expires_at > now())
      and (s.types is null or s.types && ${types}::text[])`.execute(db);
  return rows.map((r) => ({ ...toRecord(r), lastNotificationMs: r.last_notification?.getTime() ?? null }));
}

/**
 * Claims the periodic subscriptions that are due (at most `limit`) by moving each one's next
 * run a full interval on, in one statement: another replica skips the rows this one locked.
 */
export async function claimDueSubscriptions(db: Db, limit: number): Promise<SubscriptionRecord[]> {
  const { rows } = await sql<SubscriptionDbRow>`update twin.subscriptions s
      set next_due = now() + make_interval(secs => s.time_interval)
    from (select tenant, id from twin.subscriptions
      where time_interval is not null and is_active and next_due <= now()
        and (expires_at is null or expires_at > now())
      order by next_due limit ${limit} for update skip locked) due
    where s.tenant = due.tenant and s.id = due.id
    returning ${COLUMNS}`.execute(db);
  return rows.map(toRecord);
}

/** What a queued notification sends. */
export interface NotificationRequest {
  uri: string;
  contentType: 'application/json' | 'application/ld+json';
  headers: Record<string, string>;
  body: string;
  mqtt?: { version?: 'mqtt3.1.1' | 'mqtt5.0'; qos?: 0 | 1 | 2 };
}

export interface QueuedNotification {
  seq: number;
  createdAt: Date;
  tenant: string;
  subscriptionId: string;
  attempts: number;
  request: NotificationRequest;
}

interface QueuedDbRow {
  seq: string | number;
  created_at: Date;
  tenant: string;
  subscription_id: string;
  attempts: number;
  request: NotificationRequest;
}

const toQueued = (r: QueuedDbRow): QueuedNotification => ({
  seq: Number(r.seq),
  createdAt: r.created_at,
  tenant: r.tenant,
  subscriptionId: r.subscription_id,
  attempts: r.attempts,
  request: r.request,
});

/**
 * Commits notifications (once per subscription and event: a redelivered event adds nothing) and
 * claims those it inserted for this sender for `leaseSeconds`; resolves to the claimed rows.
 */
export async function enqueueNotifications(
  db: Db,
  rows: { tenant: string; subscriptionId: string; eventId: string; request: NotificationRequest }[],
  claim: { token: string; leaseSeconds: number },
): Promise<QueuedNotification[]> {
  if (rows.length === 0) return [];
  const { rows: inserted } = await sql<QueuedDbRow>`insert into twin.notifications
      (tenant, subscription_id, event_id, request, claimed_until, claim_token)
    select t, s, e::uuid, r::jsonb, now() + make_interval(secs => ${claim.leaseSeconds}), ${claim.token}::uuid
      from unnest(${rows.map((r) => r.tenant)}::text[], ${rows.map((r) => r.subscriptionId)}::text[],
        ${rows.map((r) => r.eventId)}::text[], ${rows.map((r) => JSON.stringify(r.request))}::text[]) as v(t, s, e, r)
    on conflict (tenant, subscription_id, event_id) do nothing
    returning seq, created_at, tenant, subscription_id, attempts, request`.execute(db);
  return inserted.map(toQueued);
}

/** Claims up to `limit` pending notifications that are due and not held by another sender. */
export async function claimDueNotifications(
  db: Db,
  claim: { token: string; leaseSeconds: number; limit: number },
): Promise<QueuedNotification[]> {
  const { rows } = await sql<QueuedDbRow>`update twin.notifications n
      set claimed_until = now() + make_interval(secs => ${claim.leaseSeconds}), claim_token = ${claim.token}::uuid
    from (select seq from twin.notifications
      where status = 'pending' and next_attempt_at <= now() and (claimed_until is null or claimed_until < now())
      order by next_attempt_at, seq limit ${claim.limit} for update skip locked) due
    where n.seq = due.seq
    returning n.seq, n.created_at, n.tenant, n.subscription_id, n.attempts, n.request`.execute(db);
  return rows.map(toQueued);
}

/** The outcome of one delivery attempt. */
export interface DeliveryOutcome {
  seq: number;
  tenant: string;
  subscriptionId: string;
  ok: boolean;
  /** No further attempt (success, permanent refusal, or the last attempt used). */
  final: boolean;
  error?: string | undefined;
  /** When a retry is due (ms from now). */
  retryInMs?: number | undefined;
  at: Date;
}

/**
 * Records delivery outcomes for rows this sender still holds (`token`): each notification's
 * status and next attempt, and each subscription's counters, in one transaction.
 */
export async function recordOutcomes(db: Writer, token: string, outcomes: DeliveryOutcome[]): Promise<void> {
  if (outcomes.length === 0) return;
  const status = outcomes.map((o) => (o.ok ? 'sent' : o.final ? 'failed' : 'pending'));
  await db.transaction().execute(async (trx) => {
    const { rows } = await sql<{
      tenant: string;
      subscription_id: string;
      ok: boolean;
      final: boolean;
      at: Date;
      error: string | null;
    }>`
      update twin.notifications n set status = v.status, attempts = n.attempts + 1,
        last_error = v.error, sent_at = case when v.ok then v.at else n.sent_at end,
        next_attempt_at = now() + make_interval(secs => v.retry / 1000.0),
        claimed_until = null, claim_token = null
      from unnest(${outcomes.map((o) => o.seq)}::bigint[], ${status}::text[], ${outcomes.map((o) => o.ok)}::boolean[],
        ${outcomes.map((o) => o.final)}::boolean[], ${outcomes.map((o) => o.error ?? null)}::text[],
        ${outcomes.map((o) => o.retryInMs ?? 0)}::float8[], ${outcomes.map((o) => o.at.toISOString())}::timestamptz[])
        as v(seq, status, ok, final, error, retry, at)
      where n.seq = v.seq and n.claim_token = ${token}::uuid
      returning n.tenant, n.subscription_id, v.ok, v.final, v.at, v.error`.execute(trx);
    // Counters per subscription: a success, or a failure that is final, is one notification.
    const per = new Map<
      string,
      { tenant: string; id: string; sent: number; failed: number; ok?: Date; fail?: Date; reason?: string }
    >();
    for (const r of rows) {
      const k = `${r.tenant}\u0000${r.subscription_id}`;
      const p = per.get(k) ?? { tenant: r.tenant, id: r.subscription_id, sent: 0, failed: 0 };
      if (r.ok) {
        p.sent++;
        if (!p.ok || r.at > p.ok) p.ok = r.at;
      } else {
        if (r.final) p.failed++;
        if (!p.fail || r.at > p.fail) {
          p.fail = r.at;
          p.reason = r.error ?? undefined;
        }
      }
      per.set(k, p);
    }
    if (per.size === 0) return;
    // One lock order for every sender (by tenant, id), so concurrent recordings cannot deadlock.
    const list = [...per.values()].sort((a, b) =>
      a.tenant === b.tenant ? (a.id < b.id ? -1 : 1) : a.tenant < b.tenant ? -1 : 1,
    );
    await sql`update twin.subscriptions s set times_sent = s.times_sent + v.sent, times_failed = s.times_failed + v.failed,
        last_notification = greatest(s.last_notification, v.ok, v.fail),
        last_success = greatest(s.last_success, v.ok), last_failure = greatest(s.last_failure, v.fail),
        last_failure_reason = coalesce(v.reason, s.last_failure_reason)
      from unnest(${list.map((p) => p.tenant)}::text[], ${list.map((p) => p.id)}::text[], ${list.map((p) => p.sent)}::int[],
        ${list.map((p) => p.failed)}::int[], ${list.map((p) => p.ok?.toISOString() ?? null)}::timestamptz[],
        ${list.map((p) => p.fail?.toISOString() ?? null)}::timestamptz[], ${list.map((p) => p.reason ?? null)}::text[])
        as v(tenant, id, sent, failed, ok, fail, reason)
      where s.tenant = v.tenant and s.id = v.id`.execute(trx);
  });
}

/** Marks that a subscription was notified now (throttling reads this before the outcome is known). */
export async function touchSubscriptions(db: Db, keys: { tenant: string; id: string }[]): Promise<void> {
  if (keys.length === 0) return;
  await sql`update twin.subscriptions s set last_notification = now()
    from unnest(${keys.map((k) => k.tenant)}::text[], ${keys.map((k) => k.id)}::text[]) as v(tenant, id)
    where s.tenant = v.tenant and s.id = v.id`.execute(db);
}

/** Notifications of a subscription, newest first (for the status endpoint and tests). */
export async function recentNotifications(
  db: Db,
  q: { tenant: string; subscriptionId: string; limit: number },
): Promise<
  {
    seq: number;
    status: 'pending' | 'sent' | 'failed';
    attempts: number;
    lastError: string | null;
    createdAt: string;
    sentAt: string | null;
  }[]
> {
  const { rows } = await sql<{
    seq: string;
    status: 'pending' | 'sent' | 'failed';
    attempts: number;
    last_error: string | null;
    created_at: Date;
    sent_at: Date | null;
  }>`
    select seq, status, attempts, last_error, created_at, sent_at from twin.notifications
    where tenant = ${q.tenant} and subscription_id = ${q.subscriptionId} order by seq desc limit ${q.limit}`.execute(
    db,
  );
  return rows.map((r) => ({
    seq: Number(r.seq),
    status: r.status,
    attempts: r.attempts,
    lastError: r.last_error,
    createdAt: r.created_at.toISOString(),
    sentAt: r.sent_at?.toISOString() ?? null,
  }));
}

/** Removes delivered notifications older than `hours` and failed ones older than `failedHours`. */
export async function pruneNotifications(db: Db, hours: number, failedHours: number): Promise<void> {
  await sql`delete from twin.notifications
    where (status = 'sent' and sent_at < now() - make_interval(hours => ${hours}))
       or (status = 'failed' and created_at < now() - make_interval(hours => ${failedHours}))`.execute(db);
}

/** Removes a tenant's subscriptions and notifications (with the tenant). */
export async function dropTenantSubscriptions(db: Db, tenant: string): Promise<void> {
  await sql`delete from twin.notifications where tenant = ${tenant}`.execute(db);
  await sql`delete from twin.subscriptions where tenant = ${tenant}`.execute(db);
}

/** How many notifications are waiting to be delivered (pending), for metrics. */
export async function pendingNotifications(db: Db): Promise<number> {
  const { rows } = await sql<{
    n: string;
  }>`select count(*) as n from twin.notifications where status = 'pending'`.execute(db);
  return Number(rows[0]?.n ?? 0);
}
