/**
 * The shape every Pujiang module plugs into the platform with: its migrations folder and its
 * routes. The composition root (`src/platform.ts`) lists modules in dependency order.
 */
import type { Config } from './config/config.ts';
import type { Database } from './db/database.ts';
import type { EventBus } from './bus/bus.ts';
import type { HttpServer } from './http/server.ts';
import type { Logger } from './log/logger.ts';
import type { Metrics } from './metrics/metrics.ts';

/** What a module receives at start-up. */
export interface ModuleContext {
  config: Config;
  logger: Logger;
  metrics: Metrics;
  database: Database;
  bus: EventBus;
}

export interface PlatformModule {
  /** Module name; also the PostgreSQL schema its tables live in. */
  name: string;
  /** Folder of forward-only `NNNN_name.sql` migrations, if the module owns tables. */
  migrationsDir?: string;
  /**
   * Registers the module's routes and starts its background work. May return a handle whose
   * `stop` the platform calls at shutdown, in reverse module order. One module object may be
   * started by several platforms in one process (tests), so per-start state lives in the handle.
   */
  // eslint-disable-next-line @typescript-eslint/no-invalid-void-type -- a module without background work returns nothing
  start?(app: HttpServer, context: ModuleContext): Promise<ModuleHandle | void> | ModuleHandle | void;
}

export interface ModuleHandle {
  stop(): Promise<void> | void;
}
