/**
 * The trust module's public surface (数字信任): areas (jurisdictions), organisations, identity,
 * authorization decided in one place, and the verifiable audit trail. Later modules import from
 * here only: `callContext` for a request's actor, `authorize`/`can`/`jurisdictionFilter` for
 * decisions, `recordAudit` in the transaction of every change.
 */
import { fileURLToPath } from 'node:url';
import type { Config, Database, PlatformModule } from '../kernel/index.ts';
import { registerAreaRoutes } from './areas.routes.ts';
import { seedShanghaiAreas } from './areas.service.ts';
import { registerAuditRoutes } from './audit.routes.ts';
import { loadSigner, registerSigner, startCheckpointer, startSealer } from './audit.service.ts';
import { RateLimiter, type TrustRuntime } from './auth.service.ts';
import { createOidcVerifier, deriveKeys } from './credentials.ts';
import { registerIdentityRoutes } from './identity.routes.ts';
import { assertNoDemoAccounts, seedDemoIdentity, syncSystemRoles } from './identity.seed.ts';

export {
  seedShanghaiAreas,
  generateShanghaiTiling,
  getArea,
  childrenOf,
  descendantCounts,
  locate,
  locateInMemory,
  loadAreaIndex,
  invalidateAreaIndex,
} from './areas.service.ts';
export type { Area, AreaLevel, LocatedArea } from './areas.schema.ts';
export { AREA_LEVELS } from './areas.schema.ts';
export {
  authorize,
  can,
  covers,
  jurisdictionFilter,
  requireSignedIn,
  scopesFor,
  systemContext,
  ANONYMOUS,
  SYSTEM,
} from './authz.ts';
export type { Actor, CallContext, Grant, Scoped } from './authz.ts';
export { callContext, SECURED } from './context.ts';
export { findOrg, listOrgs } from './identity.store.ts';
export type { OrgRow } from './identity.store.ts';
export {
  definePermissions,
  permissionCatalogue,
  P as TrustPermissions,
  TwinPermissions,
  WorkflowPermissions,
  OpsPermissions,
  SYSTEM_ROLES,
} from './permissions.ts';
export {
  recordAudit,
  auditRider,
  auditRiderOf,
  recordRefusal,
  sealAudit,
  audited,
  verifyAuditTrail,
  createCheckpoint,
  checkpointAll,
  loadSigner,
  rotateSigningKey,
  registerSigner,
  publishedKeys,
} from './audit.service.ts';
export type { AuditEntry, AuditSigner, VerifyReport, SignedCheckpoint } from './audit.service.ts';
export { verifyProofDocument, parsePublicKey } from './audit.crypto.ts';
export type { InclusionProofDocument } from './audit.crypto.ts';
export { DEMO_PASSWORD, syntheticCreditCode, syntheticResidentId, syncSystemRoles } from './identity.seed.ts';
export { bootstrapAdmin } from './bootstrap.ts';
export type { TrustRuntime } from './auth.service.ts';
export { authenticate } from './auth.service.ts';

/** The services' shared runtime: keys derived from the secret, the OIDC verifier, the limiter. */
export function createTrustRuntime(config: Config, database: Database): TrustRuntime {
  return {
    database,
    config,
    keys: deriveKeys(config.secret),
    oidc: config.oidc ? createOidcVerifier(config.oidc) : undefined,
    limiter: new RateLimiter({ limit: config.loginRatePerMinute, windowMs: 60_000 }),
  };
}

/** The trust module: migrations, system roles, demo identity, the checkpoint signer, routes. */
export const trustModule: PlatformModule = {
  name: 'trust',
  migrationsDir: fileURLToPath(new URL('./migrations/', import.meta.url)),
  async start(app, { config, database, logger }) {
    const runtime = createTrustRuntime(config, database);
    const { keys } = runtime;
    await syncSystemRoles(database);
    if (config.mode === 'demo') {
      // The demo city: Shanghai's real districts and streets with generated committees and grids,
      // its operations centres and departments, and an account for every role.
      await seedShanghaiAreas(database, { logger });
      await seedDemoIdentity(database, { keys, logger });
    } else await assertNoDemoAccounts(database);
    const signer = loadSigner(config.auditKeyFile);
    await registerSigner(database, signer);
    logger.info({ keyId: signer.keyId, file: signer.path ?? '(in memory)' }, 'audit signing key ready');
    const sealer = startSealer({ database, logger });
    const checkpointer = startCheckpointer({
      database,
      signer,
      logger,
      intervalMs: config.auditCheckpointIntervalMs,
      pendingLimit: config.auditCheckpointPending,
    });
    registerAreaRoutes(app, runtime);
    registerIdentityRoutes(app, runtime);
    registerAuditRoutes(app, runtime, signer);
    return {
      async stop() {
        // Seal what is queued first, so the last checkpoint can cover it.
        await sealer.stop();
        await checkpointer.stop();
      },
    };
  },
};
