/**
 * Case notifications. Two channels today, behind one rule — every workflow change of a case tells
 * its reporter (and watchers) and the organisations working on it:
 * - in-app feed: rows written by the change's own statement (see case.service.ts), unique per
 *   (case, history entry, recipient), so never lost and never doubled;
 * - webhooks: an organisation registers an HTTPS endpoint; a bus consumer (`ops-webhooks`) turns
 *   each committed change into one delivery row per webhook (unique per webhook and event:
 *   idempotent under redelivery), and a sender posts them signed (HMAC-SHA256), retrying with
 *   back-off; failures stay visible on the webhook's deliveries.
 * Another channel (SMS, the 随申办 app push) is another consumer of the same event.
 */
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import {
  AppError,
  Errors,
  type Database,
  type EventBus,
  type Logger,
  type Metrics,
} from '../kernel/index.ts';
import { authorize, OpsPermissions, recordAudit, requireSignedIn, type CallContext } from '../trust/index.ts';
import { createNotifier, parseEndpoint } from '../twin/index.ts';
import { actorOrgIds } from './access.ts';
import * as store from './case.store.ts';
import { loadDirectory, orgById } from './directory.ts';

const actorOrgs = (ctx: CallContext) => actorOrgIds(ctx.actor);

/** The caller's feed, newest first. */
export async function listNotifications(
  database: Database,
  ctx: CallContext,
  q: { unread: boolean; limit: number; before?: string | undefined },
) {
  requireSignedIn(ctx.actor);
  const rows = await store.notificationsFor(database.db, {
    userId: ctx.actor.userId,
    orgIds: actorOrgs(ctx),
    unread: q.unread,
    limit: q.limit,
    before: q.before ? new Date(q.before) : undefined,
  });
  return rows.map((r) => ({
    id: r.id,
    caseId: r.case_id,
    caseNumber: String(r.case_number),
    kind: r.kind,
    title: { zh: r.title_zh, en: r.title_en },
    createdAt: r.created_at.toISOString(),
    readAt: r.read_at ? r.read_at.toISOString() : null,
  }));
}

/** Marks one of the caller's notifications read; 404 for anyone else's. */
export async function readNotification(database: Database, ctx: CallContext, id: string): Promise<void> {
  requireSignedIn(ctx.actor);
  if (!(await store.markRead(database.db, { id, userId: ctx.actor.userId, orgIds: actorOrgs(ctx) })))
    throw new AppError(Errors['not-found'], { detail: 'No such notification' });
}

// --- Webhooks -------------------------------------------------------------------------------------

export interface WebhookView {
  id: string;
  orgId: string;
  url: string;
  active: boolean;
  createdAt: string;
}

interface WebhookRow {
  id: string;
  org_id: string;
  url: string;
  secret: string;
  active: boolean;
  created_at: Date;
}

const present = (r: WebhookRow): WebhookView => ({
  id: r.id,
  orgId: r.org_id,
  url: r.url,
  active: r.active,
  createdAt: r.created_at.toISOString(),
});

async function authorizeOrg(database: Database, ctx: CallContext, orgId: string) {
  await loadDirectory(database);
  const org = orgById(database, orgId);
  if (!org) throw new AppError(Errors['not-found'], { detail: 'No such organisation' });
  authorize(
    ctx.actor,
    OpsPermissions['webhooks.manage'],
    { areaPath: org.areaPath },
    { what: 'organisation' },
  );
  return org;
}

/** Registers a webhook for an organisation's cases; the signing secret is shown only here. */
export async function createWebhook(
  database: Database,
  ctx: CallContext,
  input: { orgId: string; url: string },
  options: { allowPrivate: boolean },
): Promise<WebhookView & { secret: string }> {
  const org = await authorizeOrg(database, ctx, input.orgId);
  try {
    const endpoint = parseEndpoint(input.url, { allowPrivate: options.allowPrivate });
    if (endpoint.scheme !== 'http' && endpoint.scheme !== 'https') throw new Error('only http(s)');
  } catch (e) {
    throw new AppError(Errors.unprocessable, { detail: `url: ${(e as Error).message}` });
  }
  const secret = randomBytes(24).toString('base64url');
  const id = randomUUID();
  const row = await database.transact(async (trx) => {
    const { rows } = await sql<WebhookRow>`insert into ops.webhooks (id, org_id, url, secret, created_by)
      values (${id}, ${input.orgId}, ${input.url}, ${secret}, ${ctx.actor.name}) returning *`.execute(trx);
    await recordAudit(trx, ctx, {
      action: 'webhook.create',
      resourceType: 'webhook',
      resourceId: id,
      area: org.areaCode,
      details: { org: org.code, url: input.url },
    });
    return rows[0];
  });
  webhookOrgCache.delete(database);
  if (!row) throw new Error('webhook not written');
  return { ...present(row), secret };
}

