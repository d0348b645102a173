/**
 * SQL of the workflow engine: definitions and calendars, instances read with their open branches,
 * a plan written as one statement (the instance's versioned UPDATE or INSERT, and riders for its
 * history, branches and timers), and the timer queue the sweepers claim with SKIP LOCKED.
 */
import { sql, type QueryExecutorProvider } from 'kysely';
import { insertRows, type Rider } from '../kernel/index.ts';
import type { WorkflowDefinition } from './definition.ts';
import type { Branch, HistoryEntry, Instance, LoadedInstance, TransitionPlan } from './workflow.model.ts';

type Db = QueryExecutorProvider;

// --- Definitions and calendars ----------------------------------------------------------------

export interface DefinitionRow {
  key: string;
  version: number;
  definition: WorkflowDefinition;
  digest: string;
  createdAt: string;
  createdBy: string | null;
}

interface DefinitionDbRow {
  key: string;
  version: number;
  definition: WorkflowDefinition;
  digest: string;
  created_at: Date;
  created_by: string | null;
}

const toDefinition = (r: DefinitionDbRow): DefinitionRow => ({
  key: r.key,
  version: r.version,
  definition: r.definition,
  digest: r.digest,
  createdAt: r.created_at.toISOString(),
  createdBy: r.created_by,
});

/** The given version of a definition, or the latest when `version` is undefined. */
export async function findDefinition(
  db: Db,
  key: string,
  version?: number,
): Promise<DefinitionRow | undefined> {
  const { rows } = await sql<DefinitionDbRow>`select * from workflow.definitions where key = ${key}
    and (${version ?? null}::int is null or version = ${version ?? null}::int)
    order by version desc limit 1`.execute(db);
  return rows[0] ? toDefinition(rows[0]) : undefined;
}

/** The latest version of every definition. */
export async function listDefinitions(db: Db): Promise<DefinitionRow[]> {
  const { rows } = await sql<DefinitionDbRow>`select distinct on (key) * from workflow.definitions
    order by key, version desc`.execute(db);
  return rows.map(toDefinition);
}

/** Every version of one definition, newest first (without bodies' differences: whole rows). */
export async function definitionVersions(db: Db, key: string): Promise<DefinitionRow[]> {
  const { rows } = await sql<DefinitionDbRow>`select * from workflow.definitions where key = ${key}
    order by version desc`.execute(db);
  return rows.map(toDefinition);
}

/** Inserts the next version; resolves to its number (the unique key serialises racing publishers). */
export async function insertDefinition(
  db: Db,
  args: { key: string; definition: WorkflowDefinition; digest: string; createdBy: string | null },
): Promise<number> {
  const { rows } = await sql<{
    version: number;
  }>`insert into workflow.definitions (key, version, definition, digest, created_by)
    select ${args.key}, coalesce(max(version), 0) + 1, ${JSON.stringify(args.definition)}::jsonb, ${args.digest}, ${args.createdBy}
    from workflow.definitions where key = ${args.key}
    returning version`.execute(db);
  const row = rows[0];
  if (!row) throw new Error('insertDefinition: nothing returned');
  return row.version;
}

export interface CalendarRow {
  code: string;
  calendar: unknown;
  version: number;
  updatedAt: string;
}

export async function listCalendars(db: Db): Promise<CalendarRow[]> {
  const { rows } = await sql<{ code: string; calendar: unknown; version: number; updated_at: Date }>`
    select * from workflow.calendars order by code`.execute(db);
  return rows.map((r) => ({
    code: r.code,
    calendar: r.calendar,
    version: r.version,
    updatedAt: r.updated_at.toISOString(),
  }));
}

/** Creates or replaces a calendar; resolves to its new version. */
export async function upsertCalendar(db: Db, code: string, calendar: unknown): Promise<number> {
  const { rows } = await sql<{ version: number }>`insert into workflow.calendars (code, calendar)
    values (${code}, ${JSON.stringify(calendar)}::jsonb)
    on conflict (code) do update set calendar = excluded.calendar, version = workflow.calendars.version + 1,
      updated_at = now()
    returning version`.execute(db);
  return rows[0]?.version ?? 1;
}

