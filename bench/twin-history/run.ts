/**
 * bench/twin-history: the twin's history (NGSI-LD temporal API) and its notifications, over HTTP,
 * each figure next to a raw baseline measured on the same database in the same run. On each
 * engine (`onEachEngine`: PGlite always, PostgreSQL when DATABASE_URL is set, in a scratch
 * database) the real platform starts in-process (demo mode, `TWIN_ACCESS=open`) listening on
 * 127.0.0.1; writes and notifications are driven from a worker thread (`worker.ts`), the
 * single-client reads from this thread.
 *
 *   1. aggregation — one attribute with 100,000 instances over 4 days (bulk-loaded with
 *      generate_series as the store writes them); GET …?options=aggregatedValues&aggrMethods=avg
 *      &aggrPeriodDuration=PT1H over the whole range, 1 client. Raw: `date_bin('1 hour', ts, …),
 *      avg(num) … group by 1` on the same rows. Target p95 ≤ 100 ms.
 *   2. lastN — one attribute with HISTORY_INSTANCES instances, 1 s apart (spanning monthly
 *      partitions), VACUUM (ANALYZE) after; GET …?attrs=power&lastN=100, 1 client. Raw: `… order
 *      by ts desc limit 100` on its index range. Target p95 ≤ 20 ms.
 *   3. history write — (a) POST /temporal/entities/{id}/attrs with 1,000 instances per request,
 *      (b) PATCH /entities/{id}/attrs setting HISTORY_PATCH_ATTRS attributes (each update records
 *      its instances in its own statement); N closed-loop clients. Raw: (a) 1,000-row INSERT …
 *      VALUES of the same instances, (b) one statement updating the entity and inserting its
 *      instances; same clients. Target ≥ 20,000 instances/s (PostgreSQL).
 *   4. notifications — a loopback receiver (answers 204), one subscription per entity, entity
 *      updates at a paced rate spread over the entities; latency = notification arrival − PATCH
 *      sent (one monotonic clock, the worker's); lost = accepted updates never notified after a
 *      drain wait. Raw: the same notification body POSTed straight to the receiver at the same
 *      pace. Target p99 ≤ 50 ms, none lost.
 *
 *   npm run bench:twin-history                      # PGlite, plus PostgreSQL when DATABASE_URL is set
 *   HISTORY_INSTANCES=200000 HISTORY_SECONDS=3 npm run bench:twin-history
 *   HISTORY_ONLY=notify DATABASE_URL=postgres://… npm run bench:twin-history
 *
 * Knobs: HISTORY_ONLY (aggregation,lastN,write,notify), HISTORY_INSTANCES (lastN's attribute:
 * 10,000,000 on PostgreSQL, 200,000 on PGlite), HISTORY_PGLITE_INSTANCES (PGlite's alone; default
 * HISTORY_INSTANCES when that is set), HISTORY_AGG_INSTANCES (100000),
 * HISTORY_AGG_REQUESTS (50), HISTORY_LASTN_REQUESTS (100), HISTORY_SECONDS (10, per write run
 * and for the notification run), HISTORY_WARMUP (2), HISTORY_CLIENTS (8 on PostgreSQL, 1 on
 * PGlite), HISTORY_BATCH (1000 instances per append), HISTORY_PATCH_ATTRS (10),
 * HISTORY_NOTIFY_RATE (updates/s, a comma-separated list of paced rounds, the first one
 * the target's: 1000,100 on PostgreSQL; 20 on PGlite — what its single connection sustains with
 * notifications on this machine), HISTORY_SUBSCRIPTIONS
 * (100), HISTORY_DRAIN_SECONDS (120: the longest
 * wait for the last notifications; the wait ends earlier once all arrived or none came for 10 s), HISTORY_POOL_MAX (the database pool the platform and the
 * raw baselines share; 10, the platform's default).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { CompiledQuery, QueryExecutorProvider } from 'kysely';
import { loadConfig, readProcessEnv, silentLogger, type Database } from '../../src/kernel/index.ts';
import { startPlatform, type Platform } from '../../src/platform.ts';
// Internals: the statements the temporal API runs (for their plans) and partition creation.
import { CORE_LD_CONTEXT } from '../../src/twin/ldcontext.ts';
import { aggregateInstances, ensurePartitions, selectInstances } from '../../src/twin/temporal.store.ts';
import { type BenchEngine, knob, onEachEngine } from '../engines.ts';
import { closedLoop, httpOp, keepAliveAgent, type LoadResult } from '../twin/load.ts';
import { fmt } from '../twin/vehicles.ts';
import {
  appendEntityId,
  appendTime,
  ATTR,
  INSTANCE_COLUMNS,
  instance,
  instanceRow,
  notifyEntityId,
  P,
  patchAttrNames,
  patchEntityId,
  reading,
  valuesPlaceholders,
} from './bodies.ts';
import type { NotifyResult, WorkerJob, WorkerMessage } from './worker.ts';

const env = readProcessEnv();
const perEngine = (name: string, postgres: number, pglite: number) => (pooled: boolean) =>
  knob(name, pooled ? postgres : pglite);

const SECTIONS = ['aggregation', 'lastN', 'write', 'notify'] as const;
type Section = (typeof SECTIONS)[number];
const ONLY = env['HISTORY_ONLY'] ? new Set(env['HISTORY_ONLY'].split(',').map((s) => s.trim())) : undefined;
for (const s of ONLY ?? [])
  if (!(SECTIONS as readonly string[]).includes(s))
    throw new Error(`HISTORY_ONLY: "${s}" is none of ${SECTIONS.join(', ')}`);
const wanted = (s: Section): boolean => !ONLY || ONLY.has(s);

const INSTANCES = (pooled: boolean): number =>
  pooled
    ? knob('HISTORY_INSTANCES', 10_000_000)
    : knob('HISTORY_PGLITE_INSTANCES', knob('HISTORY_INSTANCES', 200_000));
const AGG_INSTANCES = knob('HISTORY_AGG_INSTANCES', 100_000);
const AGG_REQUESTS = knob('HISTORY_AGG_REQUESTS', 50);
const LASTN_REQUESTS = knob('HISTORY_LASTN_REQUESTS', 100);
const SECONDS = knob('HISTORY_SECONDS', 10);
const WARMUP = knob('HISTORY_WARMUP', 2);
const CLIENTS = perEngine('HISTORY_CLIENTS', 8, 1);
const BATCH = knob('HISTORY_BATCH', 1_000);
const PATCH_ATTRS = knob('HISTORY_PATCH_ATTRS', 10);
/** Paced rounds of the notification section, updates/s; the first is the target's, the others for information. */
const NOTIFY_RATES = (pooled: boolean): number[] => {
  const raw = env['HISTORY_NOTIFY_RATE'];
  if (!raw) return pooled ? [1_000, 100] : [20];
  const rates = raw.split(',').map(Number);
  if (rates.some((r) => !Number.isFinite(r) || r <= 0))
    throw new Error(`HISTORY_NOTIFY_RATE: expected positive numbers, got "${raw}"`);
  return rates;
};
const SUBSCRIPTIONS = knob('HISTORY_SUBSCRIPTIONS', 100);
const DRAIN_SECONDS = knob('HISTORY_DRAIN_SECONDS', 120);
const POOL_MAX = knob('HISTORY_POOL_MAX', 10);