/** The webhooks of organisations the caller manages webhooks for. */
export async function listWebhooks(
  database: Database,
  ctx: CallContext,
  orgId: string,
): Promise<WebhookView[]> {
  await authorizeOrg(database, ctx, orgId);
  const { rows } =
    await sql<WebhookRow>`select * from ops.webhooks where org_id = ${orgId} order by created_at`.execute(
      database.db,
    );
  return rows.map(present);
}

async function findWebhook(database: Database, ctx: CallContext, id: string): Promise<WebhookRow> {
  const { rows } = await sql<WebhookRow>`select * from ops.webhooks where id = ${id}`.execute(database.db);
  const row = rows[0];
  if (!row) throw new AppError(Errors['not-found'], { detail: 'No such webhook' });
  await authorizeOrg(database, ctx, row.org_id);
  return row;
}

/** Deactivates a webhook (its history stays), audited. */
export async function deleteWebhook(database: Database, ctx: CallContext, id: string): Promise<void> {
  const row = await findWebhook(database, ctx, id);
  await database.transact(async (trx) => {
    await sql`update ops.webhooks set active = false where id = ${id}`.execute(trx);
    await sql`update ops.webhook_deliveries set status = 'failed', last_error = 'webhook removed'
      where webhook_id = ${id} and status = 'pending'`.execute(trx);
    await recordAudit(trx, ctx, {
      action: 'webhook.delete',
      resourceType: 'webhook',
      resourceId: id,
      details: { org: row.org_id },
    });
  });
  webhookOrgCache.delete(database);
}

/** A webhook's recent deliveries with their outcome (failures visible to the organisation). */
export async function webhookDeliveries(database: Database, ctx: CallContext, id: string, limit: number) {
  await findWebhook(database, ctx, id);
  const { rows } = await sql<{
    id: string;
    event_id: string;
    case_id: string;
    status: string;
    attempts: number;
    next_at: Date;
    last_error: string | null;
    last_status: number | null;
    created_at: Date;
    delivered_at: Date | null;
  }>`select id, event_id, case_id, status, attempts, next_at, last_error, last_status, created_at, delivered_at
    from ops.webhook_deliveries where webhook_id = ${id} order by created_at desc limit ${limit}`.execute(
    database.db,
  );
  return rows.map((r) => ({
    id: r.id,
    eventId: r.event_id,
    caseId: r.case_id,
    status: r.status,
    attempts: r.attempts,
    nextAt: r.next_at.toISOString(),
    lastError: r.last_error,
    lastStatus: r.last_status,
    createdAt: r.created_at.toISOString(),
    deliveredAt: r.delivered_at ? r.delivered_at.toISOString() : null,
  }));
}

const webhookOrgCache = new WeakMap<Database, { orgs: Set<string>; at: number }>();

/** The organisations with an active webhook (cached 5 s; dropped at once by a local change). */
async function webhookOrgs(database: Database): Promise<Set<string>> {
  const c = webhookOrgCache.get(database);
  if (c && Date.now() - c.at < 5_000) return c.orgs;
  const { rows } = await sql<{
    org_id: string;
  }>`select distinct org_id from ops.webhooks where active`.execute(database.db);
  const orgs = new Set(rows.map((r) => r.org_id));
  webhookOrgCache.set(database, { orgs, at: Date.now() });
  return orgs;
}

interface TransitionEventPayload {
  subject: { type: string; id: string };
  state: string;
  version: number;
  assignees: string[];
  entries: { seq: number; action: string; from: string; to: string; actor: string; at: string }[];
}

const MAX_ATTEMPTS = 8;
const LEASE_SECONDS = 60;

/**
 * Starts the webhook consumer and sender. Resolves to a handle whose `stop` ends both and waits
 * for deliveries in flight.
 */