/** Inserts calendars that do not exist yet (shipped defaults), leaving edited ones alone. */
export async function seedCalendars(db: Db, calendars: readonly { code: string }[]): Promise<void> {
  for (const c of calendars)
    await sql`insert into workflow.calendars (code, calendar) values (${c.code}, ${JSON.stringify(c)}::jsonb)
      on conflict (code) do nothing`.execute(db);
}

// --- Instances ------------------------------------------------------------------------------------

interface InstanceDbRow {
  id: string;
  definition_key: string;
  definition_version: number;
  subject_type: string;
  subject_id: string;
  parent_id: string | null;
  state: string;
  version: number;
  state_seq: number;
  history_seq: number;
  area_path: string | null;
  reporter_user_id: string | null;
  assignees: string[];
  data: Record<string, unknown>;
  state_entered_at: Date;
  state_due_at: Date | null;
  state_near_due_at: Date | null;
  due_at: Date | null;
  breached_at: Date | null;
  started_at: Date;
  ended_at: Date | null;
  branches: { org_id: string; opened_at: string; completed_at: string | null; completed_by: string | null }[];
  open_subtasks: number | string;
}

const date = (s: string | null): Date | null => (s === null ? null : new Date(s));

function toInstance(r: InstanceDbRow): LoadedInstance {
  return {
    id: r.id,
    definitionKey: r.definition_key,
    definitionVersion: r.definition_version,
    subjectType: r.subject_type,
    subjectId: r.subject_id,
    parentId: r.parent_id,
    state: r.state,
    version: r.version,
    stateSeq: r.state_seq,
    historySeq: r.history_seq,
    areaPath: r.area_path,
    reporterUserId: r.reporter_user_id,
    assignees: r.assignees,
    data: r.data,
    stateEnteredAt: r.state_entered_at,
    stateDueAt: r.state_due_at,
    stateNearDueAt: r.state_near_due_at,
    dueAt: r.due_at,
    breachedAt: r.breached_at,
    startedAt: r.started_at,
    endedAt: r.ended_at,
    branches: r.branches.map((b): Branch => ({
      orgId: b.org_id,
      openedAt: new Date(b.opened_at),
      completedAt: date(b.completed_at),
      completedBy: b.completed_by,
    })),
    openSubtasks: Number(r.open_subtasks),
  };
}

/** An instance with the branches of its current state visit and its unfinished sub-tasks. */
export async function loadInstance(
  db: Db,
  id: string,
  options: { lock?: boolean } = {},
): Promise<LoadedInstance | undefined> {
  const lock = options.lock ? sql` for update of i` : sql``;
  const { rows } = await sql<InstanceDbRow>`select i.*,
      coalesce((select json_agg(json_build_object('org_id', b.org_id, 'opened_at', b.opened_at,
        'completed_at', b.completed_at, 'completed_by', b.completed_by) order by b.opened_at, b.org_id)
        from workflow.branches b where b.instance_id = i.id and b.state_seq = i.state_seq), '[]') as branches,
      (select count(*) from workflow.instances c where c.parent_id = i.id and c.ended_at is null) as open_subtasks
    from workflow.instances i where i.id = ${id}${lock}`.execute(db);
  return rows[0] ? toInstance(rows[0]) : undefined;
}

/** Instances started for a subject, oldest first. */
export async function instancesOf(
  db: Db,
  subjectType: string,
  subjectIds: readonly string[],
): Promise<LoadedInstance[]> {
  if (subjectIds.length === 0) return [];
  const { rows } = await sql<InstanceDbRow>`select i.*,
      coalesce((select json_agg(json_build_object('org_id', b.org_id, 'opened_at', b.opened_at,
        'completed_at', b.completed_at, 'completed_by', b.completed_by) order by b.opened_at, b.org_id)
        from workflow.branches b where b.instance_id = i.id and b.state_seq = i.state_seq), '[]') as branches,
      (select count(*) from workflow.instances c where c.parent_id = i.id and c.ended_at is null) as open_subtasks
    from workflow.instances i where i.subject_type = ${subjectType} and i.subject_id = any(${subjectIds}::text[])
    order by i.started_at`.execute(db);
  return rows.map(toInstance);
}

