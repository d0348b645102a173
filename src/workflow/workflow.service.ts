/**
 * The workflow engine (流程引擎): publishes definitions (validated, versioned), plans and writes
 * instances and transitions, and fires SLA timers. A transition is one read and one statement:
 * the instance's UPDATE guarded by its version, with riders for history, branches, timers, the
 * owner's own row, the audit record and the outbox event — atomic, and a stale version changes
 * nothing. A repeated client request id returns the first outcome. Timers are rows claimed with
 * SKIP LOCKED and marked fired in the transaction of their effect: exactly once across replicas
 * and restarts.
 */
import { createHash, randomUUID } from 'node:crypto';
import { Compile } from 'typebox/compile';
import {
  AppError,
  Errors,
  outboxRider,
  writeWith,
  type Database,
  type Logger,
  type Metrics,
  type Rider,
} from '../kernel/index.ts';
import {
  auditRider,
  auditRiderOf,
  can,
  recordAudit,
  requireSignedIn,
  SYSTEM,
  systemContext,
  WorkflowPermissions,
  type Actor,
  type CallContext,
} from '../trust/index.ts';
import {
  addWorkingTime,
  checkCalendar,
  DEFAULT_CALENDARS,
  durationToWorkingMs,
  durationProblem,
  workingTimeBetween,
  type Calendar,
} from './calendar.ts';
import { DefinitionSchema, definitionProblems, type WorkflowDefinition } from './definition.ts';
import { WorkflowErrors } from './errors.ts';
import {
  availableActions,
  chainPlans,
  historyEntry,
  planStart,
  planTransition,
  type AvailableAction,
  type Effect,
  type Guard,
  type HistoryEntry,
  type Instance,
  type LoadedInstance,
  type SlaClock,
  type TransitionPlan,
  type TransitionRequest,
} from './workflow.model.ts';
import * as store from './workflow.store.ts';

// --- Hooks: what the module owning a definition contributes ---------------------------------------

export interface WorkflowHooks {
  /** Named conditions its definitions may use. */
  guards?: Record<string, Guard>;
  /** Named effects its definitions may use. */
  effects?: Record<string, Effect>;
  /** Riders keeping the owner's own row in step with every transition (status, due dates). */
  onTransition?: (plan: TransitionPlan, ctx: CallContext) => Rider[];
}

const hooksByKey = new Map<string, WorkflowHooks>();

/** Built-in guards every definition may use. */
const BUILTIN_GUARDS: Record<string, Guard> = {
  'subtasks-done': ({ instance }) =>
    instance.openSubtasks > 0 ? `${instance.openSubtasks} sub-task(s) are still open` : undefined,
};

/** Registers the guards, effects and row keeper of the definitions under `key` (at import time). */
export function registerWorkflowHooks(key: string, hooks: WorkflowHooks): void {
  hooksByKey.set(key, hooks);
}

function guardsOf(key: string): ReadonlyMap<string, Guard> {
  return new Map(Object.entries({ ...BUILTIN_GUARDS, ...(hooksByKey.get(key)?.guards ?? {}) }));
}

// --- Per-database caches: calendars and definitions -----------------------------------------------

interface Caches {
  calendars: Map<string, Calendar>;
  calendarsLoadedAt: number;
  definitions: Map<string, { definition: WorkflowDefinition; version: number }>;
  latest: Map<string, { version: number; at: number }>;
}

const caches = new WeakMap<Database, Caches>();

/** Where a read runs: the database, or the transaction the caller is in. */
type Executor = Database['db'];
const CALENDAR_TTL_MS = 30_000;
const LATEST_TTL_MS = 5_000;

function cachesOf(database: Database): Caches {
  let c = caches.get(database);
  if (!c) {
    c = { calendars: new Map(), calendarsLoadedAt: 0, definitions: new Map(), latest: new Map() };
    caches.set(database, c);
  }
  return c;
}

