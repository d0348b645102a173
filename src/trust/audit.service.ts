/**
 * The audit trail (责任溯源): every mutation and every read of personal data leaves a record, in
 * the same transaction as the change. Records form a hash chain; signed Merkle checkpoints over
 * new records let a third party check any one record with the public key alone
 * (docs/audit-format.md).
 */
import { randomUUID, type KeyObject } from 'node:crypto';
import { sql } from 'kysely';
import { AppError, afterCommit, Errors, type Database, type Logger, type Rider } from '../kernel/index.ts';
import {
  AUDIT_GENESIS_HASH,
  generateSigningKey,
  inclusionProof,
  keyIdOf,
  loadOrCreateSigningKey,
  merkleRoot,
  parsePublicKey,
  publicKeyJwk,
  publicKeyPem,
  recordHash,
  signCheckpoint,
  verifyCheckpointSignature,
  writeSigningKey,
  type CheckpointStatement,
  type InclusionProofDocument,
} from './audit.crypto.ts';
import {
  allCheckpoints,
  appendRows,
  enqueueRows,
  queueRider,
  takeQueued,
  checkpointCovering,
  findRecord,
  hashesBetween,
  insertCheckpoint,
  lastCheckpoint,
  listCheckpoints,
  listKeys,
  listRecords,
  lockCheckpointing,
  lockHead,
  maxSeq,
  recordsBetween,
  registerKey,
  retireKeysExcept,
  type AuditFilter,
  type AuditRow,
  type QueuedAuditRow,
  type CheckpointRow,
} from './audit.store.ts';
import { findArea } from './areas.store.ts';
import { authorize, can, jurisdictionFilter, requireSignedIn, scopesFor, type CallContext } from './authz.ts';
import { P } from './permissions.ts';

type Trx = Parameters<Parameters<Database['transact']>[0]>[0];

export type AuditOutcome = 'success' | 'denied' | 'failed';

/** What happened, to what, where. The actor, time, request and purpose come from the context. */
export interface AuditEntry {
  /** `<resource>.<verb>`, e.g. 'user.create', 'user.read', 'auth.login'. */
  action: string;
  resourceType: string;
  resourceId?: string | null;
  /** The area code the resource belongs to (jurisdiction-scoped reading of the trail). */
  area?: string | null;
  outcome?: AuditOutcome;
  /** Client-safe facts about the change (never secrets, never unmasked personal data). */
  details?: Record<string, unknown>;
}

/** The record body exactly as hashed (docs/audit-format.md). */
export type AuditRecordBody = {
  seq: number;
  id: string;
  at: string;
  actor: string | null;
  actorKind: string;
  org: string | null;
  action: string;
  resourceType: string;
  resourceId: string | null;
  area: string | null;
  purpose: string | null;
  requestId: string | null;
  outcome: AuditOutcome;
  details: Record<string, unknown>;
};

export function recordBody(row: AuditRow): AuditRecordBody {
  return {
    seq: row.seq,
    id: row.id,
    at: row.at.toISOString(),
    actor: row.actor,
    actorKind: row.actor_kind,
    org: row.org,
    action: row.action,
    resourceType: row.resource_type,
    resourceId: row.resource_id,
    area: row.area,
    purpose: row.purpose,
    requestId: row.request_id,
    outcome: row.outcome,
    details: row.details,
  };
}

/**
 * Details as the jsonb column gives them back (so the hash recomputes from the stored row), with
 * the characters jsonb refuses (NUL, lone surrogates) replaced: an odd value must not stop a record.
 */
// eslint-disable-next-line no-control-regex -- NUL is exactly what must be replaced
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

function storable(details: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(JSON.stringify(details), (_key, v: unknown) =>
    typeof v === 'string' ? v.replace(UNSTORABLE, '\uFFFD') : v,
  ) as Record<string, unknown>;
}

/**
 * Records entries inside `trx`, the transaction making the change: they commit or roll back with
 * it. They wait in the audit queue, without any lock, until the sealer chains them (moments after
 * the commit; `sealAudit` does it on demand), so concurrent writers never wait for each other here.
 */
