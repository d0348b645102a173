/**
 * Cases end to end over HTTP, on each engine: a citizen's Open311 report in 宝山区 is registered
 * in its grid, routed to the district department, handled, verified by the street centre, closed
 * and rated; an idle case escalates street → district → city on SLA breach; jurisdictions hold
 * (a 宝山 officer cannot see a 浦东 case); bad input changes nothing; webhooks and the feed tell
 * the people concerned.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { engines, type TestDatabase } from '../../test/helpers/engines.ts';
import { signIn, startTestPlatform } from '../../test/helpers/platform.ts';
import { until } from '../../test/helpers/wait.ts';
import type { Platform } from '../platform.ts';
import { sweepTimers } from '../workflow/index.ts';
import { parseOpen311Xml, validateGeoReport } from './open311.format.ts';

type Obj = Record<string, unknown>;
const YOUYI = '310113003'; // 友谊路街道, 宝山区
const PUDONG = '310115';
/** A 1×1 PNG. */
const PNG = Buffer.from(
  '89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478da63f8ffff3f0005fe02fea7d6a4b80000000049454e44ae426082',
  'hex',
);

interface CaseView {
  id: string;
  number: string;
  status: string;
  level: string;
  version: number;
  area: { code: string; path: string; district: string; street: string | null };
  departments: { id: string; name: string }[];
  sla: { state: string; stateDueAt: string | null; dueAt: string | null; escalations: number };
  timeline: {
    seq: number;
    action: string;
    actor: string;
    comment: string | null;
    attachments: { sha256: string }[];
  }[];
  actions: { action: string }[];
  reporter: { name: string | null; phone: string | null; email: string | null; masked: boolean };
  entityIds: string[];
  rating: number | null;
  routedBy: string | null;
  photos: { sha256: string }[];
}

