/**
 * Forward-only SQL migrations, one folder per module (`src/<module>/migrations/NNNN_name.sql`),
 * applied in module order at start-up under a PostgreSQL advisory lock, so replicas starting
 * together apply each file once. Each file runs in its own transaction and is recorded with its
 * checksum; an applied file that later changes, or an applied file that is missing, stops start-up
 * rather than letting code and schema drift apart.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'kysely';
import type { Logger } from '../log/logger.ts';
import type { Database } from './database.ts';

export interface MigrationSource {
  /** Module name, e.g. `kernel`; also the schema the module owns. */
  module: string;
  /** Folder holding the module's `NNNN_name.sql` files. */
  dir: string;
}

export interface MigrationFile {
  module: string;
  name: string;
  sql: string;
  checksum: string;
}

export interface MigrationReport {
  applied: string[];
  alreadyApplied: number;
}

/** Arbitrary but fixed key for `pg_advisory_lock`: "pujiang migrations". */
const LOCK_KEY = 7_242_018_311;
const FILE_PATTERN = /^\d{4}_[a-z0-9_]+\.sql$/;

/** Reads a module's migration files in order; throws on a file whose name breaks the pattern. */
export function readMigrations(source: MigrationSource): MigrationFile[] {
  let names: string[];
  try {
    names = readdirSync(source.dir).filter((n) => n.endsWith('.sql'));
  } catch {
    return [];
  }
  return names.sort().map((name) => {
    if (!FILE_PATTERN.test(name))
      throw new Error(`migration ${source.module}/${name}: file names must look like 0001_create_things.sql`);
    const text = readFileSync(join(source.dir, name), 'utf8');
    return {
      module: source.module,
      name,
      sql: text,
      checksum: createHash('sha256').update(text).digest('hex'),
    };
  });
}

/** Fails with an operator-readable message when PostGIS cannot be enabled on this server. */
export async function assertPostgisAvailable(database: Database): Promise<void> {
  const { rows } = await database.raw(
    "select exists (select 1 from pg_available_extensions where name = 'postgis') as available",
  );
  if (rows[0]?.['available'] !== true)
    throw new Error(
      'PostGIS is not installed on this PostgreSQL server. Install it (for example the ' +
        'postgresql-15-postgis-3 package) and run "create extension postgis" as a superuser in the database.',
    );
}

/**
 * Applies pending migrations from `sources` in order. Never runs a file twice; throws with the
 * file name when a file fails (its transaction is rolled back) or history and files disagree.
 */
export async function migrate(options: {
  database: Database;
  sources: MigrationSource[];
  logger: Logger;
}): Promise<MigrationReport> {
  const { database, logger } = options;
  const files = options.sources.flatMap(readMigrations);
  await assertPostgisAvailable(database);
  return database.db.connection().execute(async (conn) => {
    // Waiting for another replica's migrations, or building an index, may outlast the pool's
    // statement timeout: lift it on this connection for the duration.
    await sql`set statement_timeout = 0`.execute(conn);
    await sql`select pg_advisory_lock(${LOCK_KEY})`.execute(conn);
    try {
      await sql`create schema if not exists kernel`.execute(conn);
      await sql`create table if not exists kernel.migrations (
        module text not null,
        name text not null,
        checksum text not null,
        applied_at timestamptz not null default now(),
        primary key (module, name)
      )`.execute(conn);
      const applied = await conn.selectFrom('kernel.migrations').selectAll().execute();
      const appliedByKey = new Map(applied.map((m) => [`${m.module}/${m.name}`, m]));
      const fileKeys = new Set(files.map((f) => `${f.module}/${f.name}`));
      const knownModules = new Set(options.sources.map((s) => s.module));
      for (const m of applied) {
        if (knownModules.has(m.module) && !fileKeys.has(`${m.module}/${m.name}`))
          throw new Error(
            `migration ${m.module}/${m.name} is recorded as applied but its file is missing: ` +
              'this database was migrated by a newer or different version of Pujiang',
          );
      }
      const report: MigrationReport = { applied: [], alreadyApplied: 0 };
      for (const file of files) {
        const key = `${file.module}/${file.name}`;
        const done = appliedByKey.get(key);
        if (done) {
          if (done.checksum !== file.checksum)
            throw new Error(
              `migration ${key} changed after it was applied (checksum differs); ` +
                'migrations are forward-only: add a new file instead of editing an applied one',
            );
          report.alreadyApplied++;
          continue;
        }
        const started = performance.now();
        await conn.transaction().execute(async (trx) => {
          await sql`create schema if not exists ${sql.id(file.module)}`.execute(trx);
          try {
            await sql.raw(file.sql).execute(trx);
          } catch (e) {
            throw new Error(`migration ${key} failed: ${(e as Error).message}`, { cause: e });
          }
          await trx
            .insertInto('kernel.migrations')
            .values({ module: file.module, name: file.name, checksum: file.checksum })
            .execute();
        });
        logger.info({ migration: key, ms: Math.round(performance.now() - started) }, 'migration applied');
        report.applied.push(key);
      }
      return report;
    } finally {
      // Must not hide the error that brought us here.
      await sql`select pg_advisory_unlock(${LOCK_KEY})`.execute(conn).catch(() => undefined);
      await sql`reset statement_timeout`.execute(conn).catch(() => undefined);
    }
  });
}

/** True when every migration file of `sources` is recorded as applied. */
export async function isMigrated(database: Database, sources: MigrationSource[]): Promise<boolean> {
  const files = sources.flatMap(readMigrations);
  const { rows } = await database.raw("select to_regclass('kernel.migrations') is not null as present");
  if (rows[0]?.['present'] !== true) return files.length === 0;
  const applied = await database.db.selectFrom('kernel.migrations').select(['module', 'name']).execute();
  const set = new Set(applied.map((m) => `${m.module}/${m.name}`));
  return files.every((f) => set.has(`${f.module}/${f.name}`));
}
