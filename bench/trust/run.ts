/**
 * bench/trust: point → deepest area lookups over the seeded Shanghai hierarchy (11k+ unit grids),
 * through the areas service (`locate`: an in-process R-tree + exact point-in-polygon, built from the
 * database on first use) and, as the raw baseline, through the raw driver running the single SQL
 * statement the service used before (`locatePointChain`: deepest area + chain), in the same run.
 * Also: how long the index takes to build and roughly how much memory it holds.
 *
 *   npm run bench:trust            # PGlite, plus PostgreSQL when DATABASE_URL is set
 *   LOOKUPS=2000 npm run bench:trust
 */
import { onEachEngine } from '../engines.ts';
import v8 from 'node:v8';
import vm from 'node:vm';
import { readProcessEnv, silentLogger, type Database } from '../../src/kernel/index.ts';
import { invalidateAreaIndex, locate, seedShanghaiAreas, type LocatedArea } from '../../src/trust/index.ts';
// Internals, for the index's size only: the public surface does not expose it.
import { buildAreaIndex, type AreaIndex } from '../../src/trust/areas.index.ts';
import { readAreasWithBoundaries } from '../../src/trust/areas.store.ts';
import { seededRandom } from '../../test/helpers/random.ts';

const env = readProcessEnv();
const LOOKUPS = Number(env['LOOKUPS'] ?? 5_000);
/** The in-process lookups are quick: each point set is run this many times for a stable figure. */
const SERVICE_ROUNDS = 10;
const logger = silentLogger();

