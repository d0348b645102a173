/**
 * NGSI-LD conformance over HTTP (ETSI GS CIM 009 v1.8), on every engine of this run: entities,
 * attributes, batches, query (type selection, q, geoQ, scopeQ, projections, representations,
 * pagination), discovery, @context rules, tenants, errors and bad input, concurrency, and the
 * secured access model with audit. The Smart Data Models round trips live in sdm.test.ts.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { engines, type TestDatabase } from '../../test/helpers/engines.ts';
import { startTestPlatform } from '../../test/helpers/platform.ts';
import type { Platform } from '../platform.ts';
import { DEMO_PASSWORD } from '../trust/index.ts';

const CORE = 'https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld';
const ERR = 'https://uri.etsi.org/ngsi-ld/errors/';
const JSON_CT = { 'content-type': 'application/json' };
const LD_CT = { 'content-type': 'application/ld+json' };

interface Res {
  statusCode: number;
  headers: Record<string, unknown>;
  body: string;
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- the caller names the shape it expects
  json<T>(): T;
}

/** A Shanghai street-light with the Stellio load-test shape (6 properties, 1 relationship, 1 geo). */
function lamp(n: number, lon = 121.47 + n * 0.0001, lat = 31.23) {
  return {
    id: `urn:ngsi-ld:Streetlight:${n}`,
    type: 'Streetlight',
    status: { type: 'Property', value: n % 2 === 0 ? 'ok' : 'defectiveLamp' },
    illuminance: { type: 'Property', value: 100 + n, unitCode: 'LUX', observedAt: '2026-11-01T10:00:00Z' },
    power: [
      { type: 'Property', value: 50 + n, datasetId: 'urn:ngsi-ld:Dataset:meter' },
      { type: 'Property', value: 51 + n, datasetId: 'urn:ngsi-ld:Dataset:estimate' },
    ],
    name: { type: 'Property', value: `灯 ${n}` },
    refDevice: { type: 'Relationship', object: `urn:ngsi-ld:Device:${n}` },
    location: { type: 'GeoProperty', value: { type: 'Point', coordinates: [lon, lat] } },
  };
}

