import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { silentLogger } from '../log/logger.ts';
import { createMetrics } from '../metrics/metrics.ts';
import { assertSubscription, makeEvent, topicMatches, type BusEvent } from './bus.ts';
import { createLocalBus } from './local-bus.ts';

describe('topic matching', () => {
  it('matches NATS-style patterns', () => {
    assert.equal(topicMatches('ops.case.created', 'ops.case.created'), true);
    assert.equal(topicMatches('ops.*.created', 'ops.case.created'), true);
    assert.equal(topicMatches('ops.>', 'ops.case.created'), true);
    assert.equal(topicMatches('ops.>', 'ops'), false);
    assert.equal(topicMatches('ops.*', 'ops.case.created'), false);
    assert.equal(topicMatches('ops.case', 'ops.case.created'), false);
    assert.equal(topicMatches('twin.>', 'ops.case'), false);
  });

  it('rejects bad topics, patterns and groups', () => {
    assert.throws(() => makeEvent({ topic: 'Ops.Case', payload: {} }), /invalid event topic/);
    assert.throws(() => makeEvent({ topic: 'ops..case', payload: {} }), /invalid event topic/);
    assert.throws(() => makeEvent({ topic: 'ops.case;drop', payload: {} }), /invalid event topic/);
    assert.throws(
      () => makeEvent({ topic: 'a.b', payload: {}, headers: { 'bad name': 'x' } }),
      /invalid event header name/,
    );
    assert.throws(
      () => makeEvent({ topic: 'a.b', payload: {}, headers: { 'x-actor': 'u1\r\nInjected: 1' } }),
      /no control characters/,
    );
    const handler = async () => undefined;
    assert.throws(
      () => assertSubscription({ group: 'a b', topics: ['x'], handler }),
      /invalid consumer group/,
    );
    assert.throws(() => assertSubscription({ group: 'g', topics: [], handler }), /no topics/);
    assert.throws(
      () => assertSubscription({ group: 'g', topics: ['a.>.b'], handler }),
      /invalid topic pattern/,
    );
  });
});

describe('in-process bus', () => {
  const deps = () => {
    const dead: { group: string; reason: string; attempts: number }[] = [];
    return {
      dead,
      bus: createLocalBus({
        logger: silentLogger(),
        metrics: createMetrics({ defaults: false }),
        deadLetter: async ({ group, reason, attempts }) => {
          dead.push({ group, reason, attempts });
        },
      }),
    };
  };

  it('hands a batch to a group that takes batches, in order; one by one to the others and after a failed batch', async () => {
    const { bus } = deps();
    const batches: string[][] = [];
    const singles: string[] = [];
    const plain: string[] = [];
    let failBatch = false;
    await bus.subscribe({
      group: 'batcher',
      topics: ['t.>'],
      handler: async (e) => {
        singles.push((e.payload as { n: string }).n);
      },
      handleBatch: async (events) => {
        if (failBatch) throw new Error('batch refused');
        batches.push(events.map((e) => (e.payload as { n: string }).n));
      },
    });
    await bus.subscribe({
      group: 'plain',
      topics: ['t.a'],
      handler: async (e) => {
        plain.push((e.payload as { n: string }).n);
      },
    });
    const ev = (topic: string, n: string) => makeEvent({ topic, payload: { n } });
    assert.equal(typeof bus.publishBatch, 'function');
    await bus.publishBatch?.([ev('t.a', '1'), ev('t.b', '2'), ev('t.a', '3'), ev('x.y', '4')]);
    assert.deepEqual(batches, [['1', '2', '3']]);
    assert.deepEqual(plain, ['1', '3']);
    assert.deepEqual(singles, []);
    failBatch = true;
    await bus.publishBatch?.([ev('t.a', '5'), ev('t.b', '6')]);
    assert.deepEqual(singles, ['5', '6']);
  });

  it('delivers each event once per group, round-robin within a group, only on matching topics', async () => {
    const { bus } = deps();
    const seen: string[] = [];
    const on = (name: string) => async (e: BusEvent) => {
      seen.push(`${name}:${e.topic}`);
    };
    await bus.subscribe({ group: 'a', topics: ['ops.>'], handler: on('a1') });
    await bus.subscribe({ group: 'a', topics: ['ops.>'], handler: on('a2') });
    await bus.subscribe({ group: 'b', topics: ['ops.case.created'], handler: on('b') });
    await bus.publish(makeEvent({ topic: 'ops.case.created', payload: {} }));
    await bus.publish(makeEvent({ topic: 'ops.case.closed', payload: {} }));
    await bus.publish(makeEvent({ topic: 'twin.entity.created', payload: {} }));
    assert.deepEqual(seen.sort(), ['a1:ops.case.created', 'a2:ops.case.closed', 'b:ops.case.created']);
  });

  it('retries a failing handler and acknowledges once it succeeds', async () => {
    const { bus, dead } = deps();
    let calls = 0;
    await bus.subscribe({
      group: 'flaky',
      topics: ['x.y'],
      handler: async () => {
        calls++;
        if (calls < 3) throw new Error('temporary');
      },
    });
    await bus.publish(makeEvent({ topic: 'x.y', payload: 1 }));
    assert.equal(calls, 3);
    assert.equal(dead.length, 0);
  });

  it('dead-letters after maxDeliver attempts with the reason, and other groups are unaffected', async () => {
    const { bus, dead } = deps();
    let healthy = 0;
    await bus.subscribe({
      group: 'poison',
      topics: ['x.y'],
      maxDeliver: 2,
      handler: async () => {
        throw new Error('cannot handle');
      },
    });
    await bus.subscribe({
      group: 'healthy',
      topics: ['x.y'],
      handler: async () => {
        healthy++;
      },
    });
    await bus.publish(makeEvent({ topic: 'x.y', payload: 1 }));
    assert.deepEqual(dead, [{ group: 'poison', reason: 'cannot handle', attempts: 2 }]);
    assert.equal(healthy, 1);
  });

  it('refuses to publish after close', async () => {
    const { bus } = deps();
    await bus.close();
    await assert.rejects(bus.publish(makeEvent({ topic: 'x.y', payload: 1 })), /closed/);
  });
});