/** The sub-task instances of an instance, oldest first. */
export async function subtasksOf(db: Db, parentId: string): Promise<LoadedInstance[]> {
  const { rows } = await sql<InstanceDbRow>`select i.*, '[]'::json as branches, 0 as open_subtasks
    from workflow.instances i where i.parent_id = ${parentId} order by i.started_at, i.id`.execute(db);
  return rows.map(toInstance);
}

interface HistoryDbRow {
  seq: number;
  action: string;
  from_state: string;
  to_state: string;
  actor_id: string | null;
  actor_kind: string;
  actor_name: string;
  org: string | null;
  at: Date;
  comment: string | null;
  attachments: HistoryEntry['attachments'];
  assignees: string[] | null;
  request_id: string | null;
  details: Record<string, unknown>;
}

const toEntry = (r: HistoryDbRow): HistoryEntry => ({
  seq: r.seq,
  action: r.action,
  from: r.from_state,
  to: r.to_state,
  actor: { id: r.actor_id, kind: r.actor_kind, name: r.actor_name },
  org: r.org,
  at: r.at,
  comment: r.comment,
  attachments: r.attachments,
  assignees: r.assignees,
  requestId: r.request_id,
  details: r.details,
});

/** The instance's history, in order. */
export async function historyOf(db: Db, instanceId: string): Promise<HistoryEntry[]> {
  const { rows } = await sql<HistoryDbRow>`select * from workflow.history where instance_id = ${instanceId}
    order by seq`.execute(db);
  return rows.map(toEntry);
}

/** Instances with a history entry carrying the attachment `sha256` (at most 50). */
export async function instancesWithAttachment(db: Db, sha256: string): Promise<string[]> {
  const { rows } = await sql<{ instance_id: string }>`select distinct instance_id from workflow.history
    where attachments @> ${JSON.stringify([{ sha256 }])}::jsonb limit 50`.execute(db);
  return rows.map((r) => r.instance_id);
}

/** The entry recorded under a client request id, if that request was already carried out. */
export async function findByRequestId(
  db: Db,
  instanceId: string,
  requestId: string,
): Promise<HistoryEntry | undefined> {
  const { rows } = await sql<HistoryDbRow>`select * from workflow.history
    where instance_id = ${instanceId} and request_id = ${requestId}`.execute(db);
  return rows[0] ? toEntry(rows[0]) : undefined;
}

// --- Writing a plan -------------------------------------------------------------------------------

/** The versioned UPDATE of a transition: returns the id only if the version still matched. */
export function updateInstance(plan: TransitionPlan, expectedVersion: number) {
  const n = plan.next;
  return sql<{ id: string }>`update workflow.instances set
      state = ${n.state}, version = ${n.version}, state_seq = ${n.stateSeq}, history_seq = ${n.historySeq},
      assignees = ${n.assignees}::uuid[], data = ${JSON.stringify(n.data)}::jsonb,
      state_entered_at = ${n.stateEnteredAt}, state_due_at = ${n.stateDueAt}, state_near_due_at = ${n.stateNearDueAt},
      due_at = ${n.dueAt}, breached_at = ${n.breachedAt}, ended_at = ${n.endedAt}
    where id = ${n.id} and version = ${expectedVersion}
    returning id`;
}

