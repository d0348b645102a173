/**
 * Workflow definitions as data (流程定义): states, actions with the roles allowed to take them,
 * guards and effects named from the owning module's registry, per-state SLAs over a working
 * calendar with the action a breach triggers, parallel states whose branches join, and an overall
 * SLA. A definition is checked once, when it is published, with a precise message for each problem
 * (unreachable states, missing or unknown roles, unknown targets, …); running instances keep the
 * version they started with.
 */
import { Type, type Static } from 'typebox';

const Name = Type.Object(
  { zh: Type.String({ minLength: 1, maxLength: 100 }), en: Type.String({ minLength: 1, maxLength: 100 }) },
  { additionalProperties: false },
);

const Identifier = Type.String({ pattern: '^[a-z][a-z0-9-]{0,62}$' });
const CalendarCode = Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$' });

export const SlaSchema = Type.Object(
  {
    /** ISO 8601 duration of working time (`PT4H`, `P2D` = two working days). */
    duration: Type.String({ minLength: 2, maxLength: 40 }),
    /** Working calendar code; the definition's calendar when absent. */
    calendar: Type.Optional(CalendarCode),
    /** Fraction of the SLA after which the work counts as near due (临期); 0.8 by default. */
    nearDue: Type.Optional(Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 1 })),
    /** An action of the same state, taken by the system when the SLA is breached (e.g. escalate). */
    onBreach: Type.Optional(Identifier),
  },
  { additionalProperties: false },
);
export type Sla = Static<typeof SlaSchema>;

