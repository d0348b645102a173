/**
 * The twin's secured access model over HTTP (TWIN_ACCESS=secured), on every engine: writes need
 * `twin.entities.write` over the entity's area (from its location), reads and discovery are
 * filtered by jurisdiction, anonymous callers get 401, and every write and refusal is audited.
 * Runs against the seeded demo city (宝山区 310113, its street 友谊路街道 310113003, 浦东新区 310115).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { engines, type TestDatabase } from '../../test/helpers/engines.ts';
import { startTestPlatform } from '../../test/helpers/platform.ts';
import type { Platform } from '../platform.ts';
import { DEMO_PASSWORD, sealAudit, verifyAuditTrail } from '../trust/index.ts';

const ERR = 'https://uri.etsi.org/ngsi-ld/errors/';

for (const engine of engines()) {
  describe(`NGSI-LD secured access on ${engine.name}`, () => {
    let t: TestDatabase;
    let p: Platform;
    const tokens = new Map<string, string>();
    // Representative points: the centroid of 友谊路街道 (in 宝山区) and of 浦东新区.
    let youyi: [number, number];
    let pudong: [number, number];

    before(async () => {
      t = await engine.open();
      p = await startTestPlatform(t, { env: { TWIN_ACCESS: 'secured' } });
      const { rows } = await sql<{ code: string; lon: number; lat: number }>`
        select code, st_x(st_pointonsurface(geom)) as lon, st_y(st_pointonsurface(geom)) as lat
          from trust.areas where code in ('310113003', '310115')`.execute(t.database.db);
      const at = (code: string): [number, number] => {
        const r = rows.find((x) => x.code === code);
        assert.ok(r, code);
        return [r.lon, r.lat];
      };
      youyi = at('310113003');
      pudong = at('310115');
    });
    after(async () => {
      await p.stop();
      await t.dispose();
    });

    const token = async (username: string): Promise<string> => {
      let tk = tokens.get(username);
      if (!tk) {
        const res = await p.http.inject({
          method: 'POST',
          url: '/api/v1/auth/login',
          payload: { username, password: DEMO_PASSWORD },
        });
        assert.equal(res.statusCode, 200, res.body);
        tk = res.json<{ accessToken: string }>().accessToken;
        tokens.set(username, tk);
      }
      return tk;
    };
    const api = async (
      who: string | undefined,
      method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
      url: string,
      body?: unknown,
    ) => {
      const headers: Record<string, string> =
        body === undefined ? {} : { 'content-type': 'application/json' };
      if (who) headers['authorization'] = `Bearer ${await token(who)}`;
      return p.http.inject({
        method,
        url: `/ngsi-ld/v1${url}`,
        headers,
        ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
      });
    };
    const entity = (id: string, at: [number, number] | undefined, type = 'Manhole') => ({
      id,
      type,
      status: { type: 'Property', value: 'ok' },
      ...(at ? { location: { type: 'GeoProperty', value: { type: 'Point', coordinates: at } } } : {}),
    });
    const typeOf = (res: { body: string }) => (JSON.parse(res.body) as { type: string }).type;
    const enc = encodeURIComponent;

    it('refuses anonymous callers with 401', async () => {
      const list = await api(undefined, 'GET', '/entities?type=Manhole');
      assert.equal(list.statusCode, 401);
      assert.equal(typeOf(list), `${ERR}Unauthorized`);
      assert.equal(
        (await api(undefined, 'POST', '/entities', entity('urn:ngsi-ld:Manhole:anon', youyi))).statusCode,
        401,
      );
    });

    it('lets district department staff write in their district only (403 elsewhere and city-wide)', async () => {
      const ok = await api('baoshan-cgj', 'POST', '/entities', entity('urn:ngsi-ld:Manhole:B1', youyi));
      assert.equal(ok.statusCode, 201, ok.body);
      const outside = await api('baoshan-cgj', 'POST', '/entities', entity('urn:ngsi-ld:Manhole:P0', pudong));
      assert.equal(outside.statusCode, 403, outside.body);
      assert.equal(typeOf(outside), `${ERR}Forbidden`);
      const cityWide = await api(
        'baoshan-cgj',
        'POST',
        '/entities',
        entity('urn:ngsi-ld:Manhole:C0', undefined),
      );
      assert.equal(cityWide.statusCode, 403, cityWide.body);
      // Nothing was written by the refused attempts.
      assert.equal((await api('admin', 'GET', `/entities/${enc('urn:ngsi-ld:Manhole:P0')}`)).statusCode, 404);
      // Moving an entity out of the district is a write in the new area too.
      const move = await api('baoshan-cgj', 'PATCH', `/entities/${enc('urn:ngsi-ld:Manhole:B1')}`, {
        location: { type: 'GeoProperty', value: { type: 'Point', coordinates: pudong } },
      });
      assert.equal(move.statusCode, 403, move.body);
    });

    it('filters reads, queries and discovery by jurisdiction (404 for what is out of reach)', async () => {
      assert.equal(
        (await api('admin', 'POST', '/entities', entity('urn:ngsi-ld:Manhole:P1', pudong))).statusCode,
        201,
      );
      assert.equal(
        (await api('admin', 'POST', '/entities', entity('urn:ngsi-ld:Hydrant:P2', pudong, 'Hydrant')))
          .statusCode,
        201,
      );
      assert.equal(
        (await api('baoshan-cgj', 'GET', `/entities/${enc('urn:ngsi-ld:Manhole:P1')}`)).statusCode,
        404,
      );
      const list = await api('baoshan-cgj', 'GET', '/entities?type=Manhole&limit=100');
      assert.deepEqual(
        list.json<{ id: string }[]>().map((e) => e.id),
        ['urn:ngsi-ld:Manhole:B1'],
      );
      const admin = await api('admin', 'GET', '/entities?type=Manhole&limit=100&count=true');
      assert.equal(admin.headers['ngsild-results-count'], '2');
      // A street inspector sees the street's manhole and may not change it.
      assert.equal(
        (await api('inspector-youyi', 'GET', `/entities/${enc('urn:ngsi-ld:Manhole:B1')}`)).statusCode,
        200,
      );
      const patch = await api(
        'inspector-youyi',
        'PATCH',
        `/entities/${enc('urn:ngsi-ld:Manhole:B1')}/attrs/status`,
        {
          value: 'broken',
        },
      );
      assert.equal(patch.statusCode, 403, patch.body);
      // Citizens have no twin permissions at all.
      assert.deepEqual((await api('citizen', 'GET', '/entities?type=Manhole')).json(), []);
      const types = await api('baoshan-cgj', 'GET', '/types');
      assert.deepEqual(types.json<{ typeList: string[] }>().typeList, ['Manhole']);
    });

    it('reports per-entity refusals in a batch (207) and writes the allowed ones', async () => {
      const res = await api('baoshan-cgj', 'POST', '/entityOperations/create', [
        entity('urn:ngsi-ld:Manhole:B2', youyi),
        entity('urn:ngsi-ld:Manhole:P3', pudong),
      ]);
      assert.equal(res.statusCode, 207, res.body);
      const r = res.json<{ success: string[]; errors: { entityId: string; error: { status: number } }[] }>();
      assert.deepEqual(r.success, ['urn:ngsi-ld:Manhole:B2']);
      assert.deepEqual(
        r.errors.map((e) => [e.entityId, e.error.status]),
        [['urn:ngsi-ld:Manhole:P3', 403]],
      );
      const del = await api('baoshan-cgj', 'POST', '/entityOperations/delete', [
        'urn:ngsi-ld:Manhole:B2',
        'urn:ngsi-ld:Manhole:P1',
      ]);
      assert.equal(del.statusCode, 207, del.body);
      assert.equal((await api('admin', 'GET', `/entities/${enc('urn:ngsi-ld:Manhole:P1')}`)).statusCode, 200);
    });

    it('audits every write with its actor and area, and refusals as denied; the chain verifies', async () => {
      await sealAudit(t.database);
      const { rows } = await sql<{
        action: string;
        resource_id: string;
        area: string | null;
        outcome: string;
        actor_kind: string;
      }>`
        select action, resource_id, area, outcome, actor_kind from trust.audit_records
         where resource_type = 'ngsi-ld-entity' order by seq`.execute(t.database.db);
      const b1 = rows.find(
        (r) => r.resource_id === 'urn:ngsi-ld:Manhole:B1' && r.action === 'twin.entity.create',
      );
      assert.ok(b1);
      // The deepest area: a unit grid (网格) of 友谊路街道.
      assert.match(b1.area ?? '', /^310113003\d{6}$/);
      assert.equal(b1.outcome, 'success');
      assert.equal(b1.actor_kind, 'user');
      const denied = rows.filter((r) => r.outcome === 'denied').map((r) => r.resource_id);
      assert.ok(denied.includes('urn:ngsi-ld:Manhole:P0'), 'the refused create is on record');
      assert.ok(denied.includes('urn:ngsi-ld:Manhole:B1'), 'the refused move and patch are on record');
      const report = await verifyAuditTrail(t.database);
      assert.equal(report.ok, true, JSON.stringify(report.problem));
    });
  });
}
