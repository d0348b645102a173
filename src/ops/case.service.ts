/**
 * Cases (案件): registered once, located to the deepest area (unit grid), routed by the
 * responsibility matrix and dispatched in the same write, handled through the `ops.case`
 * workflow, escalated on SLA breach, visible by jurisdiction. Every write is one statement with
 * its workflow, audit record, outbox event and notifications riding on it.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { AppError, createCoalescer, Errors, writeWith, type Database, type Rider } from '../kernel/index.ts';
import {
  auditRiderOf,
  getArea,
  jurisdictionFilter,
  locate,
  OpsPermissions,
  recordAudit,
  requireSignedIn,
  SYSTEM,
  type AuditEntry,
  type CallContext,
} from '../trust/index.ts';
import {
  describeInstance,
  loadInstance,
  planInstance,
  registerWorkflowHooks,
  rolesFor,
  startRiders,
  startRidersOf,
  subtasksOf,
  transition,
  type HistoryEntry,
  type LoadedInstance,
  type TransitionPlan,
  type TransitionRequest,
} from '../workflow/index.ts';
import {
  actorOrgIds,
  authorizeCreate,
  authorizeSee,
  authorizeSupervise,
  canSeeContact,
  mask,
} from './access.ts';
import { existingEntities } from '../twin/index.ts';
import { findCategory } from './categories.ts';
import {
  CASE_EFFECTS,
  CASE_GUARDS,
  CASE_WORKFLOW,
  CASE_WORKFLOW_KEY,
  levelOf,
  TASK_WORKFLOW_KEY,
} from './case.workflow.ts';
import type { CaseCreate, CaseDetail, CaseQuery, CaseSummary, TransitionBody } from './case.schema.ts';
import * as store from './case.store.ts';
import { centreFor, loadDirectory, orgByCode, orgById } from './directory.ts';
import { requireMedia, type StoredMedia } from './media.ts';
import { routeCase } from './routing.service.ts';

/** A new case ready to write: its row, workflow plan, audit record and feed entries. */
export interface PendingCase {
  ctx: CallContext;
  row: store.CaseInsert;
  plan: TransitionPlan;
  audit: AuditEntry;
  notifications: store.NotificationInsert[];
}

/**
 * Writes new cases as one statement: the cases, their workflow instances (history, branches,
 * timers), audit records, outbox events and feed entries. Resolves to each case's number.
 */
export async function writeCases(
  database: Database,
  items: readonly PendingCase[],
): Promise<{ id: string; number: string | number }[]> {
  const notifications = items.flatMap((i) => i.notifications);
  const written = await writeWith(
    database.db,
    store.insertCases(items.map((i) => ({ c: i.row, plan: i.plan }))),
    [
      ...startRidersOf(items.map((i) => ({ ctx: i.ctx, plan: i.plan }))),
      auditRiderOf(items.map((i) => ({ ctx: i.ctx, entries: [i.audit] }))),
      ...(notifications.length > 0 ? [store.notificationsRider(notifications)] : []),
    ],
  );
  return items.map((i) => {
    const w = written.find((r) => r.id === i.row.id);
    if (!w) throw new Error(`case ${i.row.id} was not written`);
    return w;
  });
}

/** The ops runtime of a database: settings, and the group-committing writer of new cases. */
export function createOpsRuntime(
  database: Database,
  options: { mediaDir: string; mediaMaxBytes: number; duplicateMetres?: number; duplicateHours?: number },
): OpsRuntime {
  return {
    database,
    mediaDir: options.mediaDir,
    mediaMaxBytes: options.mediaMaxBytes,
    duplicateMetres: options.duplicateMetres ?? 50,
    duplicateHours: options.duplicateHours ?? 24,
    // Under load, new cases reported at the same moment share one statement and one commit.
    writeCase: createCoalescer({ max: 64, write: (items: PendingCase[]) => writeCases(database, items) }),
  };
}

export interface OpsRuntime {
  /** Writes one new case (batched with others arriving meanwhile). */
  writeCase: (item: PendingCase) => Promise<{ id: string; number: string | number }>;
  database: Database;
  mediaDir: string;
  mediaMaxBytes: number;
  /** Duplicate detection: same category within this many metres … */
  duplicateMetres: number;
  /** … reported within this many hours. */
  duplicateHours: number;
}