export async function recordAudit(
  trx: Trx,
  ctx: CallContext,
  entries: AuditEntry | AuditEntry[],
): Promise<void> {
  const rows = queuedRows(ctx, Array.isArray(entries) ? entries : [entries]);
  if (rows.length === 0) return;
  await enqueueRows(trx, rows);
  afterCommit(trx, kickSealers);
}

/**
 * The audit records of a change as a rider of its statement (`writeWith` in the kernel): queued
 * in the change's own statement, so they commit with it; the sealers are kicked once it commits.
 */
export function auditRider(ctx: CallContext, entries: AuditEntry[]): Rider {
  return { statement: queueRider(queuedRows(ctx, entries)), afterCommit: kickSealers };
}

/** One rider for the audit records of several callers' changes written by one statement (a batch). */
export function auditRiderOf(parts: readonly { ctx: CallContext; entries: AuditEntry[] }[]): Rider {
  return {
    statement: queueRider(parts.flatMap((p) => queuedRows(p.ctx, p.entries))),
    afterCommit: kickSealers,
  };
}

function queuedRows(ctx: CallContext, entries: AuditEntry[]): QueuedAuditRow[] {
  const at = new Date();
  return entries.map((e) => ({
    id: randomUUID(),
    at,
    actor: ctx.actor.id,
    actor_kind: ctx.actor.kind,
    org: ctx.actor.org,
    action: e.action,
    resource_type: e.resourceType,
    resource_id: e.resourceId ?? null,
    area: e.area ?? null,
    purpose: ctx.purpose,
    request_id: ctx.requestId,
    outcome: e.outcome ?? 'success',
    details: storable(e.details ?? {}),
  }));
}

// --- The sealer: queue → chain ----------------------------------------------------------------

const SEAL_BATCH = 5_000;

/**
 * Chains every committed queued record into `trust.audit_records`, in queue order, under the
 * chain-head lock (so sealers on several nodes never fork the chain). Returns how many it sealed.
 * Readers of the trail call it first, so what they read includes every committed record.
 */
export async function sealAudit(database: Database): Promise<number> {
  let total = 0;
  for (;;) {
    const sealed = await database.transact(async (trx) => {
      const head = await lockHead(trx);
      const queued = await takeQueued(trx, SEAL_BATCH);
      let prev = head.hash;
      let seq = head.seq;
      const rows: AuditRow[] = queued.map((q) => {
        seq += 1;
        const row: AuditRow = { ...q, seq, prev_hash: prev, hash: '' };
        row.hash = recordHash(prev, recordBody(row));
        prev = row.hash;
        return row;
      });
      await appendRows(trx, rows);
      return rows.length;
    });
    total += sealed;
    if (sealed < SEAL_BATCH) return total;
  }
}

/**
 * The running sealers of this process (one per started platform; several only in tests). A commit
 * that queued records kicks them all: a kick with nothing queued costs one small query, and kicks
 * arriving while a sealer runs coalesce into one more run.
 */
const sealers = new Set<{ kick(): void }>();

function kickSealers(): void {
  for (const s of sealers) s.kick();
}

/**
 * Seals queued records in the background: right after a commit that queued some (coalesced), and
 * every `intervalMs` for records queued by other nodes. Errors are logged and retried.
 */
export function startSealer(args: { database: Database; logger: Logger; intervalMs?: number }): {
  stop(): Promise<void>;
} {
  const { database, logger } = args;
  let running: Promise<void> | undefined;
  let again = false;
  let stopped = false;
  const run = (): void => {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    running = sealAudit(database)
      .then(() => undefined)
      .catch((e: unknown) => logger.warn({ err: (e as Error).message }, 'audit sealing failed; will retry'))
      .finally(() => {
        running = undefined;
        if (again) {
          again = false;
          setImmediate(run);
        }
      });
  };
  const sealer = { kick: run };
  sealers.add(sealer);
  const timer = setInterval(run, args.intervalMs ?? 1_000);
  timer.unref();
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      sealers.delete(sealer);
      await running;
      // Whatever is still queued is sealed by the next start (or another node).
      await sealAudit(database).catch(() => undefined);
    },
  };
}

