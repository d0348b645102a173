/**
 * Definition checking without I/O (`definitionProblems`): every semantic problem a publisher can
 * make, each asserted with its exact message, so a definition that cannot run is refused with a
 * precise reason naming where the problem is.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { durationProblem } from './calendar.ts';
import {
  definitionProblems,
  type ActionDefinition,
  type DefinitionEnvironment,
  type StateDefinition,
  type WorkflowDefinition,
} from './definition.ts';

const n = (s: string) => ({ zh: s, en: s });

const ENV: DefinitionEnvironment = {
  roles: new Set(['ops-operator', 'department-staff']),
  calendars: new Set(['cn-mainland', '24x7']),
  guards: new Set(['subtasks-done']),
  effects: new Set(['notify']),
  checkDuration: durationProblem,
};

const act = (extra: Partial<ActionDefinition> = {}): ActionDefinition => ({
  name: n('act'),
  roles: ['ops-operator'],
  ...extra,
});

/** A valid two-state definition (`a` --go--> `done`), with `states` merged over it. */
function def(
  states: Record<string, StateDefinition | undefined> = {},
  extra: Partial<WorkflowDefinition> = {},
): WorkflowDefinition {
  const base: Record<string, StateDefinition | undefined> = {
    a: { name: n('a'), actions: { go: act({ to: 'done' }) } },
    done: { name: n('done'), final: true },
    ...states,
  };
  const merged = Object.fromEntries(
    Object.entries(base).flatMap(([k, v]) => (v === undefined ? [] : [[k, v] as const])),
  );
  return { key: 'test.pure', name: n('pure'), initial: 'a', calendar: '24x7', states: merged, ...extra };
}

const problems = (d: WorkflowDefinition) => definitionProblems(d, ENV);

