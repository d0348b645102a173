/**
 * The engines a benchmark runs on: embedded PGlite always, PostgreSQL too when `DATABASE_URL` is
 * set (in a scratch database, dropped afterwards). Each gets a freshly migrated database.
 */
import { migrate, openDatabase, readProcessEnv, silentLogger, type Database } from '../src/kernel/index.ts';
import { migrationSources } from '../src/platform.ts';
import { createScratchDatabase } from '../test/helpers/engines.ts';

export interface BenchEngine {
  /** 'PGlite 0.5.8' or 'PostgreSQL <server version>'. */
  label: string;
  database: Database;
  /** True for PostgreSQL, where concurrent clients make sense. */
  pooled: boolean;
}

/** Runs `fn` on each engine in turn (migrated, then closed) and collects its results. */
export async function onEachEngine<T>(
  fn: (engine: BenchEngine) => Promise<T>,
  options: { poolMax?: number } = {},
): Promise<T[]> {
  const logger = silentLogger();
  const sources = migrationSources();
  const out: T[] = [];
  // BENCH_ENGINES=postgres skips PGlite (e.g. to profile the PostgreSQL run alone).
  const which = readProcessEnv()['BENCH_ENGINES'] ?? 'pglite,postgres';
  if (which.includes('pglite')) {
    console.log('PGlite (embedded) …');
    const lite = await openDatabase({ memory: true, logger });
    try {
      await migrate({ database: lite, sources, logger });
      out.push(await fn({ label: 'PGlite 0.5.8', database: lite, pooled: false }));
    } finally {
      await lite.close();
    }
  }
  const url = which.includes('postgres') ? readProcessEnv()['DATABASE_URL'] : undefined;
  if (!url) {
    console.log('(DATABASE_URL not set: PostgreSQL skipped)');
    return out;
  }
  console.log('PostgreSQL …');
  const scratch = await createScratchDatabase(url);
  const pg = await openDatabase({
    databaseUrl: scratch.url,
    logger,
    ...(options.poolMax && { poolMax: options.poolMax }),
  });
  try {
    await migrate({ database: pg, sources, logger });
    const { rows } = await pg.raw(`select current_setting('server_version') as v`);
    const v = rows[0]?.['v'];
    const version = typeof v === 'string' ? (v.split(' ')[0] ?? '') : '';
    out.push(await fn({ label: `PostgreSQL ${version}`.trim(), database: pg, pooled: true }));
  } finally {
    await pg.close();
    await scratch.drop();
  }
  return out;
}

/** A positive number from the environment variable `name`, or `fallback` when it is unset (benchmark knobs). */
export function knob(name: string, fallback: number): number {
  const raw = readProcessEnv()[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}: expected a positive number, got "${raw}"`);
  return n;
}
