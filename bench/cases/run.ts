/**
 * bench/cases: case handling (一网统管) on the workflow engine, each figure next to a raw baseline
 * measured on the same database in the same run. On each engine (`onEachEngine`: PGlite always,
 * PostgreSQL when DATABASE_URL is set, in a scratch database) the real platform starts in-process
 * in demo mode (Shanghai's areas, organisations and responsibility matrix), and the service
 * functions are driven in closed loops from this process (no HTTP: the routes are one call each).
 *
 *   1. create + route + dispatch — `createCase` as the hotline (city centre operator): locate to
 *      the grid, route by the matrix, duplicate check, one statement writing the case, its
 *      workflow instance dispatched, history, SLA timers, audit, outbox event and feed entries.
 *      Points are the unit grids of the whole city, categories rotate over routed classes.
 *      Raw: one INSERT of a case row into ops.cases per case. Target ≥ 1,000 cases/s.
 *   2. transitions — the workflow engine's `transition` on open cases (suspend ⇄ resume by the
 *      city operator, each client its own cases): read, plan, one versioned statement with the
 *      case row, history, timers, audit, outbox and feed riders. Also `actOnCase`, the API's call
 *      (it re-reads the case and its timeline for the answer). Raw: one versioned UPDATE of the
 *      case row. Target ≥ 2,000 transitions/s.
 *   3. overdue list — CASES_BULK cases (1,000,000 on PostgreSQL) bulk-loaded over the 16
 *      districts (20 % open, a third of those overdue) with their workflow instances and SLA timers;
 *      `listCases` as the 宝山 district operator (sla=overdue, area=310113, order=due, 50 a page),
 *      1 client. Raw: the same page by hand. Target p95 ≤ 50 ms.
 *   4. SLA sweep — 1 % of the bulk cases' timers fall due; `sweepTimers` fires them (breach and
 *      escalation, each in its own short transaction) while the overdue list is read in a loop:
 *      its p95 during the sweep against idle.
 *
 *   npm run bench:cases                       # PGlite, plus PostgreSQL when DATABASE_URL is set
 *   CASES_SECONDS=5 CASES_BULK=200000 npm run bench:cases
 *
 * Knobs: CASES_ONLY (create,transition,overdue,sweep), CASES_SECONDS (10), CASES_WARMUP (2),
 * CASES_CLIENTS (16 on PostgreSQL, 1 on PGlite), CASES_BULK (1,000,000 on PostgreSQL, 100,000 on
 * PGlite), CASES_PGLITE_BULK, CASES_LIST_REQUESTS (200), CASES_POOL_MAX (20).
 */
import { cpus, loadavg, totalmem } from 'node:os';
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { loadConfig, readProcessEnv, silentLogger, type Database } from '../../src/kernel/index.ts';
import { actOnCase, createCase, createOpsRuntime, listCases } from '../../src/ops/index.ts';
import { startPlatform, type Platform } from '../../src/platform.ts';
import { authenticate, createTrustRuntime, DEMO_PASSWORD, type CallContext } from '../../src/trust/index.ts';
import { getDefinition, sweepTimers, transition } from '../../src/workflow/index.ts';
import { type BenchEngine, knob, onEachEngine } from '../engines.ts';
import { closedLoop, type LoadResult } from '../twin/load.ts';
import { fmt } from '../twin/vehicles.ts';

const only = new Set((readProcessEnv()['CASES_ONLY'] ?? 'create,transition,overdue,sweep').split(','));
const SECONDS = knob('CASES_SECONDS', 10);
const WARMUP = knob('CASES_WARMUP', 2);
const LIST_REQUESTS = knob('CASES_LIST_REQUESTS', 200);
const CATEGORIES = [
  'event:0201',
  'event:0505',
  'event:0102',
  'component:0101',
  'component:0205',
  'event:0302',
];

interface Row {
  engine: string;
  what: string;
  value: string;
  raw: string;
  ratio: string;
  target: string;
}
const rows: Row[] = [];

