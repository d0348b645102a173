/**
 * The engine's core, without I/O: given an instance as read, its definition, the actor and the
 * request, decide whether the action may be taken and what changes — the next state, the history
 * entries, branches opened or completed, timers disarmed and armed. The service reads, calls
 * `planTransition`, and writes the plan in one statement; a plan never half-applies.
 */
import { AppError, Errors, type Rider } from '../kernel/index.ts';
import { covers, type Actor } from '../trust/index.ts';
import type { ActionDefinition, StateDefinition, WorkflowDefinition } from './definition.ts';
import { WorkflowErrors } from './errors.ts';

/** A file attached to a transition (photo of the site before/after), stored content-addressed. */
export interface Attachment {
  sha256: string;
  contentType: string;
  size: number;
  name?: string | undefined;
}

export interface Instance {
  id: string;
  definitionKey: string;
  definitionVersion: number;
  subjectType: string;
  subjectId: string;
  parentId: string | null;
  state: string;
  version: number;
  stateSeq: number;
  /** Number of history entries so far (the last entry's seq). */
  historySeq: number;
  areaPath: string | null;
  reporterUserId: string | null;
  assignees: string[];
  data: Record<string, unknown>;
  stateEnteredAt: Date;
  stateDueAt: Date | null;
  stateNearDueAt: Date | null;
  dueAt: Date | null;
  breachedAt: Date | null;
  startedAt: Date;
  endedAt: Date | null;
}

export interface Branch {
  orgId: string;
  openedAt: Date;
  completedAt: Date | null;
  completedBy: string | null;
}

/** An instance as read for a transition: with its open branches and unfinished sub-tasks. */
export interface LoadedInstance extends Instance {
  branches: Branch[];
  openSubtasks: number;
}

export interface HistoryEntry {
  seq: number;
  action: string;
  from: string;
  to: string;
  actor: { id: string | null; kind: string; name: string };
  org: string | null;
  at: Date;
  comment: string | null;
  attachments: Attachment[];
  assignees: string[] | null;
  requestId: string | null;
  details: Record<string, unknown>;
}

export interface TransitionRequest {
  action: string;
  /** The version the client saw; a different current version is a stale transition (409). */
  version?: number | undefined;
  /** The client's request id (Idempotency-Key): a repeat returns the first outcome. */
  requestId?: string | undefined;
  comment?: string | undefined;
  attachments?: Attachment[] | undefined;
  /** Organisations to assign (for an `assigns` action). */
  assignees?: string[] | undefined;
  details?: Record<string, unknown> | undefined;
}

/** What a guard sees; it returns a reason to refuse, or undefined to allow. */
export interface GuardInput {
  instance: LoadedInstance;
  actor: Actor;
  request: TransitionRequest;
  now: Date;
}
export type Guard = (input: GuardInput) => string | undefined;

/** What an effect sees: the instance as the transition leaves it (before `data` patches). */
export interface EffectInput extends GuardInput {
  from: string;
  to: string;
  next: Instance;
}
/** An effect's result: facts to merge into the instance's data. Its writes ride on the plan's statement. */
export interface EffectResult {
  data?: Record<string, unknown>;
  riders?: Rider[];
}
export type Effect = (input: EffectInput) => EffectResult | undefined;

/** SLA arithmetic over working calendars, supplied by the service. */
export interface SlaClock {
  /** The instant `iso` of working time after `from` on `calendar`. */
  due(calendar: string, from: Date, iso: string): Date;
  /** The instant a fraction of the way from `from` to `due` in working time. */
  fraction(calendar: string, from: Date, due: Date, f: number): Date;
}

export interface TransitionPlan {
  next: Instance;
  entries: HistoryEntry[];
  /** Branches to open (state_seq = next.stateSeq) and to complete (current state_seq). */
  openBranches: string[];
  completeBranch: string | null;
  /** Disarm pending state timers (the state was left or its clock restarted). */
  disarmStateTimers: boolean;
  disarmAllTimers: boolean;
  armTimers: { kind: 'state-sla' | 'overall-sla'; dueAt: Date; stateSeq: number }[];
  /** Effects' names to run after planning (the service turns them into riders). */
  effects: string[];
  /** The effects' writes, riding on the plan's statement. */
  effectRiders?: Rider[];
}

const PSEUDO = new Set(['assignee', 'reporter', 'system']);