export const ActionSchema = Type.Object(
  {
    name: Name,
    /** Target state; absent for an action that keeps the state (comment, escalate, reassign). */
    to: Type.Optional(Identifier),
    /** Roles that may take it: trust role codes, or `assignee`, `reporter`, `system`. */
    roles: Type.Array(Identifier, { maxItems: 20 }),
    /** Named conditions from the owning module's registry, all of which must hold. */
    guards: Type.Optional(Type.Array(Identifier, { maxItems: 10 })),
    /** Named side effects from the owning module's registry, run in the transition's transaction. */
    effects: Type.Optional(Type.Array(Identifier, { maxItems: 10 })),
    /** In a parallel state: the action completes the actor's own branch (会签/联办 part done). */
    branch: Type.Optional(Type.Literal('complete')),
    /** A comment (reason) must be given, e.g. for 退回 and 作废. */
    commentRequired: Type.Optional(Type.Boolean()),
    /** The transition names the organisations to work on the target state (派遣). */
    assigns: Type.Optional(Type.Boolean()),
    /** A state-keeping action that restarts the state's SLA clock (e.g. after escalation). */
    restartsClock: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type ActionDefinition = Static<typeof ActionSchema>;

export const StateSchema = Type.Object(
  {
    name: Name,
    /** The instance ends here; a final state has no actions. */
    final: Type.Optional(Type.Boolean()),
    sla: Type.Optional(SlaSchema),
    /** Work splits into one branch per assigned organisation; when all complete, go to `join`. */
    parallel: Type.Optional(Type.Object({ join: Identifier }, { additionalProperties: false })),
    actions: Type.Optional(Type.Record(Identifier, ActionSchema)),
  },
  { additionalProperties: false },
);
export type StateDefinition = Static<typeof StateSchema>;

export const DefinitionSchema = Type.Object(
  {
    key: Type.String({ pattern: '^[a-z][a-z0-9]*(\\.[a-z][a-z0-9-]*)+$', maxLength: 100 }),
    name: Name,
    description: Type.Optional(Type.String({ maxLength: 2000 })),
    initial: Identifier,
    /** Default working calendar for SLAs (`cn-mainland`, `24x7`, or one published later). */
    calendar: CalendarCode,
    /** Overall SLA from start to a final state (or to `until`). */
    sla: Type.Optional(
      Type.Object(
        {
          duration: Type.String({ minLength: 2, maxLength: 40 }),
          calendar: Type.Optional(CalendarCode),
          /** The overall clock stops on entering this state (e.g. 结案) rather than a final state. */
          until: Type.Optional(Identifier),
        },
        { additionalProperties: false },
      ),
    ),
    states: Type.Record(Identifier, StateSchema),
  },
  { additionalProperties: false },
);
export type WorkflowDefinition = Static<typeof DefinitionSchema>;

/** Roles every engine understands besides the trust roles. */
export const PSEUDO_ROLES = ['assignee', 'reporter', 'system'] as const;

/** What a definition may refer to: known role codes, calendars, and the owner's guards and effects. */
export interface DefinitionEnvironment {
  roles: ReadonlySet<string>;
  calendars: ReadonlySet<string>;
  guards: ReadonlySet<string>;
  effects: ReadonlySet<string>;
  /** Checks an ISO duration; returns a problem or undefined. */
  checkDuration(iso: string): string | undefined;
}

/**
 * Every semantic problem of a (schema-valid) definition, each naming where it is; empty when the
 * definition can run. Reachability follows `to` and `join` edges from `initial`.
 */
export function definitionProblems(def: WorkflowDefinition, env: DefinitionEnvironment): string[] {
  const problems: string[] = [];
  const states = def.states;
  const names = Object.keys(states);
  if (names.length === 0) return ['states: a workflow needs at least one state'];
  if (!(def.initial in states)) problems.push(`initial: "${def.initial}" is not a state`);
  const known = (s: string | undefined) => s !== undefined && Object.hasOwn(states, s);
  const calendar = (where: string, code: string | undefined) => {
    if (code !== undefined && !env.calendars.has(code))
      problems.push(`${where ? `${where}.` : ''}calendar: unknown working calendar "${code}"`);
  };
  const duration = (where: string, iso: string) => {
    const p = env.checkDuration(iso);
    if (p) problems.push(`${where}.duration: ${p}`);
  };
  calendar('', def.calendar);
  if (def.sla) {
    duration('sla', def.sla.duration);
    calendar('sla', def.sla.calendar);
    if (def.sla.until !== undefined && !known(def.sla.until))
      problems.push(`sla.until: "${def.sla.until}" is not a state`);
  }
  if (!names.some((n) => states[n]?.final))
    problems.push('states: no final state, instances could never end');

  for (const [sName, s] of Object.entries(states)) {
    const at = `states.${sName}`;
    const actions = Object.entries(s.actions ?? {});
    if (s.final && actions.length > 0) problems.push(`${at}: a final state cannot have actions`);
    if (s.final && (s.sla || s.parallel)) problems.push(`${at}: a final state has no SLA and no branches`);
    if (!s.final && actions.length === 0 && !s.parallel)
      problems.push(`${at}: no actions and not final, instances would be stuck here`);
    if (s.parallel) {
      if (!known(s.parallel.join)) problems.push(`${at}.parallel.join: "${s.parallel.join}" is not a state`);
      if (!actions.some(([, a]) => a.branch === 'complete'))
        problems.push(`${at}.parallel: no action completes a branch, the state could never join`);
    }
    if (s.sla) {
      duration(`${at}.sla`, s.sla.duration);
      calendar(`${at}.sla`, s.sla.calendar);
      if (s.sla.onBreach !== undefined) {
        const a = s.actions?.[s.sla.onBreach];
        if (!a) problems.push(`${at}.sla.onBreach: "${s.sla.onBreach}" is not an action of this state`);
        else if (!a.roles.includes('system'))
          problems.push(`${at}.sla.onBreach: action "${s.sla.onBreach}" must allow the role "system"`);
      }
    }
    for (const [aName, a] of actions) {
      const where = `${at}.actions.${aName}`;
      if (a.roles.length === 0) problems.push(`${where}.roles: no roles, nobody could take this action`);
      for (const r of a.roles)
        if (!env.roles.has(r) && !(PSEUDO_ROLES as readonly string[]).includes(r))
          problems.push(`${where}.roles: unknown role "${r}"`);
      if (a.to !== undefined && !known(a.to)) problems.push(`${where}.to: "${a.to}" is not a state`);
      for (const g of a.guards ?? [])
        if (!env.guards.has(g)) problems.push(`${where}.guards: unknown guard "${g}"`);
      for (const e of a.effects ?? [])
        if (!env.effects.has(e)) problems.push(`${where}.effects: unknown effect "${e}"`);
      if (a.branch && !s.parallel)
        problems.push(`${where}.branch: only actions of a parallel state complete branches`);
      if (a.branch && a.to !== undefined)
        problems.push(`${where}: a branch action cannot also move the instance`);
      if (a.restartsClock && a.to !== undefined)
        problems.push(`${where}.restartsClock: only an action that keeps the state restarts its clock`);
      if (a.assigns && (a.to === undefined || !states[a.to]?.parallel))
        problems.push(`${where}.assigns: assigning needs a parallel target state`);
    }
  }

  if (known(def.initial)) {
    const seen = new Set<string>([def.initial]);
    const queue = [def.initial];
    for (let s = queue.shift(); s !== undefined; s = queue.shift()) {
      const st = states[s];
      const next = [
        ...Object.values(st?.actions ?? {}).flatMap((a) => (a.to === undefined ? [] : [a.to])),
        ...(st?.parallel ? [st.parallel.join] : []),
      ];
      for (const n of next)
        if (known(n) && !seen.has(n)) {
          seen.add(n);
          queue.push(n);
        }
    }
    for (const n of names) if (!seen.has(n)) problems.push(`states.${n}: unreachable from "${def.initial}"`);
  }
  return problems;
}
