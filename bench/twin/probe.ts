/**
 * Where the time goes during a bench/twin scenario: a V8 CPU profile of this process (server and
 * load generator) summarised by function and by package, and, on PostgreSQL, what the database
 * backends serving the scenario do — sampled from pg_stat_activity (on CPU, waiting on a lock,
 * idle in a transaction …) — and how much CPU they burn (/proc/<pid>/stat, same host).
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

/** Starts the V8 profiler (1 ms sampling); `stop` writes the profile and returns a text summary. */
export async function startCpuProfile(): Promise<{ stop(name: string): Promise<string> }> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 1000 });
  await session.post('Profiler.start');
  return {
    async stop(name) {
      const { profile } = await session.post('Profiler.stop');
      session.disconnect();
      const file = join(tmpdir(), `${name}.cpuprofile`);
      writeFileSync(file, JSON.stringify(profile));
      return `CPU profile written to ${file}\n${summarise(profile)}`;
    },
  };
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[] | undefined;
}

/** The package or project folder a script belongs to. */
function categoryOf(url: string, fn: string): string {
  if (url === '') return fn.startsWith('(') ? fn : '(native)';
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/').slice(0, 2).join('/')}`;
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const parts = url.slice(nm + 14).split('/');
    return parts[0]?.startsWith('@') ? `${parts[0]}/${parts[1] ?? ''}` : (parts[0] ?? url);
  }
  const src = url.lastIndexOf('/src/');
  if (src >= 0) return url.slice(src + 1).replace(/\.ts$/, '');
  if (url.includes('/bench/')) return 'bench (load generator, raw baselines)';
  return url;
}

const shortUrl = (url: string): string => {
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) return url.slice(nm + 14);
  const src = url.lastIndexOf('/src/');
  if (src >= 0) return url.slice(src + 1);
  const bench = url.lastIndexOf('/bench/');
  return bench >= 0 ? url.slice(bench + 1) : url;
};

