/**
 * bench/trust: point → deepest area lookups over the seeded Shanghai hierarchy (11k+ unit grids),
 * through the areas service (deepest area + its chain in one statement) and through the raw driver
 * running the same statement, in the same run.
 *
 *   npm run bench:trust            # PGlite, plus PostgreSQL when DATABASE_URL is set
 *   LOOKUPS=2000 npm run bench:trust
 */
import {
  migrate,
  openDatabase,
  readProcessEnv,
  silentLogger,
  type Database,
} from '../../src/kernel/index.ts';
import { migrationSources } from '../../src/platform.ts';
import { locate, seedShanghaiAreas } from '../../src/trust/index.ts';
import { createScratchDatabase } from '../../test/helpers/engines.ts';

const env = readProcessEnv();
const LOOKUPS = Number(env['LOOKUPS'] ?? 5_000);
const logger = silentLogger();

async function benchEngine(name: string, database: Database): Promise<string> {
  await migrate({ database, sources: migrationSources(), logger });
  await seedShanghaiAreas(database, { logger });
  // Points inside random grids, spread over the whole city.
  const { rows } = await database.raw(
    `select ST_X(centroid) as lon, ST_Y(centroid) as lat from trust.areas where level = 'grid' order by md5(code) limit ${LOOKUPS}`,
  );
  const points = rows.map((r) => ({ lon: r['lon'] as number, lat: r['lat'] as number }));
  // The same statement the service runs (grid first, then the chain), through the raw driver.
  const rawQuery = `
    with pt as (select ST_SetSRID(ST_MakePoint($1, $2), 4326) as g),
    grid as (select a.path from trust.areas a, pt where a.level = 'grid' and ST_Covers(a.geom, pt.g) limit 1),
    hit as (
      select path from grid
      union all
      select path from (select a.path from trust.areas a, pt
        where not exists (select 1 from grid) and ST_Covers(a.geom, pt.g) order by a.depth desc limit 1) deepest
    )
    select code, name, level, depth, parent_code, path, synthetic, geometry_synthetic,
           ST_X(centroid) as lon, ST_Y(centroid) as lat, area_km2
    from trust.areas where code = any(string_to_array((select path from hit limit 1), '/')) order by depth`;
  for (const p of points.slice(0, 200)) {
    await database.raw(rawQuery, [p.lon, p.lat]);
    await locate(database, p);
  }
  let t0 = performance.now();
  for (const p of points) await database.raw(rawQuery, [p.lon, p.lat]);
  const rawMs = performance.now() - t0;
  t0 = performance.now();
  let grids = 0;
  for (const p of points) if ((await locate(database, p)).area.level === 'grid') grids++;
  const serviceMs = performance.now() - t0;
  if (grids !== points.length) throw new Error(`only ${grids} of ${points.length} points located to a grid`);
  const rate = (ms: number) => Math.round((points.length / ms) * 1000).toLocaleString('en-US');
  return `| ${name} | ${points.length.toLocaleString('en-US')} | ${rate(serviceMs)} lookups/s | ${rate(rawMs)} lookups/s | ${(rawMs / serviceMs).toFixed(2)} |`;
}

const lines: string[] = [];
console.log('PGlite …');
const lite = await openDatabase({ memory: true, logger });
lines.push(await benchEngine('PGlite 0.5.8', lite));
await lite.close();
if (env['DATABASE_URL']) {
  console.log('PostgreSQL …');
  const scratch = await createScratchDatabase(env['DATABASE_URL']);
  const pg = await openDatabase({ databaseUrl: scratch.url, logger });
  try {
    lines.push(await benchEngine('PostgreSQL', pg));
  } finally {
    await pg.close();
    await scratch.drop();
  }
}
console.log(
  '\n| engine | lookups | service `locate` (area + chain, one statement) | same statement, raw driver | ratio |',
);
console.log('|---|---|---|---|---|');
for (const l of lines) console.log(l);
