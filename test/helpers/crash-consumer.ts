/**
 * The "service" of the crash tests: an in-process bus with one idempotent consumer group that
 * records each event's effect in `crash_effects`, and an outbox relay with a 1 s claim lease.
 * Used by the child that gets killed and by the test that restarts after it.
 */
import { sql } from 'kysely';
import {
  consumeOnce,
  createLocalBus,
  createMetrics,
  createOutboxRelay,
  deadLetterSink,
  silentLogger,
  type BusEvent,
  type Database,
  type EventBus,
  type OutboxRelay,
} from '../../src/kernel/index.ts';

export async function crashConsumer(
  database: Database,
  hooks: { onDelivery?: (e: BusEvent) => void; afterEffect?: (e: BusEvent) => void } = {},
): Promise<{ bus: EventBus; relay: OutboxRelay }> {
  const logger = silentLogger();
  await sql`create table if not exists crash_effects (event_id uuid primary key, applied_at timestamptz default now())`.execute(
    database.db,
  );
  const bus = createLocalBus({
    logger,
    metrics: createMetrics({ defaults: false }),
    deadLetter: deadLetterSink(database),
  });
  await bus.subscribe({
    group: 'crash-consumer',
    topics: ['crash.test'],
    handler: async (e) => {
      hooks.onDelivery?.(e);
      await consumeOnce(database, {
        consumer: 'crash-consumer',
        event: e,
        effect: async (trx) => {
          await sql`insert into crash_effects (event_id) values (${e.id})`.execute(trx);
        },
      });
      hooks.afterEffect?.(e);
    },
  });
  const relay = createOutboxRelay({
    database,
    bus,
    logger,
    metrics: createMetrics({ defaults: false }),
    pollMs: 50,
    batchSize: 10,
    retentionHours: 24,
    claimLeaseSeconds: 1,
  });
  return { bus, relay };
}