async function calendars(database: Database, db: Executor = database.db): Promise<Map<string, Calendar>> {
  const c = cachesOf(database);
  if (Date.now() - c.calendarsLoadedAt > CALENDAR_TTL_MS || c.calendars.size === 0) {
    const rows = await store.listCalendars(db);
    const next = new Map<string, Calendar>();
    for (const r of rows) {
      const checked = checkCalendar(r.calendar);
      if (checked.ok) next.set(r.code, checked.calendar);
    }
    for (const d of DEFAULT_CALENDARS) if (!next.has(d.code)) next.set(d.code, d);
    c.calendars = next;
    c.calendarsLoadedAt = Date.now();
  }
  return c.calendars;
}

/**
 * SLA arithmetic over the database's calendars (loaded before planning). Inside a transaction pass
 * it as `db`: on the single-connection embedded engine a read outside it would wait for it forever.
 */
export async function slaClock(database: Database, db: Executor = database.db): Promise<SlaClock> {
  const cals = await calendars(database, db);
  const get = (code: string): Calendar => {
    const cal = cals.get(code);
    if (!cal)
      throw new AppError(WorkflowErrors['workflow-invalid-calendar'], {
        detail: `No working calendar "${code}"`,
      });
    return cal;
  };
  return {
    due: (code, from, iso) => {
      const cal = get(code);
      return addWorkingTime(cal, from, durationToWorkingMs(cal, iso));
    },
    fraction: (code, from, due, f) => {
      const cal = get(code);
      return addWorkingTime(cal, from, Math.round(workingTimeBetween(cal, from, due) * f));
    },
  };
}

/** A definition version (the latest when `version` is undefined); 404 when there is none. */
export async function getDefinition(
  database: Database,
  key: string,
  version?: number,
  /** The transaction to read in, when called inside one (see `slaClock`). */
  db: Executor = database.db,
): Promise<{ definition: WorkflowDefinition; version: number }> {
  const c = cachesOf(database);
  let v = version;
  if (v === undefined) {
    const latest = c.latest.get(key);
    if (latest && Date.now() - latest.at < LATEST_TTL_MS) v = latest.version;
  }
  const cached = v === undefined ? undefined : c.definitions.get(`${key}@${v}`);
  if (cached) return cached;
  const row = await store.findDefinition(db, key, v);
  if (!row)
    throw new AppError(Errors['not-found'], {
      detail: `No workflow definition ${key}${v ? ` version ${v}` : ''}`,
    });
  const found = { definition: row.definition, version: row.version };
  c.definitions.set(`${key}@${row.version}`, found);
  if (version === undefined) c.latest.set(key, { version: row.version, at: Date.now() });
  return found;
}

// --- Definitions -----------------------------------------------------------------------------------

const checkShape = Compile(DefinitionSchema);

/** Every problem of a candidate definition (shape first, then meaning); empty when it can be published. */
export async function checkDefinition(
  database: Database,
  input: unknown,
  options: { roles: ReadonlySet<string> },
): Promise<{ problems: string[]; definition?: WorkflowDefinition }> {
  if (!checkShape.Check(input))
    return {
      problems: checkShape
        .Errors(input)
        .slice(0, 20)
        .map((e) => `${e.instancePath || '(root)'}: ${e.message}`),
    };
  const def = input;
  const hooks = hooksByKey.get(def.key);
  const cals = await calendars(database);
  const problems = definitionProblems(def, {
    roles: options.roles,
    calendars: new Set(cals.keys()),
    guards: new Set([...Object.keys(BUILTIN_GUARDS), ...Object.keys(hooks?.guards ?? {})]),
    effects: new Set(Object.keys(hooks?.effects ?? {})),
    checkDuration: durationProblem,
  });
  return problems.length > 0 ? { problems } : { problems, definition: def };
}

