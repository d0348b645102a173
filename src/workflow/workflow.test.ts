/**
 * The workflow engine on every engine of this run: checking and publishing definitions (service and
 * HTTP), working calendars over HTTP, instances and transitions (roles, unknown actions, stale
 * versions, request ids, required comments, races), parallel branches and their join, sub-tasks,
 * running instances keeping their definition version, and SLA timers (exactly once, concurrent
 * sweeps, stale visits, a restart, working calendars). Definitions here use `test.*` keys.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import { engines, type TestDatabase } from '../../test/helpers/engines.ts';
import { signIn, startTestPlatform } from '../../test/helpers/platform.ts';
import { AppError, Errors, writeWith, type Database, type ErrorSpec, type Rider } from '../kernel/index.ts';
import type { Platform } from '../platform.ts';
import { systemContext, type Actor, type CallContext, type Grant } from '../trust/index.ts';
import type { ActionDefinition, StateDefinition, WorkflowDefinition } from './definition.ts';
import {
  checkDefinition,
  DEFINITION_ROLES,
  describeInstance,
  fireTimer,
  historyOf,
  loadInstance,
  planInstance,
  publishDefinition,
  registerWorkflowHooks,
  startRiders,
  subtasksOf,
  sweepTimers,
  transition,
  WorkflowErrors,
  type TransitionOutcome,
  type TransitionRequest,
} from './index.ts';
import * as store from './workflow.store.ts';

/** The counts of a sweep, without its error samples. */
async function sweep(database: Database, options: Parameters<typeof sweepTimers>[1]) {
  const { fired, stale, skipped } = await sweepTimers(database, options);
  return { fired, stale, skipped };
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
/** The background sweeper must not fire the timers these tests sweep themselves. */
const PLATFORM_ENV = { WORKFLOW_TIMER_INTERVAL_MS: '3600000' };

const n = (s: string) => ({ zh: s, en: s });
const at = (iso: string): Date => new Date(iso);
const plus = (d: Date, ms: number): Date => new Date(d.getTime() + ms);
const action = (extra: Partial<ActionDefinition> = {}): ActionDefinition => ({
  name: n('action'),
  roles: ['ops-operator'],
  ...extra,
});
const definition = (
  key: string,
  initial: string,
  states: Record<string, StateDefinition>,
  extra: Partial<WorkflowDefinition> = {},
): WorkflowDefinition => ({ key, name: n(key), initial, calendar: '24x7', states, ...extra });

// --- Definitions ------------------------------------------------------------------------------------

/** 申请审批: the reporter submits, department staff approve or reject (with a reason). */
const APPROVAL = definition('test.approval', 'draft', {
  draft: {
    name: n('draft'),
    actions: {
      submit: action({ to: 'review', roles: ['reporter'] }),
      note: action({ roles: ['reporter', 'ops-operator'] }),
    },
  },
  review: {
    name: n('review'),
    actions: {
      approve: action({ to: 'approved', roles: ['department-staff'] }),
      reject: action({ to: 'draft', roles: ['department-staff'], commentRequired: true }),
    },
  },
  approved: { name: n('approved'), final: true },
});

/** 联办: dispatched to several organisations, each completes its part, then review. */
const PARALLEL = definition('test.parallel', 'new', {
  new: { name: n('new'), actions: { dispatch: action({ to: 'working', assigns: true }) } },
  working: {
    name: n('working'),
    parallel: { join: 'review' },
    actions: { done: action({ roles: ['assignee', 'department-staff'], branch: 'complete' }) },
  },
  review: { name: n('review'), actions: { close: action({ to: 'closed' }) } },
  closed: { name: n('closed'), final: true },
});

const PARENT = definition('test.parent', 'open', {
  open: { name: n('open'), actions: { finish: action({ to: 'done', guards: ['subtasks-done'] }) } },
  done: { name: n('done'), final: true },
});

const TASK = definition('test.task', 'open', {
  open: { name: n('open'), actions: { complete: action({ to: 'done', roles: ['assignee'] }) } },
  done: { name: n('done'), final: true },
});

/** An hour's SLA on 24x7; on breach the system flags the instance (an effect setting data). */
const SLA = definition('test.sla', 'open', {
  open: {
    name: n('open'),
    sla: { duration: 'PT1H', calendar: '24x7', onBreach: 'flag' },
    actions: {
      flag: action({ roles: ['system'], effects: ['mark-flagged'] }),
      park: action({ to: 'parked' }),
      close: action({ to: 'done' }),
    },
  },
  parked: { name: n('parked'), actions: { resume: action({ to: 'open' }), close: action({ to: 'done' }) } },
  done: { name: n('done'), final: true },
});

/** One working day (P1D) on the mainland calendar. */
const WORKDAY = definition(
  'test.workday',
  'open',
  {
    open: { name: n('open'), sla: { duration: 'P1D' }, actions: { close: action({ to: 'done' }) } },
    done: { name: n('done'), final: true },
  },
  { calendar: 'cn-mainland' },
);

const VERSIONED_V1 = definition('test.versioned', 'a', {
  a: { name: n('a'), actions: { go: action({ to: 'b' }) } },
  b: { name: n('b'), final: true },
});
const VERSIONED_V2 = definition('test.versioned', 'a', {
  a: { name: n('a'), actions: { go: action({ to: 'c' }) } },
  c: { name: n('c'), final: true },
});

registerWorkflowHooks('test.sla', {
  effects: {
    'mark-flagged': ({ instance, now }) => ({
      data: { flagged: Number(instance.data['flagged'] ?? 0) + 1, flaggedAt: now.toISOString() },
    }),
  },
});
/** An escalation whose effect writes a row of its own (a rider) besides setting data. */
const EFFECTS = definition('test.effects', 'open', {
  open: {
    name: n('open'),
    sla: { duration: 'PT1H', onBreach: 'escalate' },
    actions: {
      escalate: action({ roles: ['system', 'ops-operator'], effects: ['record'] }),
      close: action({ to: 'done' }),
    },
  },
  done: { name: n('done'), final: true },
});
const recordRider = (instanceId: string, by: string): Rider => ({
  statement: (when) => sql`insert into wf_test_effects (instance_id, by_name)
    select ${instanceId}::uuid, ${by} where ${when}`,
});
registerWorkflowHooks('test.effects', {
  effects: {
    record: ({ next, actor }) => ({
      data: { recorded: Number(next.data['recorded'] ?? 0) + 1 },
      riders: [recordRider(next.id, actor.name)],
    }),
  },
});

/** An SLA whose onBreach effect fails with a programming error (e.g. a hook no longer registered). */
const POISON = definition('test.poison', 'open', {
  open: {
    name: n('open'),
    sla: { duration: 'PT1H', onBreach: 'explode' },
    actions: {
      explode: action({ roles: ['system'], effects: ['explode'] }),
      close: action({ to: 'done' }),
    },
  },
  done: { name: n('done'), final: true },
});
registerWorkflowHooks('test.poison', {
  effects: {
    explode: () => {
      throw new Error('effect failed');
    },
  },
});

registerWorkflowHooks('test.hooks', {
  guards: { 'business-hours': () => undefined },
  effects: { notify: () => undefined },
});

// --- Actors -------------------------------------------------------------------------------------------

const AREA = '310000/310113/310113002';
const BAOSHAN = '310000/310113';
const ORG_OPS = randomUUID();
const ORG_A = randomUUID();
const ORG_B = randomUUID();
const ORG_C = randomUUID();
const ORG_D = randomUUID();

function user(name: string, grants: Partial<Grant>[] = []): Actor {
  const full = grants.map((g): Grant => ({
    orgId: null,
    orgCode: null,
    role: null,
    permissions: new Set(),
    scope: '310000',
    ...g,
  }));
  return {
    kind: 'user',
    id: randomUUID(),
    name,
    userId: randomUUID(),
    // As signed-in actors are: the code of the first grant's organisation.
    org: full[0]?.orgCode ?? null,
    grants: full,
  };
}
const operator = user('op', [{ role: 'ops-operator', scope: BAOSHAN, orgId: ORG_OPS, orgCode: 'test-ops' }]);
const reporter = user('resident');
const staffA = user('staff-a', [
  { role: 'department-staff', scope: BAOSHAN, orgId: ORG_A, orgCode: 'test-org-a' },
]);
const staffB = user('staff-b', [
  { role: 'department-staff', scope: BAOSHAN, orgId: ORG_B, orgCode: 'test-org-b' },
]);
const staffC = user('staff-c', [
  { role: 'department-staff', scope: BAOSHAN, orgId: ORG_C, orgCode: 'test-org-c' },
]);
/** Department staff of another district (浦东): the role, but not over this area. */
const outsider = user('staff-pudong', [
  { role: 'department-staff', scope: '310000/310115', orgId: ORG_D, orgCode: 'test-org-d' },
]);
const ctxOf = (actor: Actor): CallContext => ({ actor, requestId: null, purpose: null });

/** Asserts that `p` rejects with the AppError `spec` (and `detail`, when given). */
async function rejectsWith(p: Promise<unknown>, spec: ErrorSpec, detail?: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof AppError, `expected an AppError, got ${String(e)}`);
    assert.equal(e.code, spec.code, e.detail);
    assert.equal(e.status, spec.status);
    if (detail !== undefined) assert.equal(e.detail, detail);
    return true;
  });
}

