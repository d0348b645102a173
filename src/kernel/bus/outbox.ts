/**
 * Transactional outbox (发件箱). A service writes its events with `enqueueEvent` inside the same
 * transaction as its change; the relay publishes committed rows to the bus afterwards and marks
 * them relayed. A crash between commit and publish leaves the row pending, and the next relay
 * (after restart, or on another replica) publishes it: nothing committed is lost.
 */
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql, type Kysely } from 'kysely';
import { afterCommit, type Database } from '../db/database.ts';
import { insertRows, type Rider } from '../db/riders.ts';
import type { KernelTables } from '../db/tables.ts';
import type { Logger } from '../log/logger.ts';
import type { Metrics } from '../metrics/metrics.ts';
import { makeEvent, type BusEvent, type DeadLetterSink, type EventBus } from './bus.ts';

/** Largest payload an event may carry; events point at data, they do not ship bulk data. */
export const MAX_EVENT_BYTES = 256 * 1024;

/** Tells relays in this process that a transaction with events has committed. */
const outboxSignal = new EventEmitter().setMaxListeners(0);

/** Default time a relay may hold claimed rows before another relay may take them over. */
const CLAIM_LEASE_SECONDS = 60;

/**
 * Writes an event to the outbox inside the caller's transaction and returns it. Throws (and so
 * rolls the caller's transaction back) on an invalid topic or an oversized payload.
 */
export async function enqueueEvent<P>(
  trx: Kysely<KernelTables>,
  args: { topic: string; payload: P; headers?: Record<string, string> },
): Promise<BusEvent<P>> {
  // Outside a transaction the event would not share the fate of the change it announces.
  if (!trx.isTransaction) throw new Error('enqueueEvent must be called with the transaction of the change');
  const { event, row } = outboxRow(args);
  const inserted = await trx
    .insertInto('kernel.outbox')
    .values(row)
    .returning('created_at')
    .executeTakeFirstOrThrow();
  afterCommit(trx, wakeRelays);
  return { ...event, createdAt: inserted.created_at.toISOString() };
}

/**
 * The outbox events of a change as a rider of its statement (see `writeWith`): written in the
 * change's statement, relays woken when it commits. Throws like `enqueueEvent` on a bad event.
 */
export function outboxRider(
  events: { topic: string; payload: unknown; headers?: Record<string, string> }[],
): Rider {
  const rows = events.map((e) => {
    const { row } = outboxRow(e);
    return [row.id, row.topic, row.payload, row.headers];
  });
  return {
    statement: insertRows({ table: 'kernel.outbox', columns: OUTBOX_COLUMNS, rows }),
    afterCommit: wakeRelays,
  };
}

const OUTBOX_COLUMNS = [
  ['id', 'uuid'],
  ['topic', 'text'],
  ['payload', 'jsonb'],
  ['headers', 'jsonb'],
] as const;

/** An event and its outbox row; throws on an invalid topic or an oversized payload. */
function outboxRow<P>(args: { topic: string; payload: P; headers?: Record<string, string> }) {
  const event = makeEvent(args);
  const payload = JSON.stringify(event.payload);
  if (Buffer.byteLength(payload) > MAX_EVENT_BYTES)
    throw new Error(`event payload for ${event.topic} exceeds ${MAX_EVENT_BYTES} bytes`);
  return {
    event,
    row: { id: event.id, topic: event.topic, payload, headers: JSON.stringify(event.headers) },
  };
}

const wakeRelays = (): void => {
  outboxSignal.emit('committed');
};

/**
 * Runs `effect` for `event` at most once for `consumer`: the event id is recorded in the same
 * transaction as the effect, so a redelivered event is skipped. Resolves to false when skipped.
 */
export async function consumeOnce(
  database: Database,
  args: { consumer: string; event: BusEvent; effect: (trx: Kysely<KernelTables>) => Promise<void> },
): Promise<boolean> {
  return database.transact(async (trx) => {
    const inserted = await trx
      .insertInto('kernel.consumed_events')
      .values({ consumer: args.consumer, event_id: args.event.id })
      .onConflict((oc) => oc.doNothing())
      .returning('event_id')
      .executeTakeFirst();
    if (!inserted) return false;
    await args.effect(trx);
    return true;
  });
}

