/**
 * bench/trust (audit half): appending to the hash-chained audit trail through `recordAudit`
 * (queued in the writer's transaction) and sealing (chain-head lock, SHA-256 chaining, insert,
 * head update) with signed Merkle checkpoints every 10,000 records — the time includes sealing — against the raw baseline: the same rows inserted with the same batching into a
 * copy of the table with the same indexes and constraints (no chain, no lock, no checkpoints), in the
 * same run.
 *
 *   npm run bench:trust                 # both halves; PGlite, plus PostgreSQL when DATABASE_URL is set
 *   RECORDS=50000 node --import tsx bench/trust/audit.ts
 */
import { onEachEngine } from '../engines.ts';
import { randomBytes, randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { bulkInsert, readProcessEnv, type Database } from '../../src/kernel/index.ts';
import {
  createCheckpoint,
  loadSigner,
  recordAudit,
  verifyAuditTrail,
  type AuditEntry,
} from '../../src/trust/index.ts';
import { systemContext } from '../../src/trust/index.ts';
// The table's column list, for the raw baseline (an internal: the public surface does not expose it).
import { AUDIT_COLUMNS } from '../../src/trust/audit.store.ts';

const env = readProcessEnv();
const RECORDS = Number(env['RECORDS'] ?? 20_000);
const SINGLES = Number(env['SINGLES'] ?? 2_000);
const CHECKPOINT_EVERY = 10_000;
const signer = loadSigner(undefined);

const entry = (i: number): AuditEntry => ({
  action: 'bench.append',
  resourceType: 'bench',
  resourceId: String(i),
  area: '310113',
  details: { i, note: '压测' },
});

/** One row in `AUDIT_COLUMNS` order, with random hashes (the baseline chains nothing). */
const rawRow = (i: number) => [
  i,
  randomUUID(),
  new Date(),
  'system',
  'system',
  null,
  'bench.append',
  'bench',
  String(i),
  '310113',
  null,
  null,
  'success',
  JSON.stringify({ i, note: '压测' }),
  randomBytes(32).toString('hex'),
  randomBytes(32).toString('hex'),
];

/** Raw rows need unique keys across runs: the copied table keeps the primary key. */
let rawSeq = 0;

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

/** Appends `total` records in transactions of `batch`, checkpointing every 10k; returns records/s. */
async function serviceRun(
  database: Database,
  total: number,
  batch: number,
  concurrency = 1,
): Promise<number> {
  const ctx = systemContext('bench');
  let next = 0;
  let sinceCheckpoint = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < total) {
      const start = next;
      next += batch;
      const n = Math.min(batch, total - start);
      await database.transact((trx) =>
        recordAudit(
          trx,
          ctx,
          Array.from({ length: n }, (_, k) => entry(start + k)),
        ),
      );
      sinceCheckpoint += n;
      if (sinceCheckpoint >= CHECKPOINT_EVERY) {
        sinceCheckpoint = 0;
        await createCheckpoint(database, signer);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  await createCheckpoint(database, signer);
  return (total / (performance.now() - t0)) * 1000;
}

/** The same rows, batching and concurrency into a plain table: returns records/s. */
async function rawRun(database: Database, total: number, batch: number, concurrency = 1): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < total) {
      const start = next;
      next += batch;
      const n = Math.min(batch, total - start);
      await database.transact((trx) =>
        bulkInsert(trx, {
          table: 'public.bench_audit_raw',
          columns: AUDIT_COLUMNS,
          rows: Array.from({ length: n }, () => rawRow(++rawSeq)),
        }),
      );
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return (total / (performance.now() - t0)) * 1000;
}

async function benchEngine(name: string, database: Database, concurrency: number): Promise<string[]> {
  await sql`create table public.bench_audit_raw (like trust.audit_records including all)`.execute(
    database.db,
  );
  const lines: string[] = [];
  const row = (mode: string, n: number, service: number, raw: number) =>
    `| ${name} | ${mode} | ${fmt(n)} | ${fmt(service)} records/s | ${fmt(raw)} records/s | ${(service / raw).toFixed(2)} |`;
  // Warm-up (JIT, connections, plan caches), not measured.
  await serviceRun(database, 500, 100);
  await rawRun(database, 500, 100);
  for (const batch of [1_000, 100, 1]) {
    const total = batch === 1 ? SINGLES : RECORDS;
    const raw = await rawRun(database, total, batch, 1);
    const service = await serviceRun(database, total, batch);
    lines.push(row(`batches of ${batch}, 1 client`, total, service, raw));
  }
  if (concurrency > 1) {
    const raw = await rawRun(database, SINGLES, 1, concurrency);
    const service = await serviceRun(database, SINGLES, 1, concurrency);
    lines.push(row(`batches of 1, ${concurrency} clients`, SINGLES, service, raw));
  }
  const t0 = performance.now();
  const report = await verifyAuditTrail(database);
  if (!report.ok) throw new Error(`the benchmark's trail does not verify: ${report.problem?.reason ?? ''}`);
  lines.push(
    `| ${name} | verify (chain + checkpoints) | ${fmt(report.records)} | ${fmt((report.records / (performance.now() - t0)) * 1000)} records/s | — | — |`,
  );
  return lines;
}

console.log(`audit append: ${fmt(RECORDS)} batched records, ${fmt(SINGLES)} single-record transactions`);
const lines = (
  await onEachEngine(({ label, database, pooled }) => benchEngine(label, database, pooled ? 8 : 1), {
    poolMax: 8,
  })
).flat();
console.log(
  '\n| engine | mode | records | `recordAudit` + checkpoints | raw INSERT, same batching | ratio |',
);
console.log('|---|---|---|---|---|---|');
for (const l of lines) console.log(l);