function percentiles(values: number[]): { p50: number; p95: number; p99: number } {
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? NaN;
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99) };
}

async function contextOf(p: Platform, username: string): Promise<CallContext> {
  const res = await p.http.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    payload: { username, password: DEMO_PASSWORD },
  });
  const token = res.json<{ accessToken: string }>().accessToken;
  const actor = await authenticate(createTrustRuntime(p.config, p.database), {
    authorization: `Bearer ${token}`,
  });
  return { actor, requestId: null, purpose: null };
}

const rateLine = (r: LoadResult) =>
  `${fmt(r.rate)}/s (p50 ${r.p50.toFixed(1)} ms, p95 ${r.p95.toFixed(1)} ms, ${r.errors} errors, ${r.processCores.toFixed(2)} cores)`;

async function run(engine: BenchEngine): Promise<void> {
  const { database } = engine;
  const clients = knob('CASES_CLIENTS', engine.pooled ? 16 : 1);
  const config = loadConfig({
    env: {
      LOG_LEVEL: 'silent',
      PORT: '0',
      // The engine's database is passed in; memory mode only keeps keys and media out of the tree.
      PUJIANG_MEMORY: 'true',
      WORKFLOW_TIMER_INTERVAL_MS: '3600000',
    },
  });
  console.log(`  starting the platform (demo city) on ${engine.label} …`);
  const p = await startPlatform({ config, logger: silentLogger(), database, listen: false });
  const rt = createOpsRuntime(database, { mediaDir: config.mediaDir, mediaMaxBytes: config.mediaMaxBytes });
  try {
    const hotline = await contextOf(p, 'city-ops');
    const baoshan = await contextOf(p, 'baoshan-ops');
    const { rows: grids } = await sql<{
      lon: number;
      lat: number;
    }>`select st_x(st_pointonsurface(geom)) as lon,
        st_y(st_pointonsurface(geom)) as lat from trust.areas where level = 'grid' order by code`.execute(
      database.db,
    );
    console.log(`  ${fmt(grids.length)} unit grids as report locations`);
    const point = (i: number) => grids[(i * 7919) % grids.length] ?? { lon: 121.47, lat: 31.23 };
    const window = { warmupMs: WARMUP * 1000, durationMs: SECONDS * 1000 };
    const created: string[] = [];

    if (only.has('create') || only.has('transition')) {
      const create = await closedLoop({
        label: 'create',
        concurrency: clients,
        ...window,
        op: async (i) => {
          const r = await createCase(rt, hotline, {
            source: 'hotline',
            category: CATEGORIES[i % CATEGORIES.length] ?? 'event:0201',
            description: `12345 来电 #${i}：反映问题`,
            location: point(i),
            reporter: { name: '王先生', phone: '13800000000' },
          });
          if (r.case.status !== 'handling') throw new Error(`not dispatched: ${r.case.status}`);
          created.push(r.case.id);
          return 200;
        },
      });
      const raw = await closedLoop({
        label: 'create (raw)',
        concurrency: clients,
        ...window,
        op: async (i) => {
          const pt = point(i);
          await database.raw(
            `insert into ops.cases (id, instance_id, source, category, description, geom, area_code, area_path,
               district_code, status, department_ids, created_at, updated_at)
             values ($1, $2, 'hotline', $3, $4, st_setsrid(st_makepoint($5, $6), 4326), '310113', '310000/310113',
               '310113', 'raw', '{}', now(), now())`,
            [randomUUID(), randomUUID(), CATEGORIES[i % CATEGORIES.length], `raw #${i}`, pt.lon, pt.lat],
          );
          return 200;
        },
      });
      await database.raw(`delete from ops.cases where status = 'raw'`);
      console.log(`  create + route + dispatch: ${rateLine(create)}; raw INSERT ${rateLine(raw)}`);
      rows.push({
        engine: engine.label,
        what: `create + route + dispatch (${clients} clients)`,
        value: `${fmt(create.rate)}/s (p95 ${create.p95.toFixed(1)} ms)`,
        raw: `${fmt(raw.rate)}/s`,
        ratio: (create.rate / raw.rate).toFixed(2),
        target: '≥ 1,000/s',
      });
    }

    if (only.has('transition')) {
      // Each client takes its own slice of the cases just created: no two clients race on one.
      const perClient = Math.floor(created.length / clients);
      const { rows: inst } = await sql<{
        id: string;
        instance_id: string;
      }>`select id, instance_id from ops.cases
        where id = any(${created}::uuid[])`.execute(database.db);
      const instanceOf = new Map(inst.map((r) => [r.id, r.instance_id]));
      const state = new Map<string, 'handling' | 'suspended'>();
      let next = 0;
      const slices = Array.from({ length: clients }, (_, c) =>
        created.slice(c * perClient, (c + 1) * perClient),
      );
      const cursor = new Array<number>(clients).fill(0);
      const nextCase = () => {
        const c = next++ % clients;
        const slice = slices[c] ?? [];
        const id = slice[(cursor[c] = ((cursor[c] ?? 0) + 1) % Math.max(1, slice.length))] ?? '';
        return id;
      };
      const flip = async (id: string, via: 'engine' | 'api') => {
        const s = state.get(id) ?? 'handling';
        const action = s === 'handling' ? 'suspend' : 'resume';
        state.set(id, s === 'handling' ? 'suspended' : 'handling');
        if (via === 'engine')
          await transition(database, hotline, instanceOf.get(id) ?? '', { action, comment: '压力测试' });
        else await actOnCase(rt, hotline, id, { action, comment: '压力测试' });
        return 200;
      };
      // One case per client at a time: the closed loop's `seq` is shared, so pin a case per worker.
      const engineRun = await closedLoop({
        label: 'transition',
        concurrency: clients,
        ...window,
        op: () => flip(nextCase(), 'engine'),
      });
      const apiRun = await closedLoop({
        label: 'transition (API)',
        concurrency: clients,
        ...window,
        op: () => flip(nextCase(), 'api'),
      });
      const rawRun = await closedLoop({
        label: 'transition (raw)',
        concurrency: clients,
        ...window,
        op: async () => {
          await database.raw(`update ops.cases set version = version + 1, updated_at = now() where id = $1`, [
            nextCase(),
          ]);
          return 200;
        },
      });
      console.log(`  transitions (engine): ${rateLine(engineRun)}`);
      console.log(`  transitions (actOnCase, with its answer): ${rateLine(apiRun)}`);
      console.log(`  raw versioned UPDATE: ${rateLine(rawRun)}`);
      rows.push({
        engine: engine.label,
        what: `transitions, engine (${clients} clients, ${fmt(created.length)} cases)`,
        value: `${fmt(engineRun.rate)}/s (p95 ${engineRun.p95.toFixed(1)} ms)`,
        raw: `${fmt(rawRun.rate)}/s`,
        ratio: (engineRun.rate / rawRun.rate).toFixed(2),
        target: '≥ 2,000/s',
      });
      rows.push({
        engine: engine.label,
        what: 'transitions, actOnCase with its answer',
        value: `${fmt(apiRun.rate)}/s (p95 ${apiRun.p95.toFixed(1)} ms)`,
        raw: `${fmt(rawRun.rate)}/s`,
        ratio: (apiRun.rate / rawRun.rate).toFixed(2),
        target: '—',
      });
    }

    if (only.has('overdue') || only.has('sweep')) {
      const bulk = engine.pooled
        ? knob('CASES_BULK', 1_000_000)
        : knob('CASES_PGLITE_BULK', knob('CASES_BULK', 100_000));
      await bulkLoad(database, bulk);
      const list = () => listCases(rt, baoshan, { sla: 'overdue', area: '310113', order: 'due', limit: 50 });
      const timed = async (n: number, fn: () => Promise<unknown>) => {
        const ms: number[] = [];
        for (let i = 0; i < n; i++) {
          const t0 = performance.now();
          await fn();
          ms.push(performance.now() - t0);
        }
        return percentiles(ms);
      };
      const first = await list();
      if (
        first.items.length !== 50 ||
        first.items.some((c) => c.area.district !== '310113' || c.sla.state !== 'overdue')
      )
        throw new Error(`overdue list is wrong: ${first.items.length} items`);
      await timed(20, list);
      const api = await timed(LIST_REQUESTS, list);
      const raw = await timed(LIST_REQUESTS, () =>
        database.raw(
          `select * from ops.cases where district_code = '310113' and open and state_due_at < now()
           order by state_due_at, id limit 50`,
        ),
      );
      console.log(
        `  overdue of 宝山 among ${fmt(bulk)}: p50 ${api.p50.toFixed(1)} / p95 ${api.p95.toFixed(1)} ms; raw p95 ${raw.p95.toFixed(1)} ms`,
      );
      rows.push({
        engine: engine.label,
        what: `overdue list of a district among ${fmt(bulk)} cases, p95`,
        value: `${api.p95.toFixed(1)} ms (p50 ${api.p50.toFixed(1)})`,
        raw: `${raw.p95.toFixed(1)} ms`,
        ratio: (api.p95 / raw.p95).toFixed(2),
        target: '≤ 50 ms',
      });

      if (only.has('sweep')) {
        const now = new Date();
        const { rows: due } = await sql<{ n: string }>`select count(*) as n from workflow.timers
          where fired_at is null and due_at <= ${now}`.execute(database.db);
        const dueCount = Number(due[0]?.n ?? 0);
        const idle = await timed(LIST_REQUESTS, list);
        const t0 = performance.now();
        const state = { sweeping: true };
        const during: number[] = [];
        const sweep = (async () => {
          let total = 0;
          for (;;) {
            const r = await sweepTimers(database, { now, batch: 500, maxBatches: 1 });
            total += r.fired + r.stale;
            if (r.fired + r.stale + r.skipped === 0) break;
          }
          state.sweeping = false;
          return total;
        })();
        while (state.sweeping) {
          const s = performance.now();
          await list();
          during.push(performance.now() - s);
        }
        const fired = await sweep;
        const seconds = (performance.now() - t0) / 1000;
        const d = percentiles(during);
        console.log(
          `  SLA sweep: ${fmt(fired)} of ${fmt(dueCount)} due timers among ${fmt(bulk)} in ${seconds.toFixed(1)} s (${fmt(fired / seconds)}/s); ` +
            `overdue list p95 ${d.p95.toFixed(1)} ms during (${during.length} reads), ${idle.p95.toFixed(1)} ms idle`,
        );
        rows.push({
          engine: engine.label,
          what: `SLA sweep: ${fmt(fired)} breaches among ${fmt(bulk)} open; list p95 during sweep`,
          value: `${d.p95.toFixed(1)} ms (${fmt(fired / seconds)} timers/s)`,
          raw: `${idle.p95.toFixed(1)} ms idle`,
          ratio: (d.p95 / idle.p95).toFixed(2),
          target: 'API not blocked',
        });
      }
    }
  } finally {
    await p.stop();
  }
}

