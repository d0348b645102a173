/**
 * The composition root: opens storage, migrates, connects the bus, starts the outbox relay and
 * the HTTP server, and stops them in reverse order. The CLI and the tests start Pujiang here.
 */
import { readFileSync } from 'node:fs';
import fastifyStatic from '@fastify/static';
import { fileURLToPath } from 'node:url';
import {
  createHttpServer,
  createLocalBus,
  createMetrics,
  createNatsBus,
  createOutboxRelay,
  deadLetterSink,
  engineOf,
  isMigrated,
  migrate,
  openDatabase,
  registerCodeRoutes,
  registerSystemRoutes,
  type Config,
  type Database,
  type EventBus,
  type HttpServer,
  type Logger,
  type MigrationSource,
  type Metrics,
  type OutboxRelay,
  type PlatformModule,
} from './kernel/index.ts';
import { trustModule } from './trust/index.ts';
import { opsModule } from './ops/index.ts';
import { twinModule } from './twin/index.ts';
import { workflowModule } from './workflow/index.ts';

/** Modules in dependency order; later issues add workflow, iot, ops, services, data, sim. */
export const MODULES: PlatformModule[] = [
  { name: 'kernel', migrationsDir: fileURLToPath(new URL('./kernel/db/migrations/', import.meta.url)) },
  trustModule,
  workflowModule,
  twinModule,
  opsModule,
];

export function migrationSources(modules: PlatformModule[] = MODULES): MigrationSource[] {
  return modules.flatMap((m) => (m.migrationsDir ? [{ module: m.name, dir: m.migrationsDir }] : []));
}

export const VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

export interface Platform {
  config: Config;
  logger: Logger;
  metrics: Metrics;
  database: Database;
  bus: EventBus;
  relay: OutboxRelay;
  http: HttpServer;
  /** The address the server listens on, once `listen` was asked for. */
  url: string | undefined;
  /** Graceful stop: refuse new requests, finish in-flight ones, relay the outbox, close everything. */
  stop(): Promise<void>;
}

export interface StartOptions {
  config: Config;
  logger: Logger;
  /** Bind the HTTP port (false in in-process HTTP tests, which use `inject`). */
  listen?: boolean;
  /** Start the outbox relay loop (tests of the crash case turn it off). */
  relay?: boolean;
  /** Open an existing database instead of the one the config names (tests share one per file). */
  database?: Database;
  modules?: PlatformModule[];
}

