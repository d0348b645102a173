/**
 * A Kysely dialect for PGlite (PostgreSQL compiled to WASM). PGlite is one backend process, so
 * the driver hands out its single connection to one user at a time (a FIFO mutex); a transaction
 * keeps the connection until it commits or rolls back, exactly as a pooled `pg` client would.
 * The SQL is PostgreSQL's: the adapter, compiler and introspector are Kysely's own.
 */
import type { PGlite } from '@electric-sql/pglite';
import {
  CompiledQuery,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  type Kysely,
  type QueryResult,
  type TransactionSettings,
} from 'kysely';

/** First-in, first-out lock; `waiting` feeds the pool metrics. */
export class Mutex {
  #locked = false;
  readonly #queue: (() => void)[] = [];

  get waiting(): number {
    return this.#queue.length;
  }

  get locked(): boolean {
    return this.#locked;
  }

  /**
   * Waits for the lock. With `timeoutMs`, gives up with an error instead of waiting forever: on a
   * single connection, database use nested inside a transaction callback would otherwise hang.
   */
  async lock(timeoutMs?: number): Promise<void> {
    if (!this.#locked) {
      this.#locked = true;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const waiter = () => {
        if (timer) clearTimeout(timer);
        resolve();
      };
      const timer =
        timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              const i = this.#queue.indexOf(waiter);
              if (i >= 0) this.#queue.splice(i, 1);
              reject(
                new Error(
                  `timed out after ${timeoutMs} ms waiting for the embedded database connection ` +
                    '(is the database used outside the transaction inside a transaction callback?)',
                ),
              );
            }, timeoutMs);
      this.#queue.push(waiter);
    });
  }

  unlock(): void {
    const next = this.#queue.shift();
    if (next) next();
    else this.#locked = false;
  }
}

class PGliteConnection implements DatabaseConnection {
  readonly #pg: PGlite;
  constructor(pg: PGlite) {
    this.#pg = pg;
  }

  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    // Parameterless raw SQL (migrations, scripts) may hold several statements: run it with the
    // simple protocol, as node-postgres does, and answer with the last statement's result.
    if (query.parameters.length === 0 && query.query.kind === 'RawNode') {
      const results = await this.#pg.exec(query.sql);
      const last = results[results.length - 1];
      return {
        rows: (last?.rows ?? []) as R[],
        ...(last?.affectedRows !== undefined ? { numAffectedRows: BigInt(last.affectedRows) } : {}),
      };
    }
    const result = await this.#pg.query<R>(query.sql, query.parameters as unknown[]);
    return {
      rows: result.rows,
      ...(result.affectedRows !== undefined ? { numAffectedRows: BigInt(result.affectedRows) } : {}),
    };
  }
  // eslint-disable-next-line require-yield
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error('PGlite does not support streaming queries; page with keyset pagination instead');
  }
}

class PGliteDriver implements Driver {
  readonly #pg: PGlite;
  readonly #mutex: Mutex;
  readonly #connection: PGliteConnection;
  readonly #acquireTimeoutMs: number;

  constructor(pg: PGlite, mutex: Mutex, acquireTimeoutMs: number) {
    this.#pg = pg;
    this.#mutex = mutex;
    this.#connection = new PGliteConnection(pg);
    this.#acquireTimeoutMs = acquireTimeoutMs;
  }

  async init(): Promise<void> {
    await this.#pg.waitReady;
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    await this.#mutex.lock(this.#acquireTimeoutMs);
    return this.#connection;
  }

  async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    let text = 'begin';
    if (settings.isolationLevel) text += ` isolation level ${settings.isolationLevel}`;
    if (settings.accessMode) text += ` ${settings.accessMode}`;
    await connection.executeQuery(CompiledQuery.raw(text));
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('commit'));
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('rollback'));
  }

  async savepoint(connection: DatabaseConnection, name: string): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw(`savepoint "${name.replace(/"/g, '""')}"`));
  }

  async rollbackToSavepoint(connection: DatabaseConnection, name: string): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw(`rollback to savepoint "${name.replace(/"/g, '""')}"`));
  }

  async releaseSavepoint(connection: DatabaseConnection, name: string): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw(`release savepoint "${name.replace(/"/g, '""')}"`));
  }
  async releaseConnection(): Promise<void> {
    this.#mutex.unlock();
  }

  async destroy(): Promise<void> {
    // Wait for whoever holds the connection, then close the backend.
    await this.#mutex.lock();
    try {
      if (!this.#pg.closed) await this.#pg.close();
    } finally {
      this.#mutex.unlock();
    }
  }
}

/** A Kysely dialect over an open PGlite instance; the mutex is shared so callers can read its queue. */
export class PGliteDialect implements Dialect {
  readonly #pg: PGlite;
  readonly #mutex: Mutex;
  readonly #acquireTimeoutMs: number;

  /** `acquireTimeoutMs`: how long a caller waits for the connection before failing. */
  constructor(pg: PGlite, mutex: Mutex, acquireTimeoutMs = 30_000) {
    this.#pg = pg;
    this.#mutex = mutex;
    this.#acquireTimeoutMs = acquireTimeoutMs;
  }

  createAdapter() {
    return new PostgresAdapter();
  }
  createDriver(): Driver {
    return new PGliteDriver(this.#pg, this.#mutex, this.#acquireTimeoutMs);
  }
  createQueryCompiler() {
    return new PostgresQueryCompiler();
  }
  createIntrospector(db: Kysely<unknown>) {
    return new PostgresIntrospector(db);
  }
}
