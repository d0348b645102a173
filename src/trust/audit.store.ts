/** SQL for the audit trail (审计): records, the chain head, checkpoints and keys. */
import { sql, type QueryExecutorProvider, type RawBuilder } from 'kysely';
import { bulkInsert, insertRows, type QueryExecutorLike, type Rider } from '../kernel/index.ts';
import { withinPath } from './sql.ts';

type Db = QueryExecutorProvider & QueryExecutorLike;

export interface AuditRow {
  seq: number;
  id: string;
  at: Date;
  actor: string | null;
  actor_kind: string;
  org: string | null;
  action: string;
  resource_type: string;
  resource_id: string | null;
  area: string | null;
  purpose: string | null;
  request_id: string | null;
  outcome: 'success' | 'denied' | 'failed';
  details: Record<string, unknown>;
  prev_hash: string;
  hash: string;
}

/** The audit table's columns, in the order rows are written. */
export const AUDIT_COLUMNS = [
  'seq',
  'id',
  'at',
  'actor',
  'actor_kind',
  'org',
  'action',
  'resource_type',
  'resource_id',
  'area',
  'purpose',
  'request_id',
  'outcome',
  'details',
  'prev_hash',
  'hash',
] as const;

/** A record waiting in the queue to be chained (an AuditRow without its place in the chain). */
export type QueuedAuditRow = Omit<AuditRow, 'seq' | 'prev_hash' | 'hash'>;

/** The queue holds a record's columns without its place in the chain. */
const QUEUE_NAMES = AUDIT_COLUMNS.filter(
  (c): c is Exclude<(typeof AUDIT_COLUMNS)[number], 'seq' | 'prev_hash' | 'hash'> =>
    c !== 'seq' && c !== 'prev_hash' && c !== 'hash',
);

/** Their SQL types (a rider's INSERT … SELECT casts its values). */
const QUEUE_TYPES: Record<(typeof QUEUE_NAMES)[number], string> = {
  id: 'uuid',
  at: 'timestamptz',
  actor: 'text',
  actor_kind: 'text',
  org: 'text',
  action: 'text',
  resource_type: 'text',
  resource_id: 'text',
  area: 'text',
  purpose: 'text',
  request_id: 'text',
  outcome: 'text',
  details: 'jsonb',
};
const QUEUE_COLUMNS = QUEUE_NAMES.map((c) => [c, QUEUE_TYPES[c]] as const);

const queueValues = (rows: QueuedAuditRow[]): unknown[][] =>
  rows.map((r) => QUEUE_NAMES.map((c) => (c === 'details' ? JSON.stringify(r.details) : r[c])));

/** Queues records for the sealer, in the caller's transaction (no lock taken). */
export async function enqueueRows(trx: Db, rows: QueuedAuditRow[]): Promise<void> {
  await bulkInsert(trx, {
    table: 'trust.audit_queue',
    columns: QUEUE_NAMES,
    rows: queueValues(rows),
    chunkRows: 2_000,
  });
}

/** Queues records as the statement of a rider (see the kernel's `writeWith`). */
export const queueRider = (rows: QueuedAuditRow[]): Rider['statement'] =>
  insertRows({ table: 'trust.audit_queue', columns: QUEUE_COLUMNS, rows: queueValues(rows) });

/** Removes up to `limit` committed queued records and returns them in queue order (caller holds the head lock). */
export async function takeQueued(trx: Db, limit: number): Promise<QueuedAuditRow[]> {
  const { rows } = await sql<QueuedAuditRow & { qid: string }>`delete from trust.audit_queue
    where qid in (select qid from trust.audit_queue order by qid limit ${limit})
    returning qid, ${sql.join(QUEUE_NAMES.map((c) => sql.ref(c)))}`.execute(trx);
  return rows.sort((a, b) => Number(BigInt(a.qid) - BigInt(b.qid))).map(({ qid: _qid, ...row }) => row);
}

/** How many records wait to be chained. */
export async function queuedCount(db: Db): Promise<number> {
  const { rows } = await sql<{ n: string }>`select count(*) as n from trust.audit_queue`.execute(db);
  return Number(rows[0]?.n ?? 0);
}

/** Locks the chain head until the transaction ends and returns it. */
export async function lockHead(trx: Db): Promise<{ seq: number; hash: string }> {
  const { rows } = await sql<{
    seq: number;
    hash: string;
  }>`select seq, hash from trust.audit_head where id for update`.execute(trx);
  const head = rows[0];
  if (!head) throw new Error('trust.audit_head is missing its row');
  return head;
}

/** Appends chained rows and moves the head; the caller holds the head lock. */
export async function appendRows(trx: Db, rows: AuditRow[]): Promise<void> {
  const last = rows[rows.length - 1];
  if (!last) return;
  await bulkInsert(trx, {
    table: 'trust.audit_records',
    columns: AUDIT_COLUMNS,
    rows: rows.map((r) => AUDIT_COLUMNS.map((c) => (c === 'details' ? JSON.stringify(r.details) : r[c]))),
    chunkRows: 2_000,
  });
  await sql`update trust.audit_head set seq = ${last.seq}, hash = ${last.hash} where id`.execute(trx);
}

/** Records with seq in [from, to], in chain order. */
export async function recordsBetween(db: Db, from: number, to: number): Promise<AuditRow[]> {
  const { rows } = await sql<AuditRow>`select * from trust.audit_records
    where seq between ${from} and ${to} order by seq`.execute(db);
  return rows;
}

/** Chain hashes of records [from, to] as stored, in order. */
export async function hashesBetween(db: Db, from: number, to: number): Promise<string[]> {
  const { rows } = await sql<{ hash: string }>`select hash from trust.audit_records
    where seq between ${from} and ${to} order by seq`.execute(db);
  return rows.map((r) => r.hash);
}