// --- The workflow's hooks: the case row and the in-app feed follow every transition ---------------

const STATE_NAMES = CASE_WORKFLOW.states;
const stateName = (s: string) => STATE_NAMES[s]?.name ?? { zh: s, en: s };
const actionName = (state: string, a: string): { zh: string; en: string } => {
  if (a === 'start') return { zh: '登记', en: 'Registered' };
  if (a === 'join') return { zh: '各部门均已反馈', en: 'All departments reported back' };
  if (a === 'sla-breach') return { zh: '超期', en: 'SLA breached' };
  for (const s of Object.values(STATE_NAMES)) {
    const found = s.actions?.[a];
    if (found) return found.name;
  }
  return { zh: a, en: `${a} (${state})` };
};

/** The feed entries of a plan: the reporter on every change, assignees when work reaches them, centres on escalation and breach. */
function notificationRiders(
  plan: TransitionPlan,
  caseId: string,
  options: { created: boolean; reporter: string | null },
): Rider[] {
  const { rows, riders } = notificationsOf(plan, caseId, options);
  return rows.length > 0 ? [...riders, store.notificationsRider(rows)] : riders;
}

/**
 * The feed entries of a plan: rows for recipients known here (organisations; the reporter of a
 * new case) and riders for those read from the case row (reporter and watchers, the centre).
 */
function notificationsOf(
  plan: TransitionPlan,
  caseId: string,
  options: { created: boolean; reporter: string | null },
): { rows: store.NotificationInsert[]; riders: Rider[] } {
  const riders: Rider[] = [];
  const n = plan.next;
  const orgRows: store.NotificationInsert[] = [];
  // A feed row to a known user or organisation about history entry `e`.
  const notice = (
    to: { user: string } | { org: string },
    e: TransitionPlan['entries'][number],
    kind: string,
    title: { zh: string; en: string },
  ): store.NotificationInsert => ({
    id: randomUUID(),
    userId: 'user' in to ? to.user : null,
    orgId: 'org' in to ? to.org : null,
    caseId,
    seq: e.seq,
    kind,
    titleZh: title.zh,
    titleEn: title.en,
    at: e.at,
  });
  for (const e of plan.entries) {
    const act = actionName(e.from, e.action);
    const to = stateName(e.to);
    const title = { zh: `${act.zh}：${to.zh}`, en: `${act.en}: ${to.en}` };
    const changed = e.from !== e.to || e.action === 'start';
    if (changed || e.action === 'escalate') {
      if (options.created) {
        if (options.reporter) orgRows.push(notice({ user: options.reporter }, e, e.action, title));
      } else
        riders.push(
          store.rowNotificationsRider({
            instanceId: n.id,
            to: 'reporters',
            seq: e.seq,
            kind: e.action,
            titleZh: title.zh,
            titleEn: title.en,
            at: e.at,
          }),
        );
    }
    if (e.to === 'handling' && e.from !== 'handling')
      for (const org of n.assignees)
        orgRows.push(
          notice({ org }, e, 'assigned', {
            zh: `新派遣：${title.zh}`,
            en: `Assigned to you: ${title.en}`,
          }),
        );
    if (e.action === 'escalate' || e.action === 'sla-breach') {
      if (!options.created)
        riders.push(
          store.rowNotificationsRider({
            instanceId: n.id,
            to: { centre: levelOf(n.data) },
            seq: e.seq,
            kind: e.action,
            titleZh:
              e.action === 'escalate' ? `案件升级至${levelZh(levelOf(n.data))}城运中心` : '案件处置超期',
            titleEn:
              e.action === 'escalate'
                ? `Case escalated to the ${levelOf(n.data)} operations centre`
                : 'Case handling is overdue',
            at: e.at,
          }),
        );
      for (const org of n.assignees) orgRows.push(notice({ org }, e, e.action, title));
    }
  }
  return { rows: orgRows, riders };
}

const levelZh = (l: string) => (l === 'city' ? '市' : l === 'district' ? '区' : '街镇');