/** The roles the actor holds for this instance: trust roles whose jurisdiction covers it, and pseudo-roles. */
export function rolesFor(actor: Actor, instance: Instance): Set<string> {
  const roles = new Set<string>();
  if (actor.kind === 'system') roles.add('system');
  for (const g of actor.grants) {
    if (g.role !== null && !PSEUDO.has(g.role) && covers(g.scope, instance.areaPath)) roles.add(g.role);
    if (g.orgId !== null && instance.assignees.includes(g.orgId)) roles.add('assignee');
  }
  if (actor.userId !== null && actor.userId === instance.reporterUserId) roles.add('reporter');
  return roles;
}

/** The organisations the actor acts for (its grants' organisations). */
function actorOrgs(actor: Actor): Set<string> {
  return new Set(actor.grants.flatMap((g) => (g.orgId === null ? [] : [g.orgId])));
}

/** The open branch the actor works in, if any. */
function branchOf(actor: Actor, instance: LoadedInstance): Branch | undefined {
  const orgs = actorOrgs(actor);
  return instance.branches.find((b) => b.completedAt === null && orgs.has(b.orgId));
}

export interface AvailableAction {
  action: string;
  name: { zh: string; en: string };
  to: string | null;
  commentRequired: boolean;
  assigns: boolean;
}

/** The actions this actor may take on this instance now (roles, branch and guards all satisfied). */
export function availableActions(args: {
  definition: WorkflowDefinition;
  instance: LoadedInstance;
  actor: Actor;
  guards: ReadonlyMap<string, Guard>;
  now: Date;
}): AvailableAction[] {
  const { definition, instance, actor } = args;
  if (instance.endedAt) return [];
  const state = definition.states[instance.state];
  const roles = rolesFor(actor, instance);
  const out: AvailableAction[] = [];
  for (const [name, a] of Object.entries(state?.actions ?? {})) {
    if (refusal({ ...args, roles, action: a, request: { action: name } }) !== undefined) continue;
    out.push({
      action: name,
      name: a.name,
      to: a.to ?? null,
      commentRequired: a.commentRequired === true,
      assigns: a.assigns === true,
    });
  }
  return out;
}

/** Why the actor may not take `action` now (403-type reasons come first), or undefined. */
function refusal(args: {
  instance: LoadedInstance;
  actor: Actor;
  roles: Set<string>;
  action: ActionDefinition;
  request: TransitionRequest;
  guards: ReadonlyMap<string, Guard>;
  now: Date;
}): { error: 'forbidden' | 'conflict'; detail: string } | undefined {
  const { action, roles, instance, actor } = args;
  if (!action.roles.some((r) => roles.has(r)))
    return { error: 'forbidden', detail: `Only ${action.roles.join(', ')} may take this action` };
  if (action.branch === 'complete' && actor.kind !== 'system' && !branchOf(actor, instance))
    return { error: 'conflict', detail: 'Your organisation has no open part of this work' };
  for (const g of action.guards ?? []) {
    const guard = args.guards.get(g);
    const reason = guard
      ? guard({ instance, actor, request: args.request, now: args.now })
      : `guard ${g} is not registered`;
    if (reason !== undefined) return { error: 'conflict', detail: reason };
  }
  return undefined;
}

/**
 * Decides a transition. Throws an AppError (404-free: the caller already saw the instance) when
 * the action is unknown in this state (409), not allowed for the actor's roles (403), blocked by
 * a guard (409), the version is stale (409) or the input is incomplete (422).
 */
