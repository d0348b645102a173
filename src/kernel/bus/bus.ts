/**
 * The event bus port (事件总线). Events reach it only through the transactional outbox
 * (`outbox.ts`), so what is published was committed. Delivery is at least once per consumer
 * group; consumers make their effect exactly-once with `consumeOnce` (idempotent by event id).
 */
import { randomUUID } from 'node:crypto';

export interface BusEvent<P = unknown> {
  /** UUID; the idempotency key consumers and JetStream de-duplicate by. */
  readonly id: string;
  /** Dot-separated lower-case tokens, e.g. `ops.case.dispatched`. */
  readonly topic: string;
  readonly payload: P;
  readonly headers: Readonly<Record<string, string>>;
  /** ISO-8601 time the event was written (its transaction's time). */
  readonly createdAt: string;
}

export interface Subscription {
  /** Consumer group: each event is handled by one member of each group. Stable across restarts. */
  group: string;
  /** Topic patterns, NATS style: `a.b.c` exact, `a.*.c` one token, `a.>` the rest. */
  topics: string[];
  /** Resolve to acknowledge; throw to have the event redelivered after a backoff. */
  handler: (event: BusEvent) => Promise<void>;
  /**
   * Optional: handles several events at once (in order) where the bus can deliver them so (the
   * in-process bus, for the outbox relay's batches); resolving acknowledges them all. When it
   * throws, the events are delivered one by one through `handler`, with its retries.
   */
  handleBatch?: (events: BusEvent[]) => Promise<void>;
  /** Deliveries before the event is dead-lettered for this group (default 5). */
  maxDeliver?: number;
}

/** Called when a group gives up on an event, so it is recorded rather than silently lost. */
export type DeadLetterSink = (args: {
  group: string;
  event: BusEvent;
  reason: string;
  attempts: number;
}) => Promise<void>;

export interface EventBus {
  readonly kind: 'local' | 'nats';
  /** Publishes one committed event; resolves when the bus has accepted it (durably, for NATS). */
  publish(event: BusEvent): Promise<void>;
  /** Publishes committed events in order, where the bus can do better than one by one. */
  publishBatch?(events: BusEvent[]): Promise<void>;
  /** Starts delivering matching events to the group; resolves to a function that stops it. */
  subscribe(subscription: Subscription): Promise<() => Promise<void>>;
  /** Whether the bus can accept publishes right now (for readiness and metrics). */
  connected(): boolean;
  close(): Promise<void>;
}

export const TOPIC_PATTERN = /^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/;
const GROUP_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** Builds an event with a fresh id; throws on a topic that would not be routable. */
export function makeEvent<P>(args: {
  topic: string;
  payload: P;
  headers?: Record<string, string>;
}): BusEvent<P> {
  assertTopic(args.topic);
  assertHeaders(args.headers ?? {});
  return {
    id: randomUUID(),
    topic: args.topic,
    payload: args.payload,
    headers: args.headers ?? {},
    createdAt: new Date().toISOString(),
  };
}

export function assertTopic(topic: string): void {
  if (topic.length > 200 || !TOPIC_PATTERN.test(topic))
    throw new Error(
      `invalid event topic "${topic}": use dot-separated lower-case tokens like "ops.case.created"`,
    );
}

const HEADER_NAME = /^[A-Za-z0-9-]{1,64}$/;

/** Headers must survive every transport (NATS headers are MIME-style): checked before they are stored. */
export function assertHeaders(headers: Record<string, string>): void {
  const entries = Object.entries(headers);
  if (entries.length > 32) throw new Error(`too many event headers (${entries.length}; at most 32)`);
  for (const [name, value] of entries) {
    if (!HEADER_NAME.test(name)) throw new Error(`invalid event header name "${name.slice(0, 80)}"`);
    // eslint-disable-next-line no-control-regex
    if (typeof value !== 'string' || value.length > 1024 || /[\u0000-\u001f\u007f]/.test(value))
      throw new Error(
        `invalid value for event header "${name}": at most 1024 characters, no control characters`,
      );
  }
}

export function assertSubscription(s: Subscription): void {
  if (!GROUP_PATTERN.test(s.group))
    throw new Error(`invalid consumer group "${s.group}": 1-64 letters, digits, _ or -`);
  if (s.topics.length === 0) throw new Error(`consumer group "${s.group}" subscribes to no topics`);
  for (const t of s.topics) {
    const tokens = t.split('.');
    const ok = tokens.every(
      (tok, i) => tok === '*' || (tok === '>' && i === tokens.length - 1) || /^[a-z0-9_-]+$/.test(tok),
    );
    if (!ok) throw new Error(`invalid topic pattern "${t}" for consumer group "${s.group}"`);
  }
}

/** NATS-style subject matching: `*` matches one token, a trailing `>` matches one or more. */
export function topicMatches(pattern: string, topic: string): boolean {
  const p = pattern.split('.');
  const t = topic.split('.');
  for (let i = 0; i < p.length; i++) {
    const tok = p[i];
    if (tok === '>') return t.length > i;
    if (i >= t.length) return false;
    if (tok !== '*' && tok !== t[i]) return false;
  }
  return p.length === t.length;
}

/** Delay before redelivery attempt `attempt` (1-based): 100 ms doubling, capped at 5 s. */
export function redeliveryDelayMs(attempt: number): number {
  return Math.min(5_000, 100 * 2 ** Math.max(0, attempt - 1));
}
