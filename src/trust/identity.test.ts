/**
 * Identity and authorization over HTTP, on every engine of this run: the jurisdiction matrix
 * (roles × levels × resources), sign-in and tokens, API keys, OIDC, privilege escalation, and
 * the bad input the issue lists. Runs against the seeded demo city.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { engines, type TestDatabase } from '../../test/helpers/engines.ts';
import { startTestPlatform } from '../../test/helpers/platform.ts';
import { DEMO_SECRET } from '../kernel/index.ts';
import type { Platform } from '../platform.ts';
import { sealAudit } from './audit.service.ts';
import { deriveKeys } from './credentials.ts';
import { DEMO_PASSWORD, syntheticCreditCode, syntheticResidentId } from './identity.seed.ts';

const B = ['district-310113-cgj', 'street-310113003-ops', 'street-310113007-ops', 'ent-baoshan-property'];
const Y = ['street-310113003-ops'];
const ALL = ['city-cgj', 'district-310115-cgj', ...B];

/** Who sees (orgs.read) and who manages (orgs.manage) which organisation: the expected matrix. */
const ORG_MATRIX: Record<string, { read: string[]; manage: string[] }> = {
  admin: { read: ALL, manage: ALL }, // city · platform-admin
  'city-ops': { read: ALL, manage: [] }, // city · ops-operator
  'city-cgj': { read: ALL, manage: [] }, // city · department-staff
  'city-auditor': { read: ALL, manage: [] }, // city · auditor
  'baoshan-admin': { read: B, manage: B }, // district · org-admin
  'baoshan-ops': { read: B, manage: [] }, // district · ops-operator
  'baoshan-cgj': { read: B, manage: [] }, // district · department-staff
  'youyi-admin': { read: Y, manage: Y }, // street · org-admin
  'youyi-ops': { read: Y, manage: [] }, // street · ops-operator
  'inspector-youyi': { read: [], manage: [] }, // street · grid-inspector
  'enterprise-user': { read: [], manage: [] },
  citizen: { read: [], manage: [] },
};

/** Who may read which user's record (users.read, or their own). */
const USER_TARGETS = ['city-ops', 'baoshan-cgj', 'youyi-ops', 'citizen'];
const USER_MATRIX: Record<string, string[]> = {
  admin: USER_TARGETS,
  'city-ops': USER_TARGETS,
  'baoshan-admin': ['baoshan-cgj', 'youyi-ops', 'citizen'],
  'baoshan-ops': ['baoshan-cgj', 'youyi-ops', 'citizen'],
  'baoshan-cgj': ['baoshan-cgj'], // no users.read: only themselves
  'youyi-admin': ['youyi-ops', 'citizen'],
  'youyi-ops': ['youyi-ops', 'citizen'],
  'inspector-youyi': [],
  citizen: ['citizen'],
};

const INJECTIONS = ["'; drop table trust.users; --", "' or '1'='1", '%', '_', '\\', '") or 1=1 --', '\u0000'];