/** Records a dead-lettered event in `kernel.dead_letters` (its own transaction). */
export function deadLetterSink(database: Database): DeadLetterSink {
  return async ({ group, event, reason, attempts }) => {
    await database.transact(async (trx) => {
      await trx
        .insertInto('kernel.dead_letters')
        .values({
          consumer: group,
          event_id: event.id,
          topic: event.topic,
          payload: JSON.stringify(event.payload),
          reason: reason.slice(0, 2000),
          attempts,
        })
        .execute();
    });
  };
}

export interface OutboxRelayOptions {
  database: Database;
  bus: EventBus;
  logger: Logger;
  metrics: Metrics;
  pollMs: number;
  batchSize: number;
  retentionHours: number;
  /** Seconds a relay's claim on a batch lasts (default 60); must exceed the time to publish one batch. */
  claimLeaseSeconds?: number;
}

export interface OutboxRelay {
  /** Starts the background loop (idempotent). */
  start(): void;
  /** Asks the loop to look for new rows now (it is woken by every commit that wrote events). */
  wake(): void;
  /** Relays until nothing is pending or the bus refuses; resolves to the number relayed. */
  drain(): Promise<number>;
  /** Stops the loop after the batch in flight, then makes one last attempt to relay. */
  stop(): Promise<void>;
  /** Pending rows and the age of the oldest, for readiness and metrics. */
  backlog(): Promise<{ pending: number; oldestAgeSeconds: number }>;
}

interface OutboxRow {
  seq: number;
  id: string;
  topic: string;
  payload: unknown;
  headers: Record<string, string>;
  created_at: Date;
}