/** Records a refused or failed attempt in a transaction of its own (the attempt's rolled back). */
export async function recordRefusal(database: Database, ctx: CallContext, entry: AuditEntry): Promise<void> {
  await database.transact((trx) => recordAudit(trx, ctx, { outcome: 'denied', ...entry }));
}

/**
 * Runs `fn` (which must call `authorize` first); when it throws a 401/403/404 refusal, records the
 * attempt with outcome 'denied' and rethrows. The one place refusals reach the audit trail.
 */
export async function audited<T>(
  database: Database,
  ctx: CallContext,
  entry: AuditEntry,
  fn: () => Promise<T>,
): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof AppError && [401, 403, 404].includes(e.status) && ctx.actor.kind !== 'anonymous')
      await recordRefusal(database, ctx, { ...entry, details: { ...entry.details, reason: e.code } });
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Signing keys and checkpoints

export interface AuditSigner {
  readonly keyId: string;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** Where the private key lives; undefined for a throw-away in-memory key. */
  readonly path: string | undefined;
}

/** Loads the signing key from `path` (creating it on first start), or makes a throw-away one. */
export function loadSigner(path: string | undefined): AuditSigner {
  if (path === undefined) {
    const { privateKey, publicKey } = generateSigningKey();
    return { keyId: keyIdOf(publicKey), privateKey, publicKey, path };
  }
  const k = loadOrCreateSigningKey(path);
  return { keyId: k.keyId, privateKey: k.privateKey, publicKey: k.publicKey, path };
}

/**
 * Replaces the key file at `path` with a new Ed25519 key, registers its public half and retires
 * the others (their public halves stay published: old checkpoints still verify). Returns the new key.
 */
export async function rotateSigningKey(database: Database, path: string): Promise<AuditSigner> {
  const { privateKey, publicKey } = generateSigningKey();
  const keyId = keyIdOf(publicKey);
  // The file first: if the database step fails, the next start or checkpoint registers the key.
  writeSigningKey(path, privateKey);
  await database.transact(async (trx) => {
    await registerKey(trx, keyId, publicKeyPem(publicKey));
    await retireKeysExcept(trx, keyId);
  });
  return { keyId, privateKey, publicKey, path };
}

/** Publishes the signer's public key (idempotent). */
export async function registerSigner(database: Database, signer: AuditSigner): Promise<void> {
  await registerKey(database.db, signer.keyId, publicKeyPem(signer.publicKey));
}

function statementOf(row: CheckpointRow): CheckpointStatement {
  return {
    v: 1,
    checkpoint: row.checkpoint,
    fromSeq: row.from_seq,
    toSeq: row.to_seq,
    treeSize: row.tree_size,
    root: row.root,
    headHash: row.head_hash,
    prevRoot: row.prev_root,
    createdAt: row.created_at.toISOString(),
    keyId: row.key_id,
  };
}

export interface SignedCheckpoint {
  statement: CheckpointStatement;
  signature: string;
}

const present = (row: CheckpointRow): SignedCheckpoint => ({
  statement: statementOf(row),
  signature: row.signature,
});

/**
 * Signs a checkpoint over the records committed since the last one (at most `maxRecords`).
 * Resolves to null when there is nothing new. Safe to call from several nodes at once.
 */
export async function createCheckpoint(
  database: Database,
  signer: AuditSigner,
  options: { maxRecords?: number } = {},
): Promise<SignedCheckpoint | null> {
  // Small trees keep proofs cheap: a proof rebuilds its checkpoint's tree (about 40 ms at 10k).
  const max = options.maxRecords ?? 10_000;
  await sealAudit(database);
  return database.transact(async (trx) => {
    await lockCheckpointing(trx);
    const last = await lastCheckpoint(trx);
    const from = (last?.to_seq ?? 0) + 1;
    const top = await maxSeq(trx);
    if (top < from) return null;
    const to = Math.min(top, from + max - 1);
    const hashes = await hashesBetween(trx, from, to);
    const headHash = hashes[hashes.length - 1];
    if (hashes.length !== to - from + 1 || headHash === undefined)
      throw new Error(`audit records ${from}..${to} are not contiguous`);
    await registerKey(trx, signer.keyId, publicKeyPem(signer.publicKey));
    const row: CheckpointRow = {
      checkpoint: (last?.checkpoint ?? 0) + 1,
      from_seq: from,
      to_seq: to,
      tree_size: hashes.length,
      root: merkleRoot(hashes),
      head_hash: headHash,
      prev_root: last?.root ?? null,
      created_at: new Date(),
      key_id: signer.keyId,
      signature: '',
    };
    row.signature = signCheckpoint(statementOf(row), signer.privateKey);
    await insertCheckpoint(trx, row);
    return present(row);
  });
}