/** Definitions and calendars are visible to every signed-in caller: publishing without the permission is 403. */
function authorizeManage(ctx: CallContext): void {
  requireSignedIn(ctx.actor);
  if (!can(ctx.actor, WorkflowPermissions['workflows.manage'], { areaPath: null }))
    throw new AppError(Errors.forbidden, { detail: 'Publishing needs the permission workflows.manage' });
}

/** Stable JSON (sorted keys) so equal definitions have equal digests. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object')
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(v);
}

/**
 * Publishes a definition as the next version of its key (422 listing every problem). Publishing
 * what the latest version already says changes nothing and answers that version.
 */
export async function publishDefinition(
  database: Database,
  ctx: CallContext,
  input: unknown,
  options: { roles: ReadonlySet<string> },
): Promise<{ key: string; version: number; created: boolean }> {
  authorizeManage(ctx);
  const { problems, definition } = await checkDefinition(database, input, options);
  if (!definition)
    throw new AppError(WorkflowErrors['workflow-invalid-definition'], {
      detail: problems.join('; '),
      extensions: { problems },
    });
  const digest = createHash('sha256').update(canonical(definition)).digest('hex');
  return database.transact(async (trx) => {
    const latest = await store.findDefinition(trx, definition.key);
    if (latest?.digest === digest) return { key: definition.key, version: latest.version, created: false };
    const version = await store.insertDefinition(trx, {
      key: definition.key,
      definition,
      digest,
      createdBy: ctx.actor.name,
    });
    await recordAudit(trx, ctx, {
      action: 'workflow.definition.publish',
      resourceType: 'workflow-definition',
      resourceId: `${definition.key}@${version}`,
      details: { key: definition.key, version, digest },
    });
    cachesOf(database).latest.delete(definition.key);
    return { key: definition.key, version, created: true };
  });
}

/** Publishes a shipped definition at start-up when its content is new (system actor, audited). */
export async function ensureDefinition(
  database: Database,
  definition: WorkflowDefinition,
  options: { roles: ReadonlySet<string> },
): Promise<number> {
  const r = await publishDefinition(
    database,
    systemContext('workflow definition shipped with the platform'),
    definition,
    options,
  );
  return r.version;
}

/** Creates or replaces a working calendar (422 listing its problems), audited. */
export async function publishCalendar(
  database: Database,
  ctx: CallContext,
  input: unknown,
): Promise<{ code: string; version: number }> {
  authorizeManage(ctx);
  const checked = checkCalendar(input);
  if (!checked.ok)
    throw new AppError(WorkflowErrors['workflow-invalid-calendar'], {
      detail: checked.problems.join('; '),
      extensions: { problems: checked.problems },
    });
  const cal = checked.calendar;
  return database.transact(async (trx) => {
    const version = await store.upsertCalendar(trx, cal.code, cal);
    await recordAudit(trx, ctx, {
      action: 'workflow.calendar.publish',
      resourceType: 'workflow-calendar',
      resourceId: cal.code,
      details: { version },
    });
    cachesOf(database).calendarsLoadedAt = 0;
    return { code: cal.code, version };
  });
}

// --- Instances and transitions ----------------------------------------------------------------------

/** The organisation an actor acts for in history entries. */
function actorOrg(ctx: CallContext): string | null {
  return ctx.actor.org;
}

/** The area code of an area path (its last segment), for audit records. */
const areaOf = (path: string | null): string | null =>
  path === null ? null : (path.split('/').pop() ?? null);

/**
 * Plans a new instance of the latest version of `key`, optionally followed by first actions (e.g.
 * 派遣 right after 立案) taken by the same actor. The caller writes it (its own INSERT as the
 * change, `startRiders` as riders), so the subject and its workflow appear together.
 */