/**
 * Loads `n` cases as the platform would have written them: over the 16 districts' grids, 20 %
 * open (in 'handling' with a state SLA timer, a third of them past due, 2 % of those timers still
 * unfired: due for the sweep), the rest closed; each with its workflow instance. Set-based SQL, in chunks.
 */
async function bulkLoad(database: Database, n: number): Promise<void> {
  const t0 = performance.now();
  const { version } = await getDefinition(database, 'ops.case');
  await database.raw(`drop table if exists public.bench_grids`);
  await database.raw(`create table public.bench_grids as
    select row_number() over (order by code) - 1 as gi, code, path, split_part(path, '/', 2) as district,
      split_part(path, '/', 3) as street, st_pointonsurface(geom) as pt
    from trust.areas where level = 'grid'`);
  const { rows } = await database.raw(`select count(*)::int as n from public.bench_grids`);
  const grids = Number(rows[0]?.['n'] ?? 1);
  const { rows: dept } = await database.raw(
    `select id from trust.organisations where code = 'district-310113-cgj'`,
  );
  const deptId = String(dept[0]?.['id']);
  const chunk = 100_000;
  for (let from = 0; from < n; from += chunk) {
    const to = Math.min(n, from + chunk);
    // i % 5 = 0 → open; of those, i % 3 = 0 → overdue; of those i % 100 = 0 → timer unfired and due.
    await database.raw(
      `with g as (
         select s as i, gen_random_uuid() as id, gen_random_uuid() as inst, b.*
         from generate_series($1::int, $2::int - 1) s
         join public.bench_grids b on b.gi = (s::bigint * 7919) % $3
       ), c as (
         insert into ops.cases (id, instance_id, source, category, description, geom, area_code, area_path,
           district_code, street_code, status, open, department_ids, state_due_at, state_near_due_at, due_at,
           centres, created_at, updated_at, closed_at)
         select id, inst, 'hotline', 'event:0201', 'bulk #' || i, pt, code, path, district, street,
           case when i % 5 = 0 then 'handling' else 'closed' end, i % 5 = 0, array[$4::uuid],
           case when i % 5 = 0 then now() + case when i % 3 = 0 then -interval '1 hour' * (1 + i % 500) else interval '1 day' end end,
           case when i % 5 = 0 then now() + case when i % 3 = 0 then -interval '2 hours' * (1 + i % 500) else interval '18 hours' end end,
           now() + interval '5 days', '{}'::jsonb,
           now() - interval '1 minute' * (i % 100000), now(), case when i % 5 <> 0 then now() end
         from g returning 1
       ), w as (
         insert into workflow.instances (id, definition_key, definition_version, subject_type, subject_id, state,
           version, state_seq, history_seq, area_path, assignees, data, state_entered_at, state_due_at, started_at, ended_at)
         select inst, 'ops.case', $5, 'case', id::text, case when i % 5 = 0 then 'handling' else 'closed' end,
           2, 2, 2, path, array[$4::uuid], '{"level":"street"}'::jsonb, now() - interval '1 day',
           case when i % 5 = 0 then now() + case when i % 3 = 0 then -interval '1 hour' * (1 + i % 500) else interval '1 day' end end,
           now() - interval '1 day', null
         from g returning 1
       )
       insert into workflow.timers (id, instance_id, state_seq, kind, due_at, fired_at)
       select gen_random_uuid(), inst, 2, 'state-sla',
         now() + case when i % 3 = 0 then -interval '1 hour' * (1 + i % 500) else interval '1 day' end,
         case when i % 3 = 0 and i % 50 <> 0 then now() end
       from g where i % 5 = 0`,
      [from, to, grids, deptId, version],
    );
    if (process.stdout.isTTY) process.stdout.write(`\r    loading cases: ${fmt(to)} / ${fmt(n)}   `);
  }
  if (process.stdout.isTTY) process.stdout.write('\r\x1b[K');
  await database.raw(`drop table public.bench_grids`);
  await database.raw('vacuum analyze ops.cases');
  await database.raw('vacuum analyze workflow.timers');
  await database.raw('vacuum analyze workflow.instances');
  console.log(
    `  loaded ${fmt(n)} cases with instances and timers in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
}

console.log(
  `bench/cases on ${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, load ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`,
);
await onEachEngine(run, { poolMax: knob('CASES_POOL_MAX', 20) });
console.log('\n| engine | measure | Pujiang | raw baseline | ratio | target |\n|---|---|---|---|---|---|');
for (const r of rows)
  console.log(`| ${r.engine} | ${r.what} | ${r.value} | ${r.raw} | ${r.ratio} | ${r.target} |`);
