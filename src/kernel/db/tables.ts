/** Row types of the kernel's own tables (schema `kernel`); other modules declare theirs beside their stores. */
import type { ColumnType, Generated } from 'kysely';

/** A `timestamptz` with a database default: read as Date, optional on insert. */
type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;

export interface OutboxTable {
  seq: Generated<number>;
  id: string;
  topic: string;
  payload: unknown;
  headers: ColumnType<Record<string, string>, string | undefined, string>;
  created_at: Timestamp;
  published_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  claimed_until: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  claim_token: string | null;
  attempts: Generated<number>;
  last_error: string | null;
}

export interface ConsumedEventsTable {
  consumer: string;
  event_id: string;
  consumed_at: Timestamp;
}

export interface DeadLettersTable {
  id: Generated<number>;
  consumer: string;
  event_id: string;
  topic: string;
  payload: unknown;
  reason: string;
  attempts: number;
  created_at: Timestamp;
}

export interface MigrationsTable {
  module: string;
  name: string;
  checksum: string;
  applied_at: Timestamp;
}

export interface KernelTables {
  'kernel.outbox': OutboxTable;
  'kernel.consumed_events': ConsumedEventsTable;
  'kernel.dead_letters': DeadLettersTable;
  'kernel.migrations': MigrationsTable;
}
