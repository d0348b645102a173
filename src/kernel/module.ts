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
  /** Registers the module's routes and starts its background work. */
  start?(app: HttpServer, context: ModuleContext): Promise<void> | void;
  /** Stops background work; called in reverse module order at shutdown. */
  stop?(): Promise<void> | void;
}