registerWorkflowHooks(CASE_WORKFLOW_KEY, {
  guards: CASE_GUARDS,
  effects: CASE_EFFECTS,
  onTransition: (plan) => {
    const riders = [
      store.caseFollows(plan),
      ...notificationRiders(plan, plan.next.subjectId, { created: false, reporter: null }),
    ];
    const merge = plan.entries.find((e) => e.action === 'merge');
    const into = merge?.details['into'];
    if (typeof into === 'string') riders.push(store.mergeWatchers(plan.next.id, into));
    return riders;
  },
});
registerWorkflowHooks(TASK_WORKFLOW_KEY, {});

// --- Presenting ------------------------------------------------------------------------------------

function slaState(row: store.CaseRow, now: Date): CaseSummary['sla']['state'] {
  if (!row.open || !row.state_due_at) return 'none';
  if (row.state_due_at < now) return 'overdue';
  if (row.state_near_due_at && row.state_near_due_at <= now) return 'near-due';
  return 'on-time';
}

const iso = (d: Date | null) => (d ? d.toISOString() : null);

function presentSummary(database: Database, row: store.CaseRow, now: Date): CaseSummary {
  return {
    id: row.id,
    number: String(row.number),
    source: row.source as CaseSummary['source'],
    channel: row.channel,
    category: row.category,
    categoryName: findCategory(row.category)?.name ?? row.category,
    description: row.description,
    address: row.address,
    location: { lon: row.lon, lat: row.lat },
    area: { code: row.area_code, path: row.area_path, district: row.district_code, street: row.street_code },
    level: row.level,
    status: row.status,
    statusName: stateName(row.status),
    open: row.open,
    departments: row.department_ids.map((id) => ({ id, name: orgById(database, id)?.name ?? id })),
    sla: {
      state: slaState(row, now),
      stateDueAt: iso(row.state_due_at),
      dueAt: iso(row.due_at),
      breachedAt: iso(row.breached_at),
      escalations: row.escalations,
    },
    version: row.version,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
    closedAt: iso(row.closed_at),
  };
}

/**
 * The case as its detail view. `fresh` carries what a just-written case already knows (its
 * instance and history, no sub-tasks), so creating a case reads nothing back.
 */
async function presentDetail(
  rt: OpsRuntime,
  ctx: CallContext,
  row: store.CaseRow,
  fresh?: { instance: LoadedInstance; history: HistoryEntry[] },
): Promise<CaseDetail> {
  const { database } = rt;
  const now = new Date();
  const instance = fresh?.instance ?? (await loadInstance(database.db, row.instance_id));
  if (!instance) throw new Error(`case ${row.id}: workflow instance ${row.instance_id} is missing`);
  const { history, actions } = await describeInstance(database, ctx, instance, fresh?.history);
  const unmasked = canSeeContact(ctx.actor, row);
  const hasContact = row.reporter_name !== null || row.reporter_phone !== null || row.reporter_email !== null;
  // Reading back the contact one has just typed in is not a read of someone's personal data.
  if (unmasked && hasContact && ctx.actor.userId !== row.reporter_user_id && !fresh)
    // Reading someone's personal data is recorded, with the declared purpose (X-Purpose).
    await database.transact((trx) =>
      recordAudit(trx, ctx, {
        action: 'case.contact.read',
        resourceType: 'case',
        resourceId: row.id,
        area: row.area_code,
        details: {
          fields: ['name', 'phone', 'email'].filter((f) => row[`reporter_${f}` as 'reporter_name'] !== null),
        },
      }),
    );
  const attached = history.flatMap((h) => h.attachments.map((a) => a.sha256));
  const media = attached.length > 0 ? await store.findMedia(database.db, attached) : [];
  const tasks = fresh ? [] : await subtasksOf(database.db, row.instance_id);
  return {
    ...presentSummary(database, row, now),
    routedBy: row.routed_by,
    routeReason: row.route_reason,
    entityIds: row.entity_ids,
    photos: row.photos,
    mediaUrls: row.media_urls,
    attributes: row.attributes,
    reporter: {
      name: unmasked ? row.reporter_name : mask('name', row.reporter_name),
      phone: unmasked ? row.reporter_phone : mask('phone', row.reporter_phone),
      email: unmasked ? row.reporter_email : mask('email', row.reporter_email),
      masked: !unmasked,
    },
    mergedInto: row.merged_into,
    rating: row.rating,
    ratingComment: row.rating_comment,
    timeline: history.map((h) => presentEntry(database, h, media)),
    actions,
    subtasks: tasks.map((t) => ({
      id: t.id,
      orgId: t.assignees[0] ?? '',
      description: typeof t.data['description'] === 'string' ? t.data['description'] : '',
      state: t.state,
      version: t.version,
      dueAt: iso(t.stateDueAt),
    })),
  };
}

