/** The kernel's public surface: everything other modules may import from the kernel. */
export {
  loadConfig,
  readProcessEnv,
  engineOf,
  redact,
  ConfigError,
  KNOWN_VARIABLES,
  DEMO_SECRET,
} from './config/config.ts';
export type { Config, Mode, LogLevel } from './config/config.ts';
export { createLogger, silentLogger } from './log/logger.ts';
export type { Logger } from './log/logger.ts';
export { AppError, Errors, defineErrors, errorCatalogue, findError, isAppError } from './errors/errors.ts';
export type { ErrorSpec } from './errors/errors.ts';
export { openDatabase, afterCommit, isConnectionError, toDatabaseError } from './db/database.ts';
export type { Database, Engine, PoolStats } from './db/database.ts';
export type { KernelTables } from './db/tables.ts';
export { bulkInsert } from './db/bulk.ts';
export type { QueryExecutorLike } from './db/bulk.ts';
export { writeWith, insertRows } from './db/riders.ts';
export { createCoalescer } from './db/coalesce.ts';
export type { Rider } from './db/riders.ts';
export { migrate, isMigrated, readMigrations, assertPostgisAvailable } from './db/migrator.ts';
export type { MigrationSource, MigrationReport } from './db/migrator.ts';
export { makeEvent, topicMatches } from './bus/bus.ts';
export type { BusEvent, EventBus, Subscription, DeadLetterSink } from './bus/bus.ts';
export { createLocalBus } from './bus/local-bus.ts';
export { createNatsBus } from './bus/nats-bus.ts';
export { enqueueEvent, outboxRider, consumeOnce, createOutboxRelay, deadLetterSink } from './bus/outbox.ts';
export type { OutboxRelay } from './bus/outbox.ts';
export { createMetrics } from './metrics/metrics.ts';
export type { Metrics } from './metrics/metrics.ts';
export { createHttpServer } from './http/server.ts';
export type { HttpServer } from './http/server.ts';
export { sendProblem, toAppError, PROBLEM_CONTENT_TYPE } from './http/problem.ts';
export type { Problem } from './http/problem.ts';
export { registerSystemRoutes } from './http/system.routes.ts';
export type { ReadinessCheck } from './http/system.routes.ts';
export {
  checkDivisionCode,
  checkResidentId,
  checkCreditCode,
  checkComponentId,
  assertValid,
  maskResidentId,
  residentIdCheckChar,
  creditCodeCheckChar,
  organisationCodeCheckChar,
} from './codes/codes.ts';
export type {
  CodeCheck,
  DivisionInfo,
  ResidentIdInfo,
  CreditCodeInfo,
  ComponentIdInfo,
} from './codes/codes.ts';
export { referenceData, parseSimpleCsv, readReferenceFile } from './codes/reference.ts';
export type { Division, CategoryClass, ReferenceData } from './codes/reference.ts';
export { registerCodeRoutes } from './codes/codes.routes.ts';
export type { PlatformModule, ModuleContext, ModuleHandle } from './module.ts';