/** Checkpoints everything pending (in chunks of `maxRecords`); resolves to how many were signed. */
export async function checkpointAll(
  database: Database,
  signer: AuditSigner,
  options: { maxRecords?: number } = {},
): Promise<SignedCheckpoint[]> {
  const out: SignedCheckpoint[] = [];
  for (;;) {
    const c = await createCheckpoint(database, signer, options);
    if (!c) return out;
    out.push(c);
  }
}

/**
 * Signs checkpoints every `intervalMs` while records are pending, and sooner when `pendingLimit`
 * records accumulated (checked each `pollMs`). Errors are logged and retried on the next tick.
 */
export function startCheckpointer(args: {
  database: Database;
  signer: AuditSigner;
  logger: Logger;
  intervalMs: number;
  pendingLimit: number;
  pollMs?: number;
}): { stop(): Promise<void> } {
  const { database, signer, logger } = args;
  let lastRun = Date.now();
  let running: Promise<void> | undefined;
  let stopped = false;
  const tick = async () => {
    const last = await lastCheckpoint(database.db);
    const pending = (await maxSeq(database.db)) - (last?.to_seq ?? 0);
    if (pending <= 0 || (pending < args.pendingLimit && Date.now() - lastRun < args.intervalMs)) return;
    lastRun = Date.now();
    const made = await checkpointAll(database, signer);
    const lastMade = made[made.length - 1];
    if (lastMade)
      logger.info(
        { checkpoint: lastMade.statement.checkpoint, toSeq: lastMade.statement.toSeq, keyId: signer.keyId },
        'audit checkpoint signed',
      );
  };
  const timer = setInterval(
    () => {
      if (running || stopped) return;
      running = tick()
        .catch((e: unknown) =>
          logger.warn({ err: (e as Error).message }, 'audit checkpoint failed; will retry'),
        )
        .finally(() => (running = undefined));
    },
    Math.min(args.pollMs ?? 1_000, args.intervalMs),
  );
  timer.unref();
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Verification

export interface VerifyProblem {
  seq?: number;
  checkpoint?: number;
  reason: string;
}

export interface VerifyReport {
  ok: boolean;
  records: number;
  checkpoints: number;
  /** The last record covered by a checkpoint (records after it are chained but not yet signed). */
  sealedThrough: number;
  /** The first problem found (verification stops there: later records depend on it). */
  problem: VerifyProblem | null;
}

/**
 * Recomputes the whole chain from the records' contents and every checkpoint's Merkle root and
 * signature; stops at and names the first bad record or checkpoint. `trustedKeys` (PEM/JWK)
 * pins the keys instead of trusting the published key table.
 */
export async function verifyAuditTrail(
  database: Database,
  options: { trustedKeys?: KeyObject[]; pageSize?: number; onProgress?: (seq: number) => void } = {},
): Promise<VerifyReport> {
  // Records still queued are chained first, so the report covers every committed record.
  await sealAudit(database);
  const db = database.db;
  const keys = new Map<string, KeyObject>();
  if (options.trustedKeys) for (const k of options.trustedKeys) keys.set(keyIdOf(k), k);
  else for (const k of await listKeys(db)) keys.set(k.key_id, parsePublicKey(k.public_key_pem));
  const checkpoints = await allCheckpoints(db);
  const top = await maxSeq(db);
  const page = options.pageSize ?? 5_000;
  const report = (problem: VerifyProblem | null, records: number, sealed: number): VerifyReport => ({
    ok: problem === null,
    records,
    checkpoints: checkpoints.length,
    sealedThrough: sealed,
    problem,
  });

  let prev = AUDIT_GENESIS_HASH;
  let expected = 1;
  let cpIndex = 0;
  let prevRoot: string | null = null;
  let leaves: string[] = [];
  let sealed = 0;
  for (let from = 1; from <= top; from += page) {
    const rows = await recordsBetween(db, from, Math.min(top, from + page - 1));
    for (const row of rows) {
      if (row.seq !== expected)
        return report(
          { seq: expected, reason: `record ${expected} is missing from the chain` },
          expected - 1,
          sealed,
        );
      if (row.prev_hash !== prev)
        return report(
          {
            seq: row.seq,
            reason: `record ${row.seq} does not link to record ${row.seq - 1} (prev_hash differs)`,
          },
          expected - 1,
          sealed,
        );
      const hash = recordHash(prev, recordBody(row));
      if (hash !== row.hash)
        return report(
          { seq: row.seq, reason: `record ${row.seq} was altered: its contents do not match its hash` },
          expected - 1,
          sealed,
        );
      prev = hash;
      expected += 1;
      const cp = checkpoints[cpIndex];
      if (cp && row.seq >= cp.from_seq) {
        leaves.push(hash);
        if (row.seq === cp.to_seq) {
          const problem = checkCheckpoint(cp, { leaves, prevRoot, expectedFrom: sealed + 1, keys });
          if (problem) return report(problem, expected - 1, sealed);
          prevRoot = cp.root;
          sealed = cp.to_seq;
          leaves = [];
          cpIndex += 1;
        }
      }
    }
    options.onProgress?.(expected - 1);
  }
  const dangling = checkpoints[cpIndex];
  if (dangling)
    return report(
      {
        checkpoint: dangling.checkpoint,
        reason: `checkpoint ${dangling.checkpoint} covers records that do not exist`,
      },
      expected - 1,
      sealed,
    );
  return report(null, expected - 1, sealed);
}

function checkCheckpoint(
  cp: CheckpointRow,
  args: { leaves: string[]; prevRoot: string | null; expectedFrom: number; keys: Map<string, KeyObject> },
): VerifyProblem | null {
  const bad = (reason: string): VerifyProblem => ({
    checkpoint: cp.checkpoint,
    reason: `checkpoint ${cp.checkpoint}: ${reason}`,
  });
  if (cp.from_seq !== args.expectedFrom)
    return bad(`starts at record ${cp.from_seq}, expected ${args.expectedFrom}`);
  if (cp.tree_size !== args.leaves.length) return bad('tree size does not match its record range');
  if (cp.prev_root !== args.prevRoot) return bad('does not link to the previous checkpoint');
  if (merkleRoot(args.leaves) !== cp.root) return bad('Merkle root does not match the records it covers');
  if (args.leaves[args.leaves.length - 1] !== cp.head_hash)
    return bad('head hash does not match its last record');
  const key = args.keys.get(cp.key_id);
  if (!key) return bad(`signed with unknown key ${cp.key_id}`);
  if (!verifyCheckpointSignature(statementOf(cp), cp.signature, key))
    return bad(`signature does not verify with key ${cp.key_id}`);
  return null;
}

// ---------------------------------------------------------------------------------------------
// Reading the trail (jurisdiction-scoped; the reads are themselves audited)

export type AuditRecordView = AuditRecordBody & { hash: string; prevHash: string };

const view = (row: AuditRow): AuditRecordView => ({
  ...recordBody(row),
  hash: row.hash,
  prevHash: row.prev_hash,
});

/** Audit records the caller may read (their jurisdiction), newest first, filtered. */
export async function listAuditRecords(
  database: Database,
  ctx: CallContext,
  query: Omit<AuditFilter, 'areaPath'> & { areaCode?: string },
): Promise<{ records: AuditRecordView[]; next: number | null }> {
  requireSignedIn(ctx.actor);
  await sealAudit(database);
  const { areaCode, ...rest } = query;
  const filter: AuditFilter = { ...rest };
  if (areaCode !== undefined) {
    const area = await findArea(database.db, areaCode, false);
    if (!area) throw new AppError(Errors.unprocessable, { detail: `No area ${areaCode}` });
    filter.areaPath = area.path;
  }
  const { all, paths } = scopesFor(ctx.actor, P['audit.read']);
  if (!all && paths.length === 0) {
    await recordRefusal(database, ctx, {
      action: 'audit.list',
      resourceType: 'audit-record',
      details: { reason: 'forbidden' },
    });
    throw new AppError(Errors.forbidden, { detail: `Missing permission ${P['audit.read']}` });
  }
  return database.transact(async (trx) => {
    const rows = await listRecords(trx, filter, jurisdictionFilter(ctx.actor, P['audit.read'], sql`a.path`));
    await recordAudit(trx, ctx, {
      action: 'audit.list',
      resourceType: 'audit-record',
      details: { filter: { ...query }, returned: rows.length },
    });
    const last = rows[rows.length - 1];
    return { records: rows.map(view), next: rows.length === filter.limit && last ? last.seq : null };
  });
}

/** One record with an inclusion proof against the signed checkpoint covering it. */
export async function proveRecord(
  database: Database,
  ctx: CallContext,
  seq: number,
): Promise<InclusionProofDocument> {
  return audited(
    database,
    ctx,
    { action: 'audit.prove', resourceType: 'audit-record', resourceId: String(seq) },
    async () => {
      await sealAudit(database);
      const record = await findRecord(database.db, seq);
      authorize(
        ctx.actor,
        P['audit.read'],
        { areaPath: record?.area_path ?? null },
        { what: 'audit record' },
      );
      if (!record) throw new AppError(Errors['not-found'], { detail: `No audit record ${seq}` });
      const cp = await checkpointCovering(database.db, seq);
      if (!cp)
        throw new AppError(Errors.conflict, {
          detail: `Record ${seq} is not covered by a signed checkpoint yet; retry after the next checkpoint`,
          extensions: { retryable: true },
        });
      const hashes = await hashesBetween(database.db, cp.from_seq, cp.to_seq);
      const index = seq - cp.from_seq;
      return {
        format: 'pujiang-audit-proof/v1',
        record: recordBody(record),
        seq,
        prevHash: record.prev_hash,
        hash: record.hash,
        leafIndex: index,
        proof: inclusionProof(hashes, index),
        checkpoint: statementOf(cp),
        signature: cp.signature,
      };
    },
  );
}

/** Signed checkpoints, newest first. */
export async function checkpointsPage(
  database: Database,
  args: { before?: number; limit: number },
): Promise<SignedCheckpoint[]> {
  return (await listCheckpoints(database.db, args)).map(present);
}

export interface PublishedKey {
  keyId: string;
  algorithm: 'Ed25519';
  publicKeyPem: string;
  jwk: Record<string, unknown>;
  createdAt: string;
  retiredAt: string | null;
}

/** Every checkpoint-signing public key ever used (retired ones stay: old checkpoints verify). */
export async function publishedKeys(database: Database): Promise<PublishedKey[]> {
  return (await listKeys(database.db)).map((k) => {
    const key = parsePublicKey(k.public_key_pem);
    return {
      keyId: k.key_id,
      algorithm: 'Ed25519',
      publicKeyPem: k.public_key_pem,
      jwk: publicKeyJwk(key),
      createdAt: k.created_at.toISOString(),
      retiredAt: k.retired_at ? k.retired_at.toISOString() : null,
    };
  });
}

/** Signs a checkpoint now (on demand), for callers holding city-wide `audit.checkpoint`. */
export async function checkpointNow(
  database: Database,
  signer: AuditSigner,
  ctx: CallContext,
): Promise<SignedCheckpoint[]> {
  requireSignedIn(ctx.actor);
  return audited(
    database,
    ctx,
    { action: 'audit.checkpoint', resourceType: 'audit-checkpoint' },
    async () => {
      if (!can(ctx.actor, P['audit.checkpoint'], { areaPath: null }))
        throw new AppError(Errors.forbidden, {
          detail: `Signing checkpoints needs city-wide ${P['audit.checkpoint']}`,
        });
      return checkpointAll(database, signer);
    },
  );
}