function presentEntry(database: Database, h: HistoryEntry, media: StoredMedia[]) {
  return {
    seq: h.seq,
    action: h.action,
    actionName: actionName(h.from, h.action),
    from: h.from,
    to: h.to,
    actor: h.actor.name,
    org: h.org === null ? null : (orgByCode(database, h.org)?.name ?? h.org),
    at: h.at.toISOString(),
    comment: h.comment,
    attachments: h.attachments.map((a) => media.find((m) => m.sha256 === a.sha256) ?? a),
    assignees: h.assignees,
  };
}

// --- Creating ----------------------------------------------------------------------------------------

export interface CreateOptions {
  channel?: 'api' | 'open311';
  mediaUrls?: string[];
  open311Token?: string | null;
}

/**
 * Registers a case: category and location checked, the point located to its grid, the
 * department chosen by the matrix (or the dispatcher's override, with a reason) and dispatched in
 * the same write. Answers the case and nearby open duplicates (suggested merges).
 */
export async function createCase(
  rt: OpsRuntime,
  ctx: CallContext,
  input: CaseCreate,
  options: CreateOptions = {},
): Promise<{
  case: CaseDetail;
  duplicates: { id: string; number: string; distanceMetres: number; status: string }[];
}> {
  const { database } = rt;
  requireSignedIn(ctx.actor);
  const category = findCategory(input.category);
  if (!category) throw new AppError(Errors.unprocessable, { detail: `Unknown category "${input.category}"` });
  const located = await locate(database, input.location).catch((e: unknown) => {
    if (e instanceof AppError && e.spec.status === 404)
      throw new AppError(Errors.unprocessable, {
        detail: `The location (${input.location.lon}, ${input.location.lat}) is outside the city's areas`,
      });
    throw e;
  });
  const areaPath = located.area.path.join('/');
  const chain = located.chain;
  const district = chain.find((a) => a.level === 'district');
  if (!district)
    throw new AppError(Errors.unprocessable, { detail: 'The location is not inside a district' });
  const street = chain.find((a) => a.level === 'street');
  authorizeCreate(ctx.actor, areaPath, input.source);
  await loadDirectory(database);

  const photos = input.photos ? await requireMedia(database, input.photos) : [];
  if (input.entityIds?.length) {
    // A case links to real things of the twin (the manhole cover, the streetlight), not to typos.
    const known = await existingEntities(database, input.entityIds);
    const missing = input.entityIds.find((e) => !known.has(e));
    if (missing !== undefined)
      throw new AppError(Errors.unprocessable, { detail: `No twin entity ${missing}` });
  }
  let assignees: string[] | undefined;
  let routedBy: 'matrix' | 'dispatcher' | null = null;
  let routeReason: string | null = null;
  if (input.departmentIds) {
    requireDepartments(database, input.departmentIds);
    if (!input.reason?.trim())
      throw new AppError(Errors.unprocessable, {
        detail: 'Choosing the departments yourself needs a reason',
      });
    assignees = input.departmentIds;
    routedBy = 'dispatcher';
    routeReason = input.reason.trim();
  } else {
    const route = await routeCase(database, category.id, areaPath);
    if (route) {
      assignees = [route.orgId];
      routedBy = 'matrix';
    }
  }

  const id = randomUUID();
  const centres: Partial<Record<'street' | 'district' | 'city', string>> = {};
  for (const level of ['street', 'district', 'city'] as const) {
    const c = centreFor(database, areaPath, level);
    if (c) centres[level] = c.id;
  }
  const now = new Date();
  const plan = await planInstance(database, ctx, {
    key: CASE_WORKFLOW_KEY,
    subject: { type: 'case', id },
    areaPath,
    // A citizen reports for themself; an operator taking a call or an inspector is not the reporter.
    reporterUserId: input.source === 'citizen' && ctx.actor.kind === 'user' ? ctx.actor.userId : null,
    data: { level: 'street' },
    then: assignees
      ? [{ action: 'dispatch', assignees, comment: routeReason ?? undefined, details: { routedBy } }]
      : [],
    // The matrix dispatches on the platform's behalf (自动派遣); an override is the dispatcher's own act.
    thenActor: routedBy === 'matrix' ? SYSTEM : ctx.actor,
    now,
  });
  const row: store.CaseInsert = {
    id,
    instanceId: plan.next.id,
    source: input.source,
    channel: options.channel ?? 'api',
    category: category.id,
    description: input.description.trim(),
    address: input.address?.trim() ?? null,
    lon: input.location.lon,
    lat: input.location.lat,
    areaCode: located.area.code,
    areaPath,
    districtCode: district.code,
    streetCode: street?.code ?? null,
    centres,
    routedBy,
    routeReason,
    entityIds: input.entityIds ?? [],
    photos,
    mediaUrls: options.mediaUrls ?? [],
    attributes: input.attributes ?? {},
    reporterUserId: plan.next.reporterUserId,
    reporterName: input.reporter?.name ?? null,
    reporterPhone: input.reporter?.phone ?? null,
    reporterEmail: input.reporter?.email ?? null,
    reportedByOrg: ctx.actor.kind === 'api-key' ? (ctx.actor.grants[0]?.orgId ?? null) : null,
    open311Token: options.open311Token ?? null,
    createdBy: ctx.actor.name,
  };
  const duplicates = await store.nearbyOpenCases(database.db, {
    category: category.id,
    lon: input.location.lon,
    lat: input.location.lat,
    metres: rt.duplicateMetres,
    since: new Date(now.getTime() - rt.duplicateHours * 3_600_000),
    limit: 5,
  });
  const written = await rt.writeCase({
    ctx,
    row,
    plan,
    audit: {
      action: 'case.create',
      resourceType: 'case',
      resourceId: id,
      area: row.areaCode,
      details: {
        category: row.category,
        source: row.source,
        channel: row.channel,
        routedBy,
        departments: assignees ?? [],
      },
    },
    notifications: notificationsOf(plan, id, { created: true, reporter: row.reporterUserId }).rows,
  });
  const n = plan.next;
  const created: store.CaseRow = {
    id,
    number: written.number,
    instance_id: n.id,
    source: row.source,
    channel: row.channel,
    category: row.category,
    description: row.description,
    address: row.address,
    lon: row.lon,
    lat: row.lat,
    area_code: row.areaCode,
    area_path: row.areaPath,
    district_code: row.districtCode,
    street_code: row.streetCode,
    level: 'street',
    centres,
    status: n.state,
    open: n.endedAt === null,
    department_ids: n.assignees,
    routed_by: routedBy,
    route_reason: routeReason,
    entity_ids: row.entityIds,
    photos,
    media_urls: row.mediaUrls,
    attributes: row.attributes,
    reporter_user_id: row.reporterUserId,
    reporter_name: row.reporterName,
    reporter_phone: row.reporterPhone,
    reporter_email: row.reporterEmail,
    reported_by_org: row.reportedByOrg,
    watchers: [],
    merged_into: null,
    state_due_at: n.stateDueAt,
    state_near_due_at: n.stateNearDueAt,
    due_at: n.dueAt,
    breached_at: null,
    escalations: 0,
    rating: null,
    rating_comment: null,
    version: n.version,
    open311_token: row.open311Token,
    created_by: row.createdBy,
    created_at: n.startedAt,
    updated_at: n.startedAt,
    closed_at: null,
  };
  return {
    case: await presentDetail(rt, ctx, created, {
      instance: {
        ...n,
        branches: n.assignees.map((orgId) => ({
          orgId,
          openedAt: n.stateEnteredAt,
          completedAt: null,
          completedBy: null,
        })),
        openSubtasks: 0,
      },
      history: plan.entries,
    }),
    duplicates: duplicates.map((d) => ({
      id: d.id,
      number: String(d.number),
      distanceMetres: Math.round(d.distance * 10) / 10,
      status: d.status,
    })),
  };
}