describe('workflow definition checking (pure)', () => {
  it('accepts a valid definition, with pseudo-roles, guards, effects, SLAs and a parallel state', () => {
    assert.deepEqual(problems(def()), []);
    const full = def(
      {
        a: {
          name: n('a'),
          sla: { duration: 'P1DT2H', calendar: 'cn-mainland', onBreach: 'escalate', nearDue: 0.5 },
          actions: {
            dispatch: act({ to: 'work', assigns: true, guards: ['subtasks-done'], effects: ['notify'] }),
            escalate: act({ roles: ['system'], restartsClock: true }),
            withdraw: act({ to: 'done', roles: ['reporter'], commentRequired: true }),
          },
        },
        work: {
          name: n('work'),
          parallel: { join: 'review' },
          sla: { duration: 'PT4H' },
          actions: { finish: act({ roles: ['assignee'], branch: 'complete' }) },
        },
        review: { name: n('review'), actions: { close: act({ to: 'done', roles: ['department-staff'] }) } },
      },
      { sla: { duration: 'P5D', until: 'review' } },
    );
    assert.deepEqual(problems(full), []);
  });

  it('finds unreachable states', () => {
    assert.deepEqual(problems(def({ x: { name: n('x'), actions: { go: act({ to: 'done' }) } } })), [
      'states.x: unreachable from "a"',
    ]);
  });

  it('finds an action without roles and unknown roles', () => {
    assert.deepEqual(
      problems(def({ a: { name: n('a'), actions: { go: act({ to: 'done', roles: [] }) } } })),
      ['states.a.actions.go.roles: no roles, nobody could take this action'],
    );
    assert.deepEqual(
      problems(
        def({ a: { name: n('a'), actions: { go: act({ to: 'done', roles: ['assignee', 'mayor'] }) } } }),
      ),
      ['states.a.actions.go.roles: unknown role "mayor"'],
    );
  });

  it('finds unknown targets (and what they leave unreachable)', () => {
    assert.deepEqual(problems(def({ a: { name: n('a'), actions: { go: act({ to: 'nowhere' }) } } })), [
      'states.a.actions.go.to: "nowhere" is not a state',
      'states.done: unreachable from "a"',
    ]);
  });

  it('finds unknown guards and effects', () => {
    assert.deepEqual(
      problems(
        def({
          a: {
            name: n('a'),
            actions: {
              go: act({ to: 'done', guards: ['subtasks-done', 'full-moon'], effects: ['send-fax'] }),
            },
          },
        }),
      ),
      [
        'states.a.actions.go.guards: unknown guard "full-moon"',
        'states.a.actions.go.effects: unknown effect "send-fax"',
      ],
    );
  });

  it('checks onBreach: a missing action, or one the system may not take', () => {
    assert.deepEqual(
      problems(
        def({
          a: {
            name: n('a'),
            sla: { duration: 'PT1H', onBreach: 'escalate' },
            actions: { go: act({ to: 'done' }) },
          },
        }),
      ),
      ['states.a.sla.onBreach: "escalate" is not an action of this state'],
    );
    assert.deepEqual(
      problems(
        def({
          a: {
            name: n('a'),
            sla: { duration: 'PT1H', onBreach: 'escalate' },
            actions: { go: act({ to: 'done' }), escalate: act({ roles: ['ops-operator'] }) },
          },
        }),
      ),
      ['states.a.sla.onBreach: action "escalate" must allow the role "system"'],
    );
  });

  it('finds final states with actions or SLAs, dead ends, and definitions that never end', () => {
    assert.deepEqual(
      problems(def({ done: { name: n('done'), final: true, actions: { reopen: act({ to: 'a' }) } } })),
      ['states.done: a final state cannot have actions'],
    );
    assert.deepEqual(problems(def({ done: { name: n('done'), final: true, sla: { duration: 'PT1H' } } })), [
      'states.done: a final state has no SLA and no branches',
    ]);
    assert.deepEqual(
      problems(
        def({
          a: { name: n('a'), actions: { go: act({ to: 'done' }), park: act({ to: 'b' }) } },
          b: { name: n('b') },
        }),
      ),
      ['states.b: no actions and not final, instances would be stuck here'],
    );
    assert.deepEqual(problems(def({ a: { name: n('a'), actions: { loop: act() } }, done: undefined })), [
      'states: no final state, instances could never end',
    ]);
    assert.deepEqual(problems(def({ a: undefined, done: undefined })), [
      'states: a workflow needs at least one state',
    ]);
  });

  it('checks parallel states and branch actions', () => {
    const base = { a: { name: n('a'), actions: { dispatch: act({ to: 'work', assigns: true }) } } };
    assert.deepEqual(
      problems(
        def({
          ...base,
          work: { name: n('work'), parallel: { join: 'done' }, actions: { note: act() } },
        }),
      ),
      ['states.work.parallel: no action completes a branch, the state could never join'],
    );
    assert.deepEqual(
      problems(
        def({
          ...base,
          work: {
            name: n('work'),
            parallel: { join: 'nowhere' },
            actions: { finish: act({ branch: 'complete' }) },
          },
        }),
      ),
      ['states.work.parallel.join: "nowhere" is not a state', 'states.done: unreachable from "a"'],
    );
    assert.deepEqual(
      problems(
        def({
          ...base,
          work: {
            name: n('work'),
            parallel: { join: 'done' },
            actions: { finish: act({ branch: 'complete', to: 'done' }) },
          },
        }),
      ),
      ['states.work.actions.finish: a branch action cannot also move the instance'],
    );
    assert.deepEqual(
      problems(
        def({
          a: { name: n('a'), actions: { go: act({ to: 'done' }), finish: act({ branch: 'complete' }) } },
        }),
      ),
      ['states.a.actions.finish.branch: only actions of a parallel state complete branches'],
    );
    assert.deepEqual(
      problems(def({ a: { name: n('a'), actions: { go: act({ to: 'done', assigns: true }) } } })),
      ['states.a.actions.go.assigns: assigning needs a parallel target state'],
    );
    assert.deepEqual(
      problems(
        def({
          a: {
            name: n('a'),
            sla: { duration: 'PT1H' },
            actions: { go: act({ to: 'done', restartsClock: true }) },
          },
        }),
      ),
      ['states.a.actions.go.restartsClock: only an action that keeps the state restarts its clock'],
    );
  });

  it('checks durations and calendars of SLAs', () => {
    assert.deepEqual(
      problems(def({ a: { name: n('a'), sla: { duration: 'P1Y' }, actions: { go: act({ to: 'done' }) } } })),
      ['states.a.sla.duration: "P1Y": years, months and weeks are not allowed; use days (P5D)'],
    );
    assert.deepEqual(
      problems(
        def({ a: { name: n('a'), sla: { duration: 'PT0.5H' }, actions: { go: act({ to: 'done' }) } } }),
      ),
      ['states.a.sla.duration: "PT0.5H": fractions are not allowed; use a smaller unit (PT30M, not PT0.5H)'],
    );
    assert.deepEqual(
      problems(
        def({
          a: {
            name: n('a'),
            sla: { duration: 'PT4H', calendar: 'mars' },
            actions: { go: act({ to: 'done' }) },
          },
        }),
      ),
      ['states.a.sla.calendar: unknown working calendar "mars"'],
    );
    assert.deepEqual(problems(def({}, { sla: { duration: 'P2W', calendar: 'mars', until: 'zz' } })), [
      'sla.duration: "P2W": years, months and weeks are not allowed; use days (P5D)',
      'sla.calendar: unknown working calendar "mars"',
      'sla.until: "zz" is not a state',
    ]);
  });

  it('finds an initial state that does not exist', () => {
    assert.deepEqual(problems(def({}, { initial: 'zz' })), ['initial: "zz" is not a state']);
  });

  it("names the definition's own calendar precisely", {}, () => {
    assert.deepEqual(problems(def({}, { calendar: 'mars' })), ['calendar: unknown working calendar "mars"']);
  });
});