export async function planInstance(
  database: Database,
  ctx: CallContext,
  args: {
    key: string;
    subject: { type: string; id: string };
    parentId?: string | null;
    areaPath: string | null;
    reporterUserId: string | null;
    assignees?: string[];
    data?: Record<string, unknown>;
    then?: TransitionRequest[];
    /** Who takes the `then` actions (e.g. the system dispatching by rule); the caller by default. */
    thenActor?: Actor;
    now?: Date;
  },
): Promise<TransitionPlan> {
  const { definition, version } = await getDefinition(database, args.key);
  const clock = await slaClock(database);
  const now = args.now ?? new Date();
  let plan = planStart({
    definition,
    version,
    id: randomUUID(),
    subject: args.subject,
    parentId: args.parentId ?? null,
    areaPath: args.areaPath,
    reporterUserId: args.reporterUserId,
    ...(args.assignees ? { assignees: args.assignees } : {}),
    ...(args.data ? { data: args.data } : {}),
    actor: ctx.actor,
    actorOrg: actorOrg(ctx),
    clock,
    now,
  });
  const thenActor = args.thenActor ?? ctx.actor;
  for (const request of args.then ?? []) {
    const step = planTransition({
      definition,
      instance: { ...plan.next, branches: [], openSubtasks: 0 },
      actor: thenActor,
      actorOrg: thenActor === ctx.actor ? actorOrg(ctx) : thenActor.org,
      request,
      guards: guardsOf(args.key),
      clock,
      now,
    });
    applyEffects(step, {
      definition,
      instance: { ...plan.next, branches: [], openSubtasks: 0 },
      ctx,
      request,
      now,
    });
    plan = chainPlans(plan, step);
  }
  return plan;
}

/** The riders writing new instances (history, branches, timers, the instance rows, audit, event). */
export function startRiders(ctx: CallContext, plans: readonly TransitionPlan[]): Rider[] {
  return startRidersOf(plans.map((plan) => ({ ctx, plan })));
}

/** `startRiders` for instances planned by several callers, written by one statement (a batch). */
export function startRidersOf(parts: readonly { ctx: CallContext; plan: TransitionPlan }[]): Rider[] {
  const plans = parts.map((p) => p.plan);
  return [
    { statement: store.insertInstances(plans.map((p) => p.next)) },
    ...store.planRiders(plans, randomUUID),
    ...plans.flatMap((p) => p.effectRiders ?? []),
    auditRiderOf(parts.map((p) => ({ ctx: p.ctx, entries: [auditEntry(p.plan, 'workflow.start')] }))),
    outboxRider(plans.map((p) => transitionEvent(p))),
  ];
}

function auditEntry(plan: TransitionPlan, action: string) {
  const n = plan.next;
  return {
    action,
    resourceType: n.subjectType,
    resourceId: n.subjectId,
    area: areaOf(n.areaPath),
    details: {
      instance: n.id,
      definition: `${n.definitionKey}@${n.definitionVersion}`,
      actions: plan.entries.map((e) => e.action),
      from: plan.entries[0]?.from,
      to: n.state,
      version: n.version,
    },
  };
}

/** The outbox event of a change: what other modules (notifications, the data hub) react to. */
function transitionEvent(plan: TransitionPlan) {
  const n = plan.next;
  return {
    topic: `workflow.${n.subjectType}.transition`,
    payload: {
      instanceId: n.id,
      definition: n.definitionKey,
      subject: { type: n.subjectType, id: n.subjectId },
      areaPath: n.areaPath,
      state: n.state,
      version: n.version,
      assignees: n.assignees,
      reporterUserId: n.reporterUserId,
      entries: plan.entries.map((e) => ({
        seq: e.seq,
        action: e.action,
        from: e.from,
        to: e.to,
        actor: e.actor.name,
        at: e.at.toISOString(),
      })),
    },
  };
}