function requireDepartments(database: Database, ids: readonly string[]): void {
  for (const d of ids) {
    const org = orgById(database, d);
    if (!org || (org.kind !== 'department' && org.kind !== 'operations-centre'))
      throw new AppError(Errors.unprocessable, { detail: `Organisation ${d} is not an active department` });
  }
}

// --- Reading -------------------------------------------------------------------------------------------

/** One case with its timeline and the actions the caller may take; 404 when not visible. */
export async function getCase(rt: OpsRuntime, ctx: CallContext, id: string): Promise<CaseDetail> {
  const row = await store.findCase(rt.database.db, id);
  authorizeSee(ctx.actor, row);
  await loadDirectory(rt.database);
  return presentDetail(rt, ctx, row);
}

const encodeCursor = (v: { t: string; id: string }) => Buffer.from(JSON.stringify(v)).toString('base64url');
function decodeCursor(s: string): { t: Date; id: string } {
  try {
    const v = JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as { t?: unknown; id?: unknown };
    const t = typeof v.t === 'string' ? new Date(v.t) : new Date(NaN);
    if (Number.isNaN(t.getTime()) || typeof v.id !== 'string' || !/^[0-9a-f-]{36}$/.test(v.id))
      throw new Error('bad');
    return { t, id: v.id };
  } catch {
    throw new AppError(Errors['bad-request'], { detail: 'The cursor "after" is not one this API gave out' });
  }
}