for (const engine of engines()) {
  describe(`NGSI-LD API on ${engine.name}`, () => {
    let t: TestDatabase;
    let p: Platform;
    let ctxServer: Server;
    let ctxUrl = '';
    let slowUrl = '';

    before(async () => {
      ctxServer = createServer((req, res) => {
        if (req.url === '/slow') return; // never answers
        res.setHeader('content-type', 'application/ld+json');
        res.end(
          JSON.stringify({
            '@context': {
              ex: 'https://example.org/ns#',
              Lamp: 'ex:Lamp',
              brightness: 'ex:brightness',
              speed: 'https://example.org/speed',
            },
          }),
        );
      });
      await new Promise<void>((r) => ctxServer.listen(0, '127.0.0.1', r));
      const port = (ctxServer.address() as AddressInfo).port;
      ctxUrl = `http://127.0.0.1:${port}/ctx.jsonld`;
      slowUrl = `http://127.0.0.1:${port}/slow`;
      t = await engine.open();
      p = await startTestPlatform(t, { env: { TWIN_CONTEXT_TIMEOUT_MS: '300', BODY_LIMIT_BYTES: '200000' } });
    });
    after(async () => {
      await p.stop();
      await t.dispose();
      ctxServer.closeAllConnections();
      await new Promise((r) => ctxServer.close(r));
    });

    const api = async (
      method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE',
      url: string,
      body?: unknown,
      headers: Record<string, string> = {},
    ): Promise<Res> => {
      const res = await p.http.inject({
        method,
        url: `/ngsi-ld/v1${url}`,
        headers: body === undefined ? headers : { ...JSON_CT, ...headers },
        ...(body === undefined
          ? {}
          : { payload: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body) }),
      });
      return res;
    };
    const problem = (res: Res, type: string, status: number, what = '') => {
      assert.equal(res.statusCode, status, `${what} ${res.body}`);
      const body = res.json<{ type: string; title: string; status: number; detail: string }>();
      assert.equal(body.type, `${ERR}${type}`, res.body);
      assert.equal(body.status, status);
      assert.equal(typeof body.detail, 'string');
    };
    const get = async <T = Record<string, unknown>>(
      url: string,
      headers: Record<string, string> = {},
    ): Promise<T> => {
      const res = await api('GET', url, undefined, headers);
      assert.equal(res.statusCode, 200, res.body);
      return res.json<T>();
    };
    const enc = encodeURIComponent;

    describe('entities', () => {
      it('creates, retrieves and deletes an entity; 409 on a second create, 404 after delete', async () => {
        const created = await api('POST', '/entities', lamp(1));
        assert.equal(created.statusCode, 201, created.body);
        assert.equal(created.headers['location'], `/ngsi-ld/v1/entities/${enc('urn:ngsi-ld:Streetlight:1')}`);
        problem(await api('POST', '/entities', lamp(1)), 'AlreadyExists', 409);
        const e = await get(`/entities/${enc('urn:ngsi-ld:Streetlight:1')}`);
        assert.deepEqual(e, lamp(1));
        assert.equal((await api('DELETE', `/entities/${enc('urn:ngsi-ld:Streetlight:1')}`)).statusCode, 204);
        problem(await api('GET', `/entities/${enc('urn:ngsi-ld:Streetlight:1')}`), 'ResourceNotFound', 404);
        problem(
          await api('DELETE', `/entities/${enc('urn:ngsi-ld:Streetlight:1')}`),
          'ResourceNotFound',
          404,
        );
      });

      it('answers keyValues, concise and sysAttrs representations', async () => {
        await api('POST', '/entities', lamp(2));
        const id = enc('urn:ngsi-ld:Streetlight:2');
        const kv = await get(`/entities/${id}?options=keyValues`);
        assert.deepEqual(kv, {
          id: 'urn:ngsi-ld:Streetlight:2',
          type: 'Streetlight',
          status: 'ok',
          illuminance: 102,
          power: [52, 53],
          name: '灯 2',
          refDevice: 'urn:ngsi-ld:Device:2',
          location: { type: 'Point', coordinates: [121.4702, 31.23] },
        });
        const concise = await get(`/entities/${id}?format=concise`);
        assert.equal(concise['status'], 'ok');
        assert.deepEqual(concise['illuminance'], {
          value: 102,
          unitCode: 'LUX',
          observedAt: '2026-11-01T10:00:00Z',
        });
        assert.deepEqual(concise['refDevice'], { object: 'urn:ngsi-ld:Device:2' });
        // A concise entity is accepted back as input and means the same entity.
        const again = { ...concise, id: 'urn:ngsi-ld:Streetlight:2c' };
        assert.equal((await api('POST', '/entities', again)).statusCode, 201);
        const normalized = await get(`/entities/${enc('urn:ngsi-ld:Streetlight:2c')}`);
        assert.deepEqual(normalized, { ...lamp(2), id: 'urn:ngsi-ld:Streetlight:2c' });
        const sys = await get<Record<string, Record<string, unknown>>>(`/entities/${id}?options=sysAttrs`);
        assert.match(sys['createdAt'] as unknown as string, /^\d{4}-\d{2}-\d{2}T/);
        assert.match(String(sys['status']?.['modifiedAt']), /^\d{4}-\d{2}-\d{2}T/);
        problem(await api('GET', `/entities/${id}?options=keyValues,concise`), 'BadRequestData', 400);
        problem(await api('GET', `/entities/${id}?options=bogus`), 'BadRequestData', 400);
      });

      it('projects attributes with attrs, pick and omit', async () => {
        await api('POST', '/entities', lamp(3));
        const id = enc('urn:ngsi-ld:Streetlight:3');
        const keys = (o: object) => Object.keys(o).sort();
        assert.deepEqual(keys(await get(`/entities/${id}?attrs=status,name`)), [
          'id',
          'name',
          'status',
          'type',
        ]);
        assert.deepEqual(keys(await get(`/entities/${id}?pick=id,status`)), ['id', 'status']);
        const omitted = await get(`/entities/${id}?omit=type,power,location`);
        assert.deepEqual(keys(omitted), ['id', 'illuminance', 'name', 'refDevice', 'status']);
      });

      it('replaces (PUT) and merges (PATCH) entities', async () => {
        await api('POST', '/entities', lamp(4));
        const id = enc('urn:ngsi-ld:Streetlight:4');
        const merge = await api('PATCH', `/entities/${id}`, {
          status: { type: 'Property', value: 'off' },
          name: 'urn:ngsi-ld:null',
          power: { type: 'Property', value: 99, datasetId: 'urn:ngsi-ld:Dataset:meter' },
          colour: { type: 'Property', value: 'warm' },
        });
        assert.equal(merge.statusCode, 204, merge.body);
        const merged = await get(`/entities/${id}`);
        assert.deepEqual(merged['status'], { type: 'Property', value: 'off' });
        assert.equal(merged['name'], undefined);
        assert.deepEqual(merged['colour'], { type: 'Property', value: 'warm' });
        assert.deepEqual(merged['power'], [
          { type: 'Property', value: 99, datasetId: 'urn:ngsi-ld:Dataset:meter' },
          { type: 'Property', value: 55, datasetId: 'urn:ngsi-ld:Dataset:estimate' },
        ]);
        const put = await api('PUT', `/entities/${id}`, {
          id: 'urn:ngsi-ld:Streetlight:4',
          type: 'Lamp',
          a: 1,
        });
        assert.equal(put.statusCode, 204, put.body);
        assert.deepEqual(await get(`/entities/${id}`), {
          id: 'urn:ngsi-ld:Streetlight:4',
          type: 'Lamp',
          a: { type: 'Property', value: 1 },
        });
        problem(
          await api('PUT', `/entities/${id}`, { id: 'urn:ngsi-ld:Other:1', type: 'Lamp' }),
          'BadRequestData',
          400,
        );
        problem(
          await api('PATCH', `/entities/${enc('urn:ngsi-ld:None:1')}`, { a: 1 }),
          'ResourceNotFound',
          404,
        );
      });
    });

    describe('attributes', () => {
      const id = enc('urn:ngsi-ld:Streetlight:10');
      before(async () => {
        assert.equal((await api('POST', '/entities', lamp(10))).statusCode, 201);
      });

      it('appends attributes, with and without noOverwrite (207 with notUpdated)', async () => {
        const res = await api('POST', `/entities/${id}/attrs`, { extra: { type: 'Property', value: 1 } });
        assert.equal(res.statusCode, 204, res.body);
        const again = await api('POST', `/entities/${id}/attrs?options=noOverwrite`, {
          extra: { type: 'Property', value: 2 },
          fresh: { type: 'Property', value: 3 },
        });
        assert.equal(again.statusCode, 207, again.body);
        const result = again.json<{ updated: string[]; notUpdated: { attributeName: string }[] }>();
        assert.deepEqual(result.updated, ['fresh']);
        assert.deepEqual(
          result.notUpdated.map((n) => n.attributeName),
          ['extra'],
        );
        const e = await get<Record<string, { value: number }>>(`/entities/${id}`);
        assert.equal(e['extra']?.value, 1);
      });

      it('updates only existing attributes (PATCH …/attrs)', async () => {
        const res = await api('PATCH', `/entities/${id}/attrs`, {
          status: { type: 'Property', value: 'repaired' },
          nosuch: { type: 'Property', value: 1 },
        });
        assert.equal(res.statusCode, 207, res.body);
        assert.deepEqual(res.json<{ updated: string[] }>().updated, ['status']);
        const e = await get(`/entities/${id}`);
        assert.deepEqual(e['status'], { type: 'Property', value: 'repaired' });
        assert.equal(e['nosuch'], undefined);
      });

      it('partially updates one attribute and one datasetId instance', async () => {
        assert.equal((await api('PATCH', `/entities/${id}/attrs/illuminance`, { value: 7 })).statusCode, 204);
        const e = await get(`/entities/${id}`);
        assert.deepEqual(e['illuminance'], {
          type: 'Property',
          value: 7,
          unitCode: 'LUX',
          observedAt: '2026-11-01T10:00:00Z',
        });
        const ds = await api('PATCH', `/entities/${id}/attrs/power`, {
          value: 1,
          datasetId: 'urn:ngsi-ld:Dataset:estimate',
        });
        assert.equal(ds.statusCode, 204, ds.body);
        const e2 = await get<Record<string, { value: number }[]>>(`/entities/${id}`);
        assert.deepEqual(
          e2['power']?.map((i) => i.value),
          [60, 1],
        );
        problem(await api('PATCH', `/entities/${id}/attrs/nosuch`, { value: 1 }), 'ResourceNotFound', 404);
        problem(
          await api('PATCH', `/entities/${id}/attrs/power`, {
            value: 1,
            datasetId: 'urn:ngsi-ld:Dataset:none',
          }),
          'ResourceNotFound',
          404,
        );
      });

      it('replaces an attribute (PUT) and deletes instances, datasetIds and all', async () => {
        const put = await api('PUT', `/entities/${id}/attrs/name`, { type: 'Property', value: 'new' });
        assert.equal(put.statusCode, 204, put.body);
        problem(
          await api('PUT', `/entities/${id}/attrs/nosuch`, { type: 'Property', value: 1 }),
          'ResourceNotFound',
          404,
        );
        assert.equal(
          (await api('DELETE', `/entities/${id}/attrs/power?datasetId=${enc('urn:ngsi-ld:Dataset:meter')}`))
            .statusCode,
          204,
        );
        let e = await get(`/entities/${id}`);
        assert.deepEqual(e['power'], {
          type: 'Property',
          value: 1,
          datasetId: 'urn:ngsi-ld:Dataset:estimate',
        });
        problem(await api('DELETE', `/entities/${id}/attrs/power`), 'ResourceNotFound', 404);
        assert.equal((await api('DELETE', `/entities/${id}/attrs/power?deleteAll=true`)).statusCode, 204);
        e = await get(`/entities/${id}`);
        assert.equal(e['power'], undefined);
      });

      it('keeps every update under concurrent merges of one entity (no lost update)', async () => {
        const version = async () => {
          const { rows } = await sql<{ version: number; audited: number }>`
            select e.version, (select count(*)::int from trust.audit_queue q
              where q.resource_id = e.id and q.action = 'twin.entity.merge') +
              (select count(*)::int from trust.audit_records r
              where r.resource_id = e.id and r.action = 'twin.entity.merge') as audited
              from twin.entities e where e.tenant = '' and e.id = ${decodeURIComponent(id)}`.execute(
            t.database.db,
          );
          return rows[0] ?? { version: -1, audited: -1 };
        };
        const start = await version();
        const results = await Promise.all(
          Array.from({ length: 40 }, (_, i) =>
            api('PATCH', `/entities/${id}`, { [`c${i}`]: { type: 'Property', value: i } }),
          ),
        );
        assert.ok(results.every((r) => r.statusCode === 204));
        const e = await get(`/entities/${id}`);
        for (let i = 0; i < 40; i++) assert.deepEqual(e[`c${i}`], { type: 'Property', value: i });
        // Each merge wrote exactly once (a collision writes nothing and retries), audited once.
        const end = await version();
        assert.equal(end.version - start.version, 40);
        assert.equal(end.audited - start.audited, 40);
      });
    });

    describe('batch operations', () => {
      it('creates with 201, reports per-entity errors with 207', async () => {
        const ok = await api('POST', '/entityOperations/create', [lamp(20), lamp(21)]);
        assert.equal(ok.statusCode, 201, ok.body);
        assert.deepEqual(ok.json(), ['urn:ngsi-ld:Streetlight:20', 'urn:ngsi-ld:Streetlight:21']);
        const mixed = await api('POST', '/entityOperations/create', [
          lamp(22),
          lamp(20),
          { id: 'not a uri', type: 'X' },
        ]);
        assert.equal(mixed.statusCode, 207, mixed.body);
        const r = mixed.json<{
          success: string[];
          errors: { entityId: string; error: { type: string } }[];
        }>();
        assert.deepEqual(r.success, ['urn:ngsi-ld:Streetlight:22']);
        assert.deepEqual(r.errors.map((e) => [e.entityId, e.error.type]).sort(), [
          ['not a uri', `${ERR}BadRequestData`],
          ['urn:ngsi-ld:Streetlight:20', `${ERR}AlreadyExists`],
        ]);
        problem(await api('POST', '/entityOperations/create', {}), 'BadRequestData', 400);
        problem(await api('POST', '/entityOperations/create', []), 'BadRequestData', 400);
      });

      it('upserts (replace and update), updates, merges and deletes', async () => {
        const up = await api('POST', '/entityOperations/upsert', [lamp(23), { ...lamp(20), status: 'x' }]);
        assert.equal(up.statusCode, 201, up.body);
        assert.deepEqual(up.json(), ['urn:ngsi-ld:Streetlight:23']);
        const e20 = await get(`/entities/${enc('urn:ngsi-ld:Streetlight:20')}`);
        assert.deepEqual(e20['status'], { type: 'Property', value: 'x' });
        const upd = await api('POST', '/entityOperations/upsert?options=update', [
          { id: 'urn:ngsi-ld:Streetlight:20', type: 'Streetlight', extra: 1 },
        ]);
        assert.equal(upd.statusCode, 204, upd.body);
        const e = await get(`/entities/${enc('urn:ngsi-ld:Streetlight:20')}`);
        assert.deepEqual(e['extra'], { type: 'Property', value: 1 });
        assert.deepEqual(e['status'], { type: 'Property', value: 'x' });
        const update = await api('POST', '/entityOperations/update?options=noOverwrite', [
          { id: 'urn:ngsi-ld:Streetlight:20', extra: 2, more: 3 },
          { id: 'urn:ngsi-ld:Streetlight:999', extra: 2 },
        ]);
        assert.equal(update.statusCode, 207, update.body);
        const e2 = await get<Record<string, { value: unknown }>>(
          `/entities/${enc('urn:ngsi-ld:Streetlight:20')}`,
        );
        assert.equal(e2['extra']?.value, 1);
        assert.equal(e2['more']?.value, 3);
        const merge = await api('POST', '/entityOperations/merge', [
          { id: 'urn:ngsi-ld:Streetlight:20', more: 'urn:ngsi-ld:null' },
        ]);
        assert.equal(merge.statusCode, 204, merge.body);
        assert.equal((await get(`/entities/${enc('urn:ngsi-ld:Streetlight:20')}`))['more'], undefined);
        const del = await api('POST', '/entityOperations/delete', [
          'urn:ngsi-ld:Streetlight:20',
          'urn:ngsi-ld:Streetlight:998',
        ]);
        assert.equal(del.statusCode, 207, del.body);
        assert.deepEqual(del.json<{ success: string[] }>().success, ['urn:ngsi-ld:Streetlight:20']);
      });
    });

    describe('query', () => {
      before(async () => {
        const batch = Array.from({ length: 30 }, (_, i) => ({
          ...lamp(100 + i, 121.47 + i * 0.001, 31.23),
          type: 'QLamp',
          scope: i % 3 === 0 ? '/Shanghai/Baoshan' : '/Shanghai/Pudong/Lujiazui',
        }));
        const res = await api('POST', '/entityOperations/create', batch);
        assert.equal(res.statusCode, 201, res.body);
        await api('POST', '/entities', {
          id: 'urn:ngsi-ld:Vehicle:A1',
          type: ['Vehicle', 'Lamp'],
          speed: { type: 'Property', value: 80, observedAt: '2026-11-20T08:00:00Z' },
          address: { type: 'Property', value: { city: '上海', district: '宝山区' } },
          label: { type: 'LanguageProperty', languageMap: { zh: '公交车', en: 'bus' } },
        });
      });
      const ids = (list: { id: string }[]) => list.map((e) => e.id);

      it('selects by type, id, idPattern and attrs', async () => {
        const byType = await get<{ id: string }[]>('/entities?type=Vehicle');
        assert.deepEqual(ids(byType), ['urn:ngsi-ld:Vehicle:A1']);
        const both = await get<{ id: string }[]>('/entities?type=(Vehicle;Lamp)');
        assert.deepEqual(ids(both), ['urn:ngsi-ld:Vehicle:A1']);
        const byId = await get<{ id: string }[]>(
          `/entities?id=${enc('urn:ngsi-ld:Streetlight:101,urn:ngsi-ld:Streetlight:102')}&type=QLamp`,
        );
        assert.deepEqual(ids(byId), ['urn:ngsi-ld:Streetlight:101', 'urn:ngsi-ld:Streetlight:102']);
        const byPattern = await get<{ id: string }[]>(
          `/entities?idPattern=${enc('^urn:ngsi-ld:Streetlight:12[0-2]$')}`,
        );
        assert.deepEqual(ids(byPattern), [
          'urn:ngsi-ld:Streetlight:120',
          'urn:ngsi-ld:Streetlight:121',
          'urn:ngsi-ld:Streetlight:122',
        ]);
        const byAttr = await get<{ id: string }[]>('/entities?attrs=speed');
        assert.deepEqual(ids(byAttr), ['urn:ngsi-ld:Vehicle:A1']);
      });

      it('filters with q: comparisons, ranges, lists, patterns, compound members and datetimes', async () => {
        const q = async (expr: string, extra = '&type=QLamp&limit=100') =>
          ids(await get<{ id: string }[]>(`/entities?q=${enc(expr)}${extra}`)).length;
        assert.equal(await q('illuminance>=225'), 5);
        assert.equal(await q('illuminance==200..204'), 5);
        assert.equal(await q('status=="ok";illuminance<210'), 5);
        assert.equal(await q('status=="ok"|illuminance<210'), 20);
        assert.equal(await q('status~="defect.*"'), 15);
        assert.equal(await q('refDevice=="urn:ngsi-ld:Device:105"'), 1);
        assert.equal(await q('power==151..152'), 3);
        assert.equal(await q('power!=150,151,152'), 27);
        assert.equal(await q('illuminance.observedAt>2026-10-01T00:00:00Z'), 30);
        assert.equal(await q('address[district]=="宝山区"', '&type=Vehicle'), 1);
        assert.equal(await q('speed>100', '&type=Vehicle'), 0);
        assert.equal(await q('!speed', '&type=Vehicle'), 0);
      });

      it('filters by geoQ near, within and intersects, and by scopeQ', async () => {
        const near = await get<{ id: string }[]>(
          `/entities?type=QLamp&georel=${enc('near;maxDistance==500')}&geometry=Point&coordinates=${enc('[121.47,31.23]')}&limit=100`,
        );
        // Lamps 100..104 lie 0–4 × ~95 m east of the point.
        assert.deepEqual(
          ids(near).sort(),
          [100, 101, 102, 103, 104, 105].map((n) => `urn:ngsi-ld:Streetlight:${n}`),
        );
        const polygon = [
          [
            [121.4695, 31.229],
            [121.4745, 31.229],
            [121.4745, 31.231],
            [121.4695, 31.231],
            [121.4695, 31.229],
          ],
        ];
        const within = await get<{ id: string }[]>(
          `/entities?type=QLamp&georel=within&geometry=Polygon&coordinates=${enc(JSON.stringify(polygon))}&limit=100`,
        );
        assert.equal(within.length, 5);
        const post = await api('POST', '/entityOperations/query?limit=100', {
          type: 'Query',
          entities: [{ type: 'QLamp' }],
          geoQ: { georel: 'intersects', geometry: 'Polygon', coordinates: polygon },
          q: 'status=="ok"',
        });
        assert.equal(post.statusCode, 200, post.body);
        assert.equal(post.json<unknown[]>().length, 3);
        const scoped = await get<{ id: string }[]>(
          `/entities?type=QLamp&scopeQ=${enc('/Shanghai/Baoshan')}&limit=100`,
        );
        assert.equal(scoped.length, 10);
        const deep = await get<{ id: string }[]>(
          `/entities?type=QLamp&scopeQ=${enc('/Shanghai/#')}&limit=100`,
        );
        assert.equal(deep.length, 30);
      });

      it('counts, pages by offset and by the keyset next link', async () => {
        const first = await api('GET', '/entities?type=QLamp&scopeQ=/Shanghai/%23&limit=7&count=true');
        assert.equal(first.statusCode, 200);
        assert.equal(first.headers['ngsild-results-count'], '30');
        const seen = ids(first.json<{ id: string }[]>());
        let link = String(first.headers['link']);
        while (/rel="next"/.test(link)) {
          const next = /<([^>]+)>; rel="next"/.exec(link)?.[1];
          assert.ok(next);
          const page = await p.http.inject({ method: 'GET', url: next });
          assert.equal(page.statusCode, 200, page.body);
          seen.push(...ids(page.json<{ id: string }[]>()));
          link = String(page.headers['link'] ?? '');
        }
        assert.equal(seen.length, 30);
        assert.equal(new Set(seen).size, 30);
        const byOffset = await get<{ id: string }[]>(
          '/entities?type=QLamp&scopeQ=/Shanghai/%23&limit=7&offset=28',
        );
        assert.deepEqual(ids(byOffset), seen.slice(28));
        const onlyCount = await api('GET', '/entities?type=QLamp&limit=0&count=true');
        assert.deepEqual(onlyCount.json(), []);
        assert.ok(Number(onlyCount.headers['ngsild-results-count']) >= 30);
      });

      it('answers GeoJSON, keyValues lists and languages', async () => {
        const geo = await api('GET', '/entities?type=QLamp&limit=2', undefined, {
          accept: 'application/geo+json',
        });
        assert.equal(geo.statusCode, 200, geo.body);
        assert.match(String(geo.headers['content-type']), /application\/geo\+json/);
        const fc = geo.json<{ type: string; features: { type: string; geometry: { type: string } }[] }>();
        assert.equal(fc.type, 'FeatureCollection');
        assert.equal(fc.features[0]?.geometry.type, 'Point');
        const zh = await get(`/entities/${enc('urn:ngsi-ld:Vehicle:A1')}?lang=zh`);
        assert.deepEqual(zh['label'], { type: 'Property', value: '公交车', lang: 'zh' });
        const en = await get(`/entities/${enc('urn:ngsi-ld:Vehicle:A1')}?lang=en&options=keyValues`);
        assert.equal(en['label'], 'bus');
        problem(
          await api('GET', '/entities?type=QLamp', undefined, { accept: 'text/html' }),
          'NotAcceptable',
          406,
        );
      });

      it('refuses malformed queries with 400 and absurd pages', async () => {
        for (const bad of [
          'q=speed>>1',
          'q=(speed>1',
          `q=${enc("speed==1' or '1'='1")}`,
          `q=${enc('a==1) || (true')}`,
          `q=${enc('('.repeat(500) + 'a==1' + ')'.repeat(500))}`,
          'georel=near&geometry=Point&coordinates=[121,31]',
          'georel=within&geometry=Point&coordinates=[121,31',
          'georel=near;maxDistance==10&geometry=Point&coordinates=[181,31]',
          'georel=bogus&geometry=Point&coordinates=[121,31]',
          `idPattern=${enc('(')}`,
          'limit=-1',
          'limit=abc',
          'offset=1e9',
          `scopeQ=${enc('/a//b')}`,
          'type=(A;',
          'count=maybe',
        ])
          problem(await api('GET', `/entities?type=QLamp&${bad}`), 'BadRequestData', 400, bad);
        problem(await api('GET', '/entities?type=QLamp&limit=100000'), 'TooManyResults', 403);
        const tables = await sql<{ n: string }>`select count(*) as n from twin.entities`.execute(
          t.database.db,
        );
        assert.ok(Number(tables.rows[0]?.n) > 30);
      });
    });

    describe('linked entities (join)', () => {
      it('embeds related entities inline, or lists them flat, to joinLevel hops', async () => {
        const post = (body: unknown) => api('POST', '/entities', body);
        assert.equal(
          (await post({ id: 'urn:ngsi-ld:Building:J1', type: 'JBuilding', name: 'A' })).statusCode,
          201,
        );
        assert.equal(
          (
            await post({
              id: 'urn:ngsi-ld:Floor:J1',
              type: 'JFloor',
              inBuilding: { type: 'Relationship', object: 'urn:ngsi-ld:Building:J1' },
            })
          ).statusCode,
          201,
        );
        assert.equal(
          (
            await post({
              id: 'urn:ngsi-ld:Sensor:J1',
              type: 'JSensor',
              onFloor: { type: 'Relationship', object: 'urn:ngsi-ld:Floor:J1' },
            })
          ).statusCode,
          201,
        );
        const id = enc('urn:ngsi-ld:Sensor:J1');
        const inline = await get<{ onFloor: { entity: { id: string; inBuilding: { entity?: unknown } } } }>(
          `/entities/${id}?join=inline`,
        );
        assert.equal(inline.onFloor.entity.id, 'urn:ngsi-ld:Floor:J1');
        assert.equal(inline.onFloor.entity.inBuilding.entity, undefined, 'one level by default');
        const two = await get<{ onFloor: { entity: { inBuilding: { entity: { id: string } } } } }>(
          `/entities/${id}?join=inline&joinLevel=2`,
        );
        assert.equal(two.onFloor.entity.inBuilding.entity.id, 'urn:ngsi-ld:Building:J1');
        const flat = await get<{ id: string }[]>(`/entities/${id}?join=flat&joinLevel=2`);
        // The entity first, then what it links to, hop by hop.
        assert.deepEqual(
          flat.map((e) => e.id),
          ['urn:ngsi-ld:Sensor:J1', 'urn:ngsi-ld:Floor:J1', 'urn:ngsi-ld:Building:J1'],
        );
        const query = await get<{ id: string }[]>('/entities?type=JSensor&join=flat');
        assert.deepEqual(
          query.map((e) => e.id),
          ['urn:ngsi-ld:Sensor:J1', 'urn:ngsi-ld:Floor:J1'],
        );
        problem(await api('GET', `/entities/${id}?join=deep`), 'BadRequestData', 400);
        problem(await api('GET', `/entities/${id}?join=inline&joinLevel=99`), 'BadRequestData', 400);
      });
    });

    describe('discovery', () => {
      it('lists types and attributes accurately, with details', async () => {
        await api('POST', '/entities', {
          id: 'urn:ngsi-ld:Disc:1',
          type: 'DiscoveryThing',
          alpha: 1,
          beta: { type: 'Relationship', object: 'urn:x:1' },
        });
        await api('POST', '/entities', { id: 'urn:ngsi-ld:Disc:2', type: 'DiscoveryThing', alpha: 2 });
        const types = await get<{ type: string; typeList: string[] }>('/types');
        assert.equal(types.type, 'EntityTypeList');
        assert.ok(types.typeList.includes('DiscoveryThing'));
        const details = await get<{ typeName: string; attributeNames: string[] }[]>('/types?details=true');
        assert.deepEqual(details.find((d) => d.typeName === 'DiscoveryThing')?.attributeNames, [
          'alpha',
          'beta',
        ]);
        const info = await get<{
          entityCount: number;
          attributeDetails: { attributeName: string; attributeTypes: string[] }[];
        }>('/types/DiscoveryThing');
        assert.equal(info.entityCount, 2);
        assert.deepEqual(
          info.attributeDetails.map((a) => [a.attributeName, a.attributeTypes]),
          [
            ['alpha', ['Property']],
            ['beta', ['Relationship']],
          ],
        );
        problem(await api('GET', '/types/NoSuchType'), 'ResourceNotFound', 404);
        const attrs = await get<{ attributeList: string[] }>('/attributes');
        assert.ok(attrs.attributeList.includes('alpha'));
        const alpha = await get<{ attributeCount: number; typeNames: string[] }>('/attributes/alpha');
        assert.equal(alpha.attributeCount, 2);
        assert.deepEqual(alpha.typeNames, ['DiscoveryThing']);
      });
    });

    describe('@context', () => {
      it('expands with a Link-header context and compacts back with it', async () => {
        const link = `<${ctxUrl}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"`;
        const res = await api(
          'POST',
          '/entities',
          { id: 'urn:ngsi-ld:Lamp:ctx1', type: 'Lamp', brightness: 5 },
          { link },
        );
        assert.equal(res.statusCode, 201, res.body);
        const withCtx = await get(`/entities/${enc('urn:ngsi-ld:Lamp:ctx1')}`, {
          link,
        });
        assert.deepEqual(withCtx, {
          id: 'urn:ngsi-ld:Lamp:ctx1',
          type: 'Lamp',
          brightness: { type: 'Property', value: 5 },
        });
        const plain = await get(`/entities/${enc('urn:ngsi-ld:Lamp:ctx1')}`);
        assert.equal(plain['type'], 'https://example.org/ns#Lamp');
        assert.ok('https://example.org/ns#brightness' in plain);
        const q = await get<unknown[]>(`/entities?type=Lamp&q=brightness==5`, { link });
        assert.equal(q.length, 1);
        const ld = await api('GET', `/entities/${enc('urn:ngsi-ld:Lamp:ctx1')}`, undefined, {
          link,
          accept: 'application/ld+json',
        });
        assert.match(String(ld.headers['content-type']), /application\/ld\+json/);
        assert.equal(ld.json<Record<string, unknown>>()['@context'], ctxUrl);
      });

      it('takes @context from an ld+json body, and enforces the §6.3.5 rules', async () => {
        const body = { id: 'urn:ngsi-ld:Lamp:ctx2', type: 'Lamp', brightness: 1, '@context': [ctxUrl, CORE] };
        assert.equal((await api('POST', '/entities', body, LD_CT)).statusCode, 201);
        assert.equal(
          (await get(`/entities/${enc('urn:ngsi-ld:Lamp:ctx2')}`))['type'],
          'https://example.org/ns#Lamp',
        );
        // @context in a plain JSON body, or missing from an ld+json body, or in both places: 400.
        problem(
          await api('POST', '/entities', { ...body, id: 'urn:ngsi-ld:Lamp:ctx3' }),
          'BadRequestData',
          400,
        );
        problem(
          await api('POST', '/entities', { id: 'urn:ngsi-ld:Lamp:ctx3', type: 'Lamp' }, LD_CT),
          'BadRequestData',
          400,
        );
        const link = `<${ctxUrl}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"`;
        problem(
          await api('POST', '/entities', { ...body, id: 'urn:ngsi-ld:Lamp:ctx3' }, { ...LD_CT, link }),
          'BadRequestData',
          400,
        );
      });

      it('hosts, lists, serves, uses and deletes contexts (/jsonldContexts)', async () => {
        const doc = {
          '@context': { hosted: 'https://example.org/hosted#', Pump: 'hosted:Pump', flow: 'hosted:flow' },
        };
        const added = await api('POST', '/jsonldContexts', doc);
        assert.equal(added.statusCode, 201, added.body);
        const location = String(added.headers['location']);
        assert.match(location, /^\/ngsi-ld\/v1\/jsonldContexts\/[0-9a-f-]{36}$/);
        const served = await p.http.inject({ method: 'GET', url: location });
        assert.equal(served.statusCode, 200);
        assert.deepEqual(served.json(), doc);
        // A Link header naming the hosted context resolves locally (any host name).
        const link = `<http://broker.example${location}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"`;
        assert.equal(
          (await api('POST', '/entities', { id: 'urn:ngsi-ld:Pump:1', type: 'Pump', flow: 3 }, { link }))
            .statusCode,
          201,
        );
        const raw = await get(`/entities/${enc('urn:ngsi-ld:Pump:1')}`);
        assert.equal(raw['type'], 'https://example.org/hosted#Pump');
        // The fetched context of an earlier test is listed as Cached; hosted ones as Hosted.
        const details = await get<{ URL: string; kind: string; localId: string }[]>(
          '/jsonldContexts?details=true',
        );
        assert.ok(details.some((c) => c.kind === 'Hosted' && location.endsWith(c.localId)));
        assert.ok(details.some((c) => c.kind === 'Cached' && c.URL === ctxUrl));
        const urls = await get<string[]>('/jsonldContexts?kind=Cached');
        assert.deepEqual(urls, [ctxUrl]);
        assert.equal((await api('DELETE', `/jsonldContexts/${enc(ctxUrl)}?reload=true`)).statusCode, 204);
        problem(
          await api('DELETE', `${location.replace('/ngsi-ld/v1', '')}?reload=true`),
          'BadRequestData',
          400,
        );
        assert.equal((await p.http.inject({ method: 'DELETE', url: location })).statusCode, 204);
        problem(await api('GET', location.replace('/ngsi-ld/v1', '')), 'ResourceNotFound', 404);
        // Once deleted, the hosted context no longer resolves.
        problem(await api('GET', '/entities?type=Pump', undefined, { link }), 'LdContextNotAvailable', 503);
        problem(await api('POST', '/jsonldContexts', { nope: 1 }), 'BadRequestData', 400);
        problem(await api('GET', '/jsonldContexts?kind=Other'), 'BadRequestData', 400);
      });

      it('answers LdContextNotAvailable quickly for a dead or slow context server', async () => {
        for (const url of [slowUrl, 'http://127.0.0.1:1/nothing.jsonld']) {
          const started = performance.now();
          const res = await api('GET', '/entities?type=Lamp', undefined, {
            link: `<${url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"`,
          });
          problem(res, 'LdContextNotAvailable', 503);
          assert.ok(performance.now() - started < 3000, 'answered within the timeout');
        }
      });
    });

    describe('tenants', () => {
      it('isolates tenants, creates them on first write, 404s unknown ones', async () => {
        problem(
          await api('GET', '/entities?type=Streetlight', undefined, { 'ngsild-tenant': 'nowhere' }),
          'NonexistentTenant',
          404,
        );
        const res = await api('POST', '/entities', lamp(500), { 'ngsild-tenant': 'minhang' });
        assert.equal(res.statusCode, 201, res.body);
        const inTenant = await get<unknown[]>('/entities?type=Streetlight&limit=100', {
          'ngsild-tenant': 'minhang',
        });
        assert.equal(inTenant.length, 1);
        problem(await api('GET', `/entities/${enc('urn:ngsi-ld:Streetlight:500')}`), 'ResourceNotFound', 404);
        problem(
          await api('GET', '/entities', undefined, { 'ngsild-tenant': 'bad tenant!' }),
          'BadRequestData',
          400,
        );
        // Administration needs a twin admin even when the NGSI-LD API is open.
        assert.equal((await p.http.inject({ method: 'GET', url: '/api/v1/twin/tenants' })).statusCode, 401);
        const login = await p.http.inject({
          method: 'POST',
          url: '/api/v1/auth/login',
          payload: { username: 'admin', password: DEMO_PASSWORD },
        });
        const token = login.json<{ accessToken: string }>().accessToken;
        const auth = { authorization: `Bearer ${token}` };
        const list = await p.http.inject({ method: 'GET', url: '/api/v1/twin/tenants', headers: auth });
        assert.equal(list.statusCode, 200, list.body);
        assert.deepEqual(
          list.json<{ name: string; entities: number }[]>().find((x) => x.name === 'minhang')?.entities,
          1,
        );
        const drop = await p.http.inject({
          method: 'DELETE',
          url: '/api/v1/twin/tenants/minhang',
          headers: auth,
        });
        assert.equal(drop.statusCode, 200, drop.body);
        problem(
          await api('GET', '/entities?type=Streetlight', undefined, { 'ngsild-tenant': 'minhang' }),
          'NonexistentTenant',
          404,
        );
      });
    });

    describe('bad input', () => {
      const cases: [string, unknown][] = [
        ['id not a URI', { id: 'lamp 1', type: 'Streetlight' }],
        ['missing id', { type: 'Streetlight' }],
        ['missing type', { id: 'urn:ngsi-ld:X:1' }],
        [
          'reserved attribute name',
          { id: 'urn:ngsi-ld:X:1', type: 'X', value: { type: 'Property', value: 1 } },
        ],
        ['attribute name with forbidden characters', { id: 'urn:ngsi-ld:X:1', type: 'X', 'a(b)': 1 }],
        ['unknown attribute type', { id: 'urn:ngsi-ld:X:1', type: 'X', a: { type: 'Propertee', value: 1 } }],
        ['Property without value', { id: 'urn:ngsi-ld:X:1', type: 'X', a: { type: 'Property' } }],
        [
          'Relationship to a non-URI',
          { id: 'urn:ngsi-ld:X:1', type: 'X', r: { type: 'Relationship', object: 'not uri' } },
        ],
        [
          'value and object together',
          { id: 'urn:ngsi-ld:X:1', type: 'X', r: { type: 'Relationship', object: 'urn:a:b', value: 1 } },
        ],
        [
          'observedAt not a date-time',
          { id: 'urn:ngsi-ld:X:1', type: 'X', a: { type: 'Property', value: 1, observedAt: 'yesterday' } },
        ],
        [
          'datasetId not a URI',
          { id: 'urn:ngsi-ld:X:1', type: 'X', a: { type: 'Property', value: 1, datasetId: 'd 1' } },
        ],
        [
          'two default instances',
          {
            id: 'urn:ngsi-ld:X:1',
            type: 'X',
            a: [
              { type: 'Property', value: 1 },
              { type: 'Property', value: 2 },
            ],
          },
        ],
        [
          'latitude out of range',
          {
            id: 'urn:ngsi-ld:X:1',
            type: 'X',
            location: { type: 'GeoProperty', value: { type: 'Point', coordinates: [121, 91] } },
          },
        ],
        [
          'not GeoJSON',
          {
            id: 'urn:ngsi-ld:X:1',
            type: 'X',
            location: { type: 'GeoProperty', value: { lat: 31, lon: 121 } },
          },
        ],
        [
          'self-intersecting polygon',
          {
            id: 'urn:ngsi-ld:X:1',
            type: 'X',
            location: {
              type: 'GeoProperty',
              value: {
                type: 'Polygon',
                coordinates: [
                  [
                    [0, 0],
                    [1, 1],
                    [1, 0],
                    [0, 1],
                    [0, 0],
                  ],
                ],
              },
            },
          },
        ],
        [
          'unclosed ring',
          {
            id: 'urn:ngsi-ld:X:1',
            type: 'X',
            location: {
              type: 'Polygon',
              coordinates: [
                [
                  [0, 0],
                  [1, 1],
                  [1, 0],
                  [0, 1],
                ],
              ],
            },
          },
        ],
        ['a body that is an array', [{ id: 'urn:ngsi-ld:X:1', type: 'X' }]],
        [
          'deeply nested value',
          {
            id: 'urn:ngsi-ld:X:1',
            type: 'X',
            a: JSON.parse('{"v":'.repeat(100) + '1' + '}'.repeat(100)) as unknown,
          },
        ],
        ['scope not a path', { id: 'urn:ngsi-ld:X:1', type: 'X', scope: 'Shanghai' }],
      ];
      for (const [name, body] of cases)
        it(`refuses ${name} with BadRequestData and writes nothing`, async () => {
          problem(await api('POST', '/entities', body), 'BadRequestData', 400);
          problem(await api('GET', `/entities/${enc('urn:ngsi-ld:X:1')}`), 'ResourceNotFound', 404);
        });

      it('refuses broken JSON, non-UTF-8, wrong media types and huge bodies', async () => {
        problem(await api('POST', '/entities', '{"id": "urn:x:1", '), 'InvalidRequest', 400);
        problem(
          await api('POST', '/entities', Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d])),
          'InvalidRequest',
          400,
        );
        problem(
          await api('POST', '/entities', 'id=1', { 'content-type': 'text/plain' }),
          'UnsupportedMediaType',
          415,
        );
        const huge = { id: 'urn:ngsi-ld:X:huge', type: 'X', blob: 'x'.repeat(300_000) };
        problem(await api('POST', '/entities', huge), 'PayloadTooLarge', 413);
        problem(await api('GET', `/entities/${enc('urn:ngsi-ld:X:huge')}`), 'ResourceNotFound', 404);
      });

      it('treats injection strings as data, never as SQL', async () => {
        const evil = "urn:ngsi-ld:X:'; drop table twin.entities; --";
        const res = await api('POST', '/entities', { id: evil, type: 'X', a: "' or 1=1 --" });
        assert.equal(res.statusCode, 400, 'a quote is not allowed in a URI');
        const ok = await api('POST', '/entities', {
          id: 'urn:ngsi-ld:X:inj',
          type: 'X',
          a: "'; drop table twin.entities; --",
        });
        assert.equal(ok.statusCode, 201, ok.body);
        const found = await get<unknown[]>(
          `/entities?type=X&q=${enc('a=="\'; drop table twin.entities; --"')}`,
        );
        assert.equal(found.length, 1);
      });
    });
  });
}
