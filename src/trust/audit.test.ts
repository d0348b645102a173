/**
 * The audit trail on every engine of this run: records written with their change, refusals and
 * personal-data reads recorded, append-only storage, jurisdiction-scoped reading, concurrent
 * appends, signed checkpoints and offline inclusion proofs, key rotation, and tamper detection by
 * `verifyAuditTrail` and by `pujiang audit verify`.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { pujiang } from '../../test/helpers/cli.ts';
import { engines, type TestDatabase } from '../../test/helpers/engines.ts';
import { startTestPlatform } from '../../test/helpers/platform.ts';
import type { Platform } from '../platform.ts';
import {
  parsePublicKey,
  recordHash,
  verifyProofDocument,
  type InclusionProofDocument,
} from './audit.crypto.ts';
import {
  createCheckpoint,
  loadSigner,
  recordAudit,
  recordBody,
  rotateSigningKey,
  sealAudit,
  verifyAuditTrail,
} from './audit.service.ts';
import type { AuditRow } from './audit.store.ts';
import { systemContext } from './authz.ts';
import { DEMO_PASSWORD } from './identity.seed.ts';

const tmp = mkdtempSync(join(tmpdir(), 'pj-audit-'));

for (const engine of engines()) {
  describe(`audit trail on ${engine.name}`, () => {
    let t: TestDatabase;
    let p: Platform;
    const tokens = new Map<string, string>();
    const keyFile = join(tmp, `${engine.name}-signing-key.pem`);

    before(async () => {
      t = await engine.open();
      // A long interval: these tests sign checkpoints on demand.
      p = await startTestPlatform(t, {
        env: { AUDIT_KEY_FILE: keyFile, AUDIT_CHECKPOINT_INTERVAL_MS: '3600000' },
      });
    });
    after(async () => {
      await p.stop();
      await t.dispose();
    });

    const call = (
      method: 'GET' | 'POST' | 'PATCH',
      url: string,
      token?: string,
      payload?: unknown,
      headers: Record<string, string> = {},
    ) =>
      p.http.inject({
        method,
        url,
        headers: { ...headers, ...(token && { authorization: `Bearer ${token}` }) },
        ...(payload !== undefined && { payload: payload as Record<string, unknown> }),
      });
    const as = async (username: string) => {
      let token = tokens.get(username);
      if (!token) {
        const res = await call('POST', '/api/v1/auth/login', undefined, {
          username,
          password: DEMO_PASSWORD,
        });
        assert.equal(res.statusCode, 200, res.body);
        token = res.json<{ accessToken: string }>().accessToken;
        tokens.set(username, token);
      }
      return token;
    };
    const records = async (where: string) => {
      await sealAudit(t.database);
      return (await t.database.raw(`select * from trust.audit_records where ${where} order by seq`)).rows;
    };

    it('records each change in its own transaction, and refusals separately', async () => {
      const admin = await as('admin');
      const ok = await call('POST', '/api/v1/orgs', admin, {
        code: 'audit-dept',
        name: '审计测试局',
        kind: 'department',
        areaCode: '310113',
      });
      assert.equal(ok.statusCode, 201, ok.body);
      const id = ok.json<{ id: string }>().id;
      const [rec] = await records(`resource_id = '${id}' and action = 'org.create'`);
      assert.ok(rec, 'an audit record for the new organisation');
      assert.equal(rec['outcome'], 'success');
      assert.equal(rec['area'], '310113');
      assert.equal(rec['actor_kind'], 'user');
      assert.ok(rec['request_id']);

      // Invalid input: nothing changed, nothing recorded as done.
      const bad = await call('POST', '/api/v1/orgs', admin, {
        code: 'audit-bad',
        name: 'x',
        kind: 'department',
        areaCode: '310113',
        categories: ['event:9999'],
      });
      assert.equal(bad.statusCode, 422);
      assert.equal((await records(`details->>'code' = 'audit-bad'`)).length, 0);
      assert.equal(
        (await t.database.raw(`select 1 from trust.organisations where code = 'audit-bad'`)).rows.length,
        0,
      );

      // A refused attempt leaves a 'denied' record.
      const refused = await call('PATCH', `/api/v1/orgs/${id}`, await as('youyi-admin'), { name: '改名' });
      assert.equal(refused.statusCode, 404);
      const denied = await records(`action = 'org.update' and resource_id = '${id}' and outcome = 'denied'`);
      assert.equal(denied.length, 1);
    });

    it('records personal-data reads with their declared purpose', async () => {
      const citizen = (await call('GET', '/api/v1/users?q=citizen', await as('admin'))).json<
        { id: string }[]
      >()[0];
      assert.ok(citizen);
      const purpose = '核实市民诉求 #12345';
      const res = await call('GET', `/api/v1/users/${citizen.id}`, await as('baoshan-ops'), undefined, {
        'x-purpose': encodeURIComponent(purpose),
      });
      assert.equal(res.statusCode, 200, res.body);
      const reads = await records(`action = 'user.read' and resource_id = '${citizen.id}'`);
      assert.equal(reads.at(-1)?.['purpose'], purpose);
      const bad = await call('GET', `/api/v1/users/${citizen.id}`, await as('baoshan-ops'), undefined, {
        'x-purpose': '%E4%ZZ',
      });
      assert.equal(bad.statusCode, 400);
    });

    it('cannot be changed through the database connection the application uses', async () => {
      for (const statement of [
        `update trust.audit_records set outcome = 'failed' where seq = 1`,
        `delete from trust.audit_records where seq = 1`,
        `truncate trust.audit_records`,
        `truncate trust.audit_checkpoints`,
      ])
        await assert.rejects(t.database.raw(statement), /append-only/, statement);
    });

    it('shows each auditor only the records of their jurisdiction', async () => {
      const district = await call('GET', '/api/v1/audit/records?limit=500', await as('baoshan-auditor'));
      assert.equal(district.statusCode, 200, district.body);
      const seen = district.json<{ records: { area: string | null }[] }>().records;
      assert.ok(seen.length > 0);
      assert.ok(
        seen.every((r) => r.area?.startsWith('310113')),
        JSON.stringify(seen.map((r) => r.area)),
      );
      const city = (await call('GET', '/api/v1/audit/records?limit=500', await as('city-auditor'))).json<{
        records: { area: string | null }[];
      }>().records;
      assert.ok(city.some((r) => r.area === null) && city.length > seen.length);
      const refused = await call('GET', '/api/v1/audit/records', await as('baoshan-ops'));
      assert.equal(refused.statusCode, 403);
      const page = (await call('GET', '/api/v1/audit/records?limit=2', await as('city-auditor'))).json<{
        records: { seq: number }[];
        next: number;
      }>();
      const nextPage = (
        await call('GET', `/api/v1/audit/records?limit=2&before=${page.next}`, await as('city-auditor'))
      ).json<{ records: { seq: number }[] }>();
      assert.ok((nextPage.records[0]?.seq ?? 0) < (page.records[1]?.seq ?? 0));
    });

    it('keeps one unbroken chain under concurrent appends', async () => {
      await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          t.database.transact((trx) =>
            recordAudit(trx, systemContext('concurrency test'), {
              action: 'test.append',
              resourceType: 'test',
              resourceId: String(i),
            }),
          ),
        ),
      );
      const report = await verifyAuditTrail(t.database);
      assert.equal(report.ok, true, JSON.stringify(report.problem));
      assert.equal((await records(`action = 'test.append'`)).length, 40);
    });

    it('proves a record against a signed checkpoint, verifiable offline with the public key alone', async () => {
      const admin = await as('admin');
      const seq = Number((await records(`action = 'org.create'`)).at(-1)?.['seq']);
      const early = await call('GET', `/api/v1/audit/proof/${seq}`, admin);
      assert.equal(early.statusCode, 409, 'not yet covered by a checkpoint');
      const made = await call('POST', '/api/v1/audit/checkpoints', admin);
      assert.equal(made.statusCode, 200, made.body);
      assert.equal(
        (await call('POST', '/api/v1/audit/checkpoints', await as('baoshan-auditor'))).statusCode,
        403,
      );
      const proofRes = await call('GET', `/api/v1/audit/proof/${seq}`, admin);
      assert.equal(proofRes.statusCode, 200, proofRes.body);
      const proof = proofRes.json<InclusionProofDocument>();
      const keys = (await call('GET', '/api/v1/audit/keys')).json<{
        keys: { keyId: string; publicKeyPem: string; jwk: object }[];
      }>().keys;
      const key = keys.find((k) => k.keyId === proof.checkpoint.keyId);
      assert.ok(key);
      assert.deepEqual(verifyProofDocument(proof, parsePublicKey(key.publicKeyPem)), {
        ok: true,
        seq,
        checkpoint: proof.checkpoint.checkpoint,
      });

      // The CLI verifier: no database, only the proof and the public key (PEM or JWK).
      const proofFile = join(tmp, `${engine.name}-proof.json`);
      const pemFile = join(tmp, `${engine.name}-key.pem`);
      const jwkFile = join(tmp, `${engine.name}-key.jwk`);
      writeFileSync(proofFile, JSON.stringify(proof));
      writeFileSync(pemFile, key.publicKeyPem);
      writeFileSync(jwkFile, JSON.stringify(key.jwk));
      for (const keyPath of [pemFile, jwkFile]) {
        const run = await pujiang(['audit', 'verify-proof', proofFile, '--public-key', keyPath], {});
        assert.equal(run.code, 0, run.stderr);
        assert.match(run.stdout, new RegExp(`record ${seq} is in signed checkpoint`));
      }
      const forged = { ...proof, record: { ...proof.record, outcome: 'denied' } };
      writeFileSync(proofFile, JSON.stringify(forged));
      const bad = await pujiang(['audit', 'verify-proof', proofFile, '--public-key', pemFile], {});
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /does NOT verify: record hash does not match/);

      // A district auditor may prove records of the district only.
      const outside = Number((await records(`area is null`))[0]?.['seq']);
      assert.equal(
        (await call('GET', `/api/v1/audit/proof/${outside}`, await as('baoshan-auditor'))).statusCode,
        404,
      );
      assert.equal((await call('GET', '/api/v1/audit/proof/999999999', admin)).statusCode, 404);
    });

    it('rotates the signing key; checkpoints of the old key still verify', async () => {
      const old = loadSigner(keyFile);
      const fresh = await rotateSigningKey(t.database, keyFile);
      assert.notEqual(fresh.keyId, old.keyId);
      assert.equal(loadSigner(keyFile).keyId, fresh.keyId);
      await t.database.transact((trx) =>
        recordAudit(trx, systemContext(), { action: 'test.after-rotation', resourceType: 'test' }),
      );
      const cp = await createCheckpoint(t.database, fresh);
      assert.equal(cp?.statement.keyId, fresh.keyId);
      const keys = (await call('GET', '/api/v1/audit/keys')).json<{
        keys: { keyId: string; retiredAt: string | null }[];
      }>().keys;
      assert.ok(keys.find((k) => k.keyId === old.keyId)?.retiredAt);
      assert.equal(keys.find((k) => k.keyId === fresh.keyId)?.retiredAt, null);
      const report = await verifyAuditTrail(t.database);
      assert.equal(report.ok, true, JSON.stringify(report.problem));
      assert.ok(report.checkpoints >= 2);
    });

    it('detects a one-byte change made directly in SQL, and names the record', async () => {
      if (t.url) {
        const clean = await pujiang(['audit', 'verify'], { DATABASE_URL: t.url, LOG_LEVEL: 'silent' });
        assert.equal(clean.code, 0, clean.stderr);
        assert.match(clean.stdout, /audit trail OK/);
      }
      const victim = (await records(`action = 'org.create'`)).at(-1) as unknown as AuditRow;
      const seq = victim.seq;
      const asSuperuser = (statement: ReturnType<typeof sql>) =>
        t.database.transact(async (trx) => {
          // Triggers off for this transaction: what a DBA (or an intruder with superuser) could do.
          await sql`set local session_replication_role = replica`.execute(trx);
          await statement.execute(trx);
        });
      await asSuperuser(sql`update trust.audit_records set action = 'org.creatE' where seq = ${seq}`);
      const report = await verifyAuditTrail(t.database);
      assert.equal(report.ok, false);
      assert.equal(report.problem?.seq, seq);
      assert.match(report.problem.reason, new RegExp(`record ${seq} was altered`));
      if (t.url) {
        const broken = await pujiang(['audit', 'verify'], { DATABASE_URL: t.url, LOG_LEVEL: 'silent' });
        assert.equal(broken.code, 1);
        assert.match(broken.stderr, new RegExp(`BROKEN: record ${seq} was altered`));
      }

      // Rewriting the record's hash and every later link too: the signed checkpoint catches it.
      const later = (await records(`seq >= ${seq}`)) as unknown as AuditRow[];
      let prev = victim.prev_hash;
      for (const row of later) {
        const body = recordBody({
          ...row,
          action: row.seq === seq ? 'org.creatE' : row.action,
          prev_hash: prev,
        });
        const hash = recordHash(prev, body);
        await asSuperuser(
          sql`update trust.audit_records set prev_hash = ${prev}, hash = ${hash} where seq = ${row.seq}`,
        );
        prev = hash;
      }
      const rewritten = await verifyAuditTrail(t.database);
      assert.equal(rewritten.ok, false);
      assert.ok(rewritten.problem?.checkpoint, JSON.stringify(rewritten.problem));
      assert.match(rewritten.problem.reason, /Merkle root does not match/);
    });
  });
}