/** Entities the write sections spread their requests over. */
const APPEND_ENTITIES = 64;
const PATCH_ENTITIES = 200;
const ATTR_IRI = CORE_LD_CONTEXT.expand(ATTR);
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

// --- Figures --------------------------------------------------------------------------------------

interface Figure {
  engine: string;
  section: string;
  data: string;
  pujiang: string;
  raw: string;
  ratio: string;
  target: string;
  verdict: string;
}

interface Run {
  engine: BenchEngine;
  platform: Platform;
  base: URL;
  database: Database;
  figures: Figure[];
}

const ms = (v: number): string =>
  Number.isNaN(v) ? '?' : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

function keep(run: Run, f: Omit<Figure, 'engine'>): void {
  const figure = { engine: run.engine.label, ...f };
  run.figures.push(figure);
  console.log(`    → Pujiang ${f.pujiang}; raw ${f.raw}; ratio ${f.ratio}; target ${f.target}: ${f.verdict}`);
}

/** Percentiles (nearest rank) of a list of latencies in ms. */
function percentiles(values: number[]): { p50: number; p95: number; p99: number; max: number } {
  const sorted = Float64Array.from(values).sort();
  const at = (q: number) =>
    sorted.length === 0
      ? NaN
      : (sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? NaN);
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99), max: at(1) };
}

/** Runs `op` `n` times in a row after `warm` unmeasured runs; latencies in ms. */
async function sequential(n: number, warm: number, op: (i: number) => Promise<void>): Promise<number[]> {
  for (let i = 0; i < warm; i++) await op(i);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await op(i);
    out.push(performance.now() - t0);
  }
  return out;
}

// --- HTTP helpers -----------------------------------------------------------------------------------

/**
 * Sends one request to the broker on a connection of its own (set-up calls come between long
 * bulk loads, after which a kept-alive connection may be closed under the request); throws unless
 * the answer is one of `expect`. Resolves to the parsed body.
 */
function call(run: Run, method: string, path: string, body: unknown, expect: number[]): Promise<unknown> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        agent: false,
        host: run.base.hostname,
        port: Number(run.base.port),
        method,
        path,
        headers:
          payload === undefined
            ? {}
            : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          if (!expect.includes(status))
            reject(new Error(`${method} ${path}: ${status} ${text.slice(0, 500)}`));
          else resolve(text === '' ? undefined : (JSON.parse(text) as unknown));
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** Runs `tasks` with at most `width` at a time. */
async function parallel(count: number, width: number, task: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, count) }, async () => {
      while (next < count) await task(next++);
    }),
  );
}

/**
 * Runs a job in the load generator's worker thread. A closed loop resolves to its result; a
 * notification job calls `onReady` with the receiver's port, then `onResult` for each round (which
 * resolves when the next round may start) and resolves when the worker is done.
 */
function inWorker(
  job: WorkerJob,
  notify?: {
    onReady: (port: number) => Promise<void>;
    onResult: (result: NotifyResult) => Promise<void>;
  },
): Promise<LoadResult | undefined> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./worker.mjs', import.meta.url), { workerData: job });
    const fail = (e: unknown) => {
      reject(e instanceof Error ? e : new Error(String(e)));
      void worker.terminate();
    };
    const go = () => worker.postMessage('go');
    // The handling of the last round finishes before the job counts as done.
    let pending: Promise<void> = Promise.resolve();
    worker.on('message', (m: WorkerMessage) => {
      if (m.type === 'ready') pending = notify?.onReady(m.port).then(go, fail) ?? pending;
      else if (m.type === 'progress') console.log(`    … ${m.text}`);
      else if (m.type === 'notify') pending = notify?.onResult(m.result).then(go, fail) ?? pending;
      else if (m.type === 'loop') resolve(m.result);
      else void pending.then(() => resolve(undefined));
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (code !== 0) reject(new Error(`load worker exited with ${code}`));
    });
  });
}

