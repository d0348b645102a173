/**
 * Notifications (通知) for NGSI-LD subscriptions. The twin's outbox events (`twin.entity.*`)
 * reach the notifier through the event bus; each is matched against the tenant's subscriptions
 * (types, ids, id patterns, triggers, watched attributes, q, geoQ, scopeQ, throttling), and the
 * notifications it produces are committed — once per subscription and event, so a redelivered
 * event adds nothing — before any is sent. The node that commits them sends them at once; a
 * failure is retried with exponential backoff (or the receiver's Retry-After) until the attempts
 * run out, when it is recorded as failed; every outcome updates the subscription's status.
 * Rows are leased, so those of a node that dies are sent by the next sender after the lease:
 * no notification is lost, none is silently dropped (at least once). Periodic subscriptions
 * (timeInterval) are claimed when due by moving their next run, once across replicas.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql, type RawBuilder } from 'kysely';
import type { BusEvent, Database, EventBus, Logger, Metrics } from '../kernel/index.ts';
import { systemContext } from '../trust/index.ts';
import type { Terms } from './entity.model.ts';
import { runQuery, type QuerySpec } from './entity.query.ts';
import { renderEntity, type EntityRecord } from './entity.render.ts';
import { findEntity } from './entity.store.ts';
import { LOCATION, type TwinCall } from './entity.service.ts';
import { geoQueryToSql } from './geo.ts';
import { CORE_CONTEXT_URL, linkHeaderFor, type ContextResolver, type LdContext } from './ldcontext.ts';
import { createNotifier, parseEndpoint, type Notifier } from './notify.transport.ts';
import { parseScopeQ, qToSql, scopeQToSql } from './query.lang.ts';
import { geoQueryOf, type StoredSubscription, type Trigger } from './subscription.model.ts';
import {
  candidateSubscriptions,
  claimDueNotifications,
  claimDueSubscriptions,
  pendingNotifications,
  enqueueNotifications,
  pruneNotifications,
  recordOutcomes,
  touchSubscriptions,
  type DeliveryOutcome,
  type NotificationRequest,
  type QueuedNotification,
  type SubscriptionRecord,
} from './subscription.store.ts';

/** The outbox payload of an entity change (see `changeRiders` in entity.service.ts). */
export interface EntityChange {
  tenant: string;
  id: string;
  types: string[];
  /** Attribute IRIs created, updated and deleted by the write. */
  created?: string[];
  updated?: string[];
  deleted?: string[];
  /** The entity as the write left it (absent for a deletion, or an entity too large to carry). */
  entity?: EntityRecord;
}

export interface NotifierOptions {
  database: Database;
  bus: EventBus;
  logger: Logger;
  metrics: Metrics;
  contexts: ContextResolver;
  allowPrivate: boolean;
  timeoutMs: number;
  maxAttempts: number;
  concurrency: number;
  /** How often the sender looks for due retries and periodic subscriptions (default 1 s). */
  pollMs?: number;
}

export interface NotifierHandle {
  /** Waits until nothing this node holds is in flight (tests, shutdown). */
  idle(): Promise<void>;
  stop(): Promise<void>;
}