/** Runs the plan's effects (merging their data into `next` and collecting their riders). */
function applyEffects(
  plan: TransitionPlan,
  args: {
    definition: WorkflowDefinition;
    instance: LoadedInstance;
    ctx: CallContext;
    request: TransitionRequest;
    now: Date;
  },
): void {
  const effects = hooksByKey.get(args.definition.key)?.effects ?? {};
  const from = args.instance.state;
  for (const name of plan.effects) {
    const effect = effects[name];
    if (!effect) throw new Error(`workflow ${args.definition.key}: effect ${name} is not registered`);
    const result = effect({
      instance: args.instance,
      actor: args.ctx.actor,
      request: args.request,
      now: args.now,
      from,
      to: plan.next.state,
      next: plan.next,
    });
    if (result?.data) plan.next.data = { ...plan.next.data, ...result.data };
    if (result?.riders) plan.effectRiders = [...(plan.effectRiders ?? []), ...result.riders];
  }
  plan.effects = [];
}

export interface TransitionOutcome {
  instance: LoadedInstance;
  entries: HistoryEntry[];
  /** True when the request id had been carried out before: nothing was done now. */
  replayed: boolean;
}

/**
 * Takes an action on an instance. `visible` is the owner's read check (throws 404 when the actor
 * may not see it), called before anything else is revealed. Without a client version, a transition
 * that lost a race to another is planned again (up to 3 times) from the new state.
 */
export async function transition(
  database: Database,
  ctx: CallContext,
  instanceId: string,
  request: TransitionRequest,
  options: { visible?: (instance: LoadedInstance) => void; now?: Date } = {},
): Promise<TransitionOutcome> {
  for (let attempt = 0; ; attempt++) {
    const instance = await store.loadInstance(database.db, instanceId);
    if (!instance) throw new AppError(Errors['not-found'], { detail: 'No such workflow instance' });
    options.visible?.(instance);
    if (request.requestId !== undefined) {
      const done = await store.findByRequestId(database.db, instanceId, request.requestId);
      if (done) return replay(instance, done, request);
    }
    const now = options.now ?? new Date();
    const { definition } = await getDefinition(database, instance.definitionKey, instance.definitionVersion);
    const plan = planTransition({
      definition,
      instance,
      actor: ctx.actor,
      actorOrg: actorOrg(ctx),
      request,
      guards: guardsOf(definition.key),
      clock: await slaClock(database),
      now,
    });
    applyEffects(plan, { definition, instance, ctx, request, now });
    const written = await writePlan(database, ctx, plan, instance.version);
    if (written)
      return {
        instance: { ...plan.next, branches: [], openSubtasks: instance.openSubtasks },
        entries: plan.entries,
        replayed: false,
      };
    // Lost a race: the version moved (or the same request id was just written by a twin request).
    if (request.requestId !== undefined) {
      const done = await store.findByRequestId(database.db, instanceId, request.requestId);
      if (done) return replay((await store.loadInstance(database.db, instanceId)) ?? instance, done, request);
    }
    if (request.version !== undefined || attempt >= 2)
      throw new AppError(WorkflowErrors['workflow-stale'], {
        detail: 'The instance changed while this action was being taken; reload and try again',
      });
  }
}

function replay(instance: LoadedInstance, done: HistoryEntry, request: TransitionRequest): TransitionOutcome {
  if (done.action !== request.action)
    throw new AppError(WorkflowErrors['workflow-request-reused'], {
      detail: `Request id ${request.requestId ?? ''} was used for "${done.action}", not "${request.action}"`,
    });
  return { instance, entries: [done], replayed: true };
}

/** Writes a transition plan as one statement; false when the version no longer matched. */
async function writePlan(
  database: Database,
  ctx: CallContext,
  plan: TransitionPlan,
  expectedVersion: number,
): Promise<boolean> {
  const hooks = hooksByKey.get(plan.next.definitionKey);
  try {
    const rows = await writeWith(database.db, store.updateInstance(plan, expectedVersion), [
      ...store.planRiders([plan], randomUUID),
      ...(plan.effectRiders ?? []),
      ...(hooks?.onTransition?.(plan, ctx) ?? []),
      auditRider(ctx, [auditEntry(plan, 'workflow.transition')]),
      outboxRider([transitionEvent(plan)]),
    ]);
    return rows.length > 0;
  } catch (e) {
    // Two requests with one request id racing: the history's unique index refuses the second;
    // a deadlock victim (40P01) lost a race too. Either way the caller re-reads and decides again.
    const code = (e as { code?: string }).code;
    if (code === '23505' || code === '40P01') return false;
    throw e;
  }
}