/** Starts the platform; on failure closes what it opened and throws a message an operator can act on. */
export async function startPlatform(options: StartOptions): Promise<Platform> {
  const { config, logger } = options;
  const modules = options.modules ?? MODULES;
  const metrics = createMetrics();
  const opened: (() => Promise<void>)[] = [];
  let server: HttpServer | undefined;
  const closeOpened = async () => {
    for (const close of opened.splice(0).reverse())
      await close().catch((e: unknown) =>
        logger.warn({ err: (e as Error).message }, 'error while shutting down'),
      );
  };
  try {
    const database =
      options.database ??
      (await openDatabase({
        databaseUrl: config.databaseUrl,
        dataDir: config.dataDir,
        memory: config.memory,
        poolMax: config.databasePoolMax,
        statementTimeoutMs: config.statementTimeoutMs,
        logger,
      }));
    if (!options.database) opened.push(() => database.close());
    const sources = migrationSources(modules);
    const report = await migrate({ database, sources, logger });
    logger.info(
      { engine: database.engine, applied: report.applied.length, alreadyApplied: report.alreadyApplied },
      'storage ready',
    );

    const deadLetter = deadLetterSink(database);
    const bus = config.natsUrl
      ? await createNatsBus({
          url: config.natsUrl,
          stream: config.natsStream,
          connectTimeoutMs: config.natsConnectTimeoutMs,
          logger,
          metrics,
          deadLetter,
        })
      : createLocalBus({ logger, metrics, deadLetter });
    opened.push(() => bus.close());

    const relay = createOutboxRelay({
      database,
      bus,
      logger,
      metrics,
      pollMs: config.outboxPollMs,
      batchSize: config.outboxBatchSize,
      retentionHours: config.outboxRetentionHours,
    });

    registerPlatformGauges({ metrics, database, relay, bus });
    const http = await createHttpServer({ config, logger, metrics, version: VERSION });
    server = http;
    let shuttingDown = false;
    registerSystemRoutes(http, {
      metrics,
      info: () => ({
        name: 'pujiang',
        version: VERSION,
        mode: config.mode,
        engine: engineOf(config),
        bus: bus.kind,
        modules: modules.map((m) => m.name),
      }),
      readiness: async () => {
        const checks: Record<string, { ok: boolean; detail?: string }> = {};
        try {
          await database.ping();
          checks['database'] = { ok: true };
          checks['migrations'] = (await isMigrated(database, sources))
            ? { ok: true }
            : { ok: false, detail: 'pending migrations' };
        } catch {
          checks['database'] = { ok: false, detail: 'unreachable' };
        }
        // The bus being away does not stop the API: events wait in the outbox. Reported, not gating.
        const busOk = bus.connected();
        checks['bus'] = busOk
          ? { ok: true }
          : { ok: true, detail: 'disconnected; events wait in the outbox' };
        checks['shutdown'] = shuttingDown ? { ok: false, detail: 'shutting down' } : { ok: true };
        return { ready: Object.values(checks).every((c) => c.ok), checks };
      },
    });
    registerCodeRoutes(http);
    await registerConsole(http);
    const context = { config, logger, metrics, database, bus };
    for (const m of modules) {
      const handle = await m.start?.(http, context);
      if (handle) opened.push(async () => handle.stop());
    }
    // The relay starts once every module has subscribed (an event relayed to a bus without its
    // consumers would be marked relayed and missed), and stops before they do, draining first.
    if (options.relay ?? true) relay.start();
    opened.push(() => relay.stop());
    await http.ready();

    let url: string | undefined;
    if (options.listen ?? true) {
      url = await http.listen({ host: config.host, port: config.port });
      logger.info({ url, mode: config.mode, engine: database.engine, bus: bus.kind }, 'Pujiang is listening');
    }
    let stopping: Promise<void> | undefined;
    return {
      config,
      logger,
      metrics,
      database,
      bus,
      relay,
      http,
      url,
      stop() {
        stopping ??= (async () => {
          shuttingDown = true;
          // Stop taking requests and finish in-flight ones first: they may still commit events.
          await http.close();
          await closeOpened();
        })();
        return stopping;
      },
    };
  } catch (e) {
    await server?.close().catch(() => undefined);
    await closeOpened();
    throw e;
  }
}

/** Serves the console's static files from `web/` (`/` and `/web/*`); hidden from the API document. */
async function registerConsole(http: HttpServer): Promise<void> {
  await http.register(fastifyStatic, {
    root: fileURLToPath(new URL('../web/', import.meta.url)),
    prefix: '/web/',
    index: false,
    wildcard: false,
    schemaHide: true,
  });
  http.get('/', { schema: { hide: true } }, (_request, reply) => reply.sendFile('index.html'));
}

function registerPlatformGauges(args: {
  metrics: Metrics;
  database: Database;
  relay: OutboxRelay;
  bus: EventBus;
}): void {
  const { metrics, database, relay, bus } = args;
  metrics.gauge({
    name: 'pujiang_db_pool_connections',
    help: 'Database connections by state (total, idle, waiting callers)',
    labelNames: ['state'],
    collect(g) {
      const s = database.stats();
      g.set({ state: 'total' }, s.total);
      g.set({ state: 'idle' }, s.idle);
      g.set({ state: 'waiting' }, s.waiting);
    },
  });
  metrics.gauge({
    name: 'pujiang_outbox_pending_events',
    help: 'Committed events not yet relayed to the bus',
    async collect(g) {
      g.set((await relay.backlog()).pending);
    },
  });
  metrics.gauge({
    name: 'pujiang_bus_lag_seconds',
    help: 'Age of the oldest committed event not yet relayed to the bus (0 when none)',
    async collect(g) {
      g.set((await relay.backlog()).oldestAgeSeconds);
    },
  });
  metrics.gauge({
    name: 'pujiang_bus_connected',
    help: '1 when the event bus accepts publishes',
    collect(g) {
      g.set(bus.connected() ? 1 : 0);
    },
  });
}