export function planTransition(args: {
  definition: WorkflowDefinition;
  instance: LoadedInstance;
  actor: Actor;
  actorOrg: string | null;
  request: TransitionRequest;
  guards: ReadonlyMap<string, Guard>;
  clock: SlaClock;
  now: Date;
}): TransitionPlan {
  const { definition, instance, actor, request, now } = args;
  if (request.version !== undefined && request.version !== instance.version)
    throw new AppError(WorkflowErrors['workflow-stale'], {
      detail: `The instance is at version ${instance.version}, not ${request.version}; reload and try again`,
    });
  if (instance.endedAt)
    throw new AppError(WorkflowErrors['workflow-action-unavailable'], { detail: 'The workflow has ended' });
  const state = definition.states[instance.state];
  const action = state?.actions?.[request.action];
  if (!state || !action)
    throw new AppError(WorkflowErrors['workflow-action-unavailable'], {
      detail: `Action "${request.action}" is not available in state "${instance.state}"`,
    });
  const roles = rolesFor(actor, instance);
  const refused = refusal({ instance, actor, roles, action, request, guards: args.guards, now });
  if (refused)
    throw new AppError(
      refused.error === 'forbidden' ? Errors.forbidden : WorkflowErrors['workflow-action-unavailable'],
      {
        detail: refused.detail,
      },
    );
  if (action.commentRequired && !request.comment?.trim())
    throw new AppError(Errors.unprocessable, {
      detail: `Action "${request.action}" needs a comment (reason)`,
    });
  const assignees = request.assignees ? [...new Set(request.assignees)] : undefined;
  if (action.assigns && (!assignees || assignees.length === 0))
    throw new AppError(Errors.unprocessable, {
      detail: `Action "${request.action}" needs at least one assignee`,
    });
  if (!action.assigns && assignees)
    throw new AppError(Errors.unprocessable, { detail: `Action "${request.action}" does not assign` });

  const entries: HistoryEntry[] = [];
  let seq = instance.historySeq;
  const entry = (e: Pick<HistoryEntry, 'action' | 'from' | 'to'> & Partial<HistoryEntry>): HistoryEntry =>
    historyEntry({ seq: ++seq, actor, org: args.actorOrg, at: now, ...e });
  entries.push(
    entry({
      action: request.action,
      from: instance.state,
      to: action.to ?? instance.state,
      comment: request.comment?.trim() ?? null,
      attachments: request.attachments ?? [],
      assignees: assignees ?? null,
      requestId: request.requestId ?? null,
      details: request.details ?? {},
    }),
  );

  const plan: TransitionPlan = {
    next: { ...instance, version: instance.version + 1 },
    entries,
    openBranches: [],
    completeBranch: null,
    disarmStateTimers: false,
    disarmAllTimers: false,
    armTimers: [],
    effects: [...(action.effects ?? [])],
  };
  // Drop the loaded extras from `next`: it is what gets written.
  delete (plan.next as Partial<LoadedInstance>).branches;
  delete (plan.next as Partial<LoadedInstance>).openSubtasks;
  if (assignees) plan.next.assignees = assignees;

  let target = action.to;
  if (action.branch === 'complete') {
    const mine =
      actor.kind === 'system' ? instance.branches.find((b) => !b.completedAt) : branchOf(actor, instance);
    if (mine) {
      plan.completeBranch = mine.orgId;
      const open = instance.branches.filter((b) => b.completedAt === null && b.orgId !== mine.orgId);
      if (open.length === 0 && state.parallel) {
        target = state.parallel.join;
        entries.push(
          entry({ action: 'join', from: instance.state, to: target, actor: SYSTEM_ACTOR, org: null }),
        );
      }
    }
  }
  plan.next.historySeq = seq;
  if (target !== undefined) enter(plan, definition, target, args.clock, now);
  else if (action.restartsClock && state.sla) {
    plan.disarmStateTimers = true;
    armState(plan, definition, state, args.clock, now);
  }
  return plan;
}

const SYSTEM_ACTOR = { id: 'system', kind: 'system', name: 'system' };

/** A history entry: who (as recorded), what, when; comment, attachments, assignees and details empty unless given. */
export function historyEntry(
  e: Pick<HistoryEntry, 'seq' | 'action' | 'from' | 'to' | 'org' | 'at'> & {
    actor: { id: string | null; kind: string; name: string };
  } & Partial<HistoryEntry>,
): HistoryEntry {
  return {
    comment: null,
    attachments: [],
    assignees: null,
    requestId: null,
    details: {},
    ...e,
    actor: { id: e.actor.id, kind: e.actor.kind, name: e.actor.name },
  };
}