const INSTANCE_COLUMNS = [
  ['id', 'uuid'],
  ['definition_key', 'text'],
  ['definition_version', 'int'],
  ['subject_type', 'text'],
  ['subject_id', 'text'],
  ['parent_id', 'uuid'],
  ['state', 'text'],
  ['version', 'int'],
  ['state_seq', 'int'],
  ['history_seq', 'int'],
  ['area_path', 'text'],
  ['reporter_user_id', 'uuid'],
  ['assignees', 'text', 'uuid[]'],
  ['data', 'jsonb'],
  ['state_entered_at', 'timestamptz'],
  ['state_due_at', 'timestamptz'],
  ['state_near_due_at', 'timestamptz'],
  ['due_at', 'timestamptz'],
  ['started_at', 'timestamptz'],
  ['ended_at', 'timestamptz'],
] as const;

/** The INSERT of new instances, as a rider (the subject's own INSERT is the change). */
export function insertInstances(instances: readonly Instance[]): Rider['statement'] {
  return insertRows({
    table: 'workflow.instances',
    columns: INSTANCE_COLUMNS,
    rows: instances.map((n) => [
      n.id,
      n.definitionKey,
      n.definitionVersion,
      n.subjectType,
      n.subjectId,
      n.parentId,
      n.state,
      n.version,
      n.stateSeq,
      n.historySeq,
      n.areaPath,
      n.reporterUserId,
      uuidArray(n.assignees),
      JSON.stringify(n.data),
      n.stateEnteredAt,
      n.stateDueAt,
      n.stateNearDueAt,
      n.dueAt,
      n.startedAt,
      n.endedAt,
    ]),
  });
}

/** An array literal of uuids (validated by the caller), for a text column cast to uuid[]. */
function uuidArray(ids: readonly string[] | null): string | null {
  return ids === null ? null : `{${ids.join(',')}}`;
}

const HISTORY_COLUMNS = [
  ['instance_id', 'uuid'],
  ['seq', 'int'],
  ['action', 'text'],
  ['from_state', 'text'],
  ['to_state', 'text'],
  ['actor_id', 'text'],
  ['actor_kind', 'text'],
  ['actor_name', 'text'],
  ['org', 'text'],
  ['at', 'timestamptz'],
  ['comment', 'text'],
  ['attachments', 'jsonb'],
  ['assignees', 'text', 'uuid[]'],
  ['request_id', 'text'],
  ['details', 'jsonb'],
] as const;

const TIMER_COLUMNS = [
  ['id', 'uuid'],
  ['instance_id', 'uuid'],
  ['state_seq', 'int'],
  ['kind', 'text'],
  ['due_at', 'timestamptz'],
] as const;

/**
 * The riders writing what a plan adds besides the instance row: history entries, branches opened
 * and completed, timers disarmed and armed. Several plans (a batch of new cases) may be written
 * by one statement.
 */
export function planRiders(plans: readonly TransitionPlan[], newId: () => string): Rider[] {
  const riders: Rider[] = [];
  const entries = plans.flatMap((p) => p.entries.map((e) => [p.next.id, e] as const));
  if (entries.length > 0)
    riders.push({
      statement: (when) => {
        const ins = insertRows({
          table: 'workflow.history',
          columns: HISTORY_COLUMNS,
          rows: entries.map(([id, e]) => [
            id,
            e.seq,
            e.action,
            e.from,
            e.to,
            e.actor.id,
            e.actor.kind,
            e.actor.name,
            e.org,
            e.at,
            e.comment,
            JSON.stringify(e.attachments),
            uuidArray(e.assignees),
            e.requestId,
            JSON.stringify(e.details),
          ]),
        });
        return ins(when);
      },
    });
  const opened = plans.flatMap((p) =>
    p.openBranches.map((org) => [p.next.id, p.next.stateSeq, org, p.next.stateEnteredAt] as const),
  );
  if (opened.length > 0)
    riders.push({
      statement: insertRows({
        table: 'workflow.branches',
        columns: [
          ['instance_id', 'uuid'],
          ['state_seq', 'int'],
          ['org_id', 'uuid'],
          ['opened_at', 'timestamptz'],
        ],
        rows: opened,
      }),
    });
  for (const p of plans) {
    if (p.completeBranch !== null) {
      const done = p.entries[0];
      const seq = p.entries.some((e) => e.action === 'join') ? p.next.stateSeq - 1 : p.next.stateSeq;
      riders.push({
        statement: (when) => sql`update workflow.branches set completed_at = ${done?.at ?? new Date()},
            completed_by = ${done?.actor.name ?? null}
          where instance_id = ${p.next.id} and state_seq = ${seq} and org_id = ${p.completeBranch} and ${when}`,
      });
    }
    if (p.disarmAllTimers || p.disarmStateTimers) {
      const kinds = p.disarmAllTimers ? ['state-sla', 'overall-sla'] : ['state-sla'];
      riders.push({
        statement: (when) => sql`delete from workflow.timers where instance_id = ${p.next.id}
          and fired_at is null and kind = any(${kinds}::text[]) and ${when}`,
      });
    }
  }
  const timers = plans.flatMap((p) =>
    p.armTimers.map((t) => [newId(), p.next.id, t.stateSeq, t.kind, t.dueAt] as const),
  );
  if (timers.length > 0)
    riders.push({
      statement: insertRows({ table: 'workflow.timers', columns: TIMER_COLUMNS, rows: timers }),
    });
  return riders;
}