const list = (s: string | undefined) =>
  s === undefined
    ? undefined
    : s
        .split(',')
        .map((x) => x.trim())
        .filter((x) => x.length > 0);

/**
 * A page of the cases in the caller's jurisdiction (and those they reported or were assigned),
 * filtered; keyset-paginated newest first, or by deadline for supervision (`order=due`).
 */
export async function listCases(
  rt: OpsRuntime,
  ctx: CallContext,
  q: CaseQuery,
): Promise<{ items: CaseSummary[]; next: string | null }> {
  const { database } = rt;
  requireSignedIn(ctx.actor);
  await loadDirectory(database);
  const area = q.area === undefined ? undefined : await getArea(database, q.area);
  const areaPath = area?.path.join('/');
  const now = new Date();
  const byDue = q.order === 'due';
  const cursor = q.after === undefined ? undefined : decodeCursor(q.after);
  const rows = await store.listCases(
    database.db,
    {
      status: list(q.status),
      category: list(q.category),
      // A district or street is a column of its own, so its open cases come by deadline from an
      // index; the path prefix would only tempt the planner into reading the whole district.
      areaPath: area?.level === 'district' || area?.level === 'street' ? undefined : areaPath,
      districtCode: area?.level === 'district' ? area.code : undefined,
      streetCode: area?.level === 'street' ? area.code : undefined,
      department: q.department,
      level: q.level,
      source: q.source,
      sla: q.sla,
      open: q.open,
      createdFrom: q.from ? new Date(q.from) : undefined,
      createdTo: q.to ? new Date(q.to) : undefined,
      byDue,
      after: !byDue && cursor ? { createdAt: cursor.t, id: cursor.id } : undefined,
      afterDue: byDue && cursor ? { dueAt: cursor.t, id: cursor.id } : undefined,
      limit: q.limit,
      now,
    },
    visibleScope(ctx),
  );
  const last = rows[rows.length - 1];
  const next =
    rows.length === q.limit && last
      ? encodeCursor({
          t: (byDue ? (last.state_due_at ?? last.created_at) : last.created_at).toISOString(),
          id: last.id,
        })
      : null;
  return { items: rows.map((r) => presentSummary(database, r, now)), next };
}

/** The SQL condition of the cases the caller may see (jurisdiction, or their own / their organisation's). */
function visibleScope(ctx: CallContext) {
  const actor = ctx.actor;
  const byArea = jurisdictionFilter(actor, OpsPermissions['cases.read'], sql`c.area_path`);
  const orgs = actorOrgIds(actor);
  const mine = actor.userId
    ? sql`(c.reporter_user_id = ${actor.userId} or c.watchers @> array[${actor.userId}]::uuid[])`
    : sql`false`;
  const ours = orgs.length
    ? sql`(c.department_ids && ${orgs}::uuid[] or c.reported_by_org = any(${orgs}::uuid[]))`
    : sql`false`;
  return sql<boolean>`(${byArea} or ${mine} or ${ours})`;
}

// --- Acting --------------------------------------------------------------------------------------------

/**
 * Takes a workflow action on a case: the action must be available to this actor now (403/409),
 * the version current (409), dispatch targets departments, rating 1–5, merge a visible open case;
 * a repeated Idempotency-Key returns the first outcome.
 */
