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

  return {
    kind: 'local',
    async publish(event) {
      if (closed) throw new Error('event bus is closed');
      const work: Promise<void>[] = [];
      for (const [group, g] of groups) {
        const matching = g.members.filter((m) =>
          m.subscription.topics.some((p) => topicMatches(p, event.topic)),
        );
        if (matching.length === 0) continue;
        work.push(deliver(group, matching, g.next++, event));
      }
      await Promise.all(work);
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
