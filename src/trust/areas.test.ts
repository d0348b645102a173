/** Areas: the seeded hierarchy, point location and the areas API, on every engine of this run. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { engines, type TestDatabase } from '../../test/helpers/engines.ts';
import { startTestPlatform } from '../../test/helpers/platform.ts';
import { silentLogger } from '../kernel/index.ts';
import type { Platform } from '../platform.ts';
import { seedShanghaiAreas } from './areas.service.ts';

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

    it('seeds only once', async () => {
      assert.equal(await seedShanghaiAreas(t.database, { logger: silentLogger() }), 0);
    });
  });
}