for (const engine of engines()) {
  describe(`identity and authorization on ${engine.name}`, () => {
    let t: TestDatabase;
    let p: Platform;
    let jwks: Server;
    let idp: { privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey']; issuer: string };
    const tokens = new Map<string, string>();
    let address = 0;
    const nextAddress = () => `10.9.${Math.floor(++address / 250)}.${address % 250}`;

    before(async () => {
      const { publicKey, privateKey } = await generateKeyPair('RS256');
      const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
      jwks = createServer((_req, res) => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ keys: [jwk] }));
      });
      await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
      const port = (jwks.address() as AddressInfo).port;
      idp = { privateKey, issuer: 'https://idp.example.gov.cn' };
      t = await engine.open();
      p = await startTestPlatform(t, {
        env: {
          LOGIN_RATE_PER_MINUTE: '60',
          OIDC_ISSUER: idp.issuer,
          OIDC_JWKS_URL: `http://127.0.0.1:${port}/jwks`,
          OIDC_AUDIENCE: 'pujiang',
        },
      });
    });
    after(async () => {
      await p.stop();
      await t.dispose();
      await new Promise((r) => jwks.close(r));
    });

    const call = (
      method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
      url: string,
      token?: string,
      payload?: unknown,
    ) =>
      p.http.inject({
        method,
        url,
        remoteAddress: nextAddress(),
        headers: token ? { authorization: `Bearer ${token}` } : {},
        ...(payload !== undefined && { payload: payload as Record<string, unknown> }),
      });
    const login = async (username: string, password = DEMO_PASSWORD) =>
      call('POST', '/api/v1/auth/login', undefined, { username, password });
    const as = async (username: string): Promise<string> => {
      let token = tokens.get(username);
      if (!token) {
        const res = await login(username);
        assert.equal(res.statusCode, 200, `${username}: ${res.body}`);
        token = res.json<{ accessToken: string }>().accessToken;
        tokens.set(username, token);
      }
      return token;
    };
    const orgIds = new Map<string, string>();
    const orgId = async (code: string) => {
      if (orgIds.size === 0)
        for (const o of (await call('GET', '/api/v1/orgs?limit=500', await as('admin'))).json<
          { id: string; code: string }[]
        >())
          orgIds.set(o.code, o.id);
      const id = orgIds.get(code);
      assert.ok(id, `no org ${code}`);
      return id;
    };
    const userIds = new Map<string, string>();
    const userId = async (username: string) => {
      if (userIds.size === 0)
        for (const u of (await call('GET', '/api/v1/users?limit=500', await as('admin'))).json<
          { id: string; username: string }[]
        >())
          userIds.set(u.username, u.id);
      const id = userIds.get(username);
      assert.ok(id, `no user ${username}`);
      return id;
    };

    it('jurisdiction matrix: organisations (roles × levels × resources), read and manage', async () => {
      const failures: string[] = [];
      for (const [actor, expected] of Object.entries(ORG_MATRIX)) {
        const token = await as(actor);
        for (const code of ALL) {
          const id = await orgId(code);
          const read = await call('GET', `/api/v1/orgs/${id}`, token);
          const wantRead = expected.read.includes(code) ? 200 : 404;
          if (read.statusCode !== wantRead)
            failures.push(`${actor} GET ${code}: ${read.statusCode}, want ${wantRead}`);
          const patch = await call('PATCH', `/api/v1/orgs/${id}`, token, { services: ['matrix-check'] });
          const wantPatch = expected.manage.includes(code) ? 200 : expected.read.includes(code) ? 403 : 404;
          if (patch.statusCode !== wantPatch)
            failures.push(`${actor} PATCH ${code}: ${patch.statusCode}, want ${wantPatch}`);
        }
        // Lists are filtered in SQL: exactly the visible ones among the matrix's organisations.
        const list = await call('GET', '/api/v1/orgs?limit=500', token);
        assert.equal(list.statusCode, 200);
        const listed = list
          .json<{ code: string }[]>()
          .map((o) => o.code)
          .filter((c) => ALL.includes(c));
        if (listed.sort().join() !== [...expected.read].sort().join())
          failures.push(`${actor} list: ${listed.join(',')}, want ${expected.read.join(',')}`);
      }
      assert.deepEqual(failures, []);
    });

    it('jurisdiction matrix: user records (users.read within jurisdiction, or oneself)', async () => {
      const failures: string[] = [];
      for (const [actor, visible] of Object.entries(USER_MATRIX)) {
        const token = await as(actor);
        for (const target of USER_TARGETS) {
          const res = await call('GET', `/api/v1/users/${await userId(target)}`, token);
          const want = visible.includes(target) ? 200 : 404;
          if (res.statusCode !== want)
            failures.push(`${actor} GET user ${target}: ${res.statusCode}, want ${want}`);
        }
      }
      assert.deepEqual(failures, []);
      const youyi = (await call('GET', '/api/v1/users?limit=500', await as('youyi-admin'))).json<
        { areaCode: string }[]
      >();
      assert.ok(
        youyi.length > 0 && youyi.every((u) => u.areaCode.startsWith('310113003')),
        JSON.stringify(youyi),
      );
    });

    it('a district API key acts only within its district', async () => {
      const admin = await as('baoshan-admin');
      const issued = await call('POST', '/api/v1/api-keys', admin, {
        name: '宝山区感知平台',
        orgId: await orgId('district-310113-cgj'),
        permissions: ['orgs.read'],
      });
      assert.equal(issued.statusCode, 201, issued.body);
      const key = issued.json<{ key: string; id: string }>();
      const viaHeader = (url: string) =>
        p.http.inject({ method: 'GET', url, headers: { 'x-api-key': key.key } });
      assert.equal((await viaHeader(`/api/v1/orgs/${await orgId('district-310113-cgj')}`)).statusCode, 200);
      assert.equal((await viaHeader(`/api/v1/orgs/${await orgId('district-310115-cgj')}`)).statusCode, 404);
      assert.equal((await call('GET', `/api/v1/orgs/${await orgId('city-cgj')}`, key.key)).statusCode, 404);
      // Revoked: refused at once, also through the Authorization header.
      assert.equal((await call('DELETE', `/api/v1/api-keys/${key.id}`, admin)).statusCode, 204);
      const reused = await viaHeader(`/api/v1/orgs/${await orgId('district-310113-cgj')}`);
      assert.equal(reused.statusCode, 401);
      assert.match(reused.body, /revoked/);
      // A key whose secret part is wrong, and garbage.
      assert.equal((await call('GET', '/api/v1/auth/me', key.key.slice(0, -2) + 'xx')).statusCode, 401);
      assert.equal((await call('GET', '/api/v1/auth/me', 'pj_nonsense')).statusCode, 401);
      // Nobody issues a key with more than they hold there.
      const greedy = await call('POST', '/api/v1/api-keys', admin, {
        name: 'x',
        orgId: await orgId('district-310113-cgj'),
        permissions: ['audit.read'],
      });
      assert.equal(greedy.statusCode, 403);
      assert.equal(greedy.json<{ code: string }>().code, 'privilege-escalation');
    });

    it('refuses privilege escalation: grants above the granter or outside their jurisdiction', async () => {
      const admin = await as('baoshan-admin');
      const target = await userId('baoshan-cgj');
      const escalate = await call('POST', `/api/v1/users/${target}/memberships`, admin, {
        orgId: await orgId('district-310113-ops'),
        role: 'platform-admin',
      });
      assert.equal(escalate.statusCode, 403, escalate.body);
      assert.equal(escalate.json<{ code: string }>().code, 'privilege-escalation');
      const cityRole = await call('POST', `/api/v1/users/${target}/memberships`, admin, {
        orgId: await orgId('city-ops'),
        role: 'ops-operator',
      });
      assert.equal(cityRole.statusCode, 404, 'a city organisation is invisible to a district admin');
      const auditor = await call('POST', `/api/v1/users/${target}/memberships`, admin, {
        orgId: await orgId('district-310113-ops'),
        role: 'auditor',
      });
      assert.equal(auditor.statusCode, 403, 'org-admin does not hold audit.read, so cannot grant it');
      const role = await call('POST', '/api/v1/roles', admin, {
        code: 'super',
        nameZh: '超级',
        nameEn: 'Super',
        permissions: ['audit.read'],
      });
      assert.equal(role.statusCode, 403);
      const ok = await call('POST', `/api/v1/users/${target}/memberships`, admin, {
        orgId: await orgId('district-310113-ops'),
        role: 'ops-operator',
      });
      assert.equal(ok.statusCode, 201, ok.body);
      const again = await call('POST', `/api/v1/users/${target}/memberships`, admin, {
        orgId: await orgId('district-310113-ops'),
        role: 'ops-operator',
      });
      assert.equal(again.statusCode, 409);
      // Nor may they take over a more powerful account in their district (reset, link, disable).
      const cityAdmin = await call('POST', '/api/v1/users', await as('admin'), {
        username: 'city-admin-2',
        displayName: '市级管理员',
        kind: 'staff',
        areaCode: '310113',
        password: 'City#Admin2026',
        memberships: [{ orgId: await orgId('city-ops'), role: 'ops-operator' }],
      });
      assert.equal(cityAdmin.statusCode, 201, cityAdmin.body);
      const takeover = await call('PATCH', `/api/v1/users/${cityAdmin.json<{ id: string }>().id}`, admin, {
        password: 'Taken#Over2026',
      });
      assert.equal(takeover.statusCode, 403, takeover.body);
      assert.equal(takeover.json<{ code: string }>().code, 'privilege-escalation');
      const peer = await call('PATCH', `/api/v1/users/${await userId('baoshan-ops')}`, admin, {
        displayName: '值班员',
      });
      assert.equal(peer.statusCode, 200, peer.body);
      // A system role cannot be edited, even by the platform administrator.
      const sys = await call('PATCH', '/api/v1/roles/org-admin', await as('admin'), {
        permissions: ['audit.read'],
      });
      assert.equal(sys.statusCode, 409);
      const unknown = await call('POST', '/api/v1/roles', await as('admin'), {
        code: 'odd',
        nameZh: '怪',
        nameEn: 'Odd',
        permissions: ['nukes.launch'],
      });
      assert.equal(unknown.statusCode, 422);
    });

    it('validates codes: division, resident ID and credit code check digits', async () => {
      const admin = await as('admin');
      const badArea = await call('POST', '/api/v1/orgs', admin, {
        code: 'x-bad-area',
        name: 'x',
        kind: 'department',
        areaCode: '319999',
      });
      assert.equal(badArea.statusCode, 422, badArea.body);
      const badFormat = await call('POST', '/api/v1/orgs', admin, {
        code: 'x-bad',
        name: 'x',
        kind: 'department',
        areaCode: '31011',
      });
      assert.equal(badFormat.statusCode, 400);
      const good = syntheticCreditCode('310113', 'MA1Q2W3E');
      const wrongCheck = good.slice(0, 17) + (good.endsWith('0') ? '1' : '0');
      const badCredit = await call('POST', '/api/v1/orgs', admin, {
        code: 'ent-bad-credit',
        name: '测试企业',
        kind: 'enterprise',
        areaCode: '310113',
        creditCode: wrongCheck,
      });
      assert.equal(badCredit.statusCode, 422);
      assert.equal(badCredit.json<{ code: string }>().code, 'invalid-credit-code');
      const ent = await call('POST', '/api/v1/orgs', admin, {
        code: 'ent-good',
        name: '测试企业',
        kind: 'enterprise',
        areaCode: '310113',
        creditCode: good,
      });
      assert.equal(ent.statusCode, 201, ent.body);
      const dupEnt = await call('POST', '/api/v1/orgs', admin, {
        code: 'ent-good-2',
        name: '测试企业',
        kind: 'enterprise',
        areaCode: '310113',
        creditCode: good,
      });
      assert.equal(dupEnt.statusCode, 409);
      const wrongLevel = await call('POST', '/api/v1/orgs', admin, {
        code: 'x-level',
        name: 'x',
        kind: 'department',
        level: 'city',
        areaCode: '310113',
      });
      assert.equal(wrongLevel.statusCode, 422);
      const unknownCategory = await call('POST', '/api/v1/orgs', admin, {
        code: 'x-cat',
        name: 'x',
        kind: 'department',
        areaCode: '310113',
        categories: ['event:9999'],
      });
      assert.equal(unknownCategory.statusCode, 422);

      const rid = syntheticResidentId('310113', '19900101', '123');
      const wrongRid = rid.slice(0, 17) + (rid.endsWith('1') ? '2' : '1');
      const user = (residentId: string, username: string) =>
        call('POST', '/api/v1/users', admin, {
          username,
          displayName: '测试',
          kind: 'citizen',
          areaCode: '310113003',
          password: 'Str0ng!Passw0rd',
          residentId,
        });
      const badRid = await user(wrongRid, 'rid-bad');
      assert.equal(badRid.statusCode, 422);
      assert.equal(badRid.json<{ code: string }>().code, 'invalid-resident-id');
      const created = await user(rid, 'rid-good');
      assert.equal(created.statusCode, 201, created.body);
      const shown = created.json<{ residentIdMasked: string }>();
      assert.equal(shown.residentIdMasked.length, 18);
      assert.equal(shown.residentIdMasked, `${rid.slice(0, 3)}***********${rid.slice(-4)}`);
      assert.match(shown.residentIdMasked, /\*{8}/);
      assert.ok(!created.body.includes(rid), 'the full resident ID is never returned');
      const dupRid = await user(rid, 'rid-again');
      assert.equal(dupRid.statusCode, 409);
      const dupName = await user(syntheticResidentId('310113', '19900101', '124'), 'RID-GOOD');
      assert.equal(dupName.statusCode, 409, 'usernames are case-insensitive');
      const stored = await t.database.raw(
        `select resident_id_hash, resident_id_masked from trust.users where username = 'rid-good'`,
      );
      assert.notEqual(stored.rows[0]?.['resident_id_hash'], rid);
      assert.ok(!JSON.stringify(stored.rows).includes(rid));
    });

    it('enforces the password policy', async () => {
      const admin = await as('admin');
      for (const password of ['short1!A', 'alllowercaseletters', 'password123', 'Weakuser1!weakuser']) {
        const res = await call('POST', '/api/v1/users', admin, {
          username: 'weakuser',
          displayName: 'w',
          kind: 'staff',
          areaCode: '310113',
          password,
        });
        assert.equal(res.statusCode, 422, `${password}: ${res.body}`);
        assert.equal(res.json<{ code: string }>().code, 'weak-password');
      }
    });

    it('refuses expired, forged, alg:none and malformed tokens', async () => {
      const user = await userId('baoshan-ops');
      const sign = (key: Uint8Array, exp: number) =>
        new SignJWT({ ver: 1 })
          .setProtectedHeader({ alg: 'HS256' })
          .setSubject(user)
          .setIssuer('pujiang')
          .setAudience('pujiang-api')
          .setIssuedAt(exp - 900)
          .setExpirationTime(exp)
          .sign(key);
      const now = Math.floor(Date.now() / 1000);
      const valid = await sign(deriveKeys(DEMO_SECRET).accessToken, now + 600);
      assert.equal((await call('GET', '/api/v1/auth/me', valid)).statusCode, 200);
      const expired = await sign(deriveKeys(DEMO_SECRET).accessToken, now - 60);
      assert.equal((await call('GET', '/api/v1/auth/me', expired)).statusCode, 401);
      const forged = await sign(
        deriveKeys('another-secret-that-is-long-enough-to-be-used!!').accessToken,
        now + 600,
      );
      assert.equal((await call('GET', '/api/v1/auth/me', forged)).statusCode, 401);
      const [, payload] = valid.split('.');
      const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${payload ?? ''}.`;
      assert.equal((await call('GET', '/api/v1/auth/me', none)).statusCode, 401);
      for (const header of ['Bearer', 'Basic abc', 'Bearer a.b.c', `Bearer ${'x'.repeat(5000)}`]) {
        const res = await p.http.inject({
          method: 'GET',
          url: '/api/v1/auth/me',
          headers: { authorization: header },
        });
        assert.equal(res.statusCode, 401, header.slice(0, 20));
      }
      assert.equal((await call('GET', '/api/v1/auth/me')).statusCode, 401, 'anonymous');
    });

    it('stops a disabled user at once, and their refresh token too', async () => {
      const admin = await as('admin');
      const created = await call('POST', '/api/v1/users', admin, {
        username: 'temp-staff',
        displayName: '临时',
        kind: 'staff',
        areaCode: '310113',
        password: 'Temp#Staff2026',
      });
      assert.equal(created.statusCode, 201, created.body);
      const id = created.json<{ id: string }>().id;
      const pair = (await login('temp-staff', 'Temp#Staff2026')).json<{
        accessToken: string;
        refreshToken: string;
      }>();
      assert.equal((await call('GET', '/api/v1/auth/me', pair.accessToken)).statusCode, 200);
      assert.equal(
        (await call('PATCH', `/api/v1/users/${id}`, admin, { status: 'disabled' })).statusCode,
        200,
      );
      assert.equal((await call('GET', '/api/v1/auth/me', pair.accessToken)).statusCode, 401);
      assert.equal(
        (await call('POST', '/api/v1/auth/refresh', undefined, { refreshToken: pair.refreshToken }))
          .statusCode,
        401,
      );
      assert.equal((await login('temp-staff', 'Temp#Staff2026')).statusCode, 401);
    });

    it('rotates refresh tokens and revokes the family when a spent one is replayed', async () => {
      const first = (await login('youyi-ops')).json<{ refreshToken: string }>();
      const second = await call('POST', '/api/v1/auth/refresh', undefined, {
        refreshToken: first.refreshToken,
      });
      assert.equal(second.statusCode, 200);
      const next = second.json<{ refreshToken: string; accessToken: string }>();
      const replay = await call('POST', '/api/v1/auth/refresh', undefined, {
        refreshToken: first.refreshToken,
      });
      assert.equal(replay.statusCode, 401);
      assert.match(replay.body, /already used/);
      assert.equal(
        (await call('POST', '/api/v1/auth/refresh', undefined, { refreshToken: next.refreshToken }))
          .statusCode,
        401,
      );
    });

    it('locks an account after repeated failures, with one message for unknown users', async () => {
      const admin = await as('admin');
      await call('POST', '/api/v1/users', admin, {
        username: 'lock-me',
        displayName: 'l',
        kind: 'staff',
        areaCode: '310113',
        password: 'Lock#Me2026x',
      });
      const unknown = await login('nobody-here', 'whatever');
      const wrong = await login('lock-me', 'wrong');
      assert.equal(unknown.statusCode, 401);
      assert.equal(wrong.statusCode, 401);
      assert.equal(
        unknown.json<{ detail?: string; title: string }>().title,
        wrong.json<{ title: string }>().title,
      );
      for (let i = 0; i < 4; i++) await login('lock-me', 'wrong');
      const locked = await login('lock-me', 'Lock#Me2026x');
      assert.equal(locked.statusCode, 423);
      assert.ok(Number(locked.headers['retry-after']) > 0);
    });

    it('rate-limits sign-in attempts per client address', async () => {
      const from = (n: number) =>
        p.http.inject({
          method: 'POST',
          url: '/api/v1/auth/login',
          remoteAddress: '10.200.0.1',
          payload: { username: `ghost${n}`, password: 'x' },
        });
      let last = await from(0);
      for (let i = 1; i <= 60; i++) last = await from(i);
      assert.equal(last.statusCode, 429);
      assert.ok(Number(last.headers['retry-after']) > 0);
    });

    it('accepts tokens of the configured identity provider for linked accounts only', async () => {
      const token = (sub: string, claims: Record<string, unknown> = {}, audience = 'pujiang') =>
        new SignJWT({ preferred_username: 'baoshan-ops', ...claims })
          .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
          .setIssuer(idp.issuer)
          .setAudience(audience)
          .setSubject(sub)
          .setIssuedAt()
          .setExpirationTime('5m')
          .sign(idp.privateKey);
      const me = await call('GET', '/api/v1/auth/me', await token('ext-001'));
      assert.equal(me.statusCode, 200, me.body);
      assert.equal(me.json<{ name: string }>().name, 'baoshan-ops');
      assert.equal(
        (await call('GET', '/api/v1/auth/me', await token('ext-001', {}, 'someone-else'))).statusCode,
        401,
      );
      assert.equal(
        (await call('GET', '/api/v1/auth/me', await token('ext-002', { preferred_username: 'no-such-user' })))
          .statusCode,
        401,
      );
      // Linked by subject: the username claim no longer matters.
      await call('PATCH', `/api/v1/users/${await userId('youyi-ops')}`, await as('admin'), {
        externalSubject: `${idp.issuer}#ext-777`,
      });
      const linked = await call(
        'GET',
        '/api/v1/auth/me',
        await token('ext-777', { preferred_username: 'ignored' }),
      );
      assert.equal(linked.json<{ name: string }>().name, 'youyi-ops');
    });

    it('treats SQL-injection strings in every filter as plain data', async () => {
      const admin = await as('admin');
      const count = async (table: string) =>
        Number((await t.database.raw(`select count(*) as n from ${table}`)).rows[0]?.['n']);
      const before = [await count('trust.users'), await count('trust.organisations')];
      for (const s of INJECTIONS) {
        const q = encodeURIComponent(s);
        for (const url of [
          `/api/v1/orgs?q=${q}`,
          `/api/v1/users?q=${q}`,
          `/api/v1/audit/records?actor=${q}&action=${q}&resourceType=${q}&resourceId=${q}`,
        ]) {
          const res = await call('GET', url, admin);
          assert.ok([200, 400].includes(res.statusCode), `${url}: ${res.statusCode} ${res.body}`);
          // No name contains these strings, so a filter taken literally matches nothing.
          if (res.statusCode === 200) {
            const body = res.json<unknown[] | { records: unknown[] }>();
            assert.deepEqual(Array.isArray(body) ? body : body.records, [], url);
          }
        }
        for (const url of [
          `/api/v1/orgs?area=${q}`,
          `/api/v1/orgs?category=${q}`,
          `/api/v1/users?area=${q}`,
          `/api/v1/orgs/${q}`,
          `/api/v1/audit/records?area=${q}`,
        ])
          assert.equal((await call('GET', url, admin)).statusCode, 400, url);
      }
      // '%' and '_' are literals, not wildcards.
      assert.deepEqual((await call('GET', '/api/v1/orgs?q=%25', admin)).json(), []);
      assert.deepEqual((await call('GET', '/api/v1/users?q=_', admin)).json(), []);
      assert.deepEqual([await count('trust.users'), await count('trust.organisations')], before);
    });

    it('administers areas: boundaries must fit the parent, spare the siblings, keep the children', async () => {
      const admin = await as('admin');
      const { rows } = await t.database.raw(`
        select code, parent_code,
               ST_AsGeoJSON(ST_Multi(ST_Buffer(geom, -0.0002)), 9) as shrunk,
               ST_AsGeoJSON(ST_Multi(ST_CollectionExtract(ST_Difference(geom, ST_Buffer(geom, -0.0002)), 3)), 9) as freed,
               ST_X(ST_PointOnSurface(ST_Difference(geom, ST_Buffer(geom, -0.0002)))) as lon,
               ST_Y(ST_PointOnSurface(ST_Difference(geom, ST_Buffer(geom, -0.0002)))) as lat
        from trust.areas where code like '310113003%' and level = 'grid' order by code limit 1`);
      const grid = rows[0] as {
        code: string;
        parent_code: string;
        shrunk: string;
        freed: string;
        lon: number;
        lat: number;
      };
      const freed = JSON.parse(grid.freed) as unknown;
      const newCode = `${grid.parent_code}999`;
      const create = (token: string, body: Record<string, unknown>) =>
        call('POST', '/api/v1/areas', token, {
          code: newCode,
          name: '新网格',
          parentCode: grid.parent_code,
          geometry: freed,
          ...body,
        });

      assert.equal(
        (await create(await as('youyi-admin'), {})).statusCode,
        403,
        'org-admin has no areas.manage',
      );
      const overlap = await create(admin, {});
      assert.equal(overlap.statusCode, 422, 'the freed ring still belongs to the old grid');
      assert.match(overlap.body, /overlaps sibling/);
      const badCode = await create(admin, { code: '310113004999' });
      assert.equal(badCode.statusCode, 422);
      assert.equal(badCode.json<{ code: string }>().code, 'invalid-division-code');
      const outside = await create(admin, {
        geometry: {
          type: 'Polygon',
          coordinates: [
            [
              [121, 31],
              [121.01, 31],
              [121.01, 31.01],
              [121, 31],
            ],
          ],
        },
      });
      assert.equal(outside.statusCode, 422);
      assert.match(outside.body, /outside the parent/);
      const bowtie = await create(admin, {
        geometry: {
          type: 'Polygon',
          coordinates: [
            [
              [121.4, 31.3],
              [121.41, 31.31],
              [121.41, 31.3],
              [121.4, 31.31],
              [121.4, 31.3],
            ],
          ],
        },
      });
      assert.equal(bowtie.statusCode, 422);
      assert.match(bowtie.body, /not a valid polygon/);
      const notGeo = await create(admin, { geometry: { type: 'Point', coordinates: [121, 31] } });
      assert.equal(notGeo.statusCode, 400);

      // Shrink the old grid, then the freed ring can become a new grid; locate sees it at once.
      const shrink = await call('PATCH', `/api/v1/areas/${grid.code}`, admin, {
        geometry: JSON.parse(grid.shrunk) as unknown,
      });
      assert.equal(shrink.statusCode, 200, shrink.body);
      const created = await create(admin, {});
      assert.equal(created.statusCode, 201, created.body);
      assert.equal(created.json<{ level: string }>().level, 'grid');
      const located = await call('GET', `/api/v1/areas/locate?lon=${grid.lon}&lat=${grid.lat}`);
      assert.equal(located.json<{ area: { code: string } }>().area.code, newCode);
      const renamed = await call('PATCH', `/api/v1/areas/${newCode}`, admin, { name: '新网格（改）' });
      assert.equal(renamed.json<{ name: string }>().name, '新网格（改）');
      // A street cannot shrink away from its committees.
      const street = await call('PATCH', '/api/v1/areas/310113003', admin, {
        geometry: JSON.parse(grid.shrunk) as unknown,
      });
      assert.equal(street.statusCode, 422);
      assert.match(street.body, /children would lie outside/);
      await sealAudit(t.database);
      const audit = await t.database.raw(
        `select action from trust.audit_records where resource_type = 'area' and outcome = 'success' order by seq`,
      );
      assert.deepEqual(
        audit.rows.map((r) => r['action']),
        ['area.update', 'area.create', 'area.update'],
      );
    });
  });
}
