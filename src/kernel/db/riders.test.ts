/** `writeWith` and its riders: one statement, all or nothing, on every engine of this run. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { engines, type TestDatabase } from '../../../test/helpers/engines.ts';
import { insertRows, writeWith, type Rider } from './riders.ts';

for (const engine of engines()) {
  describe(`writeWith and riders on ${engine.name}`, () => {
    let t: TestDatabase;
    const db = () => t.database.db;
    const count = async (table: string): Promise<number> => {
      const { rows } = await sql<{ n: number }>`select count(*)::int as n from ${sql.raw(table)}`.execute(
        db(),
      );
      return rows[0]?.n ?? -1;
    };
    /** A rider logging `note` into kernel_rider_log, calling `onCommit` after commit. */
    const logRider = (note: string, onCommit?: () => void): Rider => ({
      statement: insertRows({
        table: 'public.kernel_rider_log',
        columns: [
          ['note', 'text'],
          ['at', 'timestamptz'],
          ['doc', 'jsonb'],
        ],
        rows: [[note, new Date('2026-11-21T08:00:00Z'), JSON.stringify({ note })]],
      }),
      ...(onCommit ? { afterCommit: onCommit } : {}),
    });
    const insertItem = (id: number) =>
      sql<{
        id: number;
      }>`insert into kernel_rider_items (id) values (${id}) on conflict do nothing returning id`;

    before(async () => {
      t = await engine.open();
      await sql`create table kernel_rider_items (id int primary key)`.execute(db());
      await sql`create table kernel_rider_log (note text not null check (note <> 'bad'), at timestamptz, doc jsonb)`.execute(
        db(),
      );
    });
    after(async () => {
      await t.dispose();
    });

    it('writes the change and its riders in one statement, with typed values', async () => {
      let committed = 0;
      const rows = await writeWith(db(), insertItem(1), [
        logRider('one', () => committed++),
        logRider('two'),
      ]);
      assert.deepEqual(rows, [{ id: 1 }]);
      assert.equal(committed, 1);
      const { rows: log } = await sql<{ note: string; at: Date; doc: unknown }>`
        select note, at, doc from kernel_rider_log order by note`.execute(db());
      assert.deepEqual(log, [
        { note: 'one', at: new Date('2026-11-21T08:00:00Z'), doc: { note: 'one' } },
        { note: 'two', at: new Date('2026-11-21T08:00:00Z'), doc: { note: 'two' } },
      ]);
    });

    it('writes no rider and runs no callback when the change returns no row', async () => {
      let committed = 0;
      const before = await count('kernel_rider_log');
      const rows = await writeWith(db(), insertItem(1), [logRider('dup', () => committed++)]);
      assert.deepEqual(rows, []);
      assert.equal(committed, 0);
      assert.equal(await count('kernel_rider_log'), before);
    });

    it('leaves nothing behind when a rider fails (the change is undone with it)', async () => {
      let committed = 0;
      const items = await count('kernel_rider_items');
      const log = await count('kernel_rider_log');
      await assert.rejects(
        writeWith(db(), insertItem(2), [logRider('ok'), logRider('bad', () => committed++)]),
      );
      assert.equal(committed, 0);
      assert.equal(await count('kernel_rider_items'), items);
      assert.equal(await count('kernel_rider_log'), log);
    });

    it('inside a transaction, runs callbacks at its commit and never after a rollback', async () => {
      const calls: string[] = [];
      await t.database.transact(async (trx) => {
        await writeWith(trx, insertItem(3), [logRider('in-tx', () => calls.push('committed'))]);
        assert.deepEqual(calls, [], 'not before the transaction commits');
      });
      assert.deepEqual(calls, ['committed']);
      await assert.rejects(
        t.database.transact(async (trx) => {
          await writeWith(trx, insertItem(4), [logRider('rolled-back', () => calls.push('rolled back'))]);
          throw new Error('abort');
        }),
      );
      assert.deepEqual(calls, ['committed']);
      const { rows } = await sql<{ id: number }>`select id from kernel_rider_items where id = 4`.execute(
        db(),
      );
      assert.equal(rows.length, 0);
    });

    it('refuses bad identifiers, types and row widths before any SQL runs', () => {
      const bad = (args: Parameters<typeof insertRows>[0]) =>
        assert.throws(() => insertRows(args), /insertRows/);
      bad({ table: 'kernel_rider_log', columns: [['note', 'text']], rows: [['x']] });
      bad({ table: 'public.log; drop table x', columns: [['note', 'text']], rows: [['x']] });
      bad({ table: 'public.kernel_rider_log', columns: [['note"', 'text']], rows: [['x']] });
      bad({
        table: 'public.kernel_rider_log',
        columns: [['note', 'text); drop table x; --']],
        rows: [['x']],
      });
      bad({ table: 'public.kernel_rider_log', columns: [['note', 'text']], rows: [['x', 'y']] });
      bad({ table: 'public.kernel_rider_log', columns: [], rows: [] });
      bad({
        table: 'public.kernel_rider_log',
        columns: [['note', 'text']],
        rows: Array.from({ length: 1_000_001 }, () => ['x']),
      });
      bad({ table: 'public.kernel_rider_log', columns: [['tags', 'text[]']], rows: [[['a']]] });
    });

    it('carries many rows through typed arrays: quotes, backslashes, braces, nulls, unicode, JSON', async () => {
      const tricky = ['a"b', 'c\\d', '{e,f}', 'NULL', '', '浦江 ✓', "g'h", 'x\ny'];
      const notes = Array.from({ length: 2_000 }, (_, i) => `${tricky[i % tricky.length] ?? ''}#${i}`);
      const rider: Rider = {
        statement: insertRows({
          table: 'public.kernel_rider_log',
          columns: [
            ['note', 'text'],
            ['at', 'timestamptz'],
            ['doc', 'jsonb'],
          ],
          rows: notes.map((note, i) => [
            note,
            i % 3 === 0 ? null : new Date(Date.UTC(2026, 10, 21, 8, 0, i % 60)),
            i % 5 === 0 ? null : JSON.stringify({ note, n: i, nested: { q: '"', b: '\\' } }),
          ]),
        }),
      };
      await writeWith(db(), insertItem(6), [rider]);
      const { rows } = await sql<{ note: string; at: Date | null; doc: { note: string; n: number } | null }>`
        select note, at, doc from kernel_rider_log where note like '%#%' order by (split_part(note, '#', 2))::int`.execute(
        db(),
      );
      assert.equal(rows.length, notes.length);
      for (const [i, r] of rows.entries()) {
        assert.equal(r.note, notes[i]);
        assert.equal(r.at === null, i % 3 === 0);
        assert.equal(r.doc === null, i % 5 === 0);
        if (r.doc) assert.deepEqual([r.doc.note, r.doc.n], [notes[i], i]);
      }
    });

    it('binds values as parameters: an injection string is stored as text', async () => {
      const note = "x'); drop table kernel_rider_items; --";
      await writeWith(db(), insertItem(5), [logRider(note)]);
      const { rows } = await sql<{
        note: string;
      }>`select note from kernel_rider_log where note = ${note}`.execute(db());
      assert.equal(rows.length, 1);
      assert.ok((await count('kernel_rider_items')) >= 1);
    });
  });
}
