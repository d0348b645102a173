/**
 * The integration suite runs once per engine: embedded PGlite always, PostgreSQL too when
 * `DATABASE_URL` is set. Each test file gets its own database: PGlite from a migrated template
 * dump (booting and migrating PGlite costs seconds, so it is paid once per test run), PostgreSQL
 * as a fresh database created and dropped around the file.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import {
  migrate,
  openDatabase,
  readMigrations,
  readProcessEnv,
  silentLogger,
  type Database,
  type Engine,
} from '../../src/kernel/index.ts';
import { migrationSources } from '../../src/platform.ts';

const env = readProcessEnv();

export interface TestDatabase {
  database: Database;
  /** For PostgreSQL: the URL of this file's own database (for child processes and proxies). */
  url: string | undefined;
  dispose(): Promise<void>;
}

export interface TestEngine {
  name: Engine;
  /** Opens a migrated, empty database for one test file. */
  open(): Promise<TestDatabase>;
  /** Opens a database without migrating it (for migrator tests). */
  openBlank(): Promise<TestDatabase>;
}

/** The engines this run covers; test names include `name` so the output says which ran. */
export function engines(): TestEngine[] {
  const list: TestEngine[] = [pgliteEngine];
  if (env['DATABASE_URL']) list.push(postgresEngine(env['DATABASE_URL']));
  return list;
}

/** The PostgreSQL admin URL, when the run has one. */
export function postgresUrl(): string | undefined {
  return env['DATABASE_URL'];
}

/** The NATS URL, when the run has one. */
export function natsUrl(): string | undefined {
  return env['NATS_URL'];
}

function templatePath(): string {
  const hash = createHash('sha256');
  for (const f of migrationSources().flatMap(readMigrations))
    hash.update(`${f.module}/${f.name}:${f.checksum}\n`);
  const dir = join(env['PUJIANG_TEST_CACHE'] ?? join(tmpdir(), 'pujiang-test-cache'));
  mkdirSync(dir, { recursive: true });
  return join(dir, `pglite-template-${hash.digest('hex').slice(0, 16)}.tar`);
}

async function pgliteTemplate(): Promise<Blob> {
  const path = templatePath();
  if (existsSync(path)) return new Blob([readFileSync(path)]);
  const database = await openDatabase({ memory: true, logger: silentLogger() });
  await migrate({ database, sources: migrationSources(), logger: silentLogger() });
  if (!database.dumpDataDir) throw new Error('embedded engine cannot dump its data directory');
  const dump = await database.dumpDataDir();
  await database.close();
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, Buffer.from(await dump.arrayBuffer()));
  renameSync(tmp, path);
  return dump;
}

const pgliteEngine: TestEngine = {
  name: 'pglite',
  async open() {
    const database = await openDatabase({
      memory: true,
      loadDataDir: await pgliteTemplate(),
      logger: silentLogger(),
    });
    return { database, url: undefined, dispose: () => database.close() };
  },
  async openBlank() {
    const database = await openDatabase({ memory: true, logger: silentLogger() });
    return { database, url: undefined, dispose: () => database.close() };
  },
};

/** Creates a throw-away database on the server at `adminUrl`; returns its URL and a dropper. */
export async function createScratchDatabase(
  adminUrl: string,
): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `pujiang_t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      try {
        await c.query(`drop database if exists ${name} with (force)`);
      } finally {
        await c.end();
      }
    },
  };
}

function postgresEngine(adminUrl: string): TestEngine {
  async function openScratch(migrated: boolean): Promise<TestDatabase> {
    const scratch = await createScratchDatabase(adminUrl);
    const database = await openDatabase({ databaseUrl: scratch.url, logger: silentLogger(), poolMax: 10 });
    if (migrated) await migrate({ database, sources: migrationSources(), logger: silentLogger() });
    return {
      database,
      url: scratch.url,
      async dispose() {
        await database.close();
        await scratch.drop();
      },
    };
  }
  return { name: 'postgres', open: () => openScratch(true), openBlank: () => openScratch(false) };
}
