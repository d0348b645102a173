/**
 * NATS JetStream bus adapter (`NATS_URL`). Events are stored in one stream (subjects
 * `<stream>.<topic>`), published with the event id as `Nats-Msg-Id` so JetStream drops a duplicate
 * publish (a relay that crashed after publishing but before marking the row). Consumer groups are
 * durable pull consumers with explicit acks; a failing handler is redelivered with backoff and,
 * after `maxDeliver` attempts, dead-lettered and terminated.
 */
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type JsMsg } from '@nats-io/jetstream';
import { connect, headers as natsHeaders, nanos, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../log/logger.ts';
import type { Metrics } from '../metrics/metrics.ts';
import {
  assertSubscription,
  redeliveryDelayMs,
  topicMatches,
  type BusEvent,
  type DeadLetterSink,
  type EventBus,
  type Subscription,
} from './bus.ts';

export interface NatsBusOptions {
  url: string;
  stream: string;
  /** How long to wait for the first connection before failing start-up (ms). */
  connectTimeoutMs: number;
  logger: Logger;
  metrics: Metrics;
  deadLetter: DeadLetterSink;
}

const DUPLICATE_WINDOW_MS = 10 * 60_000;
const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Connects and ensures the stream exists; fails with a clear message if NATS cannot be reached. */
export async function createNatsBus(options: NatsBusOptions): Promise<EventBus> {
  const { logger, metrics } = options;
  const prefix = options.stream.toLowerCase();
  let nc: NatsConnection;
  try {
    nc = await connectWithDeadline(options);
  } catch (e) {
    throw new Error(
      `cannot reach NATS at ${safeServer(options.url)} within ${options.connectTimeoutMs} ms: ${(e as Error).message}. ` +
        'Pujiang does not fall back to the in-process bus when NATS_URL is set (replicas would stop sharing events); ' +
        'start NATS with JetStream enabled, or unset NATS_URL for a single embedded node.',
      { cause: e },
    );
  }
  let isConnected = true;
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        isConnected = false;
        logger.warn('NATS connection lost; reconnecting (events stay in the outbox meanwhile)');
      } else if (s.type === 'reconnect') {
        isConnected = true;
        logger.info('NATS connection restored');
      }
    }
  })().catch((e: unknown) => logger.warn({ err: (e as Error).message }, 'NATS status stream ended'));

  let jsm: Awaited<ReturnType<typeof jetstreamManager>>;
  try {
    jsm = await ensureStream(nc, options.stream, prefix);
  } catch (e) {
    await nc.close().catch(() => undefined);
    throw new Error(`NATS at ${safeServer(options.url)} has no usable JetStream: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const js = jetstream(nc, { timeout: 5_000 });
  const stops = new Set<() => Promise<void>>();

  async function handle(sub: Subscription, m: JsMsg): Promise<void> {
    const max = sub.maxDeliver ?? 5;
    // Handlers may be slow: tell JetStream we hold the message so ack_wait restarts now.
    m.working();
    let event: BusEvent;
    try {
      const parsed = JSON.parse(decoder.decode(m.data)) as Partial<BusEvent> | null;
      if (
        typeof parsed !== 'object' ||
        parsed === null ||
        typeof parsed.id !== 'string' ||
        typeof parsed.topic !== 'string' ||
        typeof parsed.createdAt !== 'string'
      )
        throw new Error('not a Pujiang event');
      event = { headers: {}, ...parsed } as BusEvent;
    } catch (e) {
      logger.error(
        { group: sub.group, subject: m.subject },
        'undecodable message on the bus; terminating it',
      );
      m.term(`undecodable: ${(e as Error).message}`);
      return;
    }
    try {
      await sub.handler(event);
      m.ack();
      metrics.busDelivered.inc({ group: sub.group, outcome: 'ack' });
      metrics.busConsumerLag.observe({ group: sub.group }, (Date.now() - Date.parse(event.createdAt)) / 1000);
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      const attempt = m.info.deliveryCount;
      if (attempt >= max) {
        metrics.busDelivered.inc({ group: sub.group, outcome: 'dead_letter' });
        metrics.busDeadLetters.inc({ group: sub.group });
        logger.error(
          { group: sub.group, eventId: event.id, attempts: attempt, reason },
          'event dead-lettered',
        );
        try {
          await options.deadLetter({ group: sub.group, event, reason, attempts: attempt });
          m.term(reason.slice(0, 200));
        } catch (dlErr) {
          // Cannot record it: leave it to be redelivered rather than lose it.
          logger.error({ err: (dlErr as Error).message }, 'dead letter could not be recorded; redelivering');
          m.nak(redeliveryDelayMs(attempt));
        }
        return;
      }
      metrics.busDelivered.inc({ group: sub.group, outcome: 'retry' });
      logger.warn({ group: sub.group, eventId: event.id, attempt, reason }, 'event handler failed; retrying');
      m.nak(redeliveryDelayMs(attempt));
    }
  }

  return {
    kind: 'nats',
    async publish(event) {
      const h = natsHeaders();
      for (const [k, v] of Object.entries(event.headers)) h.set(k, v);
      await js.publish(`${prefix}.${event.topic}`, encoder.encode(JSON.stringify(event)), {
        msgID: event.id,
        headers: h,
        timeout: 5_000,
      });
    },
    async subscribe(sub) {
      assertSubscription(sub);
      const max = sub.maxDeliver ?? 5;
      // One filter subject works on every JetStream server (several need 2.10+): a group with
      // several patterns reads the whole stream and acknowledges what it does not want unseen.
      const only = sub.topics.length === 1 ? sub.topics[0] : undefined;
      const wants = (topic: string) => sub.topics.some((p) => topicMatches(p, topic));
      const config = {
        durable_name: sub.group,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        filter_subject: `${prefix}.${only ?? '>'}`,
        max_deliver: max,
        ack_wait: nanos(60_000),
      };
      try {
        await jsm.consumers.info(options.stream, sub.group);
        await jsm.consumers.update(options.stream, sub.group, {
          filter_subject: config.filter_subject,
          max_deliver: config.max_deliver,
          ack_wait: config.ack_wait,
        });
      } catch {
        await jsm.consumers.add(options.stream, config);
      }
      const consumer = await js.consumers.get(options.stream, sub.group);
      // A small buffer: messages waiting in it count against ack_wait.
      const messages = await consumer.consume({ max_messages: 16 });
      const loop = (async () => {
        for await (const m of messages) {
          if (only || wants(m.subject.slice(prefix.length + 1))) await handle(sub, m);
          else m.ack();
        }
      })().catch((e: unknown) => {
        logger.error({ group: sub.group, err: (e as Error).message }, 'NATS consumer stopped');
      });
      const stop = async () => {
        stops.delete(stop);
        await messages.close();
        await loop;
      };
      stops.add(stop);
      return stop;
    },
    connected: () => isConnected && !nc.isClosed(),
    async close() {
      for (const stop of [...stops]) await stop();
      if (!nc.isClosed()) await nc.drain();
    },
  };
}

/** Creates the stream, or updates its subjects and duplicate window; returns the manager. */
async function ensureStream(nc: NatsConnection, stream: string, prefix: string) {
  const jsm = await jetstreamManager(nc);
  const config = { name: stream, subjects: [`${prefix}.>`], duplicate_window: nanos(DUPLICATE_WINDOW_MS) };
  try {
    await jsm.streams.info(stream);
    await jsm.streams.update(stream, {
      subjects: config.subjects,
      duplicate_window: config.duplicate_window,
    });
  } catch {
    await jsm.streams.add(config);
  }
  return jsm;
}

async function connectWithDeadline(options: NatsBusOptions): Promise<NatsConnection> {
  const deadline = Date.now() + options.connectTimeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      return await connect({
        servers: options.url.split(',').map((u) => u.trim()),
        name: 'pujiang',
        timeout: Math.min(2_000, Math.max(100, deadline - Date.now())),
        reconnect: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 500,
      });
    } catch (e) {
      lastError = e;
      await new Promise((r) => setTimeout(r, Math.min(500, Math.max(0, deadline - Date.now()))));
    }
  }
  throw lastError instanceof Error ? lastError : new Error('connection timed out');
}

function safeServer(u: string): string {
  try {
    const p = new URL(u);
    return `${p.protocol}//${p.hostname}:${p.port || '4222'}`;
  } catch {
    return '(unparseable NATS_URL)';
  }
}