export async function actOnCase(
  rt: OpsRuntime,
  ctx: CallContext,
  id: string,
  body: TransitionBody,
  options: { requestId?: string | undefined } = {},
): Promise<CaseDetail> {
  const { database } = rt;
  const row = await store.findCase(database.db, id);
  authorizeSee(ctx.actor, row);
  await loadDirectory(database);
  const request: TransitionRequest = {
    action: body.action,
    version: body.version,
    requestId: options.requestId,
    comment: body.comment,
    details: {},
  };
  if (body.attachments) request.attachments = await requireMedia(database, body.attachments);
  const misplaced = (field: string, action: string) =>
    new AppError(Errors.unprocessable, { detail: `"${field}" goes with the action "${action}" only` });
  if (body.departmentIds && body.action !== 'dispatch') throw misplaced('departmentIds', 'dispatch');
  if (body.rating !== undefined && body.action !== 'rate') throw misplaced('rating', 'rate');
  if (body.into !== undefined && body.action !== 'merge') throw misplaced('into', 'merge');
  if (body.action === 'dispatch') {
    const route = await routeCase(database, row.category, row.area_path);
    if (body.departmentIds) {
      requireDepartments(database, body.departmentIds);
      const overrides = !route || body.departmentIds.length !== 1 || body.departmentIds[0] !== route.orgId;
      if (overrides && !body.comment?.trim())
        throw new AppError(Errors.unprocessable, {
          detail:
            'Dispatching to other departments than the responsibility matrix names needs a reason (comment)',
        });
      request.assignees = body.departmentIds;
      request.details = { routedBy: overrides ? 'dispatcher' : 'matrix' };
    } else if (route) {
      request.assignees = [route.orgId];
      request.details = { routedBy: 'matrix' };
    } else
      throw new AppError(Errors.unprocessable, {
        detail: `No department is responsible for ${row.category} here in the matrix; name departmentIds`,
      });
  }
  if (body.action === 'rate') {
    if (body.rating === undefined)
      throw new AppError(Errors.unprocessable, { detail: 'Rating needs "rating" (1–5)' });
    request.details = { rating: body.rating };
  }
  if (body.action === 'merge') {
    if (body.into === undefined)
      throw new AppError(Errors.unprocessable, { detail: 'Merging needs "into" (the case it duplicates)' });
    if (body.into === row.id)
      throw new AppError(Errors.unprocessable, { detail: 'A case cannot be merged into itself' });
    const target = await store.findCase(database.db, body.into);
    if (!target || !target.open || !canSeeTarget(ctx, target))
      throw new AppError(Errors.unprocessable, {
        detail: `Case ${body.into} is not an open case you can see`,
      });
    request.details = { into: target.id };
  }
  await transition(database, ctx, row.instance_id, request);
  return presentAgain(rt, ctx, id);
}

/** The case as it is now, after a change the caller made (they could see it before). */
async function presentAgain(rt: OpsRuntime, ctx: CallContext, id: string): Promise<CaseDetail> {
  await loadDirectory(rt.database);
  const row = await store.findCase(rt.database.db, id);
  if (!row) throw new Error(`case ${id} disappeared`);
  return presentDetail(rt, ctx, row);
}

function canSeeTarget(ctx: CallContext, target: store.CaseRow): boolean {
  try {
    authorizeSee(ctx.actor, target);
    return true;
  } catch {
    return false;
  }
}

/** Adds a sub-task (子任务) for one organisation under a case being handled; its report-back waits for it. */
export async function addSubtask(
  rt: OpsRuntime,
  ctx: CallContext,
  caseId: string,
  input: { orgId: string; description: string },
): Promise<CaseDetail> {
  const { database } = rt;
  const row = await store.findCase(database.db, caseId);
  authorizeSee(ctx.actor, row);
  await loadDirectory(database);
  requireDepartments(database, [input.orgId]);
  const parent = await loadInstance(database.db, row.instance_id);
  if (!parent || parent.state !== 'handling')
    throw new AppError(Errors.conflict, { detail: 'Sub-tasks are added while the case is being handled' });
  // Those handling the case (or the centre over it) split their work.
  const roles = rolesFor(ctx.actor, parent);
  if (!roles.has('assignee') && !roles.has('ops-operator'))
    throw new AppError(Errors.forbidden, {
      detail: 'Only the assigned departments or the operations centre add sub-tasks',
    });
  const plan = await planInstance(database, ctx, {
    key: TASK_WORKFLOW_KEY,
    subject: { type: 'case-task', id: randomUUID() },
    parentId: parent.id,
    areaPath: row.area_path,
    reporterUserId: null,
    assignees: [input.orgId],
    data: { description: input.description.trim(), caseId },
  });
  await writeWith(
    database.db,
    sql<{ id: string }>`select ${plan.next.id}::uuid as id`,
    startRiders(ctx, [plan]),
  );
  return presentDetail(rt, ctx, row);
}

