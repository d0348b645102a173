/**
 * bench/storage: batched insert of 100k rows and 10k point reads through the storage layer
 * (Kysely over the engine's driver), each next to the raw driver doing the same work in the same
 * run. Prints figures and the ratio (storage layer throughput ÷ raw throughput; target ≥ 0.8).
 *
 *   npm run bench:storage                    # PGlite, plus PostgreSQL when DATABASE_URL is set
 *   ROWS=20000 READS=2000 npm run bench:storage
 */
import { onEachEngine } from '../engines.ts';
import { cpus, totalmem } from 'node:os';
import { sql, type Kysely } from 'kysely';
import { bulkInsert, readProcessEnv, type Database } from '../../src/kernel/index.ts';

const env = readProcessEnv();
const ROWS = Number(env['ROWS'] ?? 100_000);
const READS = Number(env['READS'] ?? 10_000);
const BATCH = 1_000;

type BenchTables = {
  bench_layer: { id: number; name: string; value: number; created_at: Date };
  bench_raw: { id: number; name: string; value: number; created_at: Date };
  bench_builder: { id: number; name: string; value: number; created_at: Date };
};

function row(i: number) {
  return { id: i, name: `设备-${i}`, value: i * 0.5, created_at: new Date(1_700_000_000_000 + i * 1000) };
}

function progress(label: string, done: number, total: number): void {
  if (process.stdout.isTTY) process.stdout.write(`\r  ${label}: ${Math.round((done / total) * 100)}%   `);
}

async function time(fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

async function benchEngine(name: string, database: Database): Promise<string[]> {
  const db = database.db.withTables<BenchTables>() as unknown as Kysely<BenchTables>;
  for (const t of ['bench_layer', 'bench_raw', 'bench_builder']) {
    await database.raw(`drop table if exists ${t}`);
    await database.raw(
      `create table ${t} (id bigint primary key, name text not null, value double precision not null, created_at timestamptz not null)`,
    );
  }

  const insertRaw = async () => {
    for (let start = 0; start < ROWS; start += BATCH) {
      const params: unknown[] = [];
      const tuples: string[] = [];
      for (let i = start; i < Math.min(start + BATCH, ROWS); i++) {
        const r = row(i);
        const n = params.length;
        tuples.push(`($${n + 1}, $${n + 2}, $${n + 3}, $${n + 4})`);
        params.push(r.id, r.name, r.value, r.created_at);
      }
      await database.raw(
        `insert into bench_raw (id, name, value, created_at) values ${tuples.join(', ')}`,
        params,
      );
      progress(`${name} raw insert`, start + BATCH, ROWS);
    }
  };
  // The storage layer's bulk path (bulkInsert), which hot paths such as sensor history use.
  const insertLayer = async () => {
    for (let start = 0; start < ROWS; start += BATCH) {
      const values: unknown[][] = [];
      for (let i = start; i < Math.min(start + BATCH, ROWS); i++) values.push(Object.values(row(i)));
      await bulkInsert(database.db, {
        table: 'bench_layer',
        columns: ['id', 'name', 'value', 'created_at'],
        rows: values,
      });
      progress(`${name} storage-layer insert`, start + BATCH, ROWS);
    }
  };
  // The query builder's general path (insertInto().values()), for comparison.
  const insertBuilder = async () => {
    for (let start = 0; start < ROWS; start += BATCH) {
      const values = [];
      for (let i = start; i < Math.min(start + BATCH, ROWS); i++) values.push(row(i));
      await db.insertInto('bench_builder').values(values).execute();
      progress(`${name} query-builder insert`, start + BATCH, ROWS);
    }
  };
  const ids = Array.from({ length: READS }, (_, i) => (i * 7919) % ROWS);
  const readRaw = async () => {
    for (const id of ids)
      await database.raw('select id, name, value, created_at from bench_raw where id = $1', [id]);
  };
  const readLayer = async () => {
    for (const id of ids)
      await db
        .selectFrom('bench_layer')
        .select(['id', 'name', 'value', 'created_at'])
        .where('id', '=', id)
        .executeTakeFirst();
  };

  // Warm-up: both paths prepare their statements and fill caches before anything is timed.
  await db
    .insertInto('bench_layer')
    .values([row(-1), row(-2)])
    .execute();
  await database.raw(
    'insert into bench_raw (id, name, value, created_at) values ($1, $2, $3, $4)',
    Object.values(row(-1)),
  );
  for (let i = 0; i < 200; i++) {
    await database.raw('select id, name, value, created_at from bench_raw where id = $1', [-1]);
    await db
      .selectFrom('bench_layer')
      .select(['id', 'name', 'value', 'created_at'])
      .where('id', '=', -1)
      .executeTakeFirst();
  }

  // Each insert runs twice, alternating, into emptied tables; the better run counts.
  const truncate = async () => {
    for (const t of ['bench_layer', 'bench_raw', 'bench_builder']) await database.raw(`truncate ${t}`);
  };
  const rawInsertMs1 = await time(insertRaw);
  const layerInsertMs1 = await time(insertLayer);
  const builderInsertMs1 = await time(insertBuilder);
  await truncate();
  const rawInsertMs = Math.min(rawInsertMs1, await time(insertRaw));
  const layerInsertMs = Math.min(layerInsertMs1, await time(insertLayer));
  const builderInsertMs = Math.min(builderInsertMs1, await time(insertBuilder));
  await sql`analyze bench_raw`.execute(db);
  await sql`analyze bench_layer`.execute(db);
  // Reads alternate twice so neither side alone gets the warm cache.
  const rawReadMs1 = await time(readRaw);
  const layerReadMs1 = await time(readLayer);
  const rawReadMs2 = await time(readRaw);
  const layerReadMs2 = await time(readLayer);
  if (process.stdout.isTTY) process.stdout.write('\r');
  const rawReadMs = Math.min(rawReadMs1, rawReadMs2);
  const layerReadMs = Math.min(layerReadMs1, layerReadMs2);
  for (const t of ['bench_layer', 'bench_raw', 'bench_builder']) await database.raw(`drop table ${t}`);

  const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
  return [
    `| ${name} | batched insert (bulkInsert), ${fmt(ROWS)} rows, ${BATCH}/statement | ${fmt((ROWS / layerInsertMs) * 1000)} rows/s (${fmt(layerInsertMs)} ms) | ${fmt((ROWS / rawInsertMs) * 1000)} rows/s (${fmt(rawInsertMs)} ms) | ${(rawInsertMs / layerInsertMs).toFixed(2)} |`,
    `| ${name} | same insert through the query builder (insertInto().values()) | ${fmt((ROWS / builderInsertMs) * 1000)} rows/s (${fmt(builderInsertMs)} ms) | ${fmt((ROWS / rawInsertMs) * 1000)} rows/s | ${(rawInsertMs / builderInsertMs).toFixed(2)} |`,
    `| ${name} | point reads by primary key, ${fmt(READS)} | ${fmt((READS / layerReadMs) * 1000)} reads/s (${fmt(layerReadMs)} ms) | ${fmt((READS / rawReadMs) * 1000)} reads/s (${fmt(rawReadMs)} ms) | ${(rawReadMs / layerReadMs).toFixed(2)} |`,
  ];
}

console.log(
  `bench/storage — ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, node ${process.version}`,
);
const lines = (await onEachEngine(({ label, database }) => benchEngine(label, database))).flat();

console.log(
  '\n| engine | operation | storage layer (Kysely) | raw driver | ratio (layer ÷ raw throughput) |',
);
console.log('|---|---|---|---|---|');
for (const l of lines) console.log(l);
