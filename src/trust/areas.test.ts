/** Areas: the seeded hierarchy, point location and the areas API, on every engine of this run. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { engines, type TestDatabase } from '../../test/helpers/engines.ts';
import { startTestPlatform } from '../../test/helpers/platform.ts';
import { isAppError, silentLogger, type Database } from '../kernel/index.ts';
import type { Platform } from '../platform.ts';
import { buildAreaIndex, type AreaIndexRow } from './areas.index.ts';
import type { LocatedArea } from './areas.schema.ts';
import {
  getArea,
  invalidateAreaIndex,
  locate,
  seedShanghaiAreas,
  type LocateOptions,
} from './areas.service.ts';
import { locatePointChain } from './areas.store.ts';
import { seededRandom } from '../../test/helpers/random.ts';

/** `locate`, with "no area here" (404) as undefined. */
async function locateOrNone(
  database: Database,
  point: { lon: number; lat: number },
  options: LocateOptions = {},
): Promise<LocatedArea | undefined> {
  try {
    return await locate(database, point, options);
  } catch (e) {
    if (isAppError(e) && e.spec.code === 'not-found') return undefined;
    throw e;
  }
}

/** Little-endian WKB of a MultiPolygon given as polygons → rings → [x, y] points. */
function wkbMultiPolygon(polygons: [number, number][][][]): Uint8Array {
  const bytes: Buffer[] = [];
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    bytes.push(b);
  };
  const header = (type: number) => {
    bytes.push(Buffer.from([1]));
    u32(type);
  };
  header(6);
  u32(polygons.length);
  for (const rings of polygons) {
    header(3);
    u32(rings.length);
    for (const ring of rings) {
      u32(ring.length);
      for (const [x, y] of ring) {
        const b = Buffer.alloc(16);
        b.writeDoubleLE(x);
        b.writeDoubleLE(y, 8);
        bytes.push(b);
      }
    }
  }
  return new Uint8Array(Buffer.concat(bytes));
}

const square = (x: number, y: number, size: number): [number, number][] => [
  [x, y],
  [x + size, y],
  [x + size, y + size],
  [x, y + size],
  [x, y],
];

function indexRow(code: string, path: string[], polygons: [number, number][][][] | null): AreaIndexRow {
  return {
    code,
    name: `area ${code}`,
    level: (['city', 'district', 'street', 'community', 'grid'] as const)[path.length - 1] ?? 'grid',
    depth: path.length - 1,
    parent_code: path[path.length - 2] ?? null,
    path: path.join('/'),
    synthetic: true,
    geometry_synthetic: true,
    lon: null,
    lat: null,
    area_km2: null,
    wkb: polygons ? wkbMultiPolygon(polygons) : null,
  };
}

describe('area index (in memory)', () => {
  // A city (a 10 × 10 square with a 2 × 2 lake from (4, 4)) and one district, with two grids
  // side by side sharing the edge x = 1, and a third grid given the codes out of order.
  const index = buildAreaIndex([
    indexRow('310000', ['310000'], [[square(0, 0, 10), square(4, 4, 2).reverse()]]),
    indexRow('310101', ['310000', '310101'], [[square(0, 0, 2)]]),
    indexRow('310101001', ['310000', '310101', '310101001'], null),
    indexRow('310101001001', ['310000', '310101', '310101001', '310101001001'], null),
    indexRow(
      '310101001001002',
      ['310000', '310101', '310101001', '310101001001', '310101001001002'],
      [[square(1, 0, 1)]],
    ),
    indexRow(
      '310101001001001',
      ['310000', '310101', '310101001', '310101001001', '310101001001001'],
      [[square(0, 0, 1)], [square(8, 8, 1)]],
    ),
  ]);
  const deepest = (x: number, y: number) => index.chainAt(x, y).at(-1)?.code;

  it('finds the deepest covering area, across parts of a multipolygon, with its chain', () => {
    assert.equal(deepest(0.5, 0.5), '310101001001001');
    assert.equal(deepest(8.5, 8.5), '310101001001001');
    assert.deepEqual(
      index.chainAt(1.5, 0.5).map((a) => a.code),
      ['310000', '310101', '310101001', '310101001001', '310101001001002'],
    );
    assert.equal(deepest(1.5, 1.5), '310101'); // in the district, outside every grid
    assert.equal(deepest(3, 3), '310000');
  });

  it('counts boundaries as covered (ST_Covers), holes as outside, and breaks ties by lowest code', () => {
    assert.equal(deepest(1, 0.5), '310101001001001'); // the shared edge: both grids cover it
    assert.equal(deepest(1, 1), '310101001001001'); // a shared vertex
    assert.equal(deepest(2, 0), '310101001001002'); // a corner of a grid and of the district
    assert.equal(deepest(2, 2), '310101'); // a corner of the district only
    assert.equal(deepest(10, 5), '310000'); // on the city's outer edge
    assert.equal(deepest(5, 5), undefined); // in the lake
    assert.equal(deepest(4, 5), '310000'); // on the lake's shore
    assert.equal(deepest(6, 6), '310000'); // a corner of the lake
    assert.equal(deepest(10.000001, 5), undefined);
    assert.equal(deepest(Number.NaN, 5), undefined);
  });

  it('answers nothing when no area has a usable boundary', () => {
    const empty = buildAreaIndex([
      indexRow('310000', ['310000'], null),
      // A ring of three points encloses nothing; PostGIS skips such rings too.
      indexRow(
        '310101',
        ['310000', '310101'],
        [
          [
            [
              [0, 0],
              [1, 1],
              [0, 0],
            ],
          ],
        ],
      ),
    ]);
    assert.deepEqual(empty.chainAt(0, 0), []);
    assert.equal(empty.stats.polygons, 0);
  });
});