// --- Plans ------------------------------------------------------------------------------------------

/**
 * The statements a store function would run, captured instead of executed (each answered with no
 * rows): the exact SQL and parameters of the temporal API's reads, for their plans.
 */
function capturing(database: Database): { provider: QueryExecutorProvider; captured: CompiledQuery[] } {
  const captured: CompiledQuery[] = [];
  const executor = database.db.getExecutor();
  const fake = new Proxy(executor, {
    get(target, prop, receiver): unknown {
      if (prop === 'executeQuery')
        return async (compiled: CompiledQuery) => {
          captured.push(compiled);
          return { rows: [] };
        };
      // Kysely's executor keeps private fields: its methods must run on the executor itself.
      const value: unknown = Reflect.get(target, prop, receiver);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  return { provider: { getExecutor: () => fake }, captured };
}

/** Prints EXPLAIN (ANALYZE, BUFFERS) of a statement, condensed to its plan nodes and timings. */
async function explain(run: Run, what: string, text: string, params: readonly unknown[]): Promise<void> {
  const { rows } = await run.database.raw(`explain (analyze, buffers, costs off) ${text}`, [...params]);
  const lines = rows.map((r) => String(r['QUERY PLAN']));
  const plan = lines.filter((l) => /->|^\S/.test(l) && !/^(Planning|Execution)/.test(l)).slice(0, 12);
  const timing = lines.filter((l) => /^(Planning|Execution) Time/.test(l)).join(', ');
  console.log(`  plan of ${what} (${timing}):`);
  for (const l of plan) console.log(`      ${l.trimEnd()}`);
}

// --- Bulk load ----------------------------------------------------------------------------------------

/**
 * Inserts instances `from`..`to - 1` of `entityId`'s `power`, instance g at `start + g × stepMs`,
 * with INSERT … SELECT generate_series in chunks — rows as `instanceRiders` writes them (value
 * jsonb {type, value, observedAt}, `num`, ts = observed_at). Prints progress.
 */
async function bulkInstances(
  run: Run,
  o: { entityId: string; from: number; to: number; start: number; stepMs: number; label: string },
): Promise<void> {
  const chunk = run.engine.pooled ? 250_000 : 50_000;
  const total = o.to - o.from;
  const t0 = performance.now();
  let lastPrint = t0;
  for (let a = o.from; a < o.to; a += chunk) {
    const b = Math.min(o.to, a + chunk) - 1;
    await run.database.raw(
      `insert into twin.attr_instances (${INSTANCE_COLUMNS})
       select '', $1, $2, '', gen_random_uuid(), x.t, x.t, now(), now(), y.v,
         jsonb_build_object('type', 'Property', 'value', y.v,
           'observedAt', to_char(x.t at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')), false
       from generate_series($3::bigint, $4::bigint) g
       cross join lateral (select $5::timestamptz + make_interval(secs => g * $6::float8 / 1000) as t) x
       cross join lateral (select round((100 + 50 * sin(g / 997.0) + (g * 7919 % 1000) / 100.0)::numeric, 2)::float8 as v) y`,
      [o.entityId, ATTR_IRI, a, b, new Date(o.start).toISOString(), o.stepMs],
    );
    const now = performance.now();
    const done = b + 1 - o.from;
    if (now - lastPrint > 5_000 || done === total) {
      lastPrint = now;
      const rate = (done / (now - t0)) * 1000;
      const eta = done < total ? `, ${fmt((total - done) / rate)} s to go` : '';
      console.log(
        `    ${o.label}: ${fmt(done)} / ${fmt(total)} instances (${Math.round((done / total) * 100)} %), ` +
          `${fmt(rate)}/s${eta}`,
      );
    }
  }
}

/** The number of months from `from`'s month to `to`'s (UTC). */
const monthsBetween = (from: Date, to: Date): number =>
  to.getUTCFullYear() * 12 + to.getUTCMonth() - (from.getUTCFullYear() * 12 + from.getUTCMonth());

/** Creates the monthly partitions of [from, to] before instances land there. */
async function partitionsFor(run: Run, from: number, to: number): Promise<void> {
  const r = await ensurePartitions(run.database.db, {
    now: new Date(to),
    monthsBack: monthsBetween(new Date(from), new Date(to)),
    monthsAhead: 0,
  });
  if (r.skipped.length > 0) throw new Error(`partitions not created: ${r.skipped.join(', ')}`);
  if (r.created.length > 0) console.log(`  partitions created: ${r.created.join(', ')}`);
}

/** Creates temporal entity `id` (type Meter) with one `power` instance through the API. */
async function temporalEntity(run: Run, id: string, value: number, observedAt: string): Promise<void> {
  await call(
    run,
    'POST',
    `${P}/temporal/entities`,
    { id, type: 'Meter', [ATTR]: [instance(value, observedAt)] },
    [201, 204],
  );
}

/** Checks that a bulk-loaded row's value has the members of the row the API wrote. */
async function sameShape(run: Run, entityId: string, apiTs: string): Promise<void> {
  const { rows } = await run.database.raw(
    `select (ts = $3::timestamptz) as api, value, num, observed_at = ts as observed
       from twin.attr_instances where tenant = '' and entity_id = $1 and attr = $2
       order by (ts = $3::timestamptz) desc, ts limit 2`,
    [entityId, ATTR_IRI, apiTs],
  );
  const [api, bulk] = rows;
  const keys = (r: Record<string, unknown> | undefined) => {
    const v = r?.['value'];
    const o = (typeof v === 'string' ? JSON.parse(v) : v) as Record<string, unknown>;
    return Object.keys(o).sort().join(',');
  };
  if (!api?.['api'] || !bulk || keys(api) !== keys(bulk) || bulk['observed'] !== true || bulk['num'] === null)
    throw new Error(`bulk-loaded instances differ from the API's: ${JSON.stringify(rows)}`);
}

async function vacuumAnalyze(run: Run): Promise<void> {
  const t0 = performance.now();
  await run.database.raw('vacuum (analyze) twin.attr_instances');
  console.log(`  VACUUM (ANALYZE) twin.attr_instances: ${fmt(performance.now() - t0)} ms`);
}

async function historySize(run: Run): Promise<string> {
  const { rows } = await run.database.raw(
    `select count(*)::int as parts, sum(pg_total_relation_size(inhrelid))::float8 as bytes
       from pg_inherits where inhparent = 'twin.attr_instances'::regclass`,
  );
  const r = rows[0] ?? {};
  return `${String(r['parts'])} partitions, ${fmt(Number(r['bytes']) / 2 ** 20)} MiB with indexes`;
}

/** Database-wide activity counters (PostgreSQL): commits and rows written, all sessions. */
interface Counters {
  commits: number;
  inserted: number;
  updated: number;
  deleted: number;
}

async function counters(run: Run): Promise<Counters | undefined> {
  if (!run.engine.pooled) return undefined;
  // Backends report their counts at most once a second: let the last ones arrive.
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  await run.database.raw('select pg_stat_clear_snapshot()');
  const { rows } = await run.database.raw(
    `select xact_commit::float8 as commits, tup_inserted::float8 as inserted, tup_updated::float8 as updated,
       tup_deleted::float8 as deleted from pg_stat_database where datname = current_database()`,
  );
  const r = rows[0] ?? {};
  return {
    commits: Number(r['commits']),
    inserted: Number(r['inserted']),
    updated: Number(r['updated']),
    deleted: Number(r['deleted']),
  };
}

/** What the database did per operation between two counter readings (warm-up and drain included). */
function perOperation(before: Counters | undefined, after: Counters | undefined, operations: number): string {
  if (!before || !after || operations === 0) return '';
  const per = (k: keyof Counters) => ((after[k] - before[k]) / operations).toFixed(1);
  return `    database per operation (pg_stat_database, all sessions, ≈): ${per('commits')} commits, rows ${per('inserted')} inserted, ${per('updated')} updated, ${per('deleted')} deleted`;
}

// --- 1. Aggregation ----------------------------------------------------------------------------------

async function aggregation(run: Run): Promise<void> {
  const n = AGG_INSTANCES;
  const id = 'urn:ngsi-ld:Meter:agg';
  const to = Math.floor(Date.now() / HOUR) * HOUR - HOUR;
  const from = to - 4 * DAY;
  const stepMs = (4 * DAY) / n;
  console.log(`\n  1. aggregation: ${fmt(n)} instances of one attribute over 4 days`);
  await partitionsFor(run, from, to);
  const first = new Date(from).toISOString();
  await temporalEntity(run, id, reading(0), first);
  const t0 = performance.now();
  await bulkInstances(run, { entityId: id, from: 1, to: n, start: from, stepMs, label: 'bulk load' });
  await sameShape(run, id, first);
  await run.database.raw('analyze twin.attr_instances');
  console.log(`  loaded and analysed in ${fmt(performance.now() - t0)} ms`);

  const range = { from: new Date(from).toISOString(), to: new Date(to).toISOString() };
  const path =
    `${P}/temporal/entities/${encodeURIComponent(id)}?attrs=${ATTR}&options=aggregatedValues&aggrMethods=avg` +
    `&aggrPeriodDuration=PT1H&timerel=between&timeAt=${range.from}&endTimeAt=${range.to}`;
  const rawSql = `select date_bin('1 hour', ts, $3::timestamptz) as b, avg(num) as avg
      from twin.attr_instances
      where tenant = '' and entity_id = $1 and attr = $2 and ts >= $3::timestamptz and ts < $4::timestamptz
        and not deleted
      group by 1 order by 1`;
  const rawParams = [id, ATTR_IRI, range.from, range.to];

  // Same answer: the API's hourly averages are the raw statement's.
  const body = (await call(run, 'GET', path, undefined, [200])) as Record<string, { avg?: unknown[] }>;
  const apiAvg = (body[ATTR]?.avg ?? []) as [number | null, string, string][];
  const { rows } = await run.database.raw(rawSql, rawParams);
  const same =
    apiAvg.length === rows.length &&
    rows.every((r, i) => Math.abs(Number(r['avg']) - Number(apiAvg[i]?.[0])) < 1e-6);
  if (!same)
    throw new Error(
      `aggregation: the API gave ${apiAvg.length} buckets, the raw SQL ${rows.length} (or other averages)`,
    );
  console.log(`  the API and the raw SQL agree: ${apiAvg.length} hourly averages`);

  const { provider, captured } = capturing(run.database);
  await aggregateInstances(provider, {
    tenant: '',
    pairs: [[id, ATTR_IRI]],
    from: range.from,
    to: range.to,
    timeproperty: 'observedAt',
    methods: ['avg'],
    period: { kind: 'fixed', seconds: 3600 },
  });
  const product = captured[0];
  if (product)
    await explain(run, "the API's aggregation (aggregateInstances)", product.sql, product.parameters);
  await explain(run, 'the raw aggregation', rawSql, rawParams);

  const agent = keepAliveAgent(1);
  const get = httpOp(agent, run.base, () => ({ method: 'GET', path }));
  const api = percentiles(
    await sequential(AGG_REQUESTS, 5, async (i) => {
      await get(i);
    }),
  );
  agent.destroy();
  const raw = percentiles(
    await sequential(AGG_REQUESTS, 5, async () => {
      await run.database.raw(rawSql, rawParams);
    }),
  );
  keep(run, {
    section: '1. aggregation: avg per PT1H over 4 days (GET …?options=aggregatedValues)',
    data: `${fmt(n)} instances, ${AGG_REQUESTS} requests, 1 client`,
    pujiang: `p50 ${ms(api.p50)} / p95 ${ms(api.p95)} ms`,
    raw: `p50 ${ms(raw.p50)} / p95 ${ms(raw.p95)} ms`,
    ratio: `${(api.p95 / raw.p95).toFixed(2)}× (p95)`,
    target: 'p95 ≤ 100 ms',
    verdict: api.p95 <= 100 ? 'met' : `missed (${(api.p95 / 100).toFixed(1)}×)`,
  });
}

// --- 2. lastN ----------------------------------------------------------------------------------------

async function lastN(run: Run): Promise<void> {
  const n = INSTANCES(run.engine.pooled);
  const id = 'urn:ngsi-ld:Meter:big';
  const newest = Math.floor(Date.now() / 1000) * 1000 - 60_000;
  const oldest = newest - (n - 1) * 1000;
  console.log(
    `\n  2. lastN: ${fmt(n)} instances of one attribute, 1 s apart (${new Date(oldest).toISOString()} … ${new Date(newest).toISOString()})`,
  );
  await partitionsFor(run, oldest, newest);
  const last = new Date(newest).toISOString();
  await temporalEntity(run, id, reading(n - 1), last);
  const t0 = performance.now();
  await bulkInstances(run, {
    entityId: id,
    from: 0,
    to: n - 1,
    start: oldest,
    stepMs: 1000,
    label: 'bulk load',
  });
  console.log(`  loaded in ${fmt(performance.now() - t0)} ms`);
  await sameShape(run, id, last);
  await vacuumAnalyze(run);
  console.log(`  twin.attr_instances: ${await historySize(run)}`);

  const path = `${P}/temporal/entities/${encodeURIComponent(id)}?attrs=${ATTR}&lastN=100`;
  const rawSql = `select instance_id, ts, created_at, modified_at, deleted, value from twin.attr_instances
      where tenant = '' and entity_id = $1 and attr = $2 order by ts desc limit 100`;
  const rawParams = [id, ATTR_IRI];
  const body = (await call(run, 'GET', path, undefined, [200])) as Record<string, unknown>;
  const list = body[ATTR] as { observedAt?: string }[] | undefined;
  const { rows } = await run.database.raw(rawSql, rawParams);
  if (list?.length !== 100 || rows.length !== 100 || list[99]?.observedAt !== last)
    throw new Error(
      `lastN: the API gave ${list?.length ?? 0} instances ending ${list?.[99]?.observedAt ?? '?'}`,
    );
  console.log('  the API answers the 100 newest instances, oldest first, as the raw SQL');

  const { provider, captured } = capturing(run.database);
  await selectInstances(provider, {
    tenant: '',
    pairs: [[id, ATTR_IRI]],
    timeproperty: 'observedAt',
    lastN: 100,
    max: 10_000,
  });
  const product = captured[0];
  if (product) await explain(run, "the API's lastN (selectInstances)", product.sql, product.parameters);
  await explain(run, 'the raw lastN', rawSql, rawParams);

  const agent = keepAliveAgent(1);
  const get = httpOp(agent, run.base, () => ({ method: 'GET', path }));
  const api = percentiles(
    await sequential(LASTN_REQUESTS, 10, async (i) => {
      await get(i);
    }),
  );
  agent.destroy();
  const raw = percentiles(
    await sequential(LASTN_REQUESTS, 10, async () => {
      await run.database.raw(rawSql, rawParams);
    }),
  );
  keep(run, {
    section: '2. lastN=100 of one attribute (GET …?attrs=power&lastN=100)',
    data: `${fmt(n)} instances, ${LASTN_REQUESTS} requests, 1 client`,
    pujiang: `p50 ${ms(api.p50)} / p95 ${ms(api.p95)} ms`,
    raw: `p50 ${ms(raw.p50)} / p95 ${ms(raw.p95)} ms`,
    ratio: `${(api.p95 / raw.p95).toFixed(2)}× (p95)`,
    target: 'p95 ≤ 20 ms',
    verdict: api.p95 <= 20 ? 'met' : `missed (${(api.p95 / 20).toFixed(1)}×)`,
  });
}

// --- 3. History write ----------------------------------------------------------------------------------

const statuses = (r: LoadResult) =>
  Object.entries(r.statuses)
    .map(([s, k]) => `${s}: ${fmt(k)}`)
    .join(', ');

function describeLoop(who: string, r: LoadResult, perOp: number): string {
  const lines = [
    `    ${who.padEnd(8)} ${fmt(r.rate)} req/s = ${fmt(r.rate * perOp)} instances/s   ` +
      `p50/p95/p99 ${ms(r.p50)} / ${ms(r.p95)} / ${ms(r.p99)} ms   [${statuses(r)}]   ` +
      `CPU: node ${r.processCores.toFixed(2)}, machine ${r.machineCores?.toFixed(2) ?? '?'} cores`,
  ];
  for (const [status, sample] of Object.entries(r.samples))
    lines.push(`             ${status}: ${sample.replace(/\s+/g, ' ')}`);
  return lines.join('\n');
}

/** Operations a closed loop ran in all (the warm-up's estimated from the measured rate). */
const totalOps = (r: LoadResult): number => Math.round(r.completed + r.rate * WARMUP);

const writeVerdict = (run: Run, rate: number, errors: number): string =>
  errors > 0
    ? `missed (${fmt(errors)} errors)`
    : rate >= 20_000
      ? 'met'
      : run.engine.pooled
        ? `missed (${Math.round((rate / 20_000) * 100)} %)`
        : `info (PostgreSQL target): ${Math.round((rate / 20_000) * 100)} %`;

async function historyWrite(run: Run): Promise<void> {
  const clients = CLIENTS(run.engine.pooled);
  const durationMs = SECONDS * 1000;
  const warmupMs = WARMUP * 1000;
  console.log(`\n  3. history write, ${clients} client${clients === 1 ? '' : 's'}`);

  // (a) the temporal API: 1,000 instances per request, spread over 64 temporal entities.
  const startMs = Date.now() - 2 * HOUR;
  await partitionsFor(run, startMs - HOUR, Date.now());
  await parallel(APPEND_ENTITIES, 8, (k) =>
    temporalEntity(run, appendEntityId(k), reading(k), new Date(startMs - HOUR + k).toISOString()),
  );
  console.log(
    `  (a) POST /temporal/entities/{id}/attrs, ${fmt(BATCH)} instances per request, ${APPEND_ENTITIES} entities`,
  );
  let c0 = await counters(run);
  const api = await inWorker({
    kind: 'append',
    label: 'append',
    base: run.base.href,
    concurrency: clients,
    warmupMs,
    durationMs,
    entities: APPEND_ENTITIES,
    perRequest: BATCH,
    startMs,
  });
  if (!api) throw new Error('the load worker gave no result');
  console.log(describeLoop('Pujiang', api, BATCH));
  let c1 = await counters(run);
  if (c1) console.log(perOperation(c0, c1, totalOps(api)));
  const rawStart = startMs + HOUR / 2;
  const insert = `insert into twin.attr_instances (${INSTANCE_COLUMNS}) values ${valuesPlaceholders(BATCH)}`;
  const raw = await closedLoop({
    label: 'raw INSERT',
    concurrency: clients,
    warmupMs,
    durationMs,
    op: async (seq) => {
      const recorded = new Date().toISOString();
      const entity = appendEntityId(seq % APPEND_ENTITIES);
      const params: unknown[] = [];
      for (let i = 0; i < BATCH; i++)
        params.push(
          ...instanceRow(
            entity,
            ATTR_IRI,
            reading(seq * BATCH + i),
            appendTime(rawStart, seq, i, BATCH),
            recorded,
          ),
        );
      await run.database.raw(insert, params);
      return 200;
    },
  });
  console.log(describeLoop('raw SQL', raw, BATCH));
  c0 = await counters(run);
  if (c0) console.log(perOperation(c1, c0, totalOps(raw)));
  keep(run, {
    section: `3a. history write: POST /temporal/entities/{id}/attrs, ${fmt(BATCH)} instances per request`,
    data: `${APPEND_ENTITIES} entities, ${clients} client${clients === 1 ? '' : 's'}`,
    pujiang: `${fmt(api.rate * BATCH)} instances/s (${fmt(api.rate)} req/s, p95 ${ms(api.p95)} ms)`,
    raw: `${fmt(raw.rate * BATCH)} instances/s (${BATCH}-row INSERT … VALUES, p95 ${ms(raw.p95)} ms)`,
    ratio: (api.rate / raw.rate).toFixed(2),
    target: '≥ 20,000 instances/s',
    verdict: writeVerdict(run, api.rate * BATCH, api.errors + raw.errors),
  });

  // (b) entity updates: each PATCH sets PATCH_ATTRS attributes and records as many instances.
  const names = patchAttrNames(PATCH_ATTRS);
  await parallel(PATCH_ENTITIES, 8, (k) =>
    call(
      run,
      'POST',
      `${P}/entities`,
      {
        id: patchEntityId(k),
        type: 'Meter',
        ...Object.fromEntries(names.map((a, i) => [a, { type: 'Property', value: reading(k + i) }])),
      },
      [201],
    ),
  );
  console.log(
    `  (b) PATCH /entities/{id}/attrs setting ${PATCH_ATTRS} attributes (${PATCH_ATTRS} instances) per update, ${PATCH_ENTITIES} entities`,
  );
  c0 = await counters(run);
  const patchApi = await inWorker({
    kind: 'patch',
    label: 'patch',
    base: run.base.href,
    concurrency: clients,
    warmupMs,
    durationMs,
    entities: PATCH_ENTITIES,
    attrs: PATCH_ATTRS,
  });
  if (!patchApi) throw new Error('the load worker gave no result');
  console.log(describeLoop('Pujiang', patchApi, PATCH_ATTRS));
  c1 = await counters(run);
  if (c1) console.log(perOperation(c0, c1, totalOps(patchApi)));
  const iris = names.map((a) => CORE_LD_CONTEXT.expand(a));
  const update = `with change as (
      update twin.entities set attrs = attrs || $1::jsonb, modified_at = $2 where tenant = '' and id = $3 returning id)
    insert into twin.attr_instances (${INSTANCE_COLUMNS}) values ${valuesPlaceholders(PATCH_ATTRS, 3)}`;
  const patchRaw = await closedLoop({
    label: 'raw UPDATE + INSERT',
    concurrency: clients,
    warmupMs,
    durationMs,
    op: async (seq) => {
      const at = new Date().toISOString();
      const entity = patchEntityId(seq % PATCH_ENTITIES);
      const values = iris.map((_, i) => reading(seq * PATCH_ATTRS + i));
      const attrs = Object.fromEntries(
        iris.map((iri, i) => [iri, [{ type: 'Property', value: values[i], createdAt: at, modifiedAt: at }]]),
      );
      const params: unknown[] = [JSON.stringify(attrs), at, entity];
      for (const [i, iri] of iris.entries())
        params.push(...instanceRow(entity, iri, values[i] ?? 0, undefined, at));
      await run.database.raw(update, params);
      return 200;
    },
  });
  console.log(describeLoop('raw SQL', patchRaw, PATCH_ATTRS));
  c0 = await counters(run);
  if (c0) console.log(perOperation(c1, c0, totalOps(patchRaw)));
  keep(run, {
    section: `3b. history write: entity updates, PATCH /entities/{id}/attrs with ${PATCH_ATTRS} attributes`,
    data: `${PATCH_ENTITIES} entities, ${clients} client${clients === 1 ? '' : 's'}`,
    pujiang: `${fmt(patchApi.rate * PATCH_ATTRS)} instances/s (${fmt(patchApi.rate)} updates/s, p95 ${ms(patchApi.p95)} ms)`,
    raw: `${fmt(patchRaw.rate * PATCH_ATTRS)} instances/s (UPDATE + ${PATCH_ATTRS}-row INSERT in one statement, p95 ${ms(patchRaw.p95)} ms)`,
    ratio: (patchApi.rate / patchRaw.rate).toFixed(2),
    target: '≥ 20,000 instances/s',
    verdict: writeVerdict(run, patchApi.rate * PATCH_ATTRS, patchApi.errors + patchRaw.errors),
  });
}

// --- 4. Notifications -----------------------------------------------------------------------------------

async function notifications(run: Run): Promise<void> {
  const rates = NOTIFY_RATES(run.engine.pooled);
  const subscriptions = SUBSCRIPTIONS;
  const ids = Array.from({ length: subscriptions }, (_, k) => notifyEntityId(k));
  console.log(
    `\n  4. notifications: ${subscriptions} subscriptions (one entity each), ${rates.map(fmt).join(' then ')} updates/s ` +
      `for ${SECONDS} s each (+ ${WARMUP} s warm-up), loopback receiver`,
  );
  let before: Counters | undefined;
  const ready = async (port: number) => {
    await parallel(subscriptions, 8, (k) =>
      call(
        run,
        'POST',
        `${P}/entities`,
        { id: ids[k], type: 'Meter', [ATTR]: { type: 'Property', value: -1 } },
        [201],
      ),
    );
    await parallel(subscriptions, 8, (k) =>
      call(
        run,
        'POST',
        `${P}/subscriptions`,
        {
          type: 'Subscription',
          entities: [{ type: 'Meter', id: ids[k] }],
          notification: { endpoint: { uri: `http://127.0.0.1:${port}/notify`, accept: 'application/json' } },
        },
        [201],
      ),
    );
    console.log(`  ${subscriptions} entities and subscriptions created; receiver on 127.0.0.1:${port}`);
    console.log(`  round 1: ${fmt(rates[0] ?? 0)} updates/s`);
    before = await counters(run);
  };
  let round = 0;
  const result = async (r: NotifyResult) => {
    round++;
    const refused = Object.entries(r.refused)
      .map(([s, k]) => `${s}: ${fmt(k)}`)
      .join(', ');
    console.log(
      `    updates: ${fmt(r.sent)} sent (${fmt(r.sentRate)}/s measured), ${fmt(r.accepted)} accepted` +
        `${refused ? `, refused ${refused} (${r.refusedSample ?? ''})` : ''}; PATCH p50/p95/p99 ` +
        `${ms(r.patch.p50)} / ${ms(r.patch.p95)} / ${ms(r.patch.p99)} ms`,
    );
    console.log(
      `    notifications: ${fmt(r.received)} received, ${fmt(r.distinct)} distinct, ${fmt(r.duplicates)} duplicates, ` +
        `${fmt(r.unexpected)} for no accepted update, lost ${fmt(r.lost)} (drain ${fmt(r.drainedMs)} ms)`,
    );
    console.log(
      `    latency PATCH sent → notification received: p50/p95/p99/max ${ms(r.latency.p50)} / ${ms(r.latency.p95)} / ` +
        `${ms(r.latency.p99)} / ${ms(r.latency.max)} ms over ${fmt(r.latency.count)} updates`,
    );
    console.log(
      `    raw: POST straight to the receiver at ${fmt(r.baseline.rate)}/s: p50/p95/p99/max ${ms(r.baseline.p50)} / ` +
        `${ms(r.baseline.p95)} / ${ms(r.baseline.p99)} / ${ms(r.baseline.max)} ms over ${fmt(r.baseline.count)}`,
    );
    const after = await counters(run);
    if (after) console.log(perOperation(before, after, r.sent).replace('operation', 'update'));
    before = after;
    const { rows } = await run.database.raw(
      `select status, count(*)::int as n, max(attempts)::int as attempts from twin.notifications group by 1 order by 1`,
    );
    console.log(
      `    twin.notifications so far: ${rows.map((x) => `${String(x['status'])} ${fmt(Number(x['n']))} (attempts ≤ ${String(x['attempts'])})`).join(', ')}`,
    );
    const ok = r.latency.p99 <= 50 && r.lost === 0 && r.accepted === r.sent;
    keep(run, {
      section: `4. notifications: PATCH sent → notification received, ${subscriptions} subscriptions`,
      data:
        `${fmt(r.rate)} updates/s paced (${fmt(r.sentRate)}/s sent) for ${SECONDS} s; expected ${fmt(r.accepted)}, ` +
        `received ${fmt(r.received)} (${fmt(r.distinct)} distinct), duplicates ${fmt(r.duplicates)}, lost ${fmt(r.lost)}`,
      pujiang: `p50 ${ms(r.latency.p50)} / p95 ${ms(r.latency.p95)} / p99 ${ms(r.latency.p99)} / max ${ms(r.latency.max)} ms`,
      raw: `p50 ${ms(r.baseline.p50)} / p99 ${ms(r.baseline.p99)} ms (direct POST)`,
      ratio: `${(r.latency.p99 / r.baseline.p99).toFixed(0)}× (p99)`,
      target: 'p99 ≤ 50 ms, 0 lost',
      verdict:
        (round > 1 ? 'info: ' : '') +
        (ok
          ? 'met'
          : `missed (${[
              r.latency.p99 > 50 ? `p99 ${(r.latency.p99 / 50).toFixed(1)}×` : '',
              r.lost > 0 ? `${fmt(r.lost)} lost` : '',
              r.accepted < r.sent ? `${fmt(r.sent - r.accepted)} updates refused` : '',
            ]
              .filter(Boolean)
              .join(', ')})`),
    });
    const next = rates[round];
    if (next !== undefined) console.log(`  round ${round + 1}: ${fmt(next)} updates/s`);
  };
  await inWorker(
    {
      kind: 'notify',
      base: run.base.href,
      ids,
      rates,
      warmupMs: WARMUP * 1000,
      durationMs: SECONDS * 1000,
      drainMs: DRAIN_SECONDS * 1000,
      baselineMs: Math.min(SECONDS, 5) * 1000,
    },
    { onReady: ready, onResult: result },
  );
}

// --- Engines --------------------------------------------------------------------------------------------

async function benchEngine(engine: BenchEngine): Promise<Figure[]> {
  const dataDir = mkdtempSync(join(tmpdir(), 'pujiang-history-bench-'));
  const config = loadConfig({
    env: {
      PUJIANG_MODE: 'demo',
      LOG_LEVEL: 'silent',
      HOST: '127.0.0.1',
      PORT: '0',
      TWIN_ACCESS: 'open',
      DATA_DIR: dataDir,
    },
  });
  const t0 = performance.now();
  const platform = await startPlatform({
    config,
    logger: silentLogger(),
    listen: true,
    database: engine.database,
  });
  try {
    console.log(
      `\n${engine.label}: platform started in ${fmt(performance.now() - t0)} ms at ${platform.url ?? '?'}` +
        `${engine.pooled ? `, pool of ${POOL_MAX} shared with the raw baselines` : ''}; load average ${load()}`,
    );
    const run: Run = {
      engine,
      platform,
      base: new URL(platform.url ?? ''),
      database: engine.database,
      figures: [],
    };
    if (wanted('aggregation')) await aggregation(run);
    if (wanted('lastN')) await lastN(run);
    if (wanted('write')) await historyWrite(run);
    if (wanted('notify')) await notifications(run);
    return run.figures;
  } finally {
    await platform.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

console.log(
  `bench/twin-history: ${cpus().length} × ${cpus()[0]?.model.trim() ?? 'CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB, ` +
    `Node ${process.version}; broker, load generator (worker thread) and database on the same machine; ` +
    `load average ${load()}`,
);
const figures = (await onEachEngine(benchEngine, { poolMax: POOL_MAX })).flat();

console.log('\n| engine | measurement | data, clients | Pujiang | raw baseline | ratio | target | verdict |');
console.log('|---|---|---|---|---|---|---|---|');
for (const f of figures)
  console.log(
    `| ${f.engine} | ${f.section} | ${f.data} | ${f.pujiang} | ${f.raw} | ${f.ratio} | ${f.target} | ${f.verdict} |`,
  );
console.log(`load average at the end: ${load()}`);
