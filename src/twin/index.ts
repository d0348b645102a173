/**
 * The twin module's public surface (数字孪生底座): the NGSI-LD context broker under `/ngsi-ld/v1`
 * (entities, attributes, batch operations, query, discovery, @context management, tenants) and
 * the native tenant administration under `/api/v1/twin`. Later modules read and write twin
 * entities through the services exported here, never through the tables.
 */
import { fileURLToPath } from 'node:url';
import type { Database, PlatformModule } from '../kernel/index.ts';
import { createTrustRuntime } from '../trust/index.ts';
import { existingEntityIds, findHostedContext } from './entity.store.ts';
import { createContextResolver } from './ldcontext.ts';
import { registerNgsiRoutes } from './ngsi.routes.ts';
import { registerTenantRoutes } from './tenants.routes.ts';
import { maintainHistory } from './temporal.service.ts';
import { startNotifier } from './notify.service.ts';

export { NgsiError, NGSI_ERROR_BASE } from './errors.ts';
export type { NgsiErrorType } from './errors.ts';
export type { TwinRuntime, TwinCall } from './entity.service.ts';
export { NGSI_PREFIX } from './ngsi.routes.ts';

/** The twin module: migrations, the NGSI-LD API and tenant administration. */
export const twinModule: PlatformModule = {
  name: 'twin',
  migrationsDir: fileURLToPath(new URL('./migrations/', import.meta.url)),
  async start(app, { config, database, logger, bus, metrics }) {
    const contexts = createContextResolver({
      timeoutMs: config.twinContextTimeoutMs,
      maxBytes: config.twinContextMaxBytes,
      hosted: { get: async (id) => (await findHostedContext(database.db, id))?.body },
    });
    const rt = {
      database,
      access: config.twinAccess,
      maxBatch: config.twinMaxBatch,
      trust: createTrustRuntime(config, database),
      contexts,
      bodyLimitBytes: config.bodyLimitBytes,
      notifyPrivate: config.twinNotifyPrivate,
    };
    await registerNgsiRoutes(app, rt);
    registerTenantRoutes(app, rt);
    const history = maintainHistory(database, logger);
    await history.ready;
    const notifier = await startNotifier({
      database,
      bus,
      logger,
      metrics,
      contexts,
      allowPrivate: config.twinNotifyPrivate,
      timeoutMs: config.twinNotifyTimeoutMs,
      maxAttempts: config.twinNotifyMaxAttempts,
      concurrency: config.twinNotifyConcurrency,
    });
    return {
      async stop() {
        history.stop();
        await notifier.stop();
      },
    };
  },
};
export { createNotifier, parseEndpoint } from './notify.transport.ts';
export type { Notifier, Endpoint, SendOutcome } from './notify.transport.ts';

/** Which of `ids` are entities of the twin's default tenant (for modules linking records to entities). */
export async function existingEntities(database: Database, ids: readonly string[]): Promise<Set<string>> {
  return existingEntityIds(database.db, '', ids);
}
