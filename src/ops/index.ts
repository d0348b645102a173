/**
 * The ops module's public surface (一网统管): cases from report to evaluation on the `ops.case`
 * workflow, routing by the responsibility matrix, three levels of operations centres with SLA
 * escalation, supervision and statistics, the in-app feed and webhooks, and Open311 GeoReport v2
 * for citizen reporting apps.
 */
import { fileURLToPath } from 'node:url';
import type { PlatformModule } from '../kernel/index.ts';
import { createTrustRuntime } from '../trust/index.ts';
import { DEFINITION_ROLES, ensureDefinition } from '../workflow/index.ts';
import { registerCaseRoutes } from './case.routes.ts';
import { createOpsRuntime } from './case.service.ts';
import { CASE_WORKFLOW, TASK_WORKFLOW } from './case.workflow.ts';
import { loadDirectory } from './directory.ts';
import { startWebhooks } from './notify.service.ts';
import { registerOpen311Routes } from './open311.routes.ts';
import { seedRoutingFromOrganisations } from './routing.service.ts';

export { CASE_WORKFLOW, TASK_WORKFLOW, CASE_WORKFLOW_KEY } from './case.workflow.ts';
export { createCase, getCase, listCases, actOnCase, createOpsRuntime } from './case.service.ts';
export type { OpsRuntime } from './case.service.ts';
export { routeCase } from './routing.service.ts';
export { OPEN311_PREFIX } from './open311.routes.ts';

/** The ops module: migrations, the shipped case workflow, the demo matrix, routes and webhooks. */
export const opsModule: PlatformModule = {
  name: 'ops',
  migrationsDir: fileURLToPath(new URL('./migrations/', import.meta.url)),
  async start(app, { config, database, logger, metrics, bus }) {
    // The shipped definitions: a new version only when their content changed since the last start.
    await ensureDefinition(database, CASE_WORKFLOW, { roles: DEFINITION_ROLES });
    await ensureDefinition(database, TASK_WORKFLOW, { roles: DEFINITION_ROLES });
    if (config.mode === 'demo') {
      const seeded = await seedRoutingFromOrganisations(database);
      if (seeded > 0) logger.info({ rules: seeded }, 'demo responsibility matrix seeded');
    }
    await loadDirectory(database, { force: true });
    const rt = createOpsRuntime(database, { mediaDir: config.mediaDir, mediaMaxBytes: config.mediaMaxBytes });
    const trust = createTrustRuntime(config, database);
    registerCaseRoutes(app, trust, rt, { webhookPrivate: config.twinNotifyPrivate });
    await registerOpen311Routes(app, trust, rt);
    const webhooks = await startWebhooks({
      database,
      bus,
      logger,
      metrics,
      timeoutMs: config.opsWebhookTimeoutMs,
      allowPrivate: config.twinNotifyPrivate,
    });
    return { stop: () => webhooks.stop() };
  },
};