/** Delay before attempt `attempt + 1` (1-based attempts so far): 1 s doubling, capped at 5 min, ±20 %. */
export function retryDelayMs(attempt: number): number {
  const base = Math.min(300_000, 1_000 * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/** The triggers an entity change fires, for one subscription's watched attributes. */
export function firedTriggers(
  event: { action: string } & EntityChange,
  watched: string[] | undefined,
): Set<Trigger> {
  const out = new Set<Trigger>();
  const w = watched ? new Set(watched) : undefined;
  const any = (list: string[] | undefined) => (list ?? []).some((a) => !w || w.has(a));
  if (event.action === 'create') out.add('entityCreated');
  else if (event.action === 'delete') out.add('entityDeleted');
  else out.add('entityUpdated');
  if (any(event.created)) out.add('attributeCreated');
  if (any(event.updated)) out.add('attributeUpdated');
  if (any(event.deleted)) out.add('attributeDeleted');
  // entityUpdated concerns a subscription with watched attributes only when one of them changed.
  if (
    w &&
    out.has('entityUpdated') &&
    !any([...(event.created ?? []), ...(event.updated ?? []), ...(event.deleted ?? [])])
  )
    out.delete('entityUpdated');
  return out;
}

/** Does the selector list of a subscription take this entity (id, idPattern; types were matched in SQL)? */
function selects(s: StoredSubscription, id: string, types: string[]): boolean {
  if (!s.entities) return true;
  return s.entities.some(
    (e) =>
      types.includes(e.type) &&
      (e.id === undefined || e.id === id) &&
      (e.idPattern === undefined || new RegExp(e.idPattern, 'u').test(id)),
  );
}

/** The SQL condition (alias `e`) of a subscription's q, geoQ and scopeQ, or undefined when it has none. */
function conditionOf(s: StoredSubscription, terms: Terms): RawBuilder<boolean> | undefined {
  const parts: RawBuilder<boolean>[] = [];
  if (s.q !== undefined) parts.push(qToSql(s.q, (t) => terms.expand(t)));
  const geoQ = geoQueryOf(s);
  if (geoQ) {
    const iri = terms.expand(geoQ.geoproperty);
    const column =
      iri === LOCATION
        ? sql`e.location`
        : sql`st_setsrid(st_geomfromgeojson((e.attrs -> ${iri} -> 0 -> 'value')::text), 4326)`;
    parts.push(geoQueryToSql(geoQ, column));
  }
  if (s.scopeQ !== undefined) parts.push(scopeQToSql(parseScopeQ(s.scopeQ)));
  return parts.length === 0 ? undefined : sql<boolean>`(${sql.join(parts, sql` and `)})`;
}

/**
 * Which of the `conditions` (over alias `e`: attrs, location, scopes) hold for `entity` as given —
 * evaluated in SQL, as queries evaluate them, on the entity's state in the event rather than the
 * stored row (which may have changed since).
 */
async function passingConditions(
  database: Database,
  tenant: string,
  entity: EntityRecord,
  conditions: { i: number; cond: RawBuilder<boolean> }[],
): Promise<Set<number>> {
  const loc = entity.attrs[LOCATION]?.find((x) => x.datasetId === undefined) ?? entity.attrs[LOCATION]?.[0];
  const geojson = loc?.type === 'GeoProperty' && loc.value !== undefined ? JSON.stringify(loc.value) : null;
  const location =
    geojson === null
      ? sql`null::geometry`
      : sql`st_force2d(st_setsrid(st_geomfromgeojson(${geojson}), 4326))`;
  const { rows } = await sql<{ i: number }>`select x.i
    from (select ${tenant}::text as tenant, ${entity.id}::text as id, ${JSON.stringify(entity.attrs)}::jsonb as attrs,
      ${location} as location, ${entity.scopes}::text[] as scopes) e
    cross join lateral (values ${sql.join(conditions.map((c) => sql`(${c.i}::int, ${c.cond})`))}) as x(i, ok)
    where x.ok`.execute(database.db);
  return new Set(rows.map((r) => r.i));
}

const contextValue = (s: StoredSubscription): unknown =>
  s.context.length === 0 ? undefined : s.context.length === 1 ? s.context[0] : s.context;

/** Starts the notifier: the bus consumer, the sender of due notifications and periodic subscriptions. */
export async function startNotifier(o: NotifierOptions): Promise<NotifierHandle> {
  const { database, logger } = o;
  const notifier: Notifier = createNotifier({ timeoutMs: o.timeoutMs, allowPrivate: o.allowPrivate });
  const token = randomUUID();
  const leaseSeconds = Math.max(10, Math.ceil((o.timeoutMs * 3) / 1000));
  let stopped = false;
  const inFlight = new Set<Promise<void>>();
  let active = 0;
  const waiting: (() => void)[] = [];
  let pendingOutcomes: DeliveryOutcome[] = [];
  let flushTimer: NodeJS.Timeout | undefined;
  const attemptsTotal = o.metrics.counter({
    name: 'pujiang_twin_notification_attempts_total',
    help: 'NGSI-LD notification delivery attempts, by outcome (sent, retry, failed)',
    labelNames: ['outcome'] as const,
  });
  const delay = o.metrics.histogram({
    name: 'pujiang_twin_notification_delay_seconds',
    help: 'Time from a notification being committed to its delivery',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300, 3600],
  });
  o.metrics.gauge({
    name: 'pujiang_twin_notifications_pending',
    help: 'NGSI-LD notifications committed and not yet delivered or given up',
    collect: async (g) => g.set(await pendingNotifications(database.db)),
  });

  const termsOf = async (s: StoredSubscription): Promise<LdContext> => {
    try {
      return await o.contexts.resolve(contextValue(s));
    } catch {
      // The subscriber's context is unreachable now: names go out expanded rather than not at all.
      return o.contexts.resolve(undefined);
    }
  };

  /** The request a notification of `data` for subscription `s` sends. */
  const requestFor = (
    s: StoredSubscription,
    ctx: LdContext,
    data: Record<string, unknown>[],
    tenant: string,
  ): NotificationRequest => {
    const ld = s.notification.endpoint.accept === 'application/ld+json';
    const doc: Record<string, unknown> = {
      id: `urn:ngsi-ld:Notification:${randomUUID()}`,
      type: 'Notification',
      subscriptionId: s.id,
      notifiedAt: new Date().toISOString(),
      data,
    };
    const contextUrl = ctx.isCoreOnly
      ? CORE_CONTEXT_URL
      : (ctx.sources.find((x): x is string => typeof x === 'string') ?? CORE_CONTEXT_URL);
    const headers: Record<string, string> = {};
    if (ld)
      doc['@context'] = ctx.isCoreOnly
        ? CORE_CONTEXT_URL
        : ctx.sources.length === 1
          ? ctx.sources[0]
          : ctx.sources;
    else headers['Link'] = linkHeaderFor(contextUrl);
    if (tenant !== '') headers['NGSILD-Tenant'] = tenant;
    for (const kv of s.notification.endpoint.receiverInfo ?? []) headers[kv.key] = kv.value;
    const info = new Map((s.notification.endpoint.notifierInfo ?? []).map((kv) => [kv.key, kv.value]));
    const version = info.get('MQTT-Version');
    const qos = info.get('MQTT-QoS');
    return {
      uri: s.notification.endpoint.uri,
      contentType: ld ? 'application/ld+json' : 'application/json',
      headers,
      body: JSON.stringify(ld ? { '@context': doc['@context'], ...doc } : doc),
      ...(version !== undefined || qos !== undefined
        ? {
            mqtt: {
              ...(version === 'mqtt3.1.1' || version === 'mqtt5.0' ? { version } : {}),
              ...(qos === '0' || qos === '1' || qos === '2' ? { qos: Number(qos) as 0 | 1 | 2 } : {}),
            },
          }
        : {}),
    };
  };

  const render = (s: StoredSubscription, ctx: LdContext, e: EntityRecord): Record<string, unknown> =>
    renderEntity(e, ctx, {
      format: s.notification.format,
      sysAttrs: s.notification.sysAttrs,
      lang: s.lang,
      keepAttrs: s.notification.attributes ? new Set(s.notification.attributes) : undefined,
    });

  // --- Delivery ----------------------------------------------------------------------------------

  // Recordings run one at a time in this process; a failed one is tried again a few times (the
  // rows stay leased meanwhile), after which they are sent again when the lease ends (at least once).
  let recording: Promise<void> = Promise.resolve();
  const flush = (): Promise<void> => {
    if (flushTimer) clearTimeout(flushTimer);
    flushTimer = undefined;
    const batch = pendingOutcomes;
    pendingOutcomes = [];
    recording = recording.then(async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          await recordOutcomes(database.db, token, batch);
          return;
        } catch (e) {
          if (attempt >= 3) {
            logger.warn(
              { err: (e as Error).message, outcomes: batch.length },
              'notification outcomes not recorded',
            );
            return;
          }
          await sleep(50 * attempt);
        }
      }
    });
    return recording;
  };

  const record = (outcome: DeliveryOutcome): void => {
    pendingOutcomes.push(outcome);
    if (pendingOutcomes.length >= 200) void track(flush());
    else flushTimer ??= setTimeout(() => void track(flush()), 20);
  };

  const track = (p: Promise<void>): Promise<void> => {
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
    return p;
  };

  const slot = async (): Promise<void> => {
    if (active < o.concurrency) {
      active++;
      return;
    }
    await new Promise<void>((r) => waiting.push(r));
    active++;
  };
  const release = (): void => {
    active--;
    waiting.shift()?.();
  };

  const deliver = async (n: QueuedNotification): Promise<void> => {
    await slot();
    try {
      const attempt = n.attempts + 1;
      let outcome;
      try {
        const endpoint = parseEndpoint(n.request.uri, { allowPrivate: o.allowPrivate });
        outcome = await notifier.send(endpoint, {
          body: n.request.body,
          contentType: n.request.contentType,
          headers: n.request.headers,
          ...(n.request.mqtt ? { mqtt: n.request.mqtt } : {}),
        });
      } catch (e) {
        outcome = { ok: false, permanent: true, error: (e as Error).message, durationMs: 0 };
      }
      const final = outcome.ok || outcome.permanent === true || attempt >= o.maxAttempts;
      attemptsTotal.inc({ outcome: outcome.ok ? 'sent' : final ? 'failed' : 'retry' });
      if (outcome.ok) delay.observe((Date.now() - n.createdAt.getTime()) / 1000);
      record({
        seq: n.seq,
        tenant: n.tenant,
        subscriptionId: n.subscriptionId,
        ok: outcome.ok,
        final,
        error: outcome.ok ? undefined : (outcome.error ?? 'failed'),
        retryInMs: final ? undefined : (outcome.retryAfterMs ?? retryDelayMs(attempt)),
        at: new Date(),
      });
      if (!outcome.ok)
        logger.info(
          { subscription: n.subscriptionId, attempt, error: outcome.error, final },
          final ? 'notification failed' : 'notification attempt failed; will retry',
        );
    } finally {
      release();
    }
  };

  const sendAll = (rows: QueuedNotification[]): void => {
    for (const n of rows) void track(deliver(n));
  };

  // --- Matching entity changes ---------------------------------------------------------------------

  /**
   * Matches a batch of entity changes (in commit order) and commits their notifications in one
   * statement: the candidate subscriptions are read once per tenant for the whole batch.
   */
  const onEntityChanges = async (events: BusEvent[]): Promise<void> => {
    const changes = events.map((event) => ({
      event,
      action: event.topic.split('.')[2] ?? '',
      change: event.payload as EntityChange,
    }));
    const typesByTenant = new Map<string, Set<string>>();
    for (const { change } of changes) {
      const set = typesByTenant.get(change.tenant) ?? new Set<string>();
      for (const t of change.types) set.add(t);
      typesByTenant.set(change.tenant, set);
    }
    const candidates = new Map<string, Awaited<ReturnType<typeof candidateSubscriptions>>>();
    for (const [tenant, types] of typesByTenant)
      candidates.set(tenant, await candidateSubscriptions(database.db, tenant, [...types]));
    // Throttling across the batch: a subscription notified by an earlier change counts as notified.
    const lastNotified = new Map<string, number | null>();
    const rows: Parameters<typeof enqueueNotifications>[1] = [];
    const throttled = new Map<string, { tenant: string; id: string }>();
    for (const { event, action, change } of changes) {
      const subs = candidates.get(change.tenant) ?? [];
      if (subs.length === 0) continue;
      const now = Date.now();
      const chosen = subs.filter((r) => {
        const s = r.subscription;
        if (!selects(s, change.id, change.types)) return false;
        const fired = firedTriggers({ action, ...change }, s.watchedAttributes);
        if (!s.notificationTrigger.some((t) => fired.has(t))) return false;
        if (s.throttling === undefined) return true;
        const key = `${r.tenant}\u0000${s.id}`;
        const last = lastNotified.has(key) ? (lastNotified.get(key) ?? null) : r.lastNotificationMs;
        return last === null || now - last >= s.throttling * 1000;
      });
      if (chosen.length === 0) continue;
      // The entity as this change left it: from the event, else (a large entity) as it is now.
      let entity: EntityRecord | undefined;
      if (action !== 'delete') {
        entity = change.entity ?? (await findEntity(database.db, change.tenant, change.id));
        // Deleted since: the deletion's own event notifies.
        if (!entity) continue;
      }
      const withTerms = await Promise.all(
        chosen.map(async (r) => ({ r, ctx: await termsOf(r.subscription) })),
      );
      let passing = withTerms;
      const conditional = withTerms
        .map((x, i) => ({ i, cond: entity ? conditionOf(x.r.subscription, x.ctx) : undefined }))
        .filter((x): x is { i: number; cond: RawBuilder<boolean> } => x.cond !== undefined);
      if (entity && conditional.length > 0) {
        const ok = await passingConditions(database, change.tenant, entity, conditional);
        passing = withTerms.filter((_, i) => !conditional.some((c) => c.i === i) || ok.has(i));
      }
      for (const { r, ctx } of passing) {
        const data = entity
          ? [render(r.subscription, ctx, entity)]
          : [{ id: change.id, type: change.types.map((t) => ctx.compact(t)), deletedAt: event.createdAt }];
        rows.push({
          tenant: change.tenant,
          subscriptionId: r.subscription.id,
          eventId: event.id,
          request: requestFor(r.subscription, ctx, data, change.tenant),
        });
        if (r.subscription.throttling !== undefined) {
          const key = `${r.tenant}\u0000${r.subscription.id}`;
          lastNotified.set(key, now);
          throttled.set(key, { tenant: r.tenant, id: r.subscription.id });
        }
      }
    }
    if (rows.length === 0) return;
    const queued = await enqueueNotifications(database.db, rows, { token, leaseSeconds });
    if (throttled.size > 0) await touchSubscriptions(database.db, [...throttled.values()]);
    if (!stopped) sendAll(queued);
  };

  // --- Periodic subscriptions and retries ----------------------------------------------------------

  const runPeriodic = async (r: SubscriptionRecord): Promise<void> => {
    const s = r.subscription;
    const ctx = await termsOf(s);
    const tc: TwinCall = { call: systemContext('periodic notification'), tenant: r.tenant, terms: ctx };
    const spec: QuerySpec = {
      selectors: (s.entities ?? []).map((e) => ({
        type: e.type,
        ...(e.id ? { ids: [e.id] } : {}),
        ...(e.idPattern ? { idPattern: e.idPattern } : {}),
      })),
      q: s.q,
      geoQ: geoQueryOf(s),
      scopeQ: s.scopeQ,
      limit: 1000,
      offset: 0,
      count: false,
      format: s.notification.format,
      sysAttrs: s.notification.sysAttrs,
      joinLevel: 1,
    };
    // Subscriptions are managed by the twin's administrators (secured mode): they see every area.
    const page = await runQuery({ database, access: 'open', maxBatch: 0 }, tc, spec);
    if (page.entities.length === 0) return;
    const data = page.entities.map((e) => render(s, ctx, e));
    const queued = await enqueueNotifications(
      database.db,
      [
        {
          tenant: r.tenant,
          subscriptionId: s.id,
          eventId: randomUUID(),
          request: requestFor(s, ctx, data, r.tenant),
        },
      ],
      { token, leaseSeconds },
    );
    sendAll(queued);
  };

  let lastPrune = 0;
  const tick = async (): Promise<void> => {
    const due = await claimDueNotifications(database.db, { token, leaseSeconds, limit: 500 });
    sendAll(due);
    for (const r of await claimDueSubscriptions(database.db, 50)) {
      try {
        await runPeriodic(r);
      } catch (e) {
        logger.warn(
          { subscription: r.subscription.id, err: (e as Error).message },
          'periodic notification failed',
        );
      }
    }
    if (Date.now() - lastPrune > 600_000) {
      lastPrune = Date.now();
      await pruneNotifications(database.db, 24, 7 * 24);
    }
  };

  const unsubscribe = await o.bus.subscribe({
    group: 'twin-notifier',
    topics: ['twin.entity.>'],
    handler: (event) => onEntityChanges([event]),
    handleBatch: onEntityChanges,
    maxDeliver: 10,
  });
  const pollMs = o.pollMs ?? 1_000;
  let ticking: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    ticking = ticking
      .then(tick)
      .catch((e: unknown) =>
        logger.warn({ err: (e as Error).message }, 'notification sender failed; will retry'),
      );
  }, pollMs);
  timer.unref();

  const idle = async (): Promise<void> => {
    while (inFlight.size > 0 || pendingOutcomes.length > 0) {
      if (pendingOutcomes.length > 0) void track(flush());
      await Promise.all([...inFlight]);
    }
  };

  return {
    idle,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await unsubscribe();
      await ticking;
      await idle();
      await flush();
      await notifier.close();
    },
  };
}