/** Takes an action on a sub-task of a visible case (`complete` by the assigned organisation). */
export async function actOnSubtask(
  rt: OpsRuntime,
  ctx: CallContext,
  caseId: string,
  taskId: string,
  body: { action: string; version?: number | undefined; comment?: string | undefined },
  options: { requestId?: string | undefined } = {},
): Promise<CaseDetail> {
  const { database } = rt;
  const row = await store.findCase(database.db, caseId);
  authorizeSee(ctx.actor, row);
  const task = await loadInstance(database.db, taskId);
  if (!task || task.parentId !== row.instance_id)
    throw new AppError(Errors['not-found'], { detail: 'No such sub-task' });
  await transition(database, ctx, taskId, { ...body, requestId: options.requestId });
  return presentAgain(rt, ctx, caseId);
}

/** Attaches uploaded photos to a case (anyone who can see it and act on it), audited. */
export async function attachPhotos(
  rt: OpsRuntime,
  ctx: CallContext,
  caseId: string,
  hashes: string[],
): Promise<CaseDetail> {
  const { database } = rt;
  const row = await store.findCase(database.db, caseId);
  authorizeSee(ctx.actor, row);
  if (row.photos.length + hashes.length > 30)
    throw new AppError(Errors.unprocessable, { detail: 'A case holds at most 30 photos' });
  const media = await requireMedia(database, hashes);
  await database.transact(async (trx) => {
    await store.addPhotos(caseId, media).execute(trx);
    await recordAudit(trx, ctx, {
      action: 'case.photos.add',
      resourceType: 'case',
      resourceId: caseId,
      area: row.area_code,
      details: { photos: media.map((m) => m.sha256) },
    });
  });
  return presentAgain(rt, ctx, caseId);
}

// --- Supervision and statistics ---------------------------------------------------------------------

/** Counts per area (the level below `area`), department, category, level or status, within the caller's jurisdiction. */
export async function caseStatistics(
  rt: OpsRuntime,
  ctx: CallContext,
  q: {
    by: store.StatsDimension;
    area?: string | undefined;
    from?: string | undefined;
    to?: string | undefined;
  },
) {
  const { database } = rt;
  const area = q.area === undefined ? undefined : await getArea(database, q.area);
  const areaPath = area?.path.join('/');
  authorizeSupervise(ctx.actor, areaPath ?? null);
  await loadDirectory(database);
  const rows = await store.caseStats(
    database.db,
    {
      by: q.by,
      areaPath,
      depth: area ? area.path.length : 1,
      now: new Date(),
      from: q.from ? new Date(q.from) : undefined,
      to: q.to ? new Date(q.to) : undefined,
    },
    jurisdictionFilter(ctx.actor, OpsPermissions['cases.supervise'], sql`c.area_path`),
  );
  const names =
    q.by === 'area'
      ? await areaNames(
          database,
          rows.map((r) => r.key),
        )
      : new Map<string, string>();
  return rows.map((r) => ({
    ...r,
    name:
      q.by === 'department'
        ? (orgById(database, r.key)?.name ?? r.key)
        : q.by === 'category'
          ? (findCategory(r.key)?.name ?? r.key)
          : q.by === 'status'
            ? stateName(r.key).zh
            : q.by === 'area'
              ? (names.get(r.key) ?? r.key)
              : levelZh(r.key),
  }));
}

async function areaNames(database: Database, codes: string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const c of codes.slice(0, 300)) {
    const a = await getArea(database, c).catch(() => undefined);
    if (a) out.set(c, a.name);
  }
  return out;
}