// A forced collection makes the heap figures comparable (npm script runs without --expose-gc).
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** The statement `locatePointChain` runs (grid first, then the chain), for the raw driver. */
const RAW_QUERY = `
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

interface Point {
  lon: number;
  lat: number;
}

async function locateOrNone(database: Database, p: Point): Promise<LocatedArea | undefined> {
  try {
    return await locate(database, p);
  } catch {
    return undefined; // outside every area (404)
  }
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

/** Lookups through the service and the raw driver; checks both give the same deepest area. */
async function measure(database: Database, points: Point[]) {
  const rawCodes: (string | undefined)[] = [];
  let t0 = performance.now();
  for (const p of points) {
    const { rows } = await database.raw(RAW_QUERY, [p.lon, p.lat]);
    rawCodes.push(rows[rows.length - 1]?.['code'] as string | undefined);
  }
  const rawMs = performance.now() - t0;
  const codes: (string | undefined)[] = [];
  t0 = performance.now();
  for (let round = 0; round < SERVICE_ROUNDS; round++)
    for (const p of points) codes.push((await locateOrNone(database, p))?.area.code);
  const serviceMs = performance.now() - t0;
  // Interior points (no point here is on a border): the two must agree exactly.
  const mismatches = points.filter((_, i) => codes[i] !== rawCodes[i]).length;
  if (mismatches > 0) throw new Error(`${mismatches} points located differently by the index and the SQL`);
  return {
    service: (points.length * SERVICE_ROUNDS * 1000) / serviceMs,
    raw: (points.length * 1000) / rawMs,
    outside: rawCodes.filter((c) => c === undefined).length,
  };
}

/** Fetches every area and builds a second index, outside the service, to time and weigh it. */
async function indexSize(
  database: Database,
): Promise<{ index: AreaIndex; fetchMs: number; buildMs: number }> {
  let t0 = performance.now();
  const rows = await readAreasWithBoundaries(database.db);
  const fetchMs = performance.now() - t0;
  t0 = performance.now();
  const index = buildAreaIndex(rows);
  return { index, fetchMs, buildMs: performance.now() - t0 };
}

async function benchEngine(name: string, database: Database): Promise<{ lookups: string[]; build: string }> {
  await seedShanghaiAreas(database, { logger });
  // Points inside random grids, spread over the whole city.
  const { rows } = await database.raw(
    `select ST_X(centroid) as lon, ST_Y(centroid) as lat from trust.areas where level = 'grid' order by md5(code) limit ${LOOKUPS}`,
  );
  const inGrids = rows.map((r) => ({ lon: r['lon'] as number, lat: r['lat'] as number }));
  // Uniform over the city's box widened by a tenth on each side: land and sea (404s) mixed.
  const { rows: boxes } = await database.raw(
    `select ST_XMin(geom) as x0, ST_YMin(geom) as y0, ST_XMax(geom) as x1, ST_YMax(geom) as y1 from trust.areas where code = '310000'`,
  );
  const box = boxes[0] as { x0: number; y0: number; x1: number; y1: number };
  const [w, h] = [box.x1 - box.x0, box.y1 - box.y0];
  const random = seededRandom(2026);
  const mixed = Array.from({ length: Math.min(LOOKUPS, 1_000) }, () => ({
    lon: box.x0 - w / 10 + random() * w * 1.2,
    lat: box.y0 - h / 10 + random() * h * 1.2,
  }));

  // Cold: the first `locate` reads the revision and every area, and builds the index.
  let t0 = performance.now();
  await locate(database, inGrids[0] ?? { lon: 121.4737, lat: 31.2304 });
  const coldMs = performance.now() - t0;
  // Rebuilds, as after a change to areas (the revision is bumped by hand: nothing else changes).
  const rebuilds: number[] = [];
  for (let i = 0; i < 3; i++) {
    await database.raw('update trust.area_revision set revision = revision + 1');
    invalidateAreaIndex(database);
    t0 = performance.now();
    await locate(database, inGrids[0] ?? { lon: 121.4737, lat: 31.2304 });
    rebuilds.push(performance.now() - t0);
  }
  rebuilds.sort((a, b) => a - b);

  // The index's size: its typed arrays exactly, and the heap its rows and code map take (the
  // fetched rows are garbage once `indexSize` returns).
  gc();
  const heapBefore = process.memoryUsage().heapUsed;
  const { index, fetchMs, buildMs } = await indexSize(database);
  gc();
  const heap = process.memoryUsage().heapUsed - heapBefore;
  const { stats } = index;

  for (const p of inGrids.slice(0, 200)) {
    await database.raw(RAW_QUERY, [p.lon, p.lat]);
    await locate(database, p);
  }
  const grids = await measure(database, inGrids);
  if (grids.outside > 0) throw new Error(`${grids.outside} grid centroids located outside every area`);
  const sea = await measure(database, mixed);
  const line = (what: string, n: number, m: { service: number; raw: number }) =>
    `| ${name} | ${what} | ${fmt(n * SERVICE_ROUNDS)} / ${fmt(n)} | ${fmt(m.service)} lookups/s | ${fmt(m.raw)} lookups/s | ${(m.service / m.raw).toFixed(0)}× |`;
  return {
    lookups: [
      line('grid centroids', inGrids.length, grids),
      line(
        `random over the city's box (${Math.round((sea.outside / mixed.length) * 100)} % outside)`,
        mixed.length,
        sea,
      ),
    ],
    build:
      `| ${name} | ${fmt(coldMs)} ms | ${fmt(rebuilds[1] ?? 0)} ms | ${fmt(fetchMs)} ms | ${fmt(buildMs)} ms | ` +
      `${fmt(stats.areas)} areas, ${fmt(stats.polygons)} polygons, ${fmt(stats.vertices)} vertices | ` +
      `${mb(stats.bytes)} typed arrays + ${mb(heap)} heap |`,
  };
}

const results = await onEachEngine(({ label, database }) => benchEngine(label, database));
console.log(
  '\n| engine | points | lookups (service / raw) | service `locate` (in-process index) | same SQL statement, raw driver | speed-up |',
);
console.log('|---|---|---|---|---|---|');
for (const r of results) for (const l of r.lookups) console.log(l);
console.log(
  '\n| engine | first `locate` (cold) | rebuild after a change (median of 3) | fetch areas as WKB | build index | indexed | memory |',
);
console.log('|---|---|---|---|---|---|---|');
for (const r of results) console.log(r.build);