export async function startWebhooks(args: {
  database: Database;
  bus: EventBus;
  logger: Logger;
  metrics: Metrics;
  timeoutMs: number;
  allowPrivate: boolean;
  pollMs?: number;
}): Promise<{ stop(): Promise<void> }> {
  const { database, logger } = args;
  const notifier = createNotifier({ timeoutMs: args.timeoutMs, allowPrivate: args.allowPrivate });
  const attempts = args.metrics.counter({
    name: 'pujiang_ops_webhook_attempts_total',
    help: 'Case webhook delivery attempts, by outcome',
    labelNames: ['outcome'],
  });

  // Consumer: one delivery row per webhook of each organisation concerned.
  const unsubscribe = await args.bus.subscribe({
    group: 'ops-webhooks',
    topics: ['workflow.case.transition'],
    maxDeliver: 10,
    handler: async (event) => {
      // Most deployments have few webhooks: skip reading the case when no organisation has one.
      if ((await webhookOrgs(database)).size === 0) return;
      const p = event.payload as TransitionEventPayload;
      const row = await store.findCase(database.db, p.subject.id);
      if (!row) return;
      const orgs = new Set([...p.assignees, ...(row.reported_by_org ? [row.reported_by_org] : [])]);
      const centre = row.centres[row.level];
      if (centre) orgs.add(centre);
      const payload = {
        event: 'case.changed',
        eventId: event.id,
        case: {
          id: row.id,
          number: String(row.number),
          category: row.category,
          status: p.state,
          version: p.version,
          level: row.level,
        },
        changes: p.entries,
      };
      const { rows } =
        await sql`insert into ops.webhook_deliveries (id, webhook_id, event_id, case_id, payload)
        select gen_random_uuid(), w.id, ${event.id}, ${row.id}, ${JSON.stringify(payload)}::jsonb
        from ops.webhooks w where w.active and w.org_id = any(${[...orgs]}::uuid[])
        on conflict (webhook_id, event_id) do nothing returning id`.execute(database.db);
      if (rows.length > 0) kick();
    },
  });

  let stopped = false;
  let running: Promise<void> | undefined;
  const sendDue = async () => {
    for (;;) {
      const { rows } = await sql<{
        id: string;
        url: string;
        secret: string;
        payload: unknown;
        attempts: number;
      }>`
        update ops.webhook_deliveries d set lease_until = now() + make_interval(secs => ${LEASE_SECONDS}),
          attempts = d.attempts + 1
        from (select dd.id from ops.webhook_deliveries dd
              where dd.status = 'pending' and dd.next_at <= now() and (dd.lease_until is null or dd.lease_until < now())
              order by dd.next_at limit 20 for update skip locked) due, ops.webhooks w
        where d.id = due.id and w.id = d.webhook_id
        returning d.id, w.url, w.secret, d.payload, d.attempts`.execute(database.db);
      if (rows.length === 0 || stopped) return;
      await Promise.all(
        rows.map(async (r) => {
          const body = JSON.stringify(r.payload);
          const signature = createHmac('sha256', r.secret).update(body).digest('hex');
          let outcome;
          try {
            const endpoint = parseEndpoint(r.url, { allowPrivate: args.allowPrivate });
            outcome = await notifier.send(endpoint, {
              body,
              contentType: 'application/json',
              headers: { 'X-Pujiang-Delivery': r.id, 'X-Pujiang-Signature': `sha256=${signature}` },
            });
          } catch (e) {
            outcome = { ok: false, permanent: true, error: (e as Error).message, durationMs: 0 };
          }
          attempts.inc({ outcome: outcome.ok ? 'delivered' : 'failed' });
          if (outcome.ok)
            await sql`update ops.webhook_deliveries set status = 'delivered', delivered_at = now(), lease_until = null,
              last_status = ${outcome.status ?? null}, last_error = null where id = ${r.id}`.execute(
              database.db,
            );
          else {
            const final = outcome.permanent === true || r.attempts >= MAX_ATTEMPTS;
            const backoff = outcome.retryAfterMs ?? Math.min(600_000, 1_000 * 2 ** (r.attempts - 1));
            await sql`update ops.webhook_deliveries set status = ${final ? 'failed' : 'pending'}, lease_until = null,
                next_at = now() + make_interval(secs => ${backoff / 1000}), last_status = ${outcome.status ?? null},
                last_error = ${(outcome.error ?? 'failed').slice(0, 500)}
              where id = ${r.id}`.execute(database.db);
            if (final)
              logger.warn({ delivery: r.id, error: outcome.error }, 'webhook delivery failed for good');
          }
        }),
      );
    }
  };
  function kick() {
    if (running || stopped) return;
    running = sendDue()
      .catch((e: unknown) => logger.warn({ err: (e as Error).message }, 'webhook sending failed; retrying'))
      .finally(() => {
        running = undefined;
      });
  }
  const timer = setInterval(kick, args.pollMs ?? 1_000);
  timer.unref();
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await unsubscribe();
      await running;
      await notifier.close();
    },
  };
}
