/**
 * Generates data/generated/shanghai-areas.geojson: boundaries for Shanghai's 234 streets (real codes
 * and names, no public boundaries) and the synthetic residents' committees and unit grids below them,
 * each level tiling its parent. Runs on PostgreSQL + PostGIS in a scratch database:
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres node --import tsx scripts/generate-areas.ts
 */
import { writeFileSync } from 'node:fs';
import { migrate, openDatabase, readProcessEnv, silentLogger } from '../src/kernel/index.ts';
import { migrationSources } from '../src/platform.ts';
import { generateShanghaiTiling } from '../src/trust/index.ts';
import { createScratchDatabase } from '../test/helpers/engines.ts';

const adminUrl = readProcessEnv()['DATABASE_URL'];
if (!adminUrl) throw new Error('set DATABASE_URL to a PostgreSQL server with PostGIS');
const logger = silentLogger();
const scratch = await createScratchDatabase(adminUrl);
const database = await openDatabase({ databaseUrl: scratch.url, logger, statementTimeoutMs: 600_000 });
try {
  await migrate({ database, sources: migrationSources(), logger });
  const started = performance.now();
  const features = await generateShanghaiTiling(database, { communitiesPerStreet: 6, gridsPerCommunity: 8 });
  const out = new URL('../data/generated/shanghai-areas.geojson', import.meta.url);
  writeFileSync(
    out,
    `{"type":"FeatureCollection","generator":"scripts/generate-areas.ts","synthetic":"streets: generated boundaries; committees and grids: generated areas","features":[\n${features.map((f) => JSON.stringify(f)).join(',\n')}\n]}\n`,
  );
  const count = (level: string) => features.filter((f) => f.properties.level === level).length;
  console.log(
    `wrote ${out.pathname}: ${count('street')} streets, ${count('community')} committees, ${count('grid')} grids ` +
      `in ${Math.round(performance.now() - started)} ms`,
  );
} finally {
  await database.close();
  await scratch.drop();
}