for (const engine of engines()) {
  describe(`areas on ${engine.name}`, () => {
    let t: TestDatabase;
    let p: Platform;
    before(async () => {
      t = await engine.open();
      p = await startTestPlatform(t); // demo mode seeds Shanghai's areas
    });
    after(async () => {
      await p.stop();
      await t.dispose();
    });

    const get = (url: string) => p.http.inject({ method: 'GET', url });

    it('holds the city, 16 real districts, 234 real streets, and synthetic committees and grids', async () => {
      const res = await get('/api/v1/areas/310000/counts');
      assert.equal(res.statusCode, 200);
      const counts = res.json<Record<string, number>>();
      assert.equal(counts['district'], 16);
      assert.equal(counts['street'], 234);
      assert.ok((counts['community'] ?? 0) >= 1_400, JSON.stringify(counts));
      assert.ok((counts['grid'] ?? 0) >= 10_000, JSON.stringify(counts));
      const district = (await get('/api/v1/areas/310113')).json<Record<string, unknown>>();
      assert.equal(district['name'], '宝山区');
      assert.equal(district['synthetic'], false);
      assert.equal(district['geometrySynthetic'], false);
      const street = (await get('/api/v1/areas/310101002')).json<Record<string, unknown>>();
      assert.equal(street['name'], '南京东路街道');
      assert.deepEqual(street['path'], ['310000', '310101', '310101002']);
      assert.equal(street['synthetic'], false);
      assert.equal(street['geometrySynthetic'], true);
    });

    it('tiles every parent with its children (areas add up, nothing overlaps)', async () => {
      const { rows } = await sql<{ level: string; worst: number; overlap: number }>`
        select p.level,
               max(abs(1 - u.children_area / ST_Area(p.geom))) as worst,
               max(u.children_area / ST_Area(u.merged) - 1) as overlap
        from trust.areas p
        cross join lateral (select sum(ST_Area(c.geom)) as children_area, ST_Union(c.geom) as merged
                            from trust.areas c where c.parent_code = p.code) u
        where p.level in ('city', 'district') and u.children_area is not null
        group by p.level`.execute(t.database.db);
      for (const r of rows) {
        assert.ok(r.worst < 0.001, `${r.level}: children cover ${r.worst} off the parent's area`);
        assert.ok(Math.abs(r.overlap) < 0.001, `${r.level}: children overlap by ${r.overlap}`);
      }
      const { rows: sample } = await sql<{ worst: number }>`
        select max(abs(1 - (select sum(ST_Area(c.geom)) from trust.areas c where c.parent_code = p.code) / ST_Area(p.geom))) as worst
        from trust.areas p where p.level = 'community' and p.code like '310113%'`.execute(t.database.db);
      assert.ok((sample[0]?.worst ?? 1) < 0.001, `grids of Baoshan's committees: ${sample[0]?.worst}`);
    });

    it('locates a point down to its unit grid, with the chain from the city', async () => {
      // People's Square, Huangpu.
      const res = await get('/api/v1/areas/locate?lon=121.4737&lat=31.2304');
      assert.equal(res.statusCode, 200);
      const body = res.json<{
        area: { level: string; code: string };
        chain: { level: string; code: string }[];
      }>();
      assert.equal(body.area.level, 'grid');
      assert.deepEqual(
        body.chain.map((c) => c.level),
        ['city', 'district', 'street', 'community', 'grid'],
      );
      assert.equal(body.chain[1]?.code, '310101');
      assert.ok(body.area.code.startsWith(body.chain[3]?.code ?? 'x'));
      // Baoshan's centre is in Baoshan.
      const baoshan = (await get('/api/v1/areas/locate?lon=121.42&lat=31.39')).json<{
        chain: { code: string }[];
      }>();
      assert.equal(baoshan.chain[1]?.code, '310113');
    });

    it('answers a point outside the city with 404, and bad coordinates with 400', async () => {
      const beijing = await get('/api/v1/areas/locate?lon=116.4&lat=39.9');
      assert.equal(beijing.statusCode, 404);
      assert.equal(beijing.json<{ code: string }>().code, 'not-found');
      for (const q of [
        'lon=999&lat=31',
        'lon=121.4',
        'lon=abc&lat=31',
        "lon=121.4&lat=31' or 1=1--",
        'lon=NaN&lat=31',
      ])
        assert.equal((await get(`/api/v1/areas/locate?${q}`)).statusCode, 400, q);
    });

    it('lists children, returns boundaries on request, and rejects bad or unknown codes', async () => {
      const children = (await get('/api/v1/areas/310113/children')).json<{ code: string; level: string }[]>();
      assert.ok(children.length > 5);
      assert.ok(children.every((c) => c.code.startsWith('310113') && c.level === 'street'));
      const withGeometry = (await get('/api/v1/areas/310113?geometry=true')).json<{
        geometry: { type: string };
      }>();
      assert.equal(withGeometry.geometry.type, 'MultiPolygon');
      assert.equal(
        (await get('/api/v1/areas/310113')).json<Record<string, unknown>>()['geometry'],
        undefined,
      );
      assert.equal((await get('/api/v1/areas/310102')).statusCode, 404); // 南市区, abolished
      assert.equal((await get('/api/v1/areas/310102/children')).statusCode, 404);
      for (const bad of ['31011', '3101130', "310113'%20or%201=1--", 'abcdef', '%00'])
        assert.equal((await get(`/api/v1/areas/${bad}`)).statusCode, 400, bad);
    });

    it('locates in process exactly as PostGIS does: random points, the sea, points on borders', async () => {
      const db = t.database.db;
      const { rows: boxes } = await sql<{ xmin: number; ymin: number; xmax: number; ymax: number }>`
        select ST_XMin(geom) as xmin, ST_YMin(geom) as ymin, ST_XMax(geom) as xmax, ST_YMax(geom) as ymax
        from trust.areas where code = '310000'`.execute(db);
      const box = boxes[0];
      assert.ok(box);
      const random = seededRandom(20261121);
      const points: { lon: number; lat: number; kind: string }[] = [];
      // Uniform over the city's box widened by a tenth on every side: land, sea, neighbours.
      const w = box.xmax - box.xmin;
      const h = box.ymax - box.ymin;
      for (let i = 0; i < 1_200; i++)
        points.push({
          lon: box.xmin - w / 10 + random() * w * 1.2,
          lat: box.ymin - h / 10 + random() * h * 1.2,
          kind: 'random',
        });
      // Vertices and edge midpoints of grids (shared by two or three grids, or on the coast), and
      // vertices of the real district boundaries (the city's edge).
      const { rows: segments } = await sql<{ level: string; x1: number; y1: number; x2: number; y2: number }>`
        select level, ST_X(ST_StartPoint(s.geom)) as x1, ST_Y(ST_StartPoint(s.geom)) as y1,
               ST_X(ST_EndPoint(s.geom)) as x2, ST_Y(ST_EndPoint(s.geom)) as y2
        from (select level, (ST_DumpSegments(geom)).geom from trust.areas
              where code in (select code from trust.areas where level = 'grid' order by md5(code) limit 160)
                 or level = 'district') s`.execute(db);
      for (const s of segments) {
        const take = s.level === 'grid' ? 0.9 : 0.05;
        if (random() < take) points.push({ lon: s.x1, lat: s.y1, kind: `${s.level} vertex` });
        if (s.level === 'grid' && random() < 0.3)
          points.push({ lon: (s.x1 + s.x2) / 2, lat: (s.y1 + s.y2) / 2, kind: 'grid edge midpoint' });
      }
      assert.ok(points.length >= 2_000, `${points.length} points`);

      const tally = { same: 0, tie: 0, outside: 0 };
      for (const p of points) {
        const label = `${p.kind} ${p.lon} ${p.lat}`;
        const sqlChain = await locatePointChain(db, p.lon, p.lat);
        const expected = sqlChain[sqlChain.length - 1];
        const actual = await locateOrNone(t.database, p);
        if (!expected) {
          assert.equal(actual, undefined, label);
          tally.outside++;
          continue;
        }
        assert.ok(actual, label);
        if (actual.area.code === expected.code) {
          assert.deepEqual(
            actual.chain.map((a) => a.code),
            sqlChain.map((a) => a.code),
            label,
          );
          tally.same++;
          continue;
        }
        // On a border several areas of the deepest level cover the point; the SQL takes any of
        // them, the index the lowest code. Both must be areas PostGIS says cover the point.
        assert.notEqual(p.kind, 'random', `a random point on a border? ${label}`);
        const { rows } = await sql<{ code: string }>`
          select code from trust.areas
          where level = ${expected.level} and ST_Covers(geom, ST_SetSRID(ST_MakePoint(${p.lon}, ${p.lat}), 4326))
          order by code`.execute(db);
        assert.equal(actual.area.code, rows[0]?.code, label);
        assert.ok(
          rows.some((r) => r.code === expected.code),
          label,
        );
        tally.tie++;
      }
      assert.ok(tally.outside > 100, JSON.stringify(tally));
      assert.ok(tally.same > 1_000, JSON.stringify(tally));
    });

    it('presents a located area exactly as the area API does', async () => {
      const located = await locate(t.database, { lon: 121.4737, lat: 31.2304 });
      assert.deepEqual(located.area, await getArea(t.database, located.area.code));
      const ancestors = await Promise.all(located.area.path.map((code) => getArea(t.database, code)));
      assert.deepEqual(
        located.chain,
        ancestors.map((a) => ({ code: a.code, name: a.name, level: a.level })),
      );
    });

    it('sees changed areas after invalidation, and after recheckMs without it', async () => {
      const d = t.database;
      const sea = { lon: 123.2, lat: 30.4 };
      const farther = { lon: 123.6, lat: 30.2 };
      const envelope = (p: { lon: number; lat: number }) =>
        sql`ST_Multi(ST_MakeEnvelope(${p.lon - 0.05}, ${p.lat - 0.05}, ${p.lon + 0.05}, ${p.lat + 0.05}, 4326))`;
      const fresh: LocateOptions = { recheckMs: 60_000 };
      assert.equal(await locateOrNone(d, sea, fresh), undefined);
      const { rows } = await sql<{ code: string }>`
        insert into trust.areas (code, name, level, depth, parent_code, path, synthetic, geometry_synthetic, geom)
        select p.code || '999', '海上测试网格', 'grid', 4, p.code, p.path || '/' || p.code || '999', true, true,
               ${envelope(sea)}
        from trust.areas p where p.level = 'community' order by p.code limit 1
        returning code`.execute(d.db);
      const code = rows[0]?.code ?? '';
      assert.equal(code.length, 15);
      try {
        // Within recheckMs the index in memory answers: the new grid is not seen yet ...
        assert.equal(await locateOrNone(d, sea, fresh), undefined);
        // ... until this process says it changed areas.
        invalidateAreaIndex(d);
        const found = await Promise.all(Array.from({ length: 8 }, () => locateOrNone(d, sea, fresh)));
        for (const f of found) {
          assert.equal(f?.area.code, code);
          assert.deepEqual(
            f.chain.map((c) => c.level),
            ['city', 'district', 'street', 'community', 'grid'],
          );
        }
        // Another process's change (no invalidation here) is seen once recheckMs has passed.
        await sql`update trust.areas set geom = ${envelope(farther)} where code = ${code}`.execute(d.db);
        assert.equal((await locateOrNone(d, farther, fresh))?.area.code, undefined);
        await new Promise((resolve) => setTimeout(resolve, 30));
        assert.equal((await locateOrNone(d, farther, { recheckMs: 20 }))?.area.code, code);
        assert.equal(await locateOrNone(d, sea, { recheckMs: 20 }), undefined);
      } finally {
        await sql`delete from trust.areas where code = ${code}`.execute(d.db);
        invalidateAreaIndex(d);
      }
      assert.equal(await locateOrNone(d, farther), undefined);
    });

    it('seeds only once', async () => {
      assert.equal(await seedShanghaiAreas(t.database, { logger: silentLogger() }), 0);
    });
  });
}