/** The instance, its history and the actions `ctx`'s actor may take now. */
export async function describeInstance(
  database: Database,
  ctx: CallContext,
  instance: LoadedInstance,
  /** The history when the caller has it already (e.g. the instance was just planned). */
  known?: HistoryEntry[],
): Promise<{ history: HistoryEntry[]; actions: AvailableAction[] }> {
  const { definition } = await getDefinition(database, instance.definitionKey, instance.definitionVersion);
  const history = known ?? (await store.historyOf(database.db, instance.id));
  const actions = availableActions({
    definition,
    instance,
    actor: ctx.actor,
    guards: guardsOf(definition.key),
    now: new Date(),
  });
  return { history, actions };
}

export {
  loadInstance,
  instancesOf,
  historyOf,
  subtasksOf,
  instancesWithAttachment,
} from './workflow.store.ts';

// --- Timers -----------------------------------------------------------------------------------------

/**
 * Fires one timer if this caller wins it: in one transaction, locks it (SKIP LOCKED), records the
 * breach on the instance and takes the state's `onBreach` action as the system when its guards
 * allow, and marks the timer fired. Resolves to what happened ('skipped' when another replica
 * holds it or it already fired).
 */
export async function fireTimer(
  database: Database,
  timerId: string,
  now: Date,
): Promise<'fired' | 'stale' | 'skipped'> {
  return database.transact(async (trx) => {
    // Lock the instance before the timer: a transition updates the instance and then deletes its
    // timers, so taking them in the other order could deadlock with it.
    const instanceId = await store.timerInstance(trx, timerId);
    if (instanceId === undefined) return 'skipped';
    const instance = await store.loadInstance(trx, instanceId, { lock: true });
    const timer = await store.lockTimer(trx, timerId);
    if (!timer) return 'skipped';
    if (
      !instance ||
      instance.endedAt !== null ||
      (timer.kind === 'state-sla' && timer.stateSeq !== instance.stateSeq)
    ) {
      await store.markTimerFired(trx, timer.id, now);
      return 'stale';
    }
    const { definition } = await getDefinition(
      database,
      instance.definitionKey,
      instance.definitionVersion,
      trx,
    );
    const ctx = systemContext(`SLA ${timer.kind} breach`);
    const breach: TransitionPlan = {
      next: {
        ...withoutLoaded(instance),
        version: instance.version + 1,
        historySeq: instance.historySeq + 1,
      },
      entries: [
        historyEntry({
          seq: instance.historySeq + 1,
          action: 'sla-breach',
          from: instance.state,
          to: instance.state,
          actor: SYSTEM,
          org: null,
          at: now,
          details: { timer: timer.kind, dueAt: timer.dueAt.toISOString() },
        }),
      ],
      openBranches: [],
      completeBranch: null,
      disarmStateTimers: false,
      disarmAllTimers: false,
      armTimers: [],
      effects: [],
    };
    if (timer.kind === 'state-sla') breach.next.breachedAt = now;
    let plan = breach;
    const onBreach =
      timer.kind === 'state-sla' ? definition.states[instance.state]?.sla?.onBreach : undefined;
    if (onBreach !== undefined) {
      const after = { ...breach.next, branches: instance.branches, openSubtasks: instance.openSubtasks };
      try {
        const step = planTransition({
          definition,
          instance: after,
          actor: SYSTEM,
          actorOrg: null,
          request: { action: onBreach },
          guards: guardsOf(definition.key),
          clock: await slaClock(database, trx),
          now,
        });
        applyEffects(step, { definition, instance: after, ctx, request: { action: onBreach }, now });
        plan = chainPlans(breach, step);
      } catch (e) {
        // A guard may refuse (e.g. already at the top level): the breach alone is recorded.
        if (!(e instanceof AppError)) throw e;
      }
    }
    const hooks = hooksByKey.get(definition.key);
    const rows = await writeWith(trx, store.updateInstance(plan, instance.version), [
      ...store.planRiders([plan], randomUUID),
      ...(plan.effectRiders ?? []),
      ...(hooks?.onTransition?.(plan, ctx) ?? []),
      auditRider(ctx, [auditEntry(plan, 'workflow.sla-breach')]),
      outboxRider([transitionEvent(plan)]),
    ]);
    if (rows.length === 0) throw new Error('fireTimer: the locked instance did not update');
    await store.markTimerFired(trx, timer.id, now);
    return 'fired';
  });
}

