/**
 * In-process bus adapter, used when `NATS_URL` is not set (one process, embedded mode).
 * `publish` resolves only after every matching group has acknowledged or dead-lettered the event,
 * so the outbox marks a row relayed only once its effects are done: a crash before that leaves the
 * row pending and it is delivered again after restart. Groups are independent and run in parallel.
 */
import { setTimeout as sleep } from 'node:timers/promises';
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

interface Member {
  subscription: Subscription;
}

export function createLocalBus(deps: {
  logger: Logger;
  metrics: Metrics;
  deadLetter: DeadLetterSink;
}): EventBus {
  const groups = new Map<string, { members: Member[]; next: number }>();
  let closed = false;

  async function deliver(group: string, members: Member[], pick: number, event: BusEvent): Promise<void> {
    const member = members[pick % members.length];
    if (!member) return;
    const max = member.subscription.maxDeliver ?? 5;
    for (let attempt = 1; ; attempt++) {
      try {
        await member.subscription.handler(event);
        deps.metrics.busDelivered.inc({ group, outcome: 'ack' });
        deps.metrics.busConsumerLag.observe({ group }, (Date.now() - Date.parse(event.createdAt)) / 1000);
        return;
      } catch (e) {
        const reason = e instanceof Error ? e.message : String(e);
        if (attempt >= max || closed) {
          deps.metrics.busDelivered.inc({ group, outcome: 'dead_letter' });
          deps.metrics.busDeadLetters.inc({ group });
          deps.logger.error(
            { group, eventId: event.id, topic: event.topic, attempts: attempt, reason },
            'event dead-lettered',
          );
          await deps.deadLetter({ group, event, reason, attempts: attempt });
          return;
        }
        deps.metrics.busDelivered.inc({ group, outcome: 'retry' });
        deps.logger.warn({ group, eventId: event.id, attempt, reason }, 'event handler failed; retrying');
        await sleep(redeliveryDelayMs(attempt));
      }
    }
  }

  /** The groups with members taking `event`, each with the member chosen for it. */
  const route = (event: BusEvent) => {
    const out: { group: string; members: Member[]; pick: number }[] = [];
    for (const [group, g] of groups) {
      const matching = g.members.filter((m) =>
        m.subscription.topics.some((p) => topicMatches(p, event.topic)),
      );
      if (matching.length > 0) out.push({ group, members: matching, pick: g.next++ });
    }
    return out;
  };

  return {
    kind: 'local',
    async publish(event) {
      if (closed) throw new Error('event bus is closed');
      await Promise.all(route(event).map((r) => deliver(r.group, r.members, r.pick, event)));
    },
    async publishBatch(events) {
      if (closed) throw new Error('event bus is closed');
      // Per group, its events in order: all at once to a member that takes batches, else one by one.
      const perGroup = new Map<string, { members: Member[]; pick: number; events: BusEvent[] }>();
      for (const event of events)
        for (const r of route(event)) {
          const entry = perGroup.get(r.group) ?? { members: r.members, pick: r.pick, events: [] };
          entry.events.push(event);
          perGroup.set(r.group, entry);
        }
      await Promise.all(
        [...perGroup].map(async ([group, { members, pick, events: list }]) => {
          const member = members[pick % members.length];
          const batch = member?.subscription.handleBatch;
          if (batch && list.length > 1) {
            try {
              await batch(list);
              deps.metrics.busDelivered.inc({ group, outcome: 'ack' }, list.length);
              for (const e of list)
                deps.metrics.busConsumerLag.observe({ group }, (Date.now() - Date.parse(e.createdAt)) / 1000);
              return;
            } catch (e) {
              deps.logger.warn(
                { group, events: list.length, reason: e instanceof Error ? e.message : String(e) },
                'batch handler failed; delivering one by one',
              );
            }
          }
          for (const event of list) await deliver(group, members, pick, event);
        }),
      );
    },
    async subscribe(subscription) {
      assertSubscription(subscription);
      const member: Member = { subscription };
      const g = groups.get(subscription.group) ?? { members: [], next: 0 };
      g.members.push(member);
      groups.set(subscription.group, g);
      return async () => {
        g.members = g.members.filter((m) => m !== member);
        if (g.members.length === 0) groups.delete(subscription.group);
      };
    },
    connected: () => !closed,
    async close() {
      closed = true;
      groups.clear();
    },
  };
}