/** Moves `plan.next` into `target`: a new state visit, its SLA, its branches, the end. */
function enter(
  plan: TransitionPlan,
  def: WorkflowDefinition,
  target: string,
  clock: SlaClock,
  now: Date,
): void {
  const next = plan.next;
  const state = def.states[target];
  if (!state) throw new Error(`definition ${def.key}: no state ${target}`);
  next.state = target;
  next.stateSeq += 1;
  next.stateEnteredAt = now;
  next.stateDueAt = null;
  next.stateNearDueAt = null;
  next.breachedAt = null;
  plan.disarmStateTimers = true;
  if (state.parallel) {
    // A parallel state with nobody to work it could never join.
    if (next.assignees.length === 0)
      throw new AppError(Errors.unprocessable, { detail: `State "${target}" needs at least one assignee` });
    plan.openBranches = [...next.assignees];
  }
  armState(plan, def, state, clock, now);
  if (def.sla?.until === target) {
    plan.disarmAllTimers = true;
  }
  if (state.final) {
    next.endedAt = now;
    plan.disarmAllTimers = true;
  }
}

function armState(
  plan: TransitionPlan,
  def: WorkflowDefinition,
  state: StateDefinition,
  clock: SlaClock,
  now: Date,
): void {
  if (!state.sla) return;
  const calendar = state.sla.calendar ?? def.calendar;
  const due = clock.due(calendar, now, state.sla.duration);
  plan.next.stateDueAt = due;
  plan.next.stateNearDueAt = clock.fraction(calendar, now, due, state.sla.nearDue ?? 0.8);
  plan.next.breachedAt = null;
  plan.armTimers.push({ kind: 'state-sla', dueAt: due, stateSeq: plan.next.stateSeq });
}

/** A new instance in the definition's initial state, with its overall and first state SLA armed. */
export function planStart(args: {
  definition: WorkflowDefinition;
  version: number;
  id: string;
  subject: { type: string; id: string };
  parentId?: string | null;
  areaPath: string | null;
  reporterUserId: string | null;
  assignees?: string[];
  data?: Record<string, unknown>;
  actor: Actor;
  actorOrg: string | null;
  clock: SlaClock;
  now: Date;
}): TransitionPlan {
  const { definition: def, now } = args;
  const next: Instance = {
    id: args.id,
    definitionKey: def.key,
    definitionVersion: args.version,
    subjectType: args.subject.type,
    subjectId: args.subject.id,
    parentId: args.parentId ?? null,
    state: def.initial,
    version: 1,
    stateSeq: 0,
    historySeq: 1,
    areaPath: args.areaPath,
    reporterUserId: args.reporterUserId,
    assignees: args.assignees ?? [],
    data: args.data ?? {},
    stateEnteredAt: now,
    stateDueAt: null,
    stateNearDueAt: null,
    dueAt: null,
    breachedAt: null,
    startedAt: now,
    endedAt: null,
  };
  const plan: TransitionPlan = {
    next,
    entries: [
      historyEntry({
        seq: 1,
        action: 'start',
        from: def.initial,
        to: def.initial,
        actor: args.actor,
        org: args.actorOrg,
        at: now,
      }),
    ],
    openBranches: [],
    completeBranch: null,
    disarmStateTimers: false,
    disarmAllTimers: false,
    armTimers: [],
    effects: [],
  };
  if (def.sla) {
    next.dueAt = args.clock.due(def.sla.calendar ?? def.calendar, now, def.sla.duration);
    plan.armTimers.push({ kind: 'overall-sla', dueAt: next.dueAt, stateSeq: 0 });
  }
  enter(plan, def, def.initial, args.clock, now);
  plan.disarmStateTimers = false;
  return plan;
}

/**
 * Chains a further plan onto `first` (e.g. 立案 then 派遣 in one write): the second plan was made
 * from `first.next` (so its entries continue the numbering); timers armed by the first and
 * disarmed by the second are dropped.
 */
export function chainPlans(first: TransitionPlan, second: TransitionPlan): TransitionPlan {
  const keepFirstTimers = first.armTimers.filter(
    (t) => !(second.disarmAllTimers || (second.disarmStateTimers && t.kind === 'state-sla')),
  );
  return {
    next: second.next,
    entries: [...first.entries, ...second.entries],
    openBranches: second.openBranches.length > 0 ? second.openBranches : first.openBranches,
    completeBranch: second.completeBranch ?? first.completeBranch,
    disarmStateTimers: first.disarmStateTimers || second.disarmStateTimers,
    disarmAllTimers: first.disarmAllTimers || second.disarmAllTimers,
    armTimers: [...keepFirstTimers, ...second.armTimers],
    effects: [...first.effects, ...second.effects],
    effectRiders: [...(first.effectRiders ?? []), ...(second.effectRiders ?? [])],
  };
}
