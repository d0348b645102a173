/**
 * The NGSI-LD temporal API over HTTP (ETSI GS CIM 009 v1.8 §5.6.11–16, §5.7.3–4), on every
 * engine of this run: history recorded by entity writes (instances, deletions), retrieval and
 * query with timerel/timeproperty/lastN, simplified temporal values, aggregations per period,
 * temporal entity create/append/delete and instance changes, partitions, jurisdiction, and bad
 * input (inverted or unbounded ranges, absurd lastN, unknown aggregation methods or durations).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { engines, type TestDatabase } from '../../test/helpers/engines.ts';
import { signIn, startTestPlatform } from '../../test/helpers/platform.ts';
import type { Platform } from '../platform.ts';
import { historyOf } from './temporal.history.ts';
import { parseDuration, temporalQueryFrom } from './temporal.model.ts';

const ERR = 'https://uri.etsi.org/ngsi-ld/errors/';
const JSON_CT = { 'content-type': 'application/json' };
const enc = encodeURIComponent;

interface Res {
  statusCode: number;
  headers: Record<string, unknown>;
  body: string;
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- the caller names the shape it expects
  json<T>(): T;
}
type Obj = Record<string, unknown>;
type Inst = Obj & { value?: unknown; observedAt?: string; instanceId?: string };

describe('temporal model (pure)', () => {
  it('parses ISO 8601 durations and refuses the rest', () => {
    assert.deepEqual(parseDuration('PT1H'), { kind: 'fixed', seconds: 3600 });
    assert.deepEqual(parseDuration('P1DT30M'), { kind: 'fixed', seconds: 88_200 });
    assert.deepEqual(parseDuration('P2W'), { kind: 'fixed', seconds: 1_209_600 });
    assert.deepEqual(parseDuration('P1M'), { kind: 'months', months: 1 });
    assert.deepEqual(parseDuration('P1Y'), { kind: 'months', months: 12 });
    assert.deepEqual(parseDuration('PT0S'), { kind: 'whole' });
    for (const bad of ['P', 'PT', '1H', 'PT1X', 'P1M1D', 'PT0.5S', 'P-1D', 'PT1H ', 'P1DT'])
      assert.throws(() => parseDuration(bad), /aggrPeriodDuration|second|mixing/, bad);
  });

  it('refuses inverted, unbounded and malformed time ranges and absurd lastN', () => {
    const q = (params: Obj) => () => temporalQueryFrom({ type: 'T', ...params }, { single: false });
    assert.throws(q({ timerel: 'between', timeAt: '2026-01-02T00:00:00Z' }), /endTimeAt: required/);
    assert.throws(
      q({ timerel: 'between', timeAt: '2026-01-02T00:00:00Z', endTimeAt: '2026-01-01T00:00:00Z' }),
      /inverted/,
    );
    assert.throws(
      q({ timerel: 'between', timeAt: '2026-01-02T00:00:00Z', endTimeAt: '2026-01-02T00:00:00Z' }),
      /inverted/,
    );
    assert.throws(q({ timerel: 'before' }), /timeAt: required/);
    assert.throws(q({ timerel: 'after', timeAt: 'yesterday' }), /not an ISO 8601/);
    assert.throws(q({ timerel: 'during', timeAt: '2026-01-02T00:00:00Z' }), /timerel/);
    assert.throws(q({ timeAt: '2026-01-02T00:00:00Z' }), /without timerel/);
    assert.throws(q({ lastN: '0' }), /positive integer/);
    assert.throws(q({ lastN: '-3' }), /positive integer/);
    assert.throws(q({ lastN: '99999999' }), /exceeds the maximum/);
    assert.throws(q({ timeproperty: 'deletedAt' }), /timeproperty/);
    assert.throws(q({ options: 'aggregatedValues' }), /aggrMethods: required/);
    assert.throws(q({ options: 'aggregatedValues', aggrMethods: 'median' }), /median/);
    assert.throws(q({ aggrMethods: 'avg' }), /only with options=aggregatedValues/);
    assert.throws(q({ options: 'temporalValues,aggregatedValues', aggrMethods: 'avg' }), /exclude/);
    assert.throws(q({ bogus: '1' }), /not a parameter/);
    assert.throws(() => temporalQueryFrom({}, { single: false }), /needs at least one of/);
    const ok = temporalQueryFrom(
      {
        type: 'T',
        timerel: 'between',
        timeAt: '2026-01-01T00:00:00+08:00',
        endTimeAt: '2026-01-02T00:00:00Z',
      },
      { single: false },
    );
    assert.equal(ok.from, '2025-12-31T16:00:00.000Z');
    assert.equal(ok.to, '2026-01-02T00:00:00.000Z');
  });

  it('records the instances a write changed and the ones it removed', () => {
    const a = { type: 'Property' as const, value: 1, modifiedAt: 't1' };
    const b = { type: 'Property' as const, value: 2, modifiedAt: 't2' };
    const d = { type: 'Relationship' as const, object: 'urn:x', datasetId: 'urn:ds:1' };
    const h = historyOf({ 'ex:a': [a], 'ex:r': [d], 'ex:same': [a] }, { 'ex:a': [b], 'ex:same': [a] });
    assert.deepEqual(
      h.map((x) => [x.attr, x.deleted === true, x.inst]),
      [
        ['ex:a', false, b],
        ['ex:r', true, { type: 'Relationship', object: 'urn:ngsi-ld:null', datasetId: 'urn:ds:1' }],
      ],
    );
  });
});

for (const engine of engines()) {
  describe(`NGSI-LD temporal API on ${engine.name}`, () => {
    let t: TestDatabase;
    let p: Platform;

    before(async () => {
      t = await engine.open();
      p = await startTestPlatform(t);
    });
    after(async () => {
      await p.stop();
      await t.dispose();
    });

    const api = async (
      method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE',
      url: string,
      body?: unknown,
      headers: Record<string, string> = {},
      platform: Platform = p,
    ): Promise<Res> =>
      platform.http.inject({
        method,
        url: `/ngsi-ld/v1${url}`,
        headers: body === undefined ? headers : { ...JSON_CT, ...headers },
        ...(body === undefined ? {} : { payload: typeof body === 'string' ? body : JSON.stringify(body) }),
      });
    const problem = (res: Res, type: string, status: number, detail?: RegExp) => {
      assert.equal(res.statusCode, status, res.body);
      const b = res.json<{ type: string; detail: string }>();
      assert.equal(b.type, `${ERR}${type}`, res.body);
      if (detail) assert.match(b.detail, detail);
    };
    const get = async <T = Obj>(url: string): Promise<T> => {
      const res = await api('GET', url);
      assert.equal(res.statusCode, 200, res.body);
      return res.json<T>();
    };
    const at = (minute: number) => new Date(Date.UTC(2026, 10, 1, 8, minute)).toISOString();

    describe('history recorded by entity writes', () => {
      const id = 'urn:ngsi-ld:AirQualityObserved:baoshan-1';
      before(async () => {
        const created = await api('POST', '/entities', {
          id,
          type: 'AirQualityObserved',
          pm25: { type: 'Property', value: 30, unitCode: 'GQ', observedAt: at(0) },
          station: { type: 'Relationship', object: 'urn:ngsi-ld:Station:1' },
          name: { type: 'Property', value: '宝山监测站' },
        });
        assert.equal(created.statusCode, 201, created.body);
        for (const [i, v] of [35, 42, 38].entries()) {
          const r = await api('PATCH', `/entities/${enc(id)}/attrs`, {
            pm25: { type: 'Property', value: v, unitCode: 'GQ', observedAt: at(10 * (i + 1)) },
          });
          assert.equal(r.statusCode, 204, r.body);
        }
        assert.equal((await api('DELETE', `/entities/${enc(id)}/attrs/station`)).statusCode, 204);
      });

      it('retrieves every instance in time order with instanceIds', async () => {
        const e = await get<Obj & { pm25: Inst[]; station: Inst[]; name: Inst[] }>(
          `/temporal/entities/${enc(id)}`,
        );
        assert.equal(e['id'], id);
        assert.equal(e['type'], 'AirQualityObserved');
        assert.deepEqual(
          e.pm25.map((i) => [i.value, i.observedAt, i['unitCode']]),
          [
            [30, at(0), 'GQ'],
            [35, at(10), 'GQ'],
            [42, at(20), 'GQ'],
            [38, at(30), 'GQ'],
          ],
        );
        for (const i of e.pm25)
          assert.match(String(i.instanceId), /^urn:ngsi-ld:attribute:instance:[0-9a-f-]{36}$/);
        assert.equal(new Set(e.pm25.map((i) => i.instanceId)).size, 4);
        // The deleted relationship: its instance, then the deletion (urn:ngsi-ld:null with deletedAt).
        assert.equal(e.station.length, 2);
        assert.equal(e.station[0]?.['object'], 'urn:ngsi-ld:Station:1');
        const deletion = e.station[1];
        assert.ok(deletion);
        assert.equal(deletion['object'], 'urn:ngsi-ld:null');
        assert.equal(typeof deletion['deletedAt'], 'string');
        assert.equal(e.name.length, 1);
      });

      it('selects by timerel, lastN and attrs; temporalValues; sysAttrs', async () => {
        const base = `/temporal/entities/${enc(id)}?attrs=pm25`;
        const values = (e: Obj) => (e['pm25'] as Inst[]).map((i) => i.value);
        assert.deepEqual(values(await get(`${base}&timerel=before&timeAt=${at(20)}`)), [30, 35]);
        assert.deepEqual(values(await get(`${base}&timerel=after&timeAt=${at(20)}`)), [42, 38]);
        assert.deepEqual(
          values(await get(`${base}&timerel=between&timeAt=${at(10)}&endTimeAt=${at(30)}`)),
          [35, 42],
        );
        assert.deepEqual(values(await get(`${base}&lastN=2`)), [42, 38]);
        const only = await get(base);
        assert.deepEqual(Object.keys(only).sort(), ['id', 'pm25', 'type']);
        const simplified = await get(`${base}&options=temporalValues&lastN=2`);
        assert.deepEqual(simplified['pm25'], {
          type: 'Property',
          values: [
            [42, at(20)],
            [38, at(30)],
          ],
        });
        const rel = await get(`/temporal/entities/${enc(id)}?attrs=station&options=temporalValues`);
        assert.equal((rel['station'] as Obj)['type'], 'Relationship');
        assert.equal(((rel['station'] as Obj)['objects'] as unknown[]).length, 2);
        const sys = await get(`${base}&options=sysAttrs&lastN=1`);
        const inst = (sys['pm25'] as Inst[])[0] as Inst;
        assert.equal(typeof inst['createdAt'], 'string');
        assert.equal(typeof inst['modifiedAt'], 'string');
        assert.equal(typeof sys['createdAt'], 'string');
        // timeproperty=createdAt: all four were recorded just now, none before 2026-11-01.
        const none = await get(`${base}&timeproperty=createdAt&timerel=before&timeAt=2026-11-01T00:00:00Z`);
        assert.equal(none['pm25'], undefined);
      });

      it('queries temporal entities by type with count and keyset pages', async () => {
        for (let n = 2; n <= 4; n++)
          assert.equal(
            (
              await api('POST', '/entities', {
                id: `urn:ngsi-ld:AirQualityObserved:baoshan-${n}`,
                type: 'AirQualityObserved',
                pm25: { type: 'Property', value: n, observedAt: at(n) },
              })
            ).statusCode,
            201,
          );
        const first = await api(
          'GET',
          '/temporal/entities?type=AirQualityObserved&attrs=pm25&limit=3&count=true',
        );
        assert.equal(first.statusCode, 200, first.body);
        assert.equal(first.headers['ngsild-results-count'], '4');
        const page = first.json<Obj[]>();
        assert.deepEqual(
          page.map((e) => e['id']),
          [1, 2, 3].map((n) => `urn:ngsi-ld:AirQualityObserved:baoshan-${n}`),
        );
        const next = /<([^>]+)>; rel="next"/.exec(String(first.headers['link']))?.[1];
        assert.ok(next, String(first.headers['link']));
        const second = await p.http.inject({ method: 'GET', url: next });
        assert.deepEqual(
          second.json<Obj[]>().map((e) => e['id']),
          ['urn:ngsi-ld:AirQualityObserved:baoshan-4'],
        );
        const q = await get<Obj[]>('/temporal/entities?type=AirQualityObserved&q=pm25>3&attrs=pm25');
        assert.deepEqual(
          q.map((e) => e['id']),
          ['urn:ngsi-ld:AirQualityObserved:baoshan-1', 'urn:ngsi-ld:AirQualityObserved:baoshan-4'],
        );
        const posted = await api('POST', '/temporal/entityOperations/query', {
          type: 'Query',
          entities: [{ type: 'AirQualityObserved' }],
          attrs: ['pm25'],
          temporalQ: { timerel: 'after', timeAt: at(3) },
        });
        assert.equal(posted.statusCode, 200, posted.body);
        assert.deepEqual(
          posted.json<Obj[]>().map((e) => [e['id'], (e['pm25'] as Inst[] | undefined)?.length]),
          [
            ['urn:ngsi-ld:AirQualityObserved:baoshan-1', 3],
            ['urn:ngsi-ld:AirQualityObserved:baoshan-2', undefined],
            ['urn:ngsi-ld:AirQualityObserved:baoshan-3', 1],
            ['urn:ngsi-ld:AirQualityObserved:baoshan-4', 1],
          ],
        );
      });

      it('keeps history after the entity is deleted, with every attribute marked deleted', async () => {
        const gone = 'urn:ngsi-ld:AirQualityObserved:baoshan-4';
        assert.equal((await api('DELETE', `/entities/${enc(gone)}`)).statusCode, 204);
        const e = await get(`/temporal/entities/${enc(gone)}`);
        const pm = e['pm25'] as Inst[];
        assert.deepEqual(
          pm.map((i) => i.value),
          [4, 'urn:ngsi-ld:null'],
        );
      });
    });

    describe('temporal entity writes and aggregations', () => {
      const id = 'urn:ngsi-ld:WaterLevel:suzhou-creek-1';
      const series = Array.from({ length: 12 }, (_, i) => ({
        type: 'Property',
        value: i + 1,
        observedAt: new Date(Date.UTC(2026, 9, 1, 0, i * 10)).toISOString(),
      }));

      it('creates (201), appends (204) and aggregates per hour', async () => {
        const created = await api('POST', '/temporal/entities', {
          id,
          type: 'WaterLevel',
          level: series.slice(0, 6),
          status: [{ type: 'Property', value: 'normal', observedAt: series[0]?.observedAt }],
        });
        assert.equal(created.statusCode, 201, created.body);
        assert.equal(created.headers['location'], `/ngsi-ld/v1/temporal/entities/${enc(id)}`);
        // The entity itself does not exist: only its history.
        problem(await api('GET', `/entities/${enc(id)}`), 'ResourceNotFound', 404);
        assert.equal(
          (await api('POST', '/temporal/entities', { id, type: 'WaterLevel', level: series.slice(6, 9) }))
            .statusCode,
          204,
        );
        assert.equal(
          (await api('POST', `/temporal/entities/${enc(id)}/attrs`, { level: series.slice(9) })).statusCode,
          204,
        );
        const agg = await get(
          `/temporal/entities/${enc(id)}?attrs=level&options=aggregatedValues&aggrMethods=totalCount,distinctCount,sum,avg,min,max,stddev,sumsq&aggrPeriodDuration=PT1H&timerel=after&timeAt=2026-10-01T00:00:00Z`,
        );
        const level = agg['level'] as Record<string, [number, string, string][]>;
        assert.equal(level['type'], 'Property');
        assert.deepEqual(level['totalCount'], [
          [6, '2026-10-01T00:00:00.000Z', '2026-10-01T01:00:00.000Z'],
          [6, '2026-10-01T01:00:00.000Z', '2026-10-01T02:00:00.000Z'],
        ]);
        assert.deepEqual(
          level['avg']?.map((x) => x[0]),
          [3.5, 9.5],
        );
        assert.deepEqual(
          level['sum']?.map((x) => x[0]),
          [21, 57],
        );
        assert.deepEqual(
          level['min']?.map((x) => x[0]),
          [1, 7],
        );
        assert.deepEqual(
          level['max']?.map((x) => x[0]),
          [6, 12],
        );
        assert.deepEqual(
          level['sumsq']?.map((x) => x[0]),
          [91, 559],
        );
        assert.deepEqual(
          level['distinctCount']?.map((x) => x[0]),
          [6, 6],
        );
        const sd = level['stddev']?.[0]?.[0] ?? NaN;
        assert.ok(Math.abs(sd - Math.sqrt(35 / 12)) < 1e-9, String(sd));
        // The whole range as one period.
        const whole = await get(
          `/temporal/entities/${enc(id)}?attrs=level&options=aggregatedValues&aggrMethods=avg,totalCount&timerel=between&timeAt=2026-10-01T00:00:00Z&endTimeAt=2026-10-02T00:00:00Z`,
        );
        assert.deepEqual((whole['level'] as Obj)['totalCount'], [
          [12, '2026-10-01T00:00:00.000Z', '2026-10-02T00:00:00.000Z'],
        ]);
        // Calendar months.
        const monthly = await get(
          `/temporal/entities/${enc(id)}?attrs=level&options=aggregatedValues&aggrMethods=totalCount&aggrPeriodDuration=P1M`,
        );
        assert.deepEqual((monthly['level'] as Obj)['totalCount'], [
          [12, '2026-10-01T00:00:00.000Z', '2026-11-01T00:00:00.000Z'],
        ]);
        // A string attribute: counts, no numeric aggregates.
        const status = await get(
          `/temporal/entities/${enc(id)}?attrs=status&options=aggregatedValues&aggrMethods=totalCount,avg`,
        );
        assert.deepEqual(
          ((status['status'] as Obj)['avg'] as unknown[][]).map((x) => x[0]),
          [null],
        );
      });

      it('modifies and deletes one instance, deletes an attribute and the temporal entity', async () => {
        const e = await get(`/temporal/entities/${enc(id)}?attrs=level&lastN=1`);
        const last = (e['level'] as Inst[])[0] as Inst;
        assert.equal(last.value, 12);
        const path = `/temporal/entities/${enc(id)}/attrs/level/${enc(String(last.instanceId))}`;
        assert.equal((await api('PATCH', path, { value: 120 })).statusCode, 204);
        const changed = await get(`/temporal/entities/${enc(id)}?attrs=level&lastN=1`);
        assert.deepEqual(
          (changed['level'] as Inst[]).map((i) => [i.value, i.instanceId, i.observedAt]),
          [[120, last.instanceId, last.observedAt]],
        );
        problem(
          await api('PATCH', path, { type: 'Relationship', object: 'urn:x' }),
          'BadRequestData',
          400,
          /keeps its attribute type/,
        );
        assert.equal((await api('DELETE', path)).statusCode, 204);
        problem(await api('DELETE', path), 'ResourceNotFound', 404);
        problem(
          await api('DELETE', `/temporal/entities/${enc(id)}/attrs/level/not-an-instance`),
          'ResourceNotFound',
          404,
        );
        const count = await get(
          `/temporal/entities/${enc(id)}?attrs=level&options=aggregatedValues&aggrMethods=totalCount`,
        );
        assert.equal(((count['level'] as Obj)['totalCount'] as unknown[][])[0]?.[0], 11);
        assert.equal((await api('DELETE', `/temporal/entities/${enc(id)}/attrs/status`)).statusCode, 204);
        problem(await api('DELETE', `/temporal/entities/${enc(id)}/attrs/status`), 'ResourceNotFound', 404);
        const left = await get(`/temporal/entities/${enc(id)}`);
        assert.equal(left['status'], undefined);
        assert.equal((await api('DELETE', `/temporal/entities/${enc(id)}`)).statusCode, 204);
        problem(await api('GET', `/temporal/entities/${enc(id)}`), 'ResourceNotFound', 404);
        const { rows } = await sql<{ n: number }>`select count(*)::int as n from twin.attr_instances
          where entity_id = ${id}`.execute(t.database.db);
        assert.equal(rows[0]?.n, 0);
        const audited = await sql<{
          action: string;
        }>`select action from trust.audit_queue where resource_id = ${id}
          union all select action from trust.audit_records where resource_id = ${id}`.execute(t.database.db);
        assert.deepEqual(audited.rows.map((r) => r.action).sort(), [
          'twin.temporal.append',
          'twin.temporal.append',
          'twin.temporal.create',
          'twin.temporal.delete',
          'twin.temporal.delete-attribute',
          'twin.temporal.delete-instance',
          'twin.temporal.update-instance',
        ]);
      });

      it('refuses bad temporal writes and changes nothing', async () => {
        const before = await sql<{ n: number }>`select count(*)::int as n from twin.attr_instances`.execute(
          t.database.db,
        );
        problem(await api('POST', '/temporal/entities', { type: 'WaterLevel' }), 'BadRequestData', 400, /id/);
        problem(await api('POST', '/temporal/entities', { id: 'urn:x:1' }), 'BadRequestData', 400, /type/);
        problem(await api('POST', '/temporal/entities', [1, 2]), 'BadRequestData', 400);
        problem(
          await api('POST', '/temporal/entities', { id: 'urn:x:1', type: 'T', level: [] }),
          'BadRequestData',
          400,
          /at least one instance/,
        );
        problem(
          await api('POST', '/temporal/entities', {
            id: 'urn:x:1',
            type: 'T',
            level: [{ type: 'Property', value: 1 }, 7],
          }),
          'BadRequestData',
          400,
          /level\[1\]/,
        );
        problem(
          await api('POST', '/temporal/entities', {
            id: 'urn:x:1',
            type: 'T',
            level: [{ type: 'Property', value: 1, observedAt: 'noon' }],
          }),
          'BadRequestData',
          400,
        );
        problem(await api('POST', '/temporal/entities', '{"id":'), 'InvalidRequest', 400);
        problem(
          await api('POST', `/temporal/entities/${enc('urn:x:missing')}/attrs`, { level: { value: 1 } }),
          'ResourceNotFound',
          404,
        );
        const after = await sql<{ n: number }>`select count(*)::int as n from twin.attr_instances`.execute(
          t.database.db,
        );
        assert.equal(after.rows[0]?.n, before.rows[0]?.n);
      });

      it('refuses bad temporal queries with BadRequestData', async () => {
        const bad = [
          '/temporal/entities?type=T&timerel=between&timeAt=2026-01-02T00:00:00Z',
          '/temporal/entities?type=T&timerel=between&timeAt=2026-01-02T00:00:00Z&endTimeAt=2026-01-01T00:00:00Z',
          '/temporal/entities?type=T&timerel=soon&timeAt=2026-01-02T00:00:00Z',
          '/temporal/entities?type=T&lastN=100000000',
          '/temporal/entities?type=T&lastN=ten',
          '/temporal/entities?type=T&options=aggregatedValues&aggrMethods=median',
          '/temporal/entities?type=T&options=aggregatedValues&aggrMethods=avg&aggrPeriodDuration=hourly',
          '/temporal/entities?type=T&options=keyValues',
          '/temporal/entities',
          `/temporal/entities/${enc('urn:x:1')}?type=T`,
        ];
        for (const url of bad) problem(await api('GET', url), 'BadRequestData', 400);
        problem(await api('GET', '/temporal/entities?type=T&limit=5000'), 'TooManyResults', 403);
        problem(await api('GET', `/temporal/entities/${enc('urn:x:none')}`), 'ResourceNotFound', 404);
        problem(
          await api('GET', '/temporal/entities?type=T', undefined, { 'ngsild-tenant': 'nobody' }),
          'NonexistentTenant',
          404,
        );
      });
    });

    it('creates the monthly partitions around now at start', async () => {
      const { rows } = await sql<{ name: string }>`select c.relname as name from pg_inherits h
        join pg_class c on c.oid = h.inhrelid join pg_class par on par.oid = h.inhparent
        where par.relname = 'attr_instances' order by 1`.execute(t.database.db);
      const now = new Date();
      const month = `attr_instances_${now.getUTCFullYear()}${String(now.getUTCMonth() + 1).padStart(2, '0')}`;
      assert.ok(
        rows.some((r) => r.name === month),
        rows.map((r) => r.name).join(),
      );
      assert.ok(rows.length >= 5, String(rows.length));
    });

    describe('in secured mode', () => {
      let secured: Platform;
      let pudong: [number, number];
      before(async () => {
        secured = await startTestPlatform(t, { env: { TWIN_ACCESS: 'secured' } });
        const { rows } = await sql<{ lon: number; lat: number }>`
          select st_x(st_pointonsurface(geom)) as lon, st_y(st_pointonsurface(geom)) as lat
            from trust.areas where code = '310115'`.execute(t.database.db);
        pudong = [rows[0]?.lon ?? 0, rows[0]?.lat ?? 0];
      });
      after(async () => {
        await secured.stop();
      });
      const as = (user: string) => signIn(secured, user);

      it('filters history by jurisdiction: a 宝山 officer cannot see a 浦东 entity (404)', async () => {
        const id = 'urn:ngsi-ld:Streetlight:pudong-temporal';
        const created = await api(
          'POST',
          '/entities',
          {
            id,
            type: 'Streetlight',
            status: { type: 'Property', value: 'ok' },
            location: { type: 'GeoProperty', value: { type: 'Point', coordinates: pudong } },
          },
          await as('admin'),
          secured,
        );
        assert.equal(created.statusCode, 201, created.body);
        problem(
          await api('GET', '/temporal/entities?type=Streetlight', undefined, {}, secured),
          'Unauthorized',
          401,
        );
        const mine = await api(
          'GET',
          `/temporal/entities/${enc(id)}`,
          undefined,
          await as('city-ops'),
          secured,
        );
        assert.equal(mine.statusCode, 200, mine.body);
        problem(
          await api('GET', `/temporal/entities/${enc(id)}`, undefined, await as('baoshan-ops'), secured),
          'ResourceNotFound',
          404,
        );
        const listed = await api(
          'GET',
          '/temporal/entities?type=Streetlight',
          undefined,
          await as('baoshan-ops'),
          secured,
        );
        assert.equal(listed.statusCode, 200);
        assert.ok(!listed.json<Obj[]>().some((e) => e['id'] === id));
        problem(
          await api('DELETE', `/temporal/entities/${enc(id)}`, undefined, await as('baoshan-ops'), secured),
          'ResourceNotFound',
          404,
        );
        problem(
          await api(
            'POST',
            `/temporal/entities/${enc(id)}/attrs`,
            { status: { value: 'hacked' } },
            await as('baoshan-ops'),
            secured,
          ),
          'ResourceNotFound',
          404,
        );
      });
    });
  });
}