/** Self time by function and by package, and inclusive time of the project's own functions. */
function summarise(profile: {
  nodes: ProfileNode[];
  samples?: number[] | undefined;
  timeDeltas?: number[] | undefined;
}): string {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  const self = new Map<string, number>();
  const category = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let total = 0;
  const keyOf = (n: ProfileNode) =>
    `${n.callFrame.functionName || '(anonymous)'} ${shortUrl(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;
  samples.forEach((id, i) => {
    const us = deltas[i] ?? 0;
    const node = byId.get(id);
    if (!node) return;
    total += us;
    const k = keyOf(node);
    self.set(k, (self.get(k) ?? 0) + us);
    const cat = categoryOf(node.callFrame.url, node.callFrame.functionName);
    category.set(cat, (category.get(cat) ?? 0) + us);
    // Inclusive: each project function on the stack once.
    const seen = new Set<string>();
    for (let cur: ProfileNode | undefined = node; cur; cur = byId.get(parent.get(cur.id) ?? -1)) {
      if (!cur.callFrame.url.includes('/src/')) continue;
      const key = keyOf(cur);
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + us);
    }
  });
  const top = (m: Map<string, number>, n: number) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, us]) => `      ${((us / total) * 100).toFixed(1).padStart(5)} %  ${k}`)
      .join('\n');
  return [
    `    ${(total / 1e6).toFixed(1)} s sampled`,
    '    self time by package / project file:',
    top(category, 18),
    '    self time by function:',
    top(self, 20),
    "    inclusive time of the project's own functions (src/):",
    top(inclusive, 20),
  ].join('\n');
}

/** User + system CPU seconds of a process (Linux), or undefined when it is gone or not readable. */
function processCpuSeconds(pid: number): number | undefined {
  const file = `/proc/${pid}/stat`;
  if (!existsSync(file)) return undefined;
  try {
    const text = readFileSync(file, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of stat(5) (utime, stime), counted from the state (field 3); 100 ticks/s.
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

/**
 * CPU seconds of the whole PostgreSQL server on this host: every live `postgres` process, plus
 * what the postmaster collected from children that exited (parallel workers, autovacuum workers,
 * closed connections). Other databases' work counts too. Undefined without /proc.
 */
function serverCpuSeconds(): number | undefined {
  if (!existsSync('/proc/self/stat')) return undefined;
  let total = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const text = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (text.slice(text.indexOf('(') + 1, text.lastIndexOf(')')) !== 'postgres') continue;
      const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
      // utime, stime (fields 14, 15 of stat(5)); cutime, cstime (16, 17) of waited-for children.
      total += (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) / 100;
    } catch {
      // The process ended between listing and reading.
    }
  }
  return total;
}

export interface BackendReport {
  /** Share of sampled backends in each state ('active (on CPU)', 'idle in transaction' …). */
  states: [string, number][];
  /** CPU the sampled backends used, in cores, over the sampling span. */
  cores: number;
  /** CPU of the whole PostgreSQL server (background and parallel workers included), in cores. */
  serverCores: number | undefined;
  /** Lock waits by lock type and relation, as a share of the samples (a backend may wait on two). */
  waits: [string, number][];
  /** The database's counters over the sampling span (pg_stat_database: every client, not only `application`). */
  counters: DatabaseCounters;
}

/** Commits and rows written in the current database (pg_stat_database; flushed about once a second). */
export interface DatabaseCounters {
  commits: number;
  inserted: number;
  updated: number;
  deleted: number;
}

async function databaseCounters(client: pg.Client): Promise<DatabaseCounters> {
  const { rows } = await client.query<Record<keyof DatabaseCounters, string>>(
    `select xact_commit as commits, tup_inserted as inserted, tup_updated as updated, tup_deleted as deleted
       from pg_stat_database where datname = current_database()`,
  );
  const r = rows[0];
  return {
    commits: Number(r?.commits ?? 0),
    inserted: Number(r?.inserted ?? 0),
    updated: Number(r?.updated ?? 0),
    deleted: Number(r?.deleted ?? 0),
  };
}

/**
 * Samples, every 50 ms after `delayMs`, the backends of the current database whose
 * application_name is `application`; `stop` reports their states and CPU.
 */
export async function sampleBackends(
  url: string,
  application: string,
  delayMs: number,
): Promise<{ stop(): Promise<BackendReport> }> {
  const client = new pg.Client({ connectionString: url, application_name: 'bench-probe' });
  await client.connect();
  const states = new Map<string, number>();
  const waits = new Map<string, number>();
  let samples = 0;
  const cpu = new Map<number, { first: number; last: number }>();
  let t0 = 0;
  let t1 = 0;
  let running: Promise<void> | undefined;
  // The probe's own statements commit too: counted, to leave them out of the database counters.
  let probeStatements = 0;
  const sample = async () => {
    probeStatements += 2;
    const { rows } = await client.query<{
      pid: number;
      state: string | null;
      wait_event_type: string | null;
      wait_event: string | null;
    }>(
      `select pid, state, wait_event_type, wait_event from pg_stat_activity
        where datname = current_database() and application_name = $1`,
      [application],
    );
    // Which relations the lock waits are on (tuple locks name it; transactionid waits do not).
    const { rows: locks } = await client.query<{ locktype: string; rel: string | null }>(
      `select l.locktype, l.relation::regclass::text as rel from pg_locks l
         join pg_stat_activity a on a.pid = l.pid
        where not l.granted and a.datname = current_database() and a.application_name = $1`,
      [application],
    );
    for (const l of locks) {
      const key = `${l.locktype}${l.rel ? ` on ${l.rel}` : ''}`;
      waits.set(key, (waits.get(key) ?? 0) + 1);
    }
    t1 = performance.now();
    if (t0 === 0) t0 = t1;
    for (const r of rows) {
      samples++;
      const state =
        r.state === 'active'
          ? r.wait_event_type
            ? `active, waiting ${r.wait_event_type}:${r.wait_event ?? ''}`
            : 'active (on CPU)'
          : r.state === 'idle' && r.wait_event === 'ClientRead'
            ? 'idle (waiting for the client)'
            : `${r.state ?? '?'}${r.wait_event ? ` (${r.wait_event})` : ''}`;
      states.set(state, (states.get(state) ?? 0) + 1);
      const s = processCpuSeconds(r.pid);
      if (s === undefined) continue;
      const seen = cpu.get(r.pid);
      if (seen) seen.last = s;
      else cpu.set(r.pid, { first: s, last: s });
    }
  };
  let stopped = false;
  let counters0: DatabaseCounters | undefined;
  let server0: { at: number; seconds: number | undefined } | undefined;
  const loop = async () => {
    await new Promise((r) => setTimeout(r, delayMs));
    counters0 = await databaseCounters(client);
    probeStatements = 0;
    server0 = { at: performance.now(), seconds: serverCpuSeconds() };
    while (!stopped) {
      await sample();
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  running = loop();
  return {
    async stop() {
      stopped = true;
      await running;
      running = undefined;
      const server1 = { at: performance.now(), seconds: serverCpuSeconds() };
      const counters1 = await databaseCounters(client);
      await client.end();
      const c0 = counters0 ?? counters1;
      let seconds = 0;
      for (const { first, last } of cpu.values()) seconds += last - first;
      const span = (t1 - t0) / 1000;
      return {
        states: [...states.entries()]
          .sort((a, b) => b[1] - a[1])
          .map(([k, n]) => [k, samples > 0 ? n / samples : 0]),
        cores: span > 0 ? seconds / span : NaN,
        serverCores:
          server0?.seconds !== undefined && server1.seconds !== undefined && server1.at > server0.at
            ? (server1.seconds - server0.seconds) / ((server1.at - server0.at) / 1000)
            : undefined,
        counters: {
          commits: counters1.commits - c0.commits - probeStatements,
          inserted: counters1.inserted - c0.inserted,
          updated: counters1.updated - c0.updated,
          deleted: counters1.deleted - c0.deleted,
        },
        waits: [...waits.entries()]
          .sort((a, b) => b[1] - a[1])
          .map(([k, n]) => [k, samples > 0 ? n / samples : 0]),
      };
    },
  };
}