/** The instance row itself, without what was read along with it. */
function withoutLoaded(i: LoadedInstance): Instance {
  const { branches: _branches, openSubtasks: _open, ...row } = i;
  return row;
}

/**
 * Fires every timer due at `now`, in batches, each in its own short transaction (so a sweep over
 * many due timers never holds locks the API waits on). Resolves to the counts.
 */
export async function sweepTimers(
  database: Database,
  options: { now?: Date; batch?: number; maxBatches?: number; concurrency?: number } = {},
): Promise<{ fired: number; stale: number; skipped: number; failed: number; errors: string[] }> {
  const counts = { fired: 0, stale: 0, skipped: 0, failed: 0, errors: [] as string[] };
  const batch = options.batch ?? 200;
  for (let b = 0; b < (options.maxBatches ?? 50); b++) {
    const now = options.now ?? new Date();
    const ids = await store.dueTimers(database.db, now, batch);
    // Several at once on PostgreSQL (each in its own transaction; two timers of one instance
    // serialise on its lock); one at a time on the single-connection embedded engine.
    const concurrency = options.concurrency ?? (database.engine === 'postgres' ? 8 : 1);
    for (let i = 0; i < ids.length; i += concurrency)
      await Promise.all(
        ids.slice(i, i + concurrency).map(async (id) => {
          try {
            counts[await fireTimer(database, id, now)]++;
          } catch (e) {
            // One broken timer (an effect that throws) must not hold back the ones due after it:
            // it is counted, its error kept on the row, and tried again on later sweeps (10 times).
            counts.failed++;
            const message = e instanceof Error ? e.message : String(e);
            if (counts.errors.length < 10) counts.errors.push(message);
            await store.recordTimerFailure(database.db, id, message);
          }
        }),
      );
    if (ids.length < batch) break;
  }
  return counts;
}

/** Sweeps on an interval until stopped; failures are logged and retried on the next tick. */
export function startTimerSweeper(args: {
  database: Database;
  logger: Logger;
  metrics: Metrics;
  intervalMs: number;
}): { stop(): Promise<void> } {
  const { database, logger } = args;
  const fired = args.metrics.counter({
    name: 'pujiang_workflow_timers_fired_total',
    help: 'SLA timers fired, by outcome',
    labelNames: ['outcome'],
  });
  let running: Promise<void> | undefined;
  let stopped = false;
  const tick = () => {
    if (running || stopped) return;
    running = sweepTimers(database)
      .then((c) => {
        if (c.fired) fired.inc({ outcome: 'fired' }, c.fired);
        if (c.stale) fired.inc({ outcome: 'stale' }, c.stale);
        if (c.failed) fired.inc({ outcome: 'failed' }, c.failed);
        if (c.failed > 0)
          logger.error({ failed: c.failed, errors: c.errors }, 'SLA timers failed; retried on later sweeps');
        if (c.fired > 0) logger.info({ fired: c.fired, stale: c.stale }, 'SLA timers fired');
      })
      .catch((e: unknown) => logger.warn({ err: (e as Error).message }, 'SLA timer sweep failed; retrying'))
      .finally(() => {
        running = undefined;
      });
  };
  const timer = setInterval(tick, args.intervalMs);
  timer.unref();
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