// --- Timers ---------------------------------------------------------------------------------------

export interface TimerRow {
  id: string;
  instanceId: string;
  stateSeq: number;
  kind: 'state-sla' | 'overall-sla';
  dueAt: Date;
}

/** Timers due at `now`, oldest first (unlocked: each is claimed by `lockTimer` in its own transaction). */
export async function dueTimers(db: Db, now: Date, limit: number): Promise<string[]> {
  const { rows } = await sql<{ id: string }>`select id from workflow.timers
    where fired_at is null and due_at <= ${now} and attempts < ${MAX_TIMER_ATTEMPTS}
    order by due_at limit ${limit}`.execute(db);
  return rows.map((r) => r.id);
}

/** Firings of a timer that failed before it is left for an operator to look at. */
export const MAX_TIMER_ATTEMPTS = 10;

/** The instance of an unfired timer (read without locking it; see fireTimer for the lock order). */
export async function timerInstance(db: Db, id: string): Promise<string | undefined> {
  const { rows } = await sql<{ instance_id: string }>`select instance_id from workflow.timers
    where id = ${id} and fired_at is null`.execute(db);
  return rows[0]?.instance_id;
}

/** Counts a failed firing and keeps its error on the row. */
export async function recordTimerFailure(db: Db, id: string, error: string): Promise<void> {
  await sql`update workflow.timers set attempts = attempts + 1, last_error = ${error.slice(0, 500)}
    where id = ${id}`.execute(db);
}

/** Locks an unfired timer for the calling transaction, or undefined when another replica has it or it fired. */
export async function lockTimer(db: Db, id: string): Promise<TimerRow | undefined> {
  const { rows } = await sql<{
    id: string;
    instance_id: string;
    state_seq: number;
    kind: TimerRow['kind'];
    due_at: Date;
  }>`
    select id, instance_id, state_seq, kind, due_at from workflow.timers
    where id = ${id} and fired_at is null for update skip locked`.execute(db);
  const r = rows[0];
  return r
    ? { id: r.id, instanceId: r.instance_id, stateSeq: r.state_seq, kind: r.kind, dueAt: r.due_at }
    : undefined;
}

export async function markTimerFired(db: Db, id: string, at: Date): Promise<void> {
  await sql`update workflow.timers set fired_at = ${at} where id = ${id}`.execute(db);
}

/** How many timers wait, and how late the oldest due one is (for metrics). */
export async function timerBacklog(db: Db, now: Date): Promise<{ due: number }> {
  const { rows } = await sql<{ due: string }>`select count(*) as due from workflow.timers
    where fired_at is null and due_at <= ${now}`.execute(db);
  return { due: Number(rows[0]?.due ?? 0) };
}
