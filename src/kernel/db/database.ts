/**
 * Storage: one SQL dialect (PostgreSQL + PostGIS) on two engines. Embedded PGlite by default,
 * node-postgres when `DATABASE_URL` is set. Both are reached through Kysely, with the same type
 * parsers, so a query returns the same JavaScript values whichever engine runs it.
 */
import { mkdirSync } from 'node:fs';
import { Kysely, type Transaction } from 'kysely';
import { PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Logger } from '../log/logger.ts';
import { AppError, Errors } from '../errors/errors.ts';
import { Mutex, PGliteDialect } from './pglite-dialect.ts';
import type { KernelTables } from './tables.ts';

export type Engine = 'pglite' | 'postgres';

export interface PoolStats {
  /** Open connections (PGlite: always 1). */
  total: number;
  /** Connections not in use. */
  idle: number;
  /** Callers waiting for a connection. */
  waiting: number;
}

/** The storage port every module receives. */
export interface Database {
  readonly engine: Engine;
  /** Typed query builder over the kernel's tables; modules add theirs with `db.withTables<T>()`. */
  readonly db: Kysely<KernelTables>;
  /**
   * Runs `fn` in one transaction, then the callbacks registered on it with `afterCommit`.
   * If `fn` throws, the transaction rolls back and the callbacks are dropped.
   */
  transact<T>(fn: (trx: Transaction<KernelTables>) => Promise<T>): Promise<T>;
  /** Resolves when the engine answers a trivial query; throws `database-unavailable` otherwise. */
  ping(): Promise<void>;
  stats(): PoolStats;
  /** The raw driver, bypassing Kysely: for benchmark baselines and diagnostics only. */
  raw(sql: string, params?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
  /** PGlite only: a tar dump of the data directory (a migrated template for tests, or a backup). */
  dumpDataDir?(): Promise<Blob>;
  close(): Promise<void>;
}

export interface OpenDatabaseOptions {
  /** PostgreSQL URL; when absent the embedded engine is used. */
  databaseUrl?: string | undefined;
  /** Directory of the embedded store; ignored when `memory` or `databaseUrl` is set. */
  dataDir?: string | undefined;
  memory?: boolean;
  /** A PGlite data directory dump (tar) to start from, e.g. a migrated template in tests. */
  loadDataDir?: Blob | undefined;
  poolMax?: number;
  statementTimeoutMs?: number;
  /** How long to wait for a pooled connection before failing with `database-unavailable` (PostgreSQL). */
  connectTimeoutMs?: number;
  logger: Logger;
}

const INT8 = 20;
const NUMERIC = 1700;
const DATE = 1082;

/** Value parsing shared by both engines: bigint and numeric as numbers, dates as ISO strings. */
const parseNumber = (v: string): number => Number(v);
const parseDate = (v: string): string => v;

const commitHooks = new WeakMap<object, (() => void)[]>();

/**
 * Schedules `callback` to run once the transaction `trx` (opened by `Database.transact`) has
 * committed; it never runs if the transaction rolls back. Used to wake the outbox relay.
 */
export function afterCommit(trx: object, callback: () => void): void {
  const list = commitHooks.get(trx) ?? [];
  list.push(callback);
  commitHooks.set(trx, list);
}

/** Opens the engine the options select; fails with a clear message if it cannot be reached. */
export async function openDatabase(options: OpenDatabaseOptions): Promise<Database> {
  return options.databaseUrl
    ? openPostgres({ ...options, databaseUrl: options.databaseUrl })
    : openPGlite(options);
}

function makeDatabase(args: {
  engine: Engine;
  kysely: Kysely<KernelTables>;
  stats: () => PoolStats;
  raw: Database['raw'];
  close: () => Promise<void>;
  dumpDataDir?: () => Promise<Blob>;
}): Database {
  const { kysely } = args;
  return {
    engine: args.engine,
    db: kysely,
    async transact(fn) {
      let current: object | undefined;
      const result = await kysely.transaction().execute((trx) => {
        current = trx;
        return fn(trx);
      });
      const hooks = current ? commitHooks.get(current) : undefined;
      if (current) commitHooks.delete(current);
      for (const hook of hooks ?? []) hook();
      return result;
    },
    async ping() {
      try {
        await args.raw('select 1');
      } catch (e) {
        throw toDatabaseError(e);
      }
    },
    stats: args.stats,
    raw: args.raw,
    close: args.close,
    ...(args.dumpDataDir ? { dumpDataDir: args.dumpDataDir } : {}),
  };
}

async function openPGlite(options: OpenDatabaseOptions): Promise<Database> {
  const { PGlite } = await import('@electric-sql/pglite');
  const { postgis } = await import('@electric-sql/pglite-postgis');
  const dataDir = options.memory || !options.dataDir ? undefined : options.dataDir;
  if (dataDir) mkdirSync(dataDir, { recursive: true });
  const pglite = await PGlite.create({
    ...(dataDir ? { dataDir } : {}),
    ...(options.loadDataDir ? { loadDataDir: options.loadDataDir } : {}),
    extensions: { postgis },
    parsers: { [INT8]: parseNumber, [NUMERIC]: parseNumber, [DATE]: parseDate },
  });
  const mutex = new Mutex();
  const acquireTimeoutMs = options.statementTimeoutMs ?? 30_000;
  const kysely = new Kysely<KernelTables>({ dialect: new PGliteDialect(pglite, mutex, acquireTimeoutMs) });
  return makeDatabase({
    engine: 'pglite',
    kysely,
    stats: () => ({ total: 1, idle: mutex.locked ? 0 : 1, waiting: mutex.waiting }),
    async raw(text, params) {
      await mutex.lock(acquireTimeoutMs);
      try {
        const r = await pglite.query<Record<string, unknown>>(text, params ?? []);
        return { rows: r.rows };
      } finally {
        mutex.unlock();
      }
    },
    close: () => kysely.destroy(),
    async dumpDataDir() {
      await mutex.lock();
      try {
        return await pglite.dumpDataDir('none');
      } finally {
        mutex.unlock();
      }
    },
  });
}

async function openPostgres(options: OpenDatabaseOptions & { databaseUrl: string }): Promise<Database> {
  // pg types its parser table by an enum of OIDs; we key by plain numbers, as PGlite does.
  const defaultParser = pg.types.getTypeParser as unknown as (
    oid: number,
    format?: string,
  ) => (v: string) => unknown;
  const typeParsers = {
    getTypeParser: (oid: number, format?: string) => {
      if (oid === INT8 || oid === NUMERIC) return parseNumber;
      if (oid === DATE) return parseDate;
      return defaultParser(oid, format);
    },
  } as unknown as pg.CustomTypesConfig;
  const pool = new pg.Pool({
    connectionString: options.databaseUrl,
    max: options.poolMax ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
    idleTimeoutMillis: 30_000,
    statement_timeout: options.statementTimeoutMs ?? 30_000,
    application_name: 'pujiang',
    types: typeParsers,
  });
  // An idle client losing its server emits 'error' on the pool; without a listener Node would
  // crash the process. The next query reconnects, and requests meanwhile get a 503.
  pool.on('error', (err) => options.logger.warn({ err: err.message }, 'database connection lost'));
  // A checked-out client that loses its server emits 'error' on itself: the query in flight
  // fails (503 to its caller); without this listener the process would crash.
  pool.on('connect', (client) => {
    client.on('error', (err) => options.logger.warn({ err: err.message }, 'database connection lost'));
  });
  const kysely = new Kysely<KernelTables>({ dialect: new PostgresDialect({ pool }) });
  const db = makeDatabase({
    engine: 'postgres',
    kysely,
    stats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
    async raw(text, params) {
      const r = await pool.query<Record<string, unknown>>(text, params);
      return { rows: r.rows };
    },
    close: () => kysely.destroy(),
  });
  try {
    await db.raw('select 1');
  } catch (e) {
    await kysely.destroy().catch(() => undefined);
    throw new Error(
      `cannot reach PostgreSQL at ${safeTarget(options.databaseUrl)}: ${(e as Error).message || String(e)}. ` +
        'Check DATABASE_URL and that the server is running and accepts connections.',
      { cause: e },
    );
  }
  return db;
}

function safeTarget(u: string): string {
  try {
    const p = new URL(u);
    return `${p.hostname}:${p.port || '5432'}${p.pathname}`;
  } catch {
    return '(unparseable DATABASE_URL)';
  }
}

const CONNECTION_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now
  '53300', // too_many_connections
]);

/** True when an error means the database cannot be reached (as opposed to a bad statement). */
export function isConnectionError(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string' && (CONNECTION_ERROR_CODES.has(code) || code.startsWith('08'))) return true;
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|PGlite is closed|waiting for the embedded database connection/i.test(
    e.message,
  );
}

/** True when PostgreSQL cancelled a statement for running past `statement_timeout`. */
export function isStatementTimeout(e: unknown): boolean {
  return e instanceof Error && (e as { code?: unknown }).code === '57014';
}

/** Maps a driver error to the client-safe error the HTTP layer renders; passes others through. */
export function toDatabaseError(e: unknown): unknown {
  if (isConnectionError(e))
    return new AppError(Errors['database-unavailable'], {
      detail: 'The database cannot be reached at the moment.',
      retryAfter: 5,
      cause: e,
    });
  if (isStatementTimeout(e))
    return new AppError(Errors['handler-timeout'], {
      detail: 'A database statement ran too long.',
      cause: e,
    });
  return e;
}
