/**
 * The trust module's public surface (数字信任). So far: areas, the jurisdiction hierarchy.
 * Organisations, identity, authorization and audit follow (see docs/architecture.md).
 */
import { fileURLToPath } from 'node:url';
import type { PlatformModule } from '../kernel/index.ts';
import { registerAreaRoutes } from './areas.routes.ts';
import { seedShanghaiAreas } from './areas.service.ts';

export {
  seedShanghaiAreas,
  generateShanghaiTiling,
  getArea,
  childrenOf,
  descendantCounts,
  locate,
} from './areas.service.ts';
export type { Area, AreaLevel, LocatedArea } from './areas.schema.ts';
export { AREA_LEVELS } from './areas.schema.ts';

export const trustModule: PlatformModule = {
  name: 'trust',
  migrationsDir: fileURLToPath(new URL('./migrations/', import.meta.url)),
  async start(app, { config, database, logger }) {
    // The demo city: Shanghai's real districts and streets, with generated committees and grids.
    // A production deployment loads its own areas (admin API, next step of this module).
    if (config.mode === 'demo') await seedShanghaiAreas(database, { logger });
    registerAreaRoutes(app, database);
  },
};