for (const engine of engines()) {
  describe(`cases (一网统管) on ${engine.name}`, () => {
    let t: TestDatabase;
    let p: Platform;
    let mediaDir: string;
    let youyi: [number, number];
    let pudong: [number, number];
    const orgs = new Map<string, string>();

    const auth = (user: string) => signIn(p, user);
    const call = async (
      user: string | null,
      method: 'GET' | 'POST' | 'PUT' | 'DELETE',
      url: string,
      payload?: unknown,
      headers: Record<string, string> = {},
    ) =>
      p.http.inject({
        method,
        url,
        headers: { ...(user ? await auth(user) : {}), ...headers },
        ...(payload === undefined ? {} : { payload: payload as Obj }),
      });
    const open311 = (form: Record<string, string>, headers: Record<string, string> = {}, format = 'json') =>
      p.http.inject({
        method: 'POST',
        url: `/open311/v2/requests.${format}`,
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
        payload: new URLSearchParams(form).toString(),
      });
    const getCase = async (user: string, id: string) => {
      const res = await call(user, 'GET', `/api/v1/cases/${id}`);
      assert.equal(res.statusCode, 200, res.body);
      return res.json<CaseView>();
    };
    const act = async (user: string, id: string, body: Obj, headers: Record<string, string> = {}) =>
      call(user, 'POST', `/api/v1/cases/${id}/transitions`, body, headers);
    const report = async (user: string, body: Obj = {}) => {
      const res = await call(user, 'POST', '/api/v1/cases', {
        source: 'citizen',
        category: 'event:0201',
        description: '墙上贴满小广告',
        location: { lon: youyi[0], lat: youyi[1] },
        ...body,
      });
      assert.equal(res.statusCode, 201, res.body);
      return res.json<{ case: CaseView; duplicates: { id: string; distanceMetres: number }[] }>();
    };
    const historyCount = async (caseId: string) => {
      const { rows } = await sql<{ n: string }>`select count(*) as n from workflow.history h
        join ops.cases c on c.instance_id = h.instance_id where c.id = ${caseId}`.execute(t.database.db);
      return Number(rows[0]?.n);
    };

    before(async () => {
      t = await engine.open();
      mediaDir = mkdtempSync(join(tmpdir(), 'pujiang-media-test-'));
      p = await startTestPlatform(t, {
        env: {
          MEDIA_DIR: mediaDir,
          MEDIA_MAX_BYTES: '4096',
          OUTBOX_POLL_MS: '50',
          WORKFLOW_TIMER_INTERVAL_MS: '3600000',
        },
      });
      const area = async (code: string) =>
        (await call(null, 'GET', `/api/v1/areas/${code}`)).json<{ centroid: [number, number] }>();
      youyi = (await area(YOUYI)).centroid;
      pudong = (await area(PUDONG)).centroid;
      const { rows } = await sql<{
        id: string;
        code: string;
      }>`select id, code from trust.organisations`.execute(t.database.db);
      for (const r of rows) orgs.set(r.code, r.id);
    });
    after(async () => {
      await p.stop();
      await t.dispose();
      rmSync(mediaDir, { recursive: true, force: true });
    });

    it('end to end: Open311 report in 宝山 → grid → district department → report back → street verifies → closed → rated', async () => {
      // The citizen reports through a 311 app signed in with their account.
      const created = await open311(
        {
          service_code: 'event:0201',
          lat: String(youyi[1]),
          long: String(youyi[0]),
          description: '友谊路上电线杆贴满小广告',
          first_name: '市民',
          last_name: '张',
          phone: '13812345678',
          email: 'zhang@example.com',
          media_url: 'https://example.com/photo.jpg',
          'attribute[urgency]': 'normal',
        },
        await auth('citizen'),
      );
      assert.equal(created.statusCode, 201, created.body);
      const doc = created.json<{ service_request_id: string; token: string; service_notice: string }[]>();
      assert.deepEqual(validateGeoReport('request-created', doc), []);
      const number = doc[0]?.service_request_id ?? '';
      const token = doc[0]?.token ?? '';

      const tokenDoc = await p.http.inject({ method: 'GET', url: `/open311/v2/tokens/${token}.json` });
      assert.deepEqual(tokenDoc.json(), [{ service_request_id: number, token }]);

      const pub = await p.http.inject({ method: 'GET', url: `/open311/v2/requests/${number}.json` });
      assert.equal(pub.statusCode, 200);
      assert.deepEqual(validateGeoReport('requests', pub.json()), []);
      const item = pub.json<Obj[]>()[0] ?? {};
      assert.equal(item['status'], 'open');
      assert.equal(item['agency_responsible'], '宝山区城市管理行政执法局');
      assert.equal(item['service_code'], 'event:0201');
      assert.equal(item['media_url'], 'https://example.com/photo.jpg');
      assert.equal(JSON.stringify(item).includes('13812345678'), false, 'no personal data in public Open311');

      // Registered in the right grid, routed to the district's urban-management department.
      const list = await call('baoshan-ops', 'GET', `/api/v1/cases?source=citizen&limit=50`);
      const summary = list.json<{ items: CaseView[] }>().items.find((c) => c.number === number);
      assert.ok(summary, 'the district centre sees the case');
      const c0 = await getCase('baoshan-ops', summary.id);
      assert.equal(c0.status, 'handling');
      assert.equal(c0.area.street, YOUYI);
      assert.match(c0.area.code, /^310113003[0-9]{6}$/, 'located to a unit grid of 友谊路街道');
      assert.equal(c0.area.path.split('/').length, 5);
      assert.deepEqual(
        c0.departments.map((d) => d.id),
        [orgs.get('district-310113-cgj')],
      );
      assert.equal(c0.routedBy, 'matrix');
      assert.equal(c0.level, 'street');
      assert.equal(c0.reporter.masked, false, 'the operator needs the contact to call back');
      assert.equal(c0.reporter.phone, '13812345678');
      assert.equal(c0.sla.state, 'on-time');
      assert.ok(c0.sla.stateDueAt);

      // The department handles it and reports back with a photo of the result.
      const dept = await getCase('baoshan-cgj', c0.id);
      assert.deepEqual(dept.actions.map((a) => a.action).sort(), ['report', 'return']);
      const photo = await call('baoshan-cgj', 'POST', '/api/v1/media', PNG, { 'content-type': 'image/png' });
      assert.equal(photo.statusCode, 201, photo.body);
      const sha = photo.json<{ sha256: string }>().sha256;
      const reported = await act('baoshan-cgj', c0.id, {
        action: 'report',
        comment: '已清除小广告',
        attachments: [sha],
        version: dept.version,
      });
      assert.equal(reported.statusCode, 200, reported.body);
      const c1 = reported.json<CaseView>();
      assert.equal(c1.status, 'verifying');
      assert.deepEqual(
        c1.timeline.map((e) => e.action),
        ['start', 'dispatch', 'report', 'join'],
      );
      assert.equal(c1.timeline[2]?.attachments[0]?.sha256, sha);
      const file = await call('baoshan-ops', 'GET', `/api/v1/media/${sha}`);
      assert.equal(file.statusCode, 200);
      assert.deepEqual(file.rawPayload, PNG);
      const stranger = await call('enterprise-user', 'GET', `/api/v1/media/${sha}`);
      assert.equal(stranger.statusCode, 404, 'a photo is as private as the case it belongs to');

      // The street centre verifies on site and closes it.
      const citizenTry = await act('citizen', c0.id, { action: 'verify' });
      assert.equal(citizenTry.statusCode, 403, 'a citizen cannot verify');
      const verified = await act('youyi-ops', c0.id, { action: 'verify', comment: '现场核查已清理' });
      assert.equal(verified.statusCode, 200, verified.body);
      assert.equal(verified.json<CaseView>().status, 'closed');

      // The citizen rates it; Open311 shows it closed.
      const asCitizen = await getCase('citizen', c0.id);
      assert.deepEqual(asCitizen.actions.map((a) => a.action).sort(), ['rate', 'reopen']);
      const rated = await act('citizen', c0.id, { action: 'rate', rating: 5, comment: '处理及时' });
      assert.equal(rated.statusCode, 200, rated.body);
      assert.equal(rated.json<CaseView>().status, 'evaluated');
      assert.equal(rated.json<CaseView>().rating, 5);
      const closed = await p.http.inject({ method: 'GET', url: `/open311/v2/requests/${number}.xml` });
      assert.match(String(closed.headers['content-type']), /xml/);
      const parsed = parseOpen311Xml('requests', closed.body);
      assert.deepEqual(validateGeoReport('requests', parsed), []);
      assert.equal((parsed as Obj[])[0]?.['status'], 'closed');

      // Everything audited: the creation and each step, in the case's area.
      const audit = await call('admin', 'GET', `/api/v1/audit/records?resourceId=${c0.id}&limit=100`);
      assert.equal(audit.statusCode, 200, audit.body);
      const actions = audit
        .json<{ records: { action: string; area: string | null }[] }>()
        .records.map((r) => r.action);
      for (const a of ['case.create', 'workflow.start', 'workflow.transition', 'case.contact.read'])
        assert.ok(actions.includes(a), `audited: ${a} in ${actions.join(',')}`);
      assert.equal(actions.filter((a) => a === 'workflow.transition').length, 3);

      // The feed told the citizen of each change and the department of the work.
      const feed = await call('citizen', 'GET', '/api/v1/notifications');
      const kinds = feed
        .json<{ caseId: string; kind: string }[]>()
        .filter((n) => n.caseId === c0.id)
        .map((n) => n.kind);
      for (const k of ['start', 'dispatch', 'join', 'verify', 'rate'])
        assert.ok(kinds.includes(k), `citizen told of ${k}: ${kinds.join(',')}`);
      const deptFeed = await call('baoshan-cgj', 'GET', '/api/v1/notifications?unread=true');
      const assigned = deptFeed
        .json<{ id: string; caseId: string; kind: string }[]>()
        .find((n) => n.caseId === c0.id && n.kind === 'assigned');
      assert.ok(assigned);
      assert.equal(
        (await call('baoshan-cgj', 'POST', `/api/v1/notifications/${assigned.id}/read`)).statusCode,
        204,
      );
      assert.equal(
        (await call('citizen', 'POST', `/api/v1/notifications/${assigned.id}/read`)).statusCode,
        404,
      );
    });

    it('escalates an idle case past its SLA: street → district → city, telling each centre', async () => {
      const { case: c } = await report('citizen', {
        category: 'event:0505',
        description: '机动车占用人行道',
      });
      assert.equal(c.status, 'handling');
      const due = new Date(c.sla.stateDueAt ?? '');
      const first = await sweepTimers(t.database, { now: new Date(due.getTime() + 1_000) });
      assert.ok(first.fired >= 1);
      const e1 = await getCase('baoshan-ops', c.id);
      assert.equal(e1.level, 'district');
      assert.equal(e1.sla.escalations, 1);
      assert.deepEqual(
        e1.timeline.slice(-2).map((e) => [e.action, e.actor]),
        [
          ['sla-breach', 'system'],
          ['escalate', 'system'],
        ],
      );
      assert.ok(new Date(e1.sla.stateDueAt ?? '') > due, 'the clock restarts at the district level');
      // Sweeping again at the same moment fires nothing more (exactly once).
      const again = await sweepTimers(t.database, { now: new Date(due.getTime() + 1_000) });
      assert.equal((await getCase('baoshan-ops', c.id)).timeline.length, e1.timeline.length);
      assert.equal(again.fired, 0);
      const feed = await call('baoshan-ops', 'GET', '/api/v1/notifications');
      assert.ok(
        feed
          .json<{ caseId: string; kind: string }[]>()
          .some((n) => n.caseId === c.id && n.kind === 'escalate'),
      );
      const escalated = await call('baoshan-ops', 'GET', '/api/v1/cases?level=district&limit=100');
      assert.ok(escalated.json<{ items: CaseView[] }>().items.some((x) => x.id === c.id));

      await sweepTimers(t.database, { now: new Date(new Date(e1.sla.stateDueAt ?? '').getTime() + 1_000) });
      const e2 = await getCase('city-ops', c.id);
      assert.equal(e2.level, 'city');
      const cityFeed = await call('city-ops', 'GET', '/api/v1/notifications');
      assert.ok(
        cityFeed
          .json<{ caseId: string; kind: string }[]>()
          .some((n) => n.caseId === c.id && n.kind === 'escalate'),
      );
      // At the top, a further breach is recorded but escalates no further.
      await sweepTimers(t.database, { now: new Date(new Date(e2.sla.stateDueAt ?? '').getTime() + 1_000) });
      const e3 = await getCase('city-ops', c.id);
      assert.equal(e3.level, 'city');
      assert.equal(e3.timeline[e3.timeline.length - 1]?.action, 'sla-breach');
      // Supervision: overdue in the district, by deadline.
      const overdue = await call('baoshan-ops', 'GET', '/api/v1/cases?sla=overdue&area=310113&order=due');
      assert.equal(overdue.statusCode, 200);
      const stats = await call('baoshan-ops', 'GET', '/api/v1/cases/statistics?by=department&area=310113');
      assert.equal(stats.statusCode, 200, stats.body);
      assert.ok(
        stats
          .json<{ name: string; total: number }[]>()
          .some((r) => r.name === '宝山区城市管理行政执法局' && r.total >= 2),
      );
      const forbiddenStats = await call(
        'baoshan-ops',
        'GET',
        `/api/v1/cases/statistics?by=category&area=${PUDONG}`,
      );
      assert.equal(forbiddenStats.statusCode, 404);
    });

    it('keeps jurisdictions: a 宝山 officer cannot see or touch a 浦东 case (404)', async () => {
      const { case: c } = await report('citizen', { location: { lon: pudong[0], lat: pudong[1] } });
      assert.equal(c.area.district, PUDONG);
      assert.equal((await call('baoshan-ops', 'GET', `/api/v1/cases/${c.id}`)).statusCode, 404);
      assert.equal((await act('baoshan-ops', c.id, { action: 'cancel', comment: 'x' })).statusCode, 404);
      const list = await call('baoshan-ops', 'GET', '/api/v1/cases?limit=500');
      assert.equal(
        list.json<{ items: CaseView[] }>().items.some((x) => x.id === c.id),
        false,
      );
      assert.equal((await call('city-ops', 'GET', `/api/v1/cases/${c.id}`)).statusCode, 200);
      assert.equal(
        (await call('citizen', 'GET', `/api/v1/cases/${c.id}`)).statusCode,
        200,
        'the reporter sees their case',
      );
      assert.equal((await call(null, 'GET', `/api/v1/cases/${c.id}`)).statusCode, 401);
      // The inspector of another street sees the contact masked? Not even the case outside 宝山.
      assert.equal((await call('inspector-youyi', 'GET', `/api/v1/cases/${c.id}`)).statusCode, 404);
    });

    it('masks the reporter for roles that do not need the contact, and audits unmasked reads', async () => {
      const { case: c } = await report('youyi-ops', {
        source: 'hotline',
        reporter: { name: '李小明', phone: '13900001111', email: 'li@example.com' },
      });
      const inspector = await getCase('inspector-youyi', c.id);
      assert.deepEqual(inspector.reporter, {
        name: '李*明',
        phone: '139****1111',
        email: 'l***@example.com',
        masked: true,
      });
      const operator = await getCase('youyi-ops', c.id);
      assert.equal(operator.reporter.phone, '13900001111');
      const audit = await call(
        'admin',
        'GET',
        `/api/v1/audit/records?resourceId=${c.id}&action=case.contact.read`,
      );
      assert.ok(audit.json<{ records: unknown[] }>().records.length >= 1);
    });

    it('refuses bad input with a clear error and changes nothing', async () => {
      const before = await sql<{ n: string }>`select count(*) as n from ops.cases`.execute(t.database.db);
      const bad = async (body: Obj, status: number, match: RegExp) => {
        const res = await call('citizen', 'POST', '/api/v1/cases', {
          source: 'citizen',
          category: 'event:0201',
          description: 'x',
          location: { lon: youyi[0], lat: youyi[1] },
          ...body,
        });
        assert.equal(res.statusCode, status, res.body);
        assert.match(res.body, match);
      };
      await bad({ category: 'event:9999' }, 422, /Unknown category/);
      await bad({ category: 'nonsense' }, 400, /category/);
      await bad({ location: { lon: 0, lat: 0 } }, 422, /outside the city/);
      await bad({ location: { lon: 200, lat: 0 } }, 400, /lon/);
      await bad({ source: 'hotline' }, 403, /cases\.create/);
      await bad({ photos: ['0'.repeat(64)] }, 422, /No uploaded file/);
      await bad({ description: 'x'.repeat(4001) }, 400, /description/);
      await bad({ extra: true }, 400, /extra|additional/i);
      await bad({ departmentIds: [orgs.get('district-310113-lhsr') ?? ''] }, 422, /needs a reason/);
      await bad(
        { departmentIds: [orgs.get('district-310113-lhsr') ?? ''], reason: '我觉得' },
        403,
        /Only ops-operator/,
      );
      const malformed = await p.http.inject({
        method: 'POST',
        url: '/api/v1/cases',
        headers: { ...(await auth('citizen')), 'content-type': 'application/json' },
        payload: '{"source":',
      });
      assert.equal(malformed.statusCode, 400);
      const after = await sql<{ n: string }>`select count(*) as n from ops.cases`.execute(t.database.db);
      assert.equal(after.rows[0]?.n, before.rows[0]?.n, 'nothing was written');

      // An injection attempt is only text.
      const { case: inj } = await report('citizen', { description: "'); drop table ops.cases; --" });
      assert.equal((await getCase('citizen', inj.id)).status, 'handling');
    });

    it('guards transitions: role, state, stale version, double submit, reasons', async () => {
      const { case: c } = await report('citizen');
      const h0 = await historyCount(c.id);
      const notRole = await act('baoshan-cgj', c.id, { action: 'suspend', comment: '等待' });
      assert.equal(notRole.statusCode, 403, 'only the centre suspends');
      assert.equal(
        (await act('baoshan-cgj', c.id, { action: 'verify' })).statusCode,
        409,
        'not in this state',
      );
      const wrongState = await act('youyi-ops', c.id, { action: 'rate', rating: 3 });
      assert.equal(wrongState.statusCode, 409, wrongState.body);
      assert.equal((await act('youyi-ops', c.id, { action: 'fly' })).statusCode, 409);
      const stale = await act('baoshan-cgj', c.id, { action: 'report', version: c.version - 1 });
      assert.equal(stale.statusCode, 409);
      assert.equal(stale.json<{ code: string }>().code, 'workflow-stale');
      assert.equal(
        (await act('youyi-ops', c.id, { action: 'suspend' })).statusCode,
        422,
        'suspending needs a reason',
      );
      assert.equal((await act('youyi-ops', c.id, { action: 'report', rating: 2 })).statusCode, 422);
      assert.equal(await historyCount(c.id), h0, 'refusals wrote nothing');

      // Double submit with one Idempotency-Key: one transition, the same answer twice.
      const key = { 'idempotency-key': `k-${c.id}` };
      const [a, b] = await Promise.all([
        act('baoshan-cgj', c.id, { action: 'return', comment: '不属于本部门职责' }, key),
        act('baoshan-cgj', c.id, { action: 'return', comment: '不属于本部门职责' }, key),
      ]);
      assert.equal(a.statusCode, 200, a.body);
      assert.equal(b.statusCode, 200, b.body);
      assert.equal(await historyCount(c.id), h0 + 1);
      const reused = await act('baoshan-cgj', c.id, { action: 'report' }, key);
      assert.equal(reused.statusCode, 409);
      assert.equal(reused.json<{ code: string }>().code, 'workflow-request-reused');
      assert.equal((await getCase('youyi-ops', c.id)).status, 'registered');

      // Re-dispatch by the street centre to another department needs a reason.
      const lhsr = orgs.get('district-310113-lhsr') ?? '';
      const noReason = await act('youyi-ops', c.id, { action: 'dispatch', departmentIds: [lhsr] });
      assert.equal(noReason.statusCode, 422);
      const redispatched = await act('youyi-ops', c.id, {
        action: 'dispatch',
        departmentIds: [lhsr],
        comment: '涉及绿化带',
      });
      assert.equal(redispatched.statusCode, 200, redispatched.body);
      const r = redispatched.json<CaseView>();
      assert.equal(r.routedBy, 'dispatcher');
      assert.deepEqual(
        r.departments.map((d) => d.id),
        [lhsr],
      );
    });

    it('takes transitions on many cases at the same moment, each checked on its own', async () => {
      const cases = await Promise.all(
        Array.from({ length: 12 }, (_, i) => report('citizen', { description: `批量 ${i}` })),
      );
      const ids = cases.map((c) => c.case.id);
      const before = await Promise.all(ids.map(historyCount));
      // Twelve suspensions at once, one of them with a stale version: only that one is refused.
      const results = await Promise.all(
        cases.map((c, i) =>
          act('youyi-ops', c.case.id, {
            action: 'suspend',
            comment: `等待 ${i}`,
            ...(i === 5 ? { version: c.case.version - 1 } : {}),
          }),
        ),
      );
      assert.deepEqual(
        results.map((r) => r.statusCode),
        results.map((_, i) => (i === 5 ? 409 : 200)),
      );
      const after = await Promise.all(ids.map(historyCount));
      assert.deepEqual(
        after.map((n, i) => n - (before[i] ?? 0)),
        ids.map((_, i) => (i === 5 ? 0 : 1)),
      );
      for (const [i, id] of ids.entries()) {
        const c = await getCase('youyi-ops', id);
        assert.equal(c.status, i === 5 ? 'handling' : 'suspended');
        if (i !== 5) assert.equal(c.timeline[c.timeline.length - 1]?.comment, `等待 ${i}`);
      }
      const audit = await call(
        'admin',
        'GET',
        `/api/v1/audit/records?resourceId=${ids[3] ?? ''}&action=workflow.transition`,
      );
      assert.equal(audit.json<{ records: unknown[] }>().records.length, 1);
      const feed = await call('citizen', 'GET', '/api/v1/notifications?limit=200');
      const suspended = feed
        .json<{ caseId: string; kind: string }[]>()
        .filter((n) => n.kind === 'suspend' && ids.includes(n.caseId));
      assert.equal(suspended.length, 11, 'each reporter told once');
    });

    it('runs several departments in parallel (联勤联动) and waits for sub-tasks', async () => {
      const cgj = orgs.get('district-310113-cgj') ?? '';
      const swj = orgs.get('district-310113-swj') ?? '';
      const { case: c } = await report('youyi-ops', {
        source: 'inspector',
        departmentIds: [cgj, swj],
        reason: '占道与管线问题并存',
      });
      assert.equal(c.status, 'handling');
      assert.deepEqual(c.departments.map((d) => d.id).sort(), [cgj, swj].sort());
      const sub = await call('baoshan-cgj', 'POST', `/api/v1/cases/${c.id}/subtasks`, {
        orgId: orgs.get('district-310113-jsw'),
        description: '协助拆除违章设施',
      });
      assert.equal(sub.statusCode, 201, sub.body);
      const task = sub.json<{ subtasks: { id: string; state: string }[] }>().subtasks[0];
      assert.ok(task);
      const blocked = await act('baoshan-cgj', c.id, { action: 'report', comment: '已处理' });
      assert.equal(blocked.statusCode, 409);
      assert.match(blocked.json<{ detail: string }>().detail, /sub-task/);
      const notYours = await call(
        'baoshan-cgj',
        'POST',
        `/api/v1/cases/${c.id}/subtasks/${task.id}/transitions`,
        { action: 'complete' },
      );
      assert.equal(notYours.statusCode, 403, 'only the organisation given the sub-task completes it');
      const done = await call(
        'baoshan-ops',
        'POST',
        `/api/v1/cases/${c.id}/subtasks/${task.id}/transitions`,
        { action: 'cancel', comment: '由城管自行处理' },
      );
      assert.equal(done.statusCode, 200, done.body);
      const first = await act('baoshan-cgj', c.id, { action: 'report', comment: '已处理占道' });
      assert.equal(first.statusCode, 200, first.body);
      assert.equal(first.json<CaseView>().status, 'handling', 'waits for the water department');
      const again = await act('baoshan-cgj', c.id, { action: 'report', comment: '再次反馈' });
      assert.equal(again.statusCode, 409, 'its part is done');
      assert.equal(
        (await call('baoshan-ops', 'GET', `/api/v1/cases?department=${swj}&status=handling&limit=100`))
          .json<{ items: CaseView[] }>()
          .items.some((x) => x.id === c.id),
        true,
      );
    });

    it('suggests merging duplicates nearby and keeps every reporter informed', async () => {
      const { case: first } = await report('citizen', {
        category: 'event:0102',
        description: '路边暴露垃圾',
      });
      const second = await report('enterprise-user', {
        category: 'event:0102',
        description: '同一处垃圾',
        location: { lon: youyi[0] + 0.0002, lat: youyi[1] },
      });
      const dup = second.duplicates.find((d) => d.id === first.id);
      assert.ok(dup, 'the first case is suggested');
      assert.ok(dup.distanceMetres > 10 && dup.distanceMetres < 30, String(dup.distanceMetres));
      const merged = await act('youyi-ops', second.case.id, {
        action: 'merge',
        into: first.id,
        comment: '重复上报',
      });
      assert.equal(merged.statusCode, 200, merged.body);
      assert.equal(merged.json<CaseView>().status, 'merged');
      // The second reporter now follows the first case and hears of its progress.
      assert.equal((await call('enterprise-user', 'GET', `/api/v1/cases/${first.id}`)).statusCode, 200);
      await act('baoshan-ops', first.id, { action: 'suspend', comment: '等待天气好转' });
      const feed = await call('enterprise-user', 'GET', '/api/v1/notifications');
      assert.ok(
        feed
          .json<{ caseId: string; kind: string }[]>()
          .some((n) => n.caseId === first.id && n.kind === 'suspend'),
      );
      const self = await act('youyi-ops', first.id, { action: 'merge', into: first.id, comment: 'x' });
      assert.equal(self.statusCode, 422);
    });

    it('routes by the matrix with inheritance, and a street rule overrides the district', async () => {
      const lhsr = orgs.get('district-310113-lhsr') ?? '';
      const denied = await call('youyi-ops', 'PUT', '/api/v1/routing-rules', {
        category: 'event:0201',
        areaCode: '310113',
        orgId: lhsr,
      });
      assert.equal(denied.statusCode, 404, 'a street centre cannot change the district matrix');
      const set = await call('youyi-ops', 'PUT', '/api/v1/routing-rules', {
        category: 'event:02*',
        areaCode: YOUYI,
        orgId: lhsr,
      });
      assert.equal(set.statusCode, 200, set.body);
      const rules = await call('youyi-ops', 'GET', `/api/v1/routing-rules?area=${YOUYI}`);
      const list = rules.json<{ category: string; areaCode: string; inherited: boolean }[]>();
      assert.ok(list.some((r) => r.category === 'event:02*' && !r.inherited));
      assert.ok(list.some((r) => r.category === 'event:0201' && r.inherited));
      const { case: c } = await report('citizen');
      assert.deepEqual(
        c.departments.map((d) => d.id),
        [lhsr],
      );
      const badCategory = await call('youyi-ops', 'PUT', '/api/v1/routing-rules', {
        category: 'event:9999',
        areaCode: YOUYI,
        orgId: lhsr,
      });
      assert.equal(badCategory.statusCode, 422);
      const notDept = await call('youyi-ops', 'PUT', '/api/v1/routing-rules', {
        category: 'event:0201',
        areaCode: YOUYI,
        orgId: orgs.get('city-ops'),
      });
      assert.equal(notDept.statusCode, 422);
      const del = await call('youyi-ops', 'DELETE', `/api/v1/routing-rules/${set.json<{ id: string }>().id}`);
      assert.equal(del.statusCode, 204);
      const { case: c2 } = await report('citizen');
      assert.deepEqual(
        c2.departments.map((d) => d.id),
        [orgs.get('district-310113-cgj')],
      );
    });

    it('links cases to twin entities that exist (the manhole cover)', async () => {
      const id = 'urn:ngsi-ld:ManholeCover:3101130101000001';
      const made = await p.http.inject({
        method: 'POST',
        url: '/ngsi-ld/v1/entities',
        headers: { 'content-type': 'application/json' },
        payload: {
          id,
          type: 'ManholeCover',
          location: { type: 'GeoProperty', value: { type: 'Point', coordinates: youyi } },
        },
      });
      assert.equal(made.statusCode, 201, made.body);
      const { case: c } = await report('citizen', { category: 'component:0101', entityIds: [id] });
      assert.deepEqual((await getCase('citizen', c.id)).entityIds, [id]);
      const res = await call('citizen', 'POST', '/api/v1/cases', {
        source: 'citizen',
        category: 'component:0101',
        description: '井盖缺失',
        location: { lon: youyi[0], lat: youyi[1] },
        entityIds: ['urn:ngsi-ld:ManholeCover:nope'],
      });
      assert.equal(res.statusCode, 422);
      assert.match(res.body, /No twin entity urn:ngsi-ld:ManholeCover:nope/);
    });

    it('stores photos by content, checking type and size', async () => {
      const up = (body: Buffer, type: string) =>
        call('citizen', 'POST', '/api/v1/media', body, { 'content-type': type });
      const a = await up(PNG, 'image/png');
      const b = await up(PNG, 'image/png');
      assert.equal(
        a.json<{ sha256: string }>().sha256,
        b.json<{ sha256: string }>().sha256,
        'stored once by content',
      );
      assert.equal((await up(PNG, 'image/jpeg')).statusCode, 415, 'content is not what it claims');
      assert.equal((await up(Buffer.from('hello'), 'text/plain')).statusCode, 415);
      assert.equal((await up(Buffer.concat([PNG, Buffer.alloc(5000)]), 'image/png')).statusCode, 413);
      assert.equal(
        (await call(null, 'POST', '/api/v1/media', PNG, { 'content-type': 'image/png' })).statusCode,
        401,
      );
      const { case: c } = await report('citizen', { photos: [a.json<{ sha256: string }>().sha256] });
      assert.equal(c.photos.length, 1);
    });

    it('speaks Open311: services, definitions, search, and Open311 errors', async () => {
      const services = await p.http.inject({ method: 'GET', url: '/open311/v2/services.json' });
      assert.deepEqual(validateGeoReport('services', services.json()), []);
      assert.equal(services.json<unknown[]>().length, 178);
      const xml = await p.http.inject({ method: 'GET', url: '/open311/v2/services.xml' });
      assert.deepEqual(validateGeoReport('services', parseOpen311Xml('services', xml.body)), []);
      const def = await p.http.inject({ method: 'GET', url: '/open311/v2/services/component:0101.json' });
      assert.deepEqual(validateGeoReport('service-definition', def.json()), []);
      const missing = await p.http.inject({ method: 'GET', url: '/open311/v2/services/event:9999.xml' });
      assert.equal(missing.statusCode, 404);
      assert.deepEqual(validateGeoReport('errors', parseOpen311Xml('errors', missing.body)), []);

      // An integration's API key (a 311 app of the city) reports; outside the city it is refused.
      const key = await call('admin', 'POST', '/api/v1/api-keys', {
        name: '311 app',
        orgId: orgs.get('city-ops'),
        permissions: ['cases.report'],
      });
      assert.equal(key.statusCode, 201, key.body);
      const apiKey = key.json<{ key: string }>().key;
      const ok = await open311(
        {
          api_key: apiKey,
          service_code: 'component:0101',
          lat: String(youyi[1]),
          long: String(youyi[0]),
          'attribute[component_id]': '3101130101000001',
        },
        {},
        'xml',
      );
      assert.equal(ok.statusCode, 201, ok.body);
      assert.deepEqual(validateGeoReport('request-created', parseOpen311Xml('request-created', ok.body)), []);
      const outside = await open311({
        api_key: apiKey,
        service_code: 'event:0201',
        lat: '39.9',
        long: '116.4',
      });
      assert.equal(outside.statusCode, 400);
      assert.deepEqual(validateGeoReport('errors', outside.json()), []);
      assert.match(outside.json<{ description: string }[]>()[0]?.description ?? '', /outside|jurisdiction/);
      const noKey = await open311({
        service_code: 'event:0201',
        lat: String(youyi[1]),
        long: String(youyi[0]),
      });
      assert.equal(noKey.statusCode, 400);
      assert.match(noKey.body, /api_key/);
      const badKey = await open311({
        api_key: 'pj_nope_nope',
        service_code: 'event:0201',
        lat: String(youyi[1]),
        long: String(youyi[0]),
      });
      assert.equal(badKey.statusCode, 401);
      assert.deepEqual(validateGeoReport('errors', badKey.json()), []);
      const noService = await open311({ api_key: apiKey, lat: '31.3', long: '121.4' });
      assert.equal(noService.statusCode, 400);
      const unknown = await open311({
        api_key: apiKey,
        service_code: 'event:9999',
        lat: String(youyi[1]),
        long: String(youyi[0]),
      });
      assert.equal(unknown.statusCode, 404);
      const badAttr = await open311({
        api_key: apiKey,
        service_code: 'component:0101',
        lat: String(youyi[1]),
        long: String(youyi[0]),
        'attribute[component_id]': '123',
      });
      assert.equal(badAttr.statusCode, 400);
      const byArea = await open311({ api_key: apiKey, service_code: 'event:0201', address_id: YOUYI });
      assert.equal(byArea.statusCode, 201, byArea.body);

      const search = await p.http.inject({
        method: 'GET',
        url: '/open311/v2/requests.json?service_code=component:0101&status=open',
      });
      assert.equal(search.statusCode, 200, search.body);
      assert.deepEqual(validateGeoReport('requests', search.json()), []);
      assert.ok(search.json<Obj[]>().length >= 1);
      assert.ok(
        search.json<Obj[]>().every((r) => r['service_code'] === 'component:0101' && r['status'] === 'open'),
      );
      const paged = await p.http.inject({
        method: 'GET',
        url: '/open311/v2/requests.json?page_size=1&page=1',
      });
      assert.equal(paged.json<unknown[]>().length, 1);
      const badDates = await p.http.inject({
        method: 'GET',
        url: '/open311/v2/requests.json?start_date=2026-02-01T00:00:00Z&end_date=2026-01-01T00:00:00Z',
      });
      assert.equal(badDates.statusCode, 400);
      assert.equal(
        (await p.http.inject({ method: 'GET', url: '/open311/v2/requests/999999999.json' })).statusCode,
        404,
      );
      assert.equal((await p.http.inject({ method: 'GET', url: '/open311/v2/nothing.json' })).statusCode, 404);
    });

    it('delivers signed webhooks to the department and retries a failing receiver', async () => {
      const got: { body: string; signature: string }[] = [];
      let failures = 1;
      const server: Server = createServer((req: IncomingMessage, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          if (failures-- > 0) return void res.writeHead(503).end();
          got.push({
            body: Buffer.concat(chunks).toString(),
            signature: String(req.headers['x-pujiang-signature']),
          });
          res.writeHead(204).end();
        });
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      try {
        const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
        const cgj = orgs.get('district-310113-cgj') ?? '';
        assert.equal(
          (await call('youyi-ops', 'POST', '/api/v1/webhooks', { orgId: cgj, url })).statusCode,
          404,
          'not their organisation',
        );
        const hook = await call('baoshan-cgj', 'POST', '/api/v1/webhooks', { orgId: cgj, url });
        assert.equal(hook.statusCode, 201, hook.body);
        const { id, secret } = hook.json<{ id: string; secret: string }>();
        assert.equal(
          (await call('baoshan-cgj', 'POST', '/api/v1/webhooks', { orgId: cgj, url: 'ftp://example.com/x' }))
            .statusCode,
          422,
        );
        const { case: c } = await report('citizen');
        const delivered = await until('webhook', async () => got.find((g) => g.body.includes(c.id)), 10_000);
        assert.equal(
          delivered.signature,
          `sha256=${createHmac('sha256', secret).update(delivered.body).digest('hex')}`,
        );
        assert.equal((JSON.parse(delivered.body) as { case: { status: string } }).case.status, 'handling');
        const deliveries = await call('baoshan-cgj', 'GET', `/api/v1/webhooks/${id}/deliveries`);
        const d = deliveries
          .json<{ caseId: string; status: string; attempts: number }[]>()
          .find((x) => x.caseId === c.id);
        assert.ok(d);
        assert.equal(d.status, 'delivered');
        assert.equal(d.attempts, 2, 'the 503 was retried');
        assert.equal((await call('baoshan-cgj', 'DELETE', `/api/v1/webhooks/${id}`)).statusCode, 204);
      } finally {
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
      }
    });

    it('publishes workflow definitions only for those allowed, versioned', async () => {
      const list = await call('baoshan-ops', 'GET', '/api/v1/workflows');
      assert.equal(list.statusCode, 200);
      const keys = list.json<{ key: string }[]>().map((d) => d.key);
      assert.ok(keys.includes('ops.case') && keys.includes('ops.task'));
      const def = (await call('admin', 'GET', '/api/v1/workflows/ops.case')).json<{
        version: number;
        definition: Obj;
      }>();
      const denied = await call('baoshan-ops', 'PUT', '/api/v1/workflows/ops.case', def.definition);
      assert.equal(denied.statusCode, 403, 'they can read it, so the refusal is 403');
      const same = await call('admin', 'PUT', '/api/v1/workflows/ops.case', def.definition);
      assert.equal(same.statusCode, 200);
      assert.equal(same.json<{ version: number }>().version, def.version);
      const broken = structuredClone(def.definition) as { states: Record<string, Obj> };
      delete (broken.states['closed'] as { actions?: unknown }).actions;
      const bad = await call('admin', 'PUT', '/api/v1/workflows/ops.case', broken);
      assert.equal(bad.statusCode, 422);
      assert.match(bad.json<{ detail: string }>().detail, /states\.closed: no actions and not final/);
    });
  });
}
