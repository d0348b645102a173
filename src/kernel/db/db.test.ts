/** Storage integration tests, run on every engine of this run (the test names say which). */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { engines, type TestDatabase } from '../../../test/helpers/engines.ts';
import { silentLogger } from '../log/logger.ts';
import { bulkInsert } from './bulk.ts';
import { afterCommit } from './database.ts';
import { isMigrated, migrate } from './migrator.ts';

for (const engine of engines()) {
  describe(`storage on ${engine.name}`, () => {
    let t: TestDatabase;
    before(async () => {
      t = await engine.open();
    });
    after(async () => {
      await t.dispose();
    });

    it('returns the same JavaScript values on both engines', async () => {
      const { rows } = await sql<{
        big: number;
        num: number;
        d: string;
        ts: Date;
        j: { a: number[] };
        b: boolean;
        txt: string;
      }>`select 9007199254740::bigint as big, 12.5::numeric as num, date '2026-11-21' as d,
             timestamptz '2026-11-21T08:00:00Z' as ts, '{"a":[1,2]}'::jsonb as j, true as b, '浦江' as txt`.execute(
        t.database.db,
      );
      assert.deepEqual(rows[0], {
        big: 9007199254740,
        num: 12.5,
        d: '2026-11-21',
        ts: new Date('2026-11-21T08:00:00Z'),
        j: { a: [1, 2] },
        b: true,
        txt: '浦江',
      });
    });

    it('has PostGIS', async () => {
      const { rows } = await sql<{ d: number; inside: boolean }>`
        select round(ST_DistanceSphere(ST_Point(121.4737, 31.2304, 4326), ST_Point(121.4998, 31.2397, 4326))) as d,
               ST_Contains(ST_MakeEnvelope(121, 31, 122, 32, 4326), ST_Point(121.47, 31.23, 4326)) as inside`.execute(
        t.database.db,
      );
      assert.ok(rows[0] && rows[0].d > 2000 && rows[0].d < 3000, `distance ${rows[0]?.d}`);
      assert.equal(rows[0].inside, true);
    });

    it('rolls a failed transaction back completely and runs commit hooks only on commit', async () => {
      await sql`create table if not exists kernel_test_items (id int primary key, name text not null)`.execute(
        t.database.db,
      );
      let hooks = 0;
      await assert.rejects(
        t.database.transact(async (trx) => {
          afterCommit(trx, () => hooks++);
          await sql`insert into kernel_test_items values (1, 'a')`.execute(trx);
          await sql`insert into kernel_test_items values (1, 'duplicate')`.execute(trx);
        }),
        /duplicate key/,
      );
      const { rows } = await sql<{ n: number }>`select count(*) as n from kernel_test_items`.execute(
        t.database.db,
      );
      assert.equal(rows[0]?.n, 0);
      assert.equal(hooks, 0);
      await t.database.transact(async (trx) => {
        afterCommit(trx, () => hooks++);
        await sql`insert into kernel_test_items values (2, 'b')`.execute(trx);
      });
      assert.equal(hooks, 1);
    });

    it('serialises concurrent transactions without losing updates', async () => {
      await sql`create table if not exists kernel_test_counter (id int primary key, n int not null)`.execute(
        t.database.db,
      );
      await sql`insert into kernel_test_counter values (1, 0) on conflict (id) do update set n = 0`.execute(
        t.database.db,
      );
      await Promise.all(
        Array.from({ length: 20 }, () =>
          t.database.transact(async (trx) => {
            const { rows } = await sql<{
              n: number;
            }>`select n from kernel_test_counter where id = 1 for update`.execute(trx);
            await sql`update kernel_test_counter set n = ${(rows[0]?.n ?? 0) + 1} where id = 1`.execute(trx);
          }),
        ),
      );
      const { rows } = await sql<{ n: number }>`select n from kernel_test_counter where id = 1`.execute(
        t.database.db,
      );
      assert.equal(rows[0]?.n, 20);
    });

    it('bulk-inserts in chunks atomically, and refuses bad identifiers and rows before touching the database', async () => {
      await sql`create table if not exists kernel_test_bulk (id int primary key, name text, at timestamptz)`.execute(
        t.database.db,
      );
      const rows = Array.from({ length: 2_500 }, (_, i) => [
        i,
        `点位-${i}`,
        new Date(Date.UTC(2026, 0, 1, 0, 0, i)),
      ]);
      const n = await t.database.transact((trx) =>
        bulkInsert(trx, { table: 'kernel_test_bulk', columns: ['id', 'name', 'at'], rows, chunkRows: 1_000 }),
      );
      assert.equal(n, 2_500);
      const count = async () =>
        (await sql<{ n: number }>`select count(*) as n from kernel_test_bulk`.execute(t.database.db)).rows[0]
          ?.n;
      assert.equal(await count(), 2_500);
      // A duplicate in the third chunk rolls back the first two as well.
      await assert.rejects(
        t.database.transact((trx) =>
          bulkInsert(trx, {
            table: 'kernel_test_bulk',
            columns: ['id', 'name', 'at'],
            rows: [...Array.from({ length: 2_000 }, (_, i) => [10_000 + i, 'x', null]), [0, 'dup', null]],
            chunkRows: 1_000,
          }),
        ),
        /duplicate key/,
      );
      assert.equal(await count(), 2_500);
      await assert.rejects(
        bulkInsert(t.database.db, { table: 'kernel_test_bulk; drop table x', columns: ['id'], rows: [[1]] }),
        /invalid table name/,
      );
      await assert.rejects(
        bulkInsert(t.database.db, {
          table: 'kernel_test_bulk',
          columns: ['id) values (1); --'],
          rows: [[1]],
        }),
        /invalid column/,
      );
      await assert.rejects(
        bulkInsert(t.database.db, { table: 'kernel_test_bulk', columns: ['id', 'name'], rows: [[1]] }),
        /row 0 has 1 values for 2 columns/,
      );
      // Values are parameters, never SQL: a hostile string is stored as text.
      await bulkInsert(t.database.db, {
        table: 'kernel_test_bulk',
        columns: ['id', 'name'],
        rows: [[99_999, "'); drop table kernel_test_bulk; --"]],
      });
      assert.equal(await count(), 2_501);
    });

    it('reports pool statistics and answers ping', async () => {
      await t.database.ping();
      const s = t.database.stats();
      assert.ok(s.total >= 1 && s.waiting >= 0 && s.idle >= 0);
    });
  });

  describe(`migrations on ${engine.name}`, () => {
    let t: TestDatabase;
    let dir: string;
    before(async () => {
      t = await engine.openBlank();
      dir = mkdtempSync(join(tmpdir(), 'pj-migrations-'));
    });
    after(async () => {
      await t.dispose();
    });

    it('applies pending files once, in order, and records them', async () => {
      writeFileSync(
        join(dir, '0001_things.sql'),
        'create table demo.things (id int primary key);\ncreate index on demo.things (id);',
      );
      writeFileSync(join(dir, '0002_more.sql'), 'alter table demo.things add column name text;');
      const sources = [{ module: 'demo', dir }];
      const first = await migrate({ database: t.database, sources, logger: silentLogger() });
      assert.deepEqual(first.applied, ['demo/0001_things.sql', 'demo/0002_more.sql']);
      const second = await migrate({ database: t.database, sources, logger: silentLogger() });
      assert.deepEqual(second.applied, []);
      assert.equal(second.alreadyApplied, 2);
      assert.equal(await isMigrated(t.database, sources), true);
    });

    it('runs concurrent migrators under one lock without applying anything twice', async () => {
      writeFileSync(join(dir, '0003_concurrent.sql'), 'create table demo.concurrent (id int);');
      const sources = [{ module: 'demo', dir }];
      const reports = await Promise.all(
        [1, 2, 3].map(() => migrate({ database: t.database, sources, logger: silentLogger() })),
      );
      assert.equal(reports.flatMap((r) => r.applied).length, 1);
    });

    it('rolls back a failing file and names it; later files do not run', async () => {
      const d2 = mkdtempSync(join(tmpdir(), 'pj-migrations-'));
      writeFileSync(join(d2, '0001_ok.sql'), 'create table broken.ok (id int);');
      writeFileSync(
        join(d2, '0002_bad.sql'),
        'create table broken.half (id int);\nselect * from no_such_table;',
      );
      writeFileSync(join(d2, '0003_after.sql'), 'create table broken.after (id int);');
      await assert.rejects(
        migrate({ database: t.database, sources: [{ module: 'broken', dir: d2 }], logger: silentLogger() }),
        /migration broken\/0002_bad.sql failed/,
      );
      const { rows } = await sql<{ half: string | null; ok: string | null; after: string | null }>`
        select to_regclass('broken.half')::text as half, to_regclass('broken.ok')::text as ok,
               to_regclass('broken.after')::text as after`.execute(t.database.db);
      assert.deepEqual(rows[0], { half: null, ok: 'broken.ok', after: null });
    });

    it('refuses an applied file that was edited, and an applied file that disappeared', async () => {
      writeFileSync(join(dir, '0002_more.sql'), 'alter table demo.things add column name varchar(10);');
      await assert.rejects(
        migrate({ database: t.database, sources: [{ module: 'demo', dir }], logger: silentLogger() }),
        /demo\/0002_more.sql changed after it was applied/,
      );
      const d3 = mkdtempSync(join(tmpdir(), 'pj-migrations-'));
      writeFileSync(
        join(d3, '0001_things.sql'),
        'create table demo.things (id int primary key);\ncreate index on demo.things (id);',
      );
      await assert.rejects(
        migrate({ database: t.database, sources: [{ module: 'demo', dir: d3 }], logger: silentLogger() }),
        /demo\/0002_more.sql is recorded as applied but its file is missing/,
      );
    });

    it('refuses badly named files', async () => {
      const d4 = mkdtempSync(join(tmpdir(), 'pj-migrations-'));
      writeFileSync(join(d4, 'create-things.sql'), 'select 1;');
      await assert.rejects(
        migrate({ database: t.database, sources: [{ module: 'named', dir: d4 }], logger: silentLogger() }),
        /file names must look like 0001_create_things.sql/,
      );
    });
  });
}

describe('start-up checks', () => {
  it('explains a missing PostGIS in words an operator can act on', async () => {
    const { assertPostgisAvailable } = await import('./migrator.ts');
    const withoutPostgis = { raw: async () => ({ rows: [{ available: false }] }) } as unknown as Parameters<
      typeof assertPostgisAvailable
    >[0];
    await assert.rejects(
      assertPostgisAvailable(withoutPostgis),
      /PostGIS is not installed on this PostgreSQL server\. Install it \(for example the postgresql-15-postgis-3 package\)/,
    );
  });
});