/** Creates the relay that moves committed outbox rows onto the bus. */
export function createOutboxRelay(options: OutboxRelayOptions): OutboxRelay {
  const { database, bus, logger, metrics } = options;
  let running = false;
  let loop: Promise<void> | undefined;
  let nap: AbortController | undefined;
  let pendingWake = false;
  let failures = 0;
  let lastCleanup = 0;
  // Batches run one at a time in this process; other replicas are kept apart by the claim lease.
  let inFlight: Promise<number> = Promise.resolve(0);

  /**
   * Claims, publishes and marks one batch; returns how many rows were relayed, or -1 if
   * publishing failed. The claim is a lease committed before publishing, so no transaction (and,
   * on PGlite, not the single connection) is held while consumers run; a relay that dies holding
   * a lease only delays its rows until the lease runs out.
   */
  async function relayBatch(): Promise<number> {
    // The claim token makes the later updates touch only rows this batch still holds, even if
    // its lease ran out and another relay took them over meanwhile.
    const token = randomUUID();
    // One statement claims the batch (lock, skip rows other relays hold, set the lease, return).
    const { rows: claimed } = await sql<
      Omit<OutboxRow, 'seq'> & { seq: string | number }
    >`update kernel.outbox o
        set claimed_until = now() + make_interval(secs => ${options.claimLeaseSeconds ?? CLAIM_LEASE_SECONDS}),
          claim_token = ${token}::uuid
      from (select seq from kernel.outbox
        where published_at is null and (claimed_until is null or claimed_until < now())
        order by seq limit ${options.batchSize} for update skip locked) c
      where o.seq = c.seq
      returning o.seq, o.id, o.topic, o.payload, o.headers, o.created_at`.execute(database.db);
    const rows = claimed.map((r) => ({ ...r, seq: Number(r.seq) })).sort((a, b) => a.seq - b.seq);
    if (rows.length === 0) return 0;
    const done: number[] = [];
    let failed: { seq: number; error: string } | undefined;
    const eventOf = (row: OutboxRow): BusEvent => ({
      id: row.id,
      topic: row.topic,
      payload: row.payload,
      headers: row.headers,
      createdAt: row.created_at.toISOString(),
    });
    if (bus.publishBatch && rows.length > 1) {
      // The whole batch at once (the in-process bus lets consumers take it in one go).
      try {
        await bus.publishBatch(rows.map(eventOf));
        for (const row of rows) {
          done.push(row.seq);
          metrics.busPublished.inc({ topic: row.topic });
        }
      } catch (e) {
        failed = { seq: (rows[0] as OutboxRow).seq, error: e instanceof Error ? e.message : String(e) };
        metrics.busPublishFailures.inc();
      }
    } else
      for (const row of rows) {
        try {
          await bus.publish(eventOf(row));
          done.push(row.seq);
          metrics.busPublished.inc({ topic: row.topic });
        } catch (e) {
          // Keep order: stop at the first failure; the rest wait for the next attempt.
          failed = { seq: row.seq, error: e instanceof Error ? e.message : String(e) };
          metrics.busPublishFailures.inc();
          break;
        }
      }
    if (!failed) {
      // The usual case: every row went out; one statement marks them.
      await database.db
        .updateTable('kernel.outbox')
        .set({ published_at: sql<Date>`now()`, claimed_until: null, claim_token: null })
        .where('seq', 'in', done)
        .where('claim_token', '=', token)
        .execute();
      return done.length;
    }
    await database.transact(async (trx) => {
      if (done.length > 0)
        await trx
          .updateTable('kernel.outbox')
          .set({ published_at: sql<Date>`now()`, claimed_until: null, claim_token: null })
          .where('seq', 'in', done)
          .where('claim_token', '=', token)
          .execute();
      // Record the failure before releasing the claim: both updates check the claim token.
      await trx
        .updateTable('kernel.outbox')
        .set((eb) => ({ attempts: eb('attempts', '+', 1), last_error: failed.error.slice(0, 1000) }))
        .where('seq', '=', failed.seq)
        .where('claim_token', '=', token)
        .execute();
      const unpublished = rows.map((r) => r.seq).filter((seq) => !done.includes(seq));
      if (unpublished.length > 0)
        await trx
          .updateTable('kernel.outbox')
          .set({ claimed_until: null, claim_token: null })
          .where('seq', 'in', unpublished)
          .where('claim_token', '=', token)
          .execute();
    });
    logger.warn({ seq: failed.seq, error: failed.error }, 'outbox relay could not publish; will retry');
    return -1;
  }

  function runBatch(): Promise<number> {
    inFlight = inFlight.then(relayBatch, relayBatch);
    return inFlight;
  }

  async function cleanup(): Promise<void> {
    if (Date.now() - lastCleanup < 60_000) return;
    lastCleanup = Date.now();
    await database.db
      .deleteFrom('kernel.outbox')
      .where('published_at', '<', sql<Date>`now() - make_interval(hours => ${options.retentionHours})`)
      .execute();
  }

  async function run(): Promise<void> {
    while (running) {
      let relayed = 0;
      try {
        relayed = await runBatch();
        if (relayed >= 0) failures = 0;
        else failures++;
        if (relayed >= 0) await cleanup();
      } catch (e) {
        failures++;
        logger.warn({ err: (e as Error).message }, 'outbox relay failed; will retry');
      }
      if (relayed >= options.batchSize) continue;
      const delay =
        failures > 0 ? Math.min(10_000, options.pollMs * 2 ** Math.min(failures, 5)) : options.pollMs;
      if (pendingWake && failures === 0) {
        pendingWake = false;
        continue;
      }
      // An abortable sleep: a wake-up or stop cancels the timer instead of leaving it pending.
      nap = new AbortController();
      await sleep(delay, undefined, { signal: nap.signal }).catch(() => undefined);
      nap = undefined;
    }
  }

  const wake = (): void => {
    pendingWake = true;
    // While the bus is failing, commits do not cut the backoff short.
    if (failures === 0) nap?.abort();
  };

  return {
    start() {
      if (running) return;
      running = true;
      outboxSignal.on('committed', wake);
      loop = run();
    },
    wake,
    async drain() {
      let total = 0;
      for (;;) {
        const n = await runBatch();
        if (n <= 0) return total;
        total += n;
      }
    },
    async stop() {
      running = false;
      outboxSignal.off('committed', wake);
      nap?.abort();
      await loop;
      loop = undefined;
      try {
        await this.drain();
      } catch (e) {
        logger.warn(
          { err: (e as Error).message },
          'outbox not fully relayed at shutdown; pending rows go out on next start',
        );
      }
    },
    async backlog() {
      const row = await database.db
        .selectFrom('kernel.outbox')
        .select([
          sql<number>`count(*)`.as('pending'),
          sql<number>`coalesce(extract(epoch from now() - min(created_at)), 0)`.as('age'),
        ])
        .where('published_at', 'is', null)
        .executeTakeFirstOrThrow();
      return { pending: row.pending, oldestAgeSeconds: row.age };
    },
  };
}