export async function findRecord(
  db: Db,
  seq: number,
): Promise<(AuditRow & { area_path: string | null }) | undefined> {
  const { rows } = await sql<AuditRow & { area_path: string | null }>`
    select r.*, a.path as area_path from trust.audit_records r left join trust.areas a on a.code = r.area
    where r.seq = ${seq}`.execute(db);
  return rows[0];
}

/** The highest committed seq (0 when the trail is empty). */
export async function maxSeq(db: Db): Promise<number> {
  const { rows } = await sql<{ n: number | null }>`select max(seq) as n from trust.audit_records`.execute(db);
  return rows[0]?.n ?? 0;
}

export interface AuditFilter {
  actor?: string;
  action?: string;
  resourceType?: string;
  resourceId?: string;
  /** Records in this area or below it (by path). */
  areaPath?: string;
  outcome?: string;
  from?: string;
  to?: string;
  /** Records with seq below this (keyset pagination, newest first). */
  before?: number;
  limit: number;
}

/** Records matching `filter` whose area passes `scope` (a condition on `a.path`), newest first. */
export async function listRecords(
  db: Db,
  filter: AuditFilter,
  scope: RawBuilder<boolean>,
): Promise<(AuditRow & { area_path: string | null })[]> {
  const where: RawBuilder<unknown>[] = [scope];
  if (filter.actor !== undefined) where.push(sql`r.actor = ${filter.actor}`);
  if (filter.action !== undefined) where.push(sql`r.action = ${filter.action}`);
  if (filter.resourceType !== undefined) where.push(sql`r.resource_type = ${filter.resourceType}`);
  if (filter.resourceId !== undefined) where.push(sql`r.resource_id = ${filter.resourceId}`);
  if (filter.outcome !== undefined) where.push(sql`r.outcome = ${filter.outcome}`);
  if (filter.from !== undefined) where.push(sql`r.at >= ${filter.from}::timestamptz`);
  if (filter.to !== undefined) where.push(sql`r.at < ${filter.to}::timestamptz`);
  if (filter.before !== undefined) where.push(sql`r.seq < ${filter.before}`);
  if (filter.areaPath !== undefined) where.push(withinPath(sql`a.path`, filter.areaPath));
  const { rows } = await sql<AuditRow & { area_path: string | null }>`
    select r.*, a.path as area_path from trust.audit_records r left join trust.areas a on a.code = r.area
    where ${sql.join(where, sql` and `)}
    order by r.seq desc limit ${filter.limit}`.execute(db);
  return rows;
}

export interface CheckpointRow {
  checkpoint: number;
  from_seq: number;
  to_seq: number;
  tree_size: number;
  root: string;
  head_hash: string;
  prev_root: string | null;
  created_at: Date;
  key_id: string;
  signature: string;
}

export async function lastCheckpoint(db: Db): Promise<CheckpointRow | undefined> {
  const { rows } = await sql<CheckpointRow>`select * from trust.audit_checkpoints
    order by checkpoint desc limit 1`.execute(db);
  return rows[0];
}

export async function checkpointCovering(db: Db, seq: number): Promise<CheckpointRow | undefined> {
  const { rows } = await sql<CheckpointRow>`select * from trust.audit_checkpoints
    where from_seq <= ${seq} and to_seq >= ${seq}`.execute(db);
  return rows[0];
}

export async function allCheckpoints(db: Db): Promise<CheckpointRow[]> {
  const { rows } =
    await sql<CheckpointRow>`select * from trust.audit_checkpoints order by checkpoint`.execute(db);
  return rows;
}

export async function listCheckpoints(
  db: Db,
  args: { before?: number; limit: number },
): Promise<CheckpointRow[]> {
  const { rows } = await sql<CheckpointRow>`select * from trust.audit_checkpoints
    where ${args.before === undefined ? sql`true` : sql`checkpoint < ${args.before}`}
    order by checkpoint desc limit ${args.limit}`.execute(db);
  return rows;
}

export async function insertCheckpoint(db: Db, row: CheckpointRow): Promise<void> {
  await sql`insert into trust.audit_checkpoints
      (checkpoint, from_seq, to_seq, tree_size, root, head_hash, prev_root, created_at, key_id, signature)
    values (${row.checkpoint}, ${row.from_seq}, ${row.to_seq}, ${row.tree_size}, ${row.root}, ${row.head_hash},
            ${row.prev_root}, ${row.created_at}, ${row.key_id}, ${row.signature})`.execute(db);
}

/** Serialises checkpointing across nodes for the rest of the transaction. */
export async function lockCheckpointing(trx: Db): Promise<void> {
  await sql`select pg_advisory_xact_lock(hashtext('pujiang.audit.checkpoint'))`.execute(trx);
}

export interface KeyRow {
  key_id: string;
  public_key_pem: string;
  created_at: Date;
  retired_at: Date | null;
}

export async function registerKey(db: Db, keyId: string, pem: string): Promise<boolean> {
  const result = await sql`insert into trust.audit_keys (key_id, public_key_pem) values (${keyId}, ${pem})
    on conflict (key_id) do nothing`.execute(db);
  return Number(result.numAffectedRows ?? 0n) > 0;
}

export async function retireKeysExcept(db: Db, keyId: string): Promise<number> {
  const result = await sql`update trust.audit_keys set retired_at = now()
    where key_id <> ${keyId} and retired_at is null`.execute(db);
  return Number(result.numAffectedRows ?? 0n);
}

export async function listKeys(db: Db): Promise<KeyRow[]> {
  const { rows } = await sql<KeyRow>`select * from trust.audit_keys order by created_at, key_id`.execute(db);
  return rows;
}