for (const engine of engines()) {
  describe(`workflow engine on ${engine.name}`, () => {
    let t: TestDatabase;
    let p: Platform;
    let db: Database;

    before(async () => {
      t = await engine.open();
      p = await startTestPlatform(t, { env: PLATFORM_ENV });
      db = t.database;
      for (const d of [APPROVAL, PARALLEL, PARENT, TASK, SLA, WORKDAY, EFFECTS, POISON]) {
        const r = await publishDefinition(db, systemContext(), d, { roles: DEFINITION_ROLES });
        assert.deepEqual(r, { key: d.key, version: 1, created: true });
      }
    });
    after(async () => {
      await p.stop();
      await t.dispose();
    });

    /** Starts an instance of `key` the way an owning module does (its own change + `startRiders`). */
    const start = async (
      key: string,
      extra: {
        parentId?: string;
        assignees?: string[];
        now?: Date;
        then?: TransitionRequest[];
      } = {},
    ): Promise<string> => {
      const ctx = ctxOf(operator);
      const plan = await planInstance(db, ctx, {
        key,
        subject: { type: 'test', id: randomUUID() },
        areaPath: AREA,
        reporterUserId: reporter.userId,
        ...(extra.parentId ? { parentId: extra.parentId } : {}),
        ...(extra.assignees ? { assignees: extra.assignees } : {}),
        ...(extra.now ? { now: extra.now } : {}),
        ...(extra.then ? { then: extra.then } : {}),
      });
      const rows = await writeWith(
        db.db,
        sql<{ id: string }>`select ${plan.next.id}::uuid as id`,
        startRiders(ctx, [plan]),
      );
      assert.equal(rows.length, 1);
      return plan.next.id;
    };
    const act = (
      actor: Actor,
      id: string,
      request: TransitionRequest,
      now?: Date,
    ): Promise<TransitionOutcome> => transition(db, ctxOf(actor), id, request, now ? { now } : {});
    const load = async (id: string) => {
      const i = await loadInstance(db.db, id);
      assert.ok(i, `no instance ${id}`);
      return i;
    };
    const history = (id: string) => historyOf(db.db, id);
    const actions = async (id: string) => (await history(id)).map((e) => e.action);
    const timersOf = async (id: string) =>
      (
        await sql<{ state_seq: number; kind: string; due_at: Date; fired_at: Date | null }>`
          select state_seq, kind, due_at, fired_at from workflow.timers where instance_id = ${id}
          order by due_at`.execute(db.db)
      ).rows.map((r) => ({
        stateSeq: r.state_seq,
        kind: r.kind,
        dueAt: new Date(r.due_at).toISOString(),
        firedAt: r.fired_at === null ? null : new Date(r.fired_at).toISOString(),
      }));
    const dueCount = async (now: Date) =>
      (
        await sql<{ n: number }>`select count(*)::int as n from workflow.timers
          where fired_at is null and due_at <= ${now}`.execute(db.db)
      ).rows[0]?.n;

    // --- Definitions: checking with the database (calendars, registered hooks) ----------------------

    describe('checking definitions', () => {
      const check = (input: unknown) => checkDefinition(db, input, { roles: DEFINITION_ROLES });

      it('reports schema errors before meaning', async () => {
        const { initial: _initial, ...noInitial } = APPROVAL;
        assert.deepEqual(await check(noInitial), {
          problems: ['(root): must have required properties initial'],
        });
        // The first message names the property, the second says what is wrong; TypeBox's wording.
        assert.deepEqual(await check({ ...APPROVAL, extra: 1 }), {
          problems: ['/extra: schema is false', '(root): must not have additional properties'],
        });
        assert.deepEqual(await check({ ...APPROVAL, key: 'approval' }), {
          problems: ['/key: must match pattern "^[a-z][a-z0-9]*(\\.[a-z][a-z0-9-]*)+$"'],
        });
        assert.deepEqual(await check(null), { problems: ['(root): must be object'] });
      });

      it('knows the stored calendars, the built-in guards and the hooks registered for the key', async () => {
        const ok = definition('test.hooks', 'a', {
          a: {
            name: n('a'),
            sla: { duration: 'PT2H', calendar: 'cn-mainland' },
            actions: {
              go: action({ to: 'b', guards: ['subtasks-done', 'business-hours'], effects: ['notify'] }),
            },
          },
          b: { name: n('b'), final: true },
        });
        const checked = await check(ok);
        assert.deepEqual(checked.problems, []);
        assert.equal(checked.definition, ok);
        const bad = definition('test.hooks', 'a', {
          a: {
            name: n('a'),
            sla: { duration: 'P1Y', calendar: 'mars' },
            actions: {
              go: action({ to: 'b', roles: ['mayor'], guards: ['full-moon'], effects: ['send-fax'] }),
            },
          },
          b: { name: n('b'), final: true },
        });
        assert.deepEqual(await check(bad), {
          problems: [
            'states.a.sla.duration: "P1Y": years, months and weeks are not allowed; use days (P5D)',
            'states.a.sla.calendar: unknown working calendar "mars"',
            'states.a.actions.go.roles: unknown role "mayor"',
            'states.a.actions.go.guards: unknown guard "full-moon"',
            'states.a.actions.go.effects: unknown effect "send-fax"',
          ],
        });
        // Another key's hooks are not this key's.
        assert.deepEqual((await check({ ...ok, key: 'test.nohooks' })).problems, [
          'states.a.actions.go.guards: unknown guard "business-hours"',
          'states.a.actions.go.effects: unknown effect "notify"',
        ]);
      });

      it('refuses to publish an invalid definition, listing every problem, and stores nothing', async () => {
        const bad = definition('test.invalid', 'a', {
          a: { name: n('a'), actions: { go: action({ to: 'done', roles: [] }) } },
          x: { name: n('x'), actions: { go: action({ to: 'done' }) } },
          done: { name: n('done'), final: true },
        });
        await assert.rejects(
          publishDefinition(db, systemContext(), bad, { roles: DEFINITION_ROLES }),
          (e: unknown) => {
            assert.ok(e instanceof AppError);
            assert.equal(e.code, 'workflow-invalid-definition');
            assert.deepEqual(e.extensions['problems'], [
              'states.a.actions.go.roles: no roles, nobody could take this action',
              'states.x: unreachable from "a"',
            ]);
            return true;
          },
        );
        assert.deepEqual(await store.definitionVersions(db.db, 'test.invalid'), []);
      });
    });

    // --- Definitions and calendars over HTTP -------------------------------------------------------

    describe('definitions API', () => {
      type Method = 'GET' | 'PUT' | 'POST';
      const api = async (method: Method, url: string, body?: unknown, username?: string) =>
        p.http.inject({
          method,
          url,
          headers: username ? await signIn(p, username) : {},
          ...(body === undefined ? {} : { payload: body as object }),
        });
      const problem = (res: { statusCode: number; body: string }, status: number, code: string) => {
        assert.equal(res.statusCode, status, res.body);
        const b = JSON.parse(res.body) as { code: string; detail?: string; problems?: string[] };
        assert.equal(b.code, code, res.body);
        return b;
      };
      const HTTP_V1 = definition('test.http', 'draft', {
        draft: { name: n('draft'), actions: { submit: action({ to: 'done' }) } },
        done: { name: n('done'), final: true },
      });
      const HTTP_V2 = { ...HTTP_V1, name: { zh: '测试', en: 'test v2' } };

      it('publishes versions: 201 new, 200 unchanged (whatever the key order), 201 changed', async () => {
        let res = await api('PUT', '/api/v1/workflows/test.http', HTTP_V1, 'admin');
        assert.equal(res.statusCode, 201, res.body);
        assert.deepEqual(res.json(), { key: 'test.http', version: 1, created: true });

        res = await api('PUT', '/api/v1/workflows/test.http', HTTP_V1, 'admin');
        assert.equal(res.statusCode, 200, res.body);
        assert.deepEqual(res.json(), { key: 'test.http', version: 1, created: false });

        // Same content, keys in another order and without the key (taken from the path).
        const { key: _key, ...rest } = HTTP_V1;
        const reordered = Object.fromEntries(Object.entries(rest).reverse());
        res = await api('PUT', '/api/v1/workflows/test.http', reordered, 'admin');
        assert.equal(res.statusCode, 200, res.body);
        assert.deepEqual(res.json(), { key: 'test.http', version: 1, created: false });

        res = await api('PUT', '/api/v1/workflows/test.http', HTTP_V2, 'admin');
        assert.equal(res.statusCode, 201, res.body);
        assert.deepEqual(res.json(), { key: 'test.http', version: 2, created: true });

        res = await api('GET', '/api/v1/workflows/test.http?version=1', undefined, 'baoshan-ops');
        assert.equal(res.statusCode, 200, res.body);
        const v1 = res.json<{ key: string; version: number; createdBy: string; definition: unknown }>();
        assert.equal(v1.version, 1);
        assert.equal(v1.createdBy, 'admin');
        assert.deepEqual(v1.definition, HTTP_V1);

        res = await api('GET', '/api/v1/workflows/test.http', undefined, 'admin');
        assert.equal(res.statusCode, 200, res.body);
        assert.equal(res.json<{ version: number }>().version, 2);
        assert.deepEqual(res.json<{ definition: unknown }>().definition, HTTP_V2);

        res = await api('GET', '/api/v1/workflows/test.http/versions', undefined, 'admin');
        assert.equal(res.statusCode, 200, res.body);
        const versions = res.json<{ version: number; definition: unknown }[]>();
        assert.deepEqual(
          versions.map((v) => v.version),
          [2, 1],
        );
        assert.deepEqual(versions[1]?.definition, HTTP_V1);

        problem(
          await api('GET', '/api/v1/workflows/test.http?version=3', undefined, 'admin'),
          404,
          'not-found',
        );
        problem(await api('GET', '/api/v1/workflows/test.http'), 401, 'unauthorized');
      });

      it('refuses an invalid definition with 422 listing its problems, storing nothing', async () => {
        const bad = {
          ...HTTP_V2,
          states: {
            ...HTTP_V2.states,
            orphan: { name: n('orphan'), actions: { go: action({ to: 'done' }) } },
          },
        };
        const b = problem(
          await api('PUT', '/api/v1/workflows/test.http', bad, 'admin'),
          422,
          'workflow-invalid-definition',
        );
        assert.deepEqual(b.problems, ['states.orphan: unreachable from "draft"']);
        assert.equal(b.detail, 'states.orphan: unreachable from "draft"');

        const mismatch = problem(
          await api('PUT', '/api/v1/workflows/test.http', { ...HTTP_V2, key: 'test.other' }, 'admin'),
          422,
          'workflow-invalid-definition',
        );
        assert.equal(mismatch.detail, 'key: "test.other" does not match the path\'s "test.http"');

        const versions = await api('GET', '/api/v1/workflows/test.http/versions', undefined, 'admin');
        assert.deepEqual(
          versions.json<{ version: number }[]>().map((v) => v.version),
          [2, 1],
        );
        problem(await api('GET', '/api/v1/workflows/test.other', undefined, 'admin'), 404, 'not-found');
      });

      it('lets only workflows.manage publish: 401 anonymous, 403 for an operator who may read it', async () => {
        problem(await api('PUT', '/api/v1/workflows/test.http', HTTP_V1), 401, 'unauthorized');
        // baoshan-ops can read definitions, so the refusal says why rather than hiding anything.
        const b = problem(
          await api('PUT', '/api/v1/workflows/test.http', HTTP_V1, 'baoshan-ops'),
          403,
          'forbidden',
        );
        assert.equal(b.detail, 'Publishing needs the permission workflows.manage');
        const ok = await api('GET', '/api/v1/workflows/test.http', undefined, 'baoshan-ops');
        assert.equal(ok.statusCode, 200);
        const versions = await api('GET', '/api/v1/workflows/test.http/versions', undefined, 'admin');
        assert.equal(versions.json<unknown[]>().length, 2);
      });

      it('checks a definition without storing it', async () => {
        const bad = definition('test.checked', 'a', {
          a: { name: n('a'), actions: { go: action({ to: 'nowhere', roles: ['mayor'] }) } },
          done: { name: n('done'), final: true },
        });
        let res = await api('POST', '/api/v1/workflows/check', bad, 'baoshan-ops');
        assert.equal(res.statusCode, 200, res.body);
        assert.deepEqual(res.json(), {
          valid: false,
          problems: [
            'states.a.actions.go.roles: unknown role "mayor"',
            'states.a.actions.go.to: "nowhere" is not a state',
            'states.done: unreachable from "a"',
          ],
        });
        res = await api('POST', '/api/v1/workflows/check', HTTP_V1, 'baoshan-ops');
        assert.deepEqual(res.json(), { valid: true, problems: [] });
        res = await api('POST', '/api/v1/workflows/check', { ...HTTP_V1, key: 'test.checked' }, 'admin');
        assert.deepEqual(res.json(), { valid: true, problems: [] });
        problem(await api('GET', '/api/v1/workflows/test.checked', undefined, 'admin'), 404, 'not-found');
        problem(await api('POST', '/api/v1/workflows/check', HTTP_V1), 401, 'unauthorized');
      });

      it('lists calendars, refuses a bad one with its problems, and knows a new one at once', async () => {
        let res = await api('GET', '/api/v1/workflows/calendars', undefined, 'citizen');
        assert.equal(res.statusCode, 200, res.body);
        assert.deepEqual(
          res.json<{ code: string; version: number }[]>().map((c) => [c.code, c.version]),
          [
            ['24x7', 1],
            ['cn-mainland', 1],
          ],
        );
        problem(await api('GET', '/api/v1/workflows/calendars'), 401, 'unauthorized');

        const calendar = {
          code: 'test-shift',
          name: n('shift'),
          utcOffsetMinutes: 480,
          workingHours: [['17:00', '09:00']],
          weekdays: [1, 2, 3, 4, 5],
          holidays: [],
          workdays: [],
        };
        const b = problem(
          await api('PUT', '/api/v1/workflows/calendars/test-shift', calendar, 'admin'),
          422,
          'workflow-invalid-calendar',
        );
        assert.deepEqual(b.problems, ['workingHours[0]: "17:00"–"09:00" ends before it starts']);
        problem(await api('PUT', '/api/v1/workflows/calendars/test-shift', calendar), 401, 'unauthorized');
        problem(
          await api('PUT', '/api/v1/workflows/calendars/test-shift', calendar, 'baoshan-ops'),
          403,
          'forbidden',
        );

        const usesShift = definition('test.shift', 'a', {
          a: {
            name: n('a'),
            sla: { duration: 'PT1H', calendar: 'test-shift' },
            actions: { go: action({ to: 'b' }) },
          },
          b: { name: n('b'), final: true },
        });
        res = await api('POST', '/api/v1/workflows/check', usesShift, 'admin');
        assert.deepEqual(res.json(), {
          valid: false,
          problems: ['states.a.sla.calendar: unknown working calendar "test-shift"'],
        });

        // A good calendar; the path names it even when the body says otherwise.
        const good = { ...calendar, code: 'other', workingHours: [['09:00', '17:00']] };
        res = await api('PUT', '/api/v1/workflows/calendars/test-shift', good, 'admin');
        assert.equal(res.statusCode, 200, res.body);
        assert.deepEqual(res.json(), { code: 'test-shift', version: 1 });
        res = await api('PUT', '/api/v1/workflows/calendars/test-shift', good, 'admin');
        assert.deepEqual(res.json(), { code: 'test-shift', version: 2 });
        res = await api('POST', '/api/v1/workflows/check', usesShift, 'admin');
        assert.deepEqual(res.json(), { valid: true, problems: [] });
        res = await api('GET', '/api/v1/workflows/calendars', undefined, 'admin');
        assert.deepEqual(
          res.json<{ code: string }[]>().map((c) => c.code),
          ['24x7', 'cn-mainland', 'test-shift'],
        );
      });
    });

    // --- Instances and transitions -------------------------------------------------------------------

    describe('transitions', () => {
      it('starts an instance in its initial state with a start entry', async () => {
        const id = await start(APPROVAL.key);
        const i = await load(id);
        assert.equal(i.definitionKey, 'test.approval');
        assert.equal(i.definitionVersion, 1);
        assert.equal(i.state, 'draft');
        assert.equal(i.version, 1);
        assert.equal(i.stateSeq, 1);
        assert.equal(i.areaPath, AREA);
        assert.equal(i.reporterUserId, reporter.userId);
        assert.equal(i.endedAt, null);
        assert.equal(i.stateDueAt, null);
        const h = await history(id);
        assert.equal(h.length, 1);
        assert.deepEqual(
          {
            seq: h[0]?.seq,
            action: h[0]?.action,
            from: h[0]?.from,
            to: h[0]?.to,
            actor: h[0]?.actor,
            org: h[0]?.org,
          },
          {
            seq: 1,
            action: 'start',
            from: 'draft',
            to: 'draft',
            actor: { id: operator.id, kind: 'user', name: 'op' },
            org: 'test-ops',
          },
        );
      });

      it('refuses roles not allowed (403), actions unknown in the state (409) and stale versions (409)', async () => {
        const id = await start(APPROVAL.key);
        await rejectsWith(
          act(staffA, id, { action: 'submit' }),
          Errors.forbidden,
          'Only reporter may take this action',
        );
        await rejectsWith(
          act(reporter, id, { action: 'approve' }),
          WorkflowErrors['workflow-action-unavailable'],
          'Action "approve" is not available in state "draft"',
        );
        await rejectsWith(
          act(reporter, id, { action: 'no-such-action' }),
          WorkflowErrors['workflow-action-unavailable'],
          'Action "no-such-action" is not available in state "draft"',
        );
        await rejectsWith(
          act(reporter, id, { action: 'submit', version: 7 }),
          WorkflowErrors['workflow-stale'],
          'The instance is at version 1, not 7; reload and try again',
        );
        assert.deepEqual(await actions(id), ['start']);
        assert.equal((await load(id)).version, 1);

        const r = await act(reporter, id, { action: 'submit', version: 1 });
        assert.equal(r.replayed, false);
        assert.equal(r.instance.state, 'review');
        assert.equal(r.instance.version, 2);
        assert.deepEqual(
          r.entries.map((e) => [e.seq, e.action, e.from, e.to]),
          [[2, 'submit', 'draft', 'review']],
        );

        await rejectsWith(
          act(staffA, id, { action: 'approve', version: 1 }),
          WorkflowErrors['workflow-stale'],
          'The instance is at version 2, not 1; reload and try again',
        );
        // The role, but not over this area.
        await rejectsWith(
          act(outsider, id, { action: 'approve' }),
          Errors.forbidden,
          'Only department-staff may take this action',
        );
        assert.deepEqual(await actions(id), ['start', 'submit']);
        assert.equal((await load(id)).version, 2);
      });

      it('needs a comment where the definition says so, and stores it trimmed', async () => {
        const id = await start(APPROVAL.key);
        await act(reporter, id, { action: 'submit' });
        const needs = 'Action "reject" needs a comment (reason)';
        await rejectsWith(act(staffA, id, { action: 'reject' }), Errors.unprocessable, needs);
        await rejectsWith(act(staffA, id, { action: 'reject', comment: '   ' }), Errors.unprocessable, needs);
        assert.deepEqual(await actions(id), ['start', 'submit']);

        const r = await act(staffA, id, { action: 'reject', comment: '  材料不全 ' });
        assert.equal(r.instance.state, 'draft');
        const last = (await history(id)).at(-1);
        assert.deepEqual(
          [last?.action, last?.from, last?.to, last?.comment, last?.actor.name, last?.org],
          ['reject', 'review', 'draft', '材料不全', 'staff-a', 'test-org-a'],
        );

        // Through to the end: a final state ends the instance and nothing more can be done.
        await act(reporter, id, { action: 'submit' });
        const done = await act(staffA, id, { action: 'approve' });
        assert.equal(done.instance.state, 'approved');
        assert.ok(done.instance.endedAt instanceof Date);
        await rejectsWith(
          act(reporter, id, { action: 'note' }),
          WorkflowErrors['workflow-action-unavailable'],
          'The workflow has ended',
        );
        assert.deepEqual(await actions(id), ['start', 'submit', 'reject', 'submit', 'approve']);
      });

      it('carries out a request id once: a repeat replays, another action with it is refused', async () => {
        const id = await start(APPROVAL.key);
        const first = await act(reporter, id, { action: 'note', requestId: 'req-1', comment: '补充照片' });
        assert.equal(first.replayed, false);
        const again = await act(reporter, id, { action: 'note', requestId: 'req-1', comment: '补充照片' });
        assert.equal(again.replayed, true);
        assert.deepEqual(
          again.entries.map((e) => [e.seq, e.action, e.requestId, e.comment]),
          [[2, 'note', 'req-1', '补充照片']],
        );
        assert.equal(again.instance.version, 2);
        // Even with the version the client saw then (now stale), the first outcome is answered.
        const late = await act(reporter, id, { action: 'note', requestId: 'req-1', version: 1 });
        assert.equal(late.replayed, true);
        await rejectsWith(
          act(reporter, id, { action: 'submit', requestId: 'req-1' }),
          WorkflowErrors['workflow-request-reused'],
          'Request id req-1 was used for "note", not "submit"',
        );
        assert.deepEqual(await actions(id), ['start', 'note']);
        assert.equal((await load(id)).version, 2);

        // Twin requests racing (a double submit): one acts, the other replays it.
        const twins = await Promise.all([
          act(reporter, id, { action: 'submit', requestId: 'req-2' }),
          act(reporter, id, { action: 'submit', requestId: 'req-2' }),
        ]);
        assert.deepEqual(twins.map((r) => r.replayed).sort(), [false, true]);
        assert.deepEqual(await actions(id), ['start', 'note', 'submit']);
        const i = await load(id);
        assert.equal(i.state, 'review');
        assert.equal(i.version, 3);
      });

      it('never applies racing transitions twice: losers retry from the new state or fail cleanly', async () => {
        const id = await start(APPROVAL.key);
        // State-keeping actions: all apply, one after the other, with contiguous history.
        const notes = await Promise.allSettled(
          ['a', 'b', 'c'].map((c) =>
            act(c === 'b' ? operator : reporter, id, { action: 'note', comment: c }),
          ),
        );
        const fulfilled = notes.filter((r) => r.status === 'fulfilled').length;
        for (const r of notes)
          if (r.status === 'rejected') {
            assert.ok(r.reason instanceof AppError, String(r.reason));
            assert.equal(r.reason.code, 'workflow-stale');
          }
        assert.ok(fulfilled >= 1);
        let h = await history(id);
        assert.equal(h.filter((e) => e.action === 'note').length, fulfilled);
        assert.deepEqual(
          h.map((e) => e.seq),
          h.map((_, i) => i + 1),
        );
        assert.equal((await load(id)).version, 1 + fulfilled);

        // A moving action twice at once: one moves, the other finds it no longer available.
        const submits = await Promise.allSettled([
          act(reporter, id, { action: 'submit' }),
          act(reporter, id, { action: 'submit' }),
        ]);
        assert.deepEqual(submits.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
        const lost = submits.find((r) => r.status === 'rejected');
        assert.ok(lost?.reason instanceof AppError, String(lost?.reason));
        assert.equal(lost.reason.code, 'workflow-action-unavailable');
        assert.equal(lost.reason.detail, 'Action "submit" is not available in state "review"');
        h = await history(id);
        assert.equal(h.filter((e) => e.action === 'submit').length, 1);
        const version = 2 + fulfilled;
        assert.equal((await load(id)).version, version);

        // Two decisions made on the same version: one wins, the other is stale.
        const decisions = await Promise.allSettled([
          act(staffA, id, { action: 'approve', version }),
          act(staffB, id, { action: 'reject', version, comment: '不同意' }),
        ]);
        assert.deepEqual(decisions.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
        const stale = decisions.find((r) => r.status === 'rejected');
        assert.ok(stale?.reason instanceof AppError, String(stale?.reason));
        assert.equal(stale.reason.code, 'workflow-stale');
        h = await history(id);
        assert.equal(h.filter((e) => e.action === 'approve' || e.action === 'reject').length, 1);
        assert.equal(h.length, 3 + fulfilled);
        assert.equal((await load(id)).version, version + 1);
      });
    });

    describe('parallel branches', () => {
      it('opens a branch per assigned organisation and joins when the last completes', async () => {
        const id = await start(PARALLEL.key);
        await rejectsWith(
          act(operator, id, { action: 'dispatch' }),
          Errors.unprocessable,
          'Action "dispatch" needs at least one assignee',
        );
        const d = await act(operator, id, { action: 'dispatch', assignees: [ORG_A, ORG_B, ORG_A] });
        assert.equal(d.instance.state, 'working');
        assert.deepEqual(d.entries[0]?.assignees, [ORG_A, ORG_B]);
        let i = await load(id);
        assert.deepEqual(i.assignees, [ORG_A, ORG_B]);
        assert.equal(i.stateSeq, 2);
        assert.deepEqual(
          i.branches.map((b) => [b.orgId, b.completedAt]).sort(),
          [
            [ORG_A, null],
            [ORG_B, null],
          ].sort(),
        );

        // Department staff whose organisation was not assigned: the role, but no part of the work.
        const noPart = 'Your organisation has no open part of this work';
        await rejectsWith(
          act(staffC, id, { action: 'done' }),
          WorkflowErrors['workflow-action-unavailable'],
          noPart,
        );
        await rejectsWith(
          act(outsider, id, { action: 'done' }),
          Errors.forbidden,
          'Only assignee, department-staff may take this action',
        );

        const a = await act(staffA, id, { action: 'done' });
        assert.equal(a.instance.state, 'working');
        assert.deepEqual(
          a.entries.map((e) => e.action),
          ['done'],
        );
        i = await load(id);
        assert.equal(i.state, 'working');
        const byOrg = new Map(i.branches.map((b) => [b.orgId, b]));
        assert.ok(byOrg.get(ORG_A)?.completedAt instanceof Date);
        assert.equal(byOrg.get(ORG_A)?.completedBy, 'staff-a');
        assert.equal(byOrg.get(ORG_B)?.completedAt, null);
        // Its part is done: the same organisation cannot complete it again.
        await rejectsWith(
          act(staffA, id, { action: 'done' }),
          WorkflowErrors['workflow-action-unavailable'],
          noPart,
        );

        const b = await act(staffB, id, { action: 'done' });
        assert.deepEqual(
          b.entries.map((e) => [e.action, e.from, e.to, e.actor.kind]),
          [
            ['done', 'working', 'working', 'user'],
            ['join', 'working', 'review', 'system'],
          ],
        );
        i = await load(id);
        assert.equal(i.state, 'review');
        assert.equal(i.stateSeq, 3);
        assert.deepEqual(i.branches, []);
        assert.deepEqual(await actions(id), ['start', 'dispatch', 'done', 'done', 'join']);
        const rows = await sql<{ org_id: string; state_seq: number; done: boolean }>`
          select org_id, state_seq, completed_at is not null as done from workflow.branches
          where instance_id = ${id} order by org_id`.execute(db.db);
        assert.deepEqual(
          rows.rows.map((r) => [r.org_id, r.state_seq, r.done]),
          [
            [ORG_A, 2, true],
            [ORG_B, 2, true],
          ].sort(),
        );

        await rejectsWith(
          act(operator, id, { action: 'close', assignees: [ORG_C] }),
          Errors.unprocessable,
          'Action "close" does not assign',
        );
        assert.equal((await act(operator, id, { action: 'close' })).instance.state, 'closed');
      });

      it('joins exactly once when the last two branches complete at the same time', async () => {
        const id = await start(PARALLEL.key);
        await act(operator, id, { action: 'dispatch', assignees: [ORG_A, ORG_B] });
        const both = await Promise.all([
          act(staffA, id, { action: 'done' }),
          act(staffB, id, { action: 'done' }),
        ]);
        assert.equal(both.filter((r) => r.entries.some((e) => e.action === 'join')).length, 1);
        assert.deepEqual(await actions(id), ['start', 'dispatch', 'done', 'done', 'join']);
        const i = await load(id);
        assert.equal(i.state, 'review');
        assert.equal(i.version, 4);
      });
    });

    describe('sub-tasks and definition versions', () => {
      it('blocks a subtasks-done action while a sub-task is open', async () => {
        const parent = await start(PARENT.key);
        const child = await start(TASK.key, { parentId: parent, assignees: [ORG_A] });
        assert.equal((await load(parent)).openSubtasks, 1);
        assert.deepEqual(
          (await subtasksOf(db.db, parent)).map((s) => [s.id, s.parentId, s.state]),
          [[child, parent, 'open']],
        );
        await rejectsWith(
          act(operator, parent, { action: 'finish' }),
          WorkflowErrors['workflow-action-unavailable'],
          '1 sub-task(s) are still open',
        );
        let described = await describeInstance(db, ctxOf(operator), await load(parent));
        assert.deepEqual(described.actions, []);

        // Only the assigned organisation completes the sub-task.
        await rejectsWith(
          act(staffB, child, { action: 'complete' }),
          Errors.forbidden,
          'Only assignee may take this action',
        );
        const c = await act(staffA, child, { action: 'complete' });
        assert.ok(c.instance.endedAt instanceof Date);

        assert.equal((await load(parent)).openSubtasks, 0);
        described = await describeInstance(db, ctxOf(operator), await load(parent));
        assert.deepEqual(
          described.actions.map((a) => [a.action, a.to]),
          [['finish', 'done']],
        );
        const f = await act(operator, parent, { action: 'finish' });
        assert.equal(f.instance.state, 'done');
        assert.ok(f.instance.endedAt instanceof Date);
      });

      it('keeps running instances on the version they started with', async () => {
        const ctx = systemContext();
        const opts = { roles: DEFINITION_ROLES };
        assert.equal((await publishDefinition(db, ctx, VERSIONED_V1, opts)).version, 1);
        const old = await start(VERSIONED_V1.key);
        assert.deepEqual(await publishDefinition(db, ctx, VERSIONED_V2, opts), {
          key: 'test.versioned',
          version: 2,
          created: true,
        });
        const fresh = await start(VERSIONED_V1.key);
        assert.equal((await load(old)).definitionVersion, 1);
        assert.equal((await load(fresh)).definitionVersion, 2);
        assert.equal((await act(operator, old, { action: 'go' })).instance.state, 'b');
        assert.equal((await act(operator, fresh, { action: 'go' })).instance.state, 'c');
        assert.equal((await load(old)).state, 'b');
      });
    });

    // --- SLA timers ------------------------------------------------------------------------------------

    describe('SLA timers', () => {
      it('fires a breached state SLA exactly once: sla-breach, then the onBreach action', async () => {
        const t0 = at('2031-03-03T01:00:00Z');
        const id = await start(SLA.key, { now: t0 });
        let i = await load(id);
        assert.equal(i.stateDueAt?.toISOString(), '2031-03-03T02:00:00.000Z');
        assert.equal(i.stateNearDueAt?.toISOString(), '2031-03-03T01:48:00.000Z');
        assert.deepEqual(await timersOf(id), [
          { stateSeq: 1, kind: 'state-sla', dueAt: '2031-03-03T02:00:00.000Z', firedAt: null },
        ]);

        assert.deepEqual(await sweep(db, { now: plus(t0, 59 * MINUTE) }), {
          fired: 0,
          stale: 0,
          skipped: 0,
        });
        const now = plus(t0, 2 * HOUR);
        assert.equal(await dueCount(now), 1);
        assert.deepEqual(await sweep(db, { now }), { fired: 1, stale: 0, skipped: 0 });

        const h = await history(id);
        assert.deepEqual(
          h.map((e) => [e.seq, e.action, e.from, e.to, e.actor.kind]),
          [
            [1, 'start', 'open', 'open', 'user'],
            [2, 'sla-breach', 'open', 'open', 'system'],
            [3, 'flag', 'open', 'open', 'system'],
          ],
        );
        assert.deepEqual(h[1]?.details, { timer: 'state-sla', dueAt: '2031-03-03T02:00:00.000Z' });
        i = await load(id);
        assert.equal(i.state, 'open');
        assert.equal(i.version, 3);
        assert.equal(i.breachedAt?.toISOString(), now.toISOString());
        assert.deepEqual(i.data, { flagged: 1, flaggedAt: now.toISOString() });
        assert.deepEqual(await timersOf(id), [
          { stateSeq: 1, kind: 'state-sla', dueAt: '2031-03-03T02:00:00.000Z', firedAt: now.toISOString() },
        ]);

        assert.deepEqual(await sweep(db, { now: plus(t0, 3 * HOUR) }), {
          fired: 0,
          stale: 0,
          skipped: 0,
        });
        assert.equal((await history(id)).length, 3);
        await act(operator, id, { action: 'close' }, plus(t0, 4 * HOUR));
      });

      it('fires each due timer once when two sweeps race', async () => {
        const t1 = at('2032-05-05T00:00:00Z');
        const ids = [
          await start(SLA.key, { now: t1 }),
          await start(SLA.key, { now: plus(t1, MINUTE) }),
          await start(SLA.key, { now: plus(t1, 2 * MINUTE) }),
        ];
        const now = plus(t1, 2 * HOUR);
        assert.equal(await dueCount(now), 3);
        const [x, y] = await Promise.all([sweepTimers(db, { now }), sweepTimers(db, { now })]);
        assert.equal(x.fired + y.fired, 3, JSON.stringify([x, y]));
        assert.equal(x.stale + y.stale, 0);
        for (const id of ids) {
          assert.deepEqual(await actions(id), ['start', 'sla-breach', 'flag']);
          assert.deepEqual((await load(id)).data['flagged'], 1);
        }
        assert.equal(await dueCount(now), 0);
        for (const id of ids) await act(operator, id, { action: 'close' }, plus(now, MINUTE));
      });

      it('never acts on a timer of an earlier visit to the state', async () => {
        const t2 = at('2033-07-07T00:00:00Z');
        const id = await start(SLA.key, { now: t2 });
        // Leaving the state before it is due disarms the timer; coming back arms a new one.
        await act(operator, id, { action: 'park' }, plus(t2, 10 * MINUTE));
        assert.deepEqual(await timersOf(id), []);
        await act(operator, id, { action: 'resume' }, plus(t2, 20 * MINUTE));
        assert.deepEqual(await timersOf(id), [
          { stateSeq: 3, kind: 'state-sla', dueAt: '2033-07-07T01:20:00.000Z', firedAt: null },
        ]);
        assert.deepEqual(await sweep(db, { now: plus(t2, 70 * MINUTE) }), {
          fired: 0,
          stale: 0,
          skipped: 0,
        });
        assert.deepEqual(await actions(id), ['start', 'park', 'resume']);

        // A timer row of the first visit that was not disarmed (e.g. armed by an older engine): the
        // sweeper discards it as stale without touching the instance.
        const staleId = randomUUID();
        await sql`insert into workflow.timers (id, instance_id, state_seq, kind, due_at)
          values (${staleId}, ${id}, 1, 'state-sla', ${plus(t2, HOUR)})`.execute(db.db);
        const before = await load(id);
        assert.equal(await fireTimer(db, staleId, plus(t2, 75 * MINUTE)), 'stale');
        assert.equal(await fireTimer(db, staleId, plus(t2, 75 * MINUTE)), 'skipped');
        assert.equal((await load(id)).version, before.version);
        assert.deepEqual(await actions(id), ['start', 'park', 'resume']);

        // The current visit's timer still fires.
        assert.deepEqual(await sweep(db, { now: plus(t2, 90 * MINUTE) }), {
          fired: 1,
          stale: 0,
          skipped: 0,
        });
        assert.deepEqual(await actions(id), ['start', 'park', 'resume', 'sla-breach', 'flag']);
        assert.equal((await history(id))[3]?.details['dueAt'], '2033-07-07T01:20:00.000Z');

        // A sweeper that listed a timer just before the state was left finds nothing to fire.
        const other = await start(SLA.key, { now: t2 });
        const listed = await store.dueTimers(db.db, plus(t2, 2 * HOUR), 10);
        assert.equal(listed.length, 1);
        await act(operator, other, { action: 'close' }, plus(t2, 30 * MINUTE));
        assert.equal(await fireTimer(db, listed[0] ?? '', plus(t2, 2 * HOUR)), 'skipped');
        assert.deepEqual(await actions(other), ['start', 'close']);
        assert.equal((await load(other)).breachedAt, null);
        await act(operator, id, { action: 'close' }, plus(t2, 2 * HOUR));
      });

      it('fires a timer armed before a restart once, after it', async () => {
        const t3 = at('2034-09-09T00:00:00Z');
        const id = await start(SLA.key, { now: t3 });
        await p.stop();
        p = await startTestPlatform(t, { env: PLATFORM_ENV });
        const now = plus(t3, 2 * HOUR);
        assert.equal(await dueCount(now), 1);
        assert.deepEqual(await sweep(db, { now }), { fired: 1, stale: 0, skipped: 0 });
        assert.deepEqual(await sweep(db, { now }), { fired: 0, stale: 0, skipped: 0 });
        assert.deepEqual(await actions(id), ['start', 'sla-breach', 'flag']);
        const res = await p.http.inject({
          method: 'GET',
          url: '/api/v1/workflows/test.sla',
          headers: await signIn(p, 'admin'),
        });
        assert.equal(res.statusCode, 200, res.body);
        await act(operator, id, { action: 'close' }, plus(now, MINUTE));
      });

      it('counts a working-day SLA on the working calendar (Friday afternoon → Monday afternoon)', async () => {
        // Friday 2026-11-20 16:00 Beijing time: 1.5 h of that day's working time is left (to 17:30);
        // the other 6 h of a 7.5 h working day are Monday 09:00–12:00 and 13:00–16:00.
        const friday = at('2026-11-20T16:00:00+08:00');
        const id = await start(WORKDAY.key, { now: friday });
        const i = await load(id);
        assert.equal(i.stateDueAt?.toISOString(), at('2026-11-23T16:00:00+08:00').toISOString());
        // Near due at 80 %: 6 h of working time, i.e. Monday 14:30.
        assert.equal(i.stateNearDueAt?.toISOString(), at('2026-11-23T14:30:00+08:00').toISOString());
        assert.deepEqual(await timersOf(id), [
          {
            stateSeq: 1,
            kind: 'state-sla',
            dueAt: at('2026-11-23T16:00:00+08:00').toISOString(),
            firedAt: null,
          },
        ]);
        // Over the weekend nothing is due; Monday at 16:00 it is.
        assert.deepEqual(await sweep(db, { now: at('2026-11-23T15:59:00+08:00') }), {
          fired: 0,
          stale: 0,
          skipped: 0,
        });
        assert.deepEqual(await sweep(db, { now: at('2026-11-23T16:00:00+08:00') }), {
          fired: 1,
          stale: 0,
          skipped: 0,
        });
        assert.deepEqual(await actions(id), ['start', 'sla-breach']);
        await act(operator, id, { action: 'close' }, at('2026-11-24T09:00:00+08:00'));
      });

      it(
        'lets a transition and a sweeper firing the same instance both finish (no deadlock)',
        {
          skip: engine.name !== 'postgres' && 'needs concurrent connections',
        },
        async () => {
          const t4 = at('2035-01-01T00:00:00Z');
          const id = await start(SLA.key, { now: t4 });
          try {
            const [timerId] = await store.dueTimers(db.db, plus(t4, 2 * HOUR), 10);
            assert.ok(timerId);
            // The sweeper's fireTimer (the same store calls), paused between its two locks.
            let release!: () => void;
            const released = new Promise<void>((r) => (release = r));
            let locked!: () => void;
            const timerLocked = new Promise<void>((r) => (locked = r));
            const sweeper = db.transact(async (trx) => {
              assert.ok(await store.lockTimer(trx, timerId));
              locked();
              await released;
              return store.loadInstance(trx, id, { lock: true });
            });
            await timerLocked;
            const moving = act(operator, id, { action: 'park' }, plus(t4, 30 * MINUTE));
            // Wait until the transition waits for a lock (it has updated the instance by then).
            for (let k = 0; k < 200; k++) {
              const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity
                where datname = current_database() and wait_event_type = 'Lock'`.execute(db.db);
              if ((rows[0]?.n ?? 0) > 0) break;
              await sleep(10);
            }
            release();
            const [s, m] = await Promise.allSettled([sweeper, moving]);
            assert.equal(m.status, 'fulfilled', m.status === 'rejected' ? String(m.reason) : '');
            assert.equal(s.status, 'fulfilled', s.status === 'rejected' ? String(s.reason) : '');
            assert.equal((await load(id)).state, 'parked');
          } finally {
            await act(operator, id, { action: 'close' }, plus(t4, 40 * MINUTE));
          }
        },
      );
    });

    // --- Effects ---------------------------------------------------------------------------------------

    describe('effects', () => {
      before(async () => {
        await sql`create table if not exists wf_test_effects (instance_id uuid not null, by_name text not null)`.execute(
          db.db,
        );
      });
      const recorded = async (id: string) =>
        (
          await sql<{
            by_name: string;
          }>`select by_name from wf_test_effects where instance_id = ${id}`.execute(db.db)
        ).rows.map((r) => r.by_name);

      it("writes an effect's data and riders with the transition", async () => {
        const id = await start(EFFECTS.key);
        const r = await act(operator, id, { action: 'escalate' });
        assert.deepEqual(r.instance.data, { recorded: 1 });
        assert.deepEqual((await load(id)).data, { recorded: 1 });
        assert.deepEqual(await recorded(id), ['op']);
        await act(operator, id, { action: 'close' });
      });

      it("writes the riders of an effect of a first action taken at start ('then')", {}, async () => {
        const id = await start(EFFECTS.key, { then: [{ action: 'escalate' }] });
        try {
          assert.deepEqual(await actions(id), ['start', 'escalate']);
          assert.deepEqual((await load(id)).data, { recorded: 1 });
          assert.deepEqual(await recorded(id), ['op']);
        } finally {
          await act(operator, id, { action: 'close' });
        }
      });

      it("writes the riders of the onBreach action's effects when a timer fires", {}, async () => {
        const t6 = at('2035-06-06T00:00:00Z');
        const id = await start(EFFECTS.key, { now: t6 });
        try {
          const now = plus(t6, 2 * HOUR);
          assert.equal(await dueCount(now), 1);
          assert.deepEqual(await sweep(db, { now }), { fired: 1, stale: 0, skipped: 0 });
          assert.deepEqual(await actions(id), ['start', 'sla-breach', 'escalate']);
          assert.deepEqual((await load(id)).data, { recorded: 1 });
          assert.deepEqual(await recorded(id), ['system']);
        } finally {
          await act(operator, id, { action: 'close' }, plus(t6, 3 * HOUR));
        }
      });

      it('keeps firing other due timers when one of them fails', async () => {
        const t7 = at('2036-01-01T00:00:00Z');
        const poison = await start(POISON.key, { now: t7 });
        const good = await start(SLA.key, { now: plus(t7, MINUTE) });
        try {
          const now = plus(t7, 2 * HOUR);
          assert.equal(await dueCount(now), 2);
          const first = await sweepTimers(db, { now });
          assert.equal(first.failed, 1, 'the poisoned timer is counted');
          assert.equal(first.fired, 1, 'and the good one after it still fires');
          assert.equal(first.errors.length, 1);
          const second = await sweepTimers(db, { now });
          assert.equal(second.fired, 0);
          assert.equal(second.failed, 1, 'retried on the next sweep');
          const { rows } = await sql<{
            attempts: number;
            last_error: string | null;
          }>`select attempts, last_error
            from workflow.timers t join workflow.instances i on i.id = t.instance_id
            where i.id = ${poison} and t.fired_at is null`.execute(db.db);
          const [timer] = rows;
          assert.ok(timer);
          assert.equal(timer.attempts, 2);
          assert.ok(timer.last_error);
          assert.deepEqual(await actions(good), ['start', 'sla-breach', 'flag']);
        } finally {
          await act(operator, poison, { action: 'close' }, plus(t7, 3 * HOUR));
          await act(operator, good, { action: 'close' }, plus(t7, 3 * HOUR));
        }
      });
    });
  });
}
