/** Outbox and bus integration tests, on every engine of this run, and on NATS when NATS_URL is set. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, afterEach, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import { engines, natsUrl, type TestDatabase } from '../../../test/helpers/engines.ts';
import { createTcpProxy } from '../../../test/helpers/tcp-proxy.ts';
import { silentLogger } from '../log/logger.ts';
import { createMetrics } from '../metrics/metrics.ts';
import type { BusEvent, EventBus } from './bus.ts';
import { createLocalBus } from './local-bus.ts';
import { createNatsBus } from './nats-bus.ts';
import { consumeOnce, createOutboxRelay, deadLetterSink, enqueueEvent, type OutboxRelay } from './outbox.ts';

async function until(check: () => Promise<boolean> | boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(25);
  }
  assert.fail(`condition not met within ${ms} ms`);
}

function relayFor(t: TestDatabase, bus: EventBus): OutboxRelay {
  return createOutboxRelay({
    database: t.database,
    bus,
    logger: silentLogger(),
    metrics: createMetrics({ defaults: false }),
    pollMs: 50,
    batchSize: 50,
    retentionHours: 24,
  });
}

for (const engine of engines()) {
  describe(`outbox on ${engine.name}`, () => {
    let t: TestDatabase;
    before(async () => {
      t = await engine.open();
      await sql`create table if not exists outbox_test_effects (event_id uuid primary key, n int not null)`.execute(
        t.database.db,
      );
    });
    after(async () => {
      await t.dispose();
    });

    const localBus = () =>
      createLocalBus({
        logger: silentLogger(),
        metrics: createMetrics({ defaults: false }),
        deadLetter: deadLetterSink(t.database),
      });

    it('relays an event only after its transaction commits, and nothing from a rolled-back one', async () => {
      const bus = localBus();
      const got: BusEvent[] = [];
      await bus.subscribe({ group: 'collector', topics: ['test.>'], handler: async (e) => void got.push(e) });
      const relay = relayFor(t, bus);
      await assert.rejects(
        t.database.transact(async (trx) => {
          await enqueueEvent(trx, { topic: 'test.rolled-back', payload: { n: 1 } });
          throw new Error('business rule failed');
        }),
      );
      const ev = await t.database.transact((trx) =>
        enqueueEvent(trx, {
          topic: 'test.committed',
          payload: { n: 2, name: '浦江' },
          headers: { 'x-actor': 'u1' },
        }),
      );
      assert.equal(await relay.drain(), 1);
      assert.equal(got.length, 1);
      assert.equal(got[0]?.id, ev.id);
      assert.deepEqual(got[0].payload, { n: 2, name: '浦江' });
      assert.deepEqual(got[0].headers, { 'x-actor': 'u1' });
      assert.deepEqual(await relay.backlog(), { pending: 0, oldestAgeSeconds: 0 });
      await bus.close();
    });

    it('wakes the running relay on commit (no waiting for the poll)', async () => {
      const bus = localBus();
      const got: string[] = [];
      await bus.subscribe({
        group: 'collector',
        topics: ['wake.>'],
        handler: async (e) => void got.push(e.id),
      });
      const relay = createOutboxRelay({
        database: t.database,
        bus,
        logger: silentLogger(),
        metrics: createMetrics({ defaults: false }),
        pollMs: 60_000,
        batchSize: 50,
        retentionHours: 24,
      });
      relay.start();
      await sleep(100);
      const ev = await t.database.transact((trx) => enqueueEvent(trx, { topic: 'wake.up', payload: {} }));
      await until(() => got.includes(ev.id), 5_000);
      await relay.stop();
      await bus.close();
    });

    it('keeps events pending while the bus refuses them and relays them in order once it accepts', async () => {
      let up = false;
      const delivered: number[] = [];
      const flaky: EventBus = {
        kind: 'local',
        publish: async (e) => {
          if (!up) throw new Error('bus unavailable');
          delivered.push((e.payload as { i: number }).i);
        },
        subscribe: async () => async () => undefined,
        connected: () => up,
        close: async () => undefined,
      };
      const relay = relayFor(t, flaky);
      for (let i = 0; i < 5; i++)
        await t.database.transact((trx) => enqueueEvent(trx, { topic: 'order.test', payload: { i } }));
      assert.equal(await relay.drain(), 0);
      const backlog = await relay.backlog();
      assert.equal(backlog.pending, 5);
      const { rows } = await sql<{ attempts: number; last_error: string }>`
        select attempts, last_error from kernel.outbox where topic = 'order.test' order by seq limit 1`.execute(
        t.database.db,
      );
      assert.equal(rows[0]?.attempts, 1);
      assert.equal(rows[0].last_error, 'bus unavailable');
      up = true;
      assert.equal(await relay.drain(), 5);
      assert.deepEqual(delivered, [0, 1, 2, 3, 4]);
    });

    it('gives a consumer exactly-once effects on redelivery (idempotent by event id)', async () => {
      const ev = await t.database.transact((trx) =>
        enqueueEvent(trx, { topic: 'effect.test', payload: { n: 7 } }),
      );
      const apply = () =>
        consumeOnce(t.database, {
          consumer: 'effects',
          event: ev,
          effect: async (trx) => {
            await sql`insert into outbox_test_effects (event_id, n) values (${ev.id}, 7)`.execute(trx);
          },
        });
      assert.equal(await apply(), true);
      assert.equal(await apply(), false);
      const { rows } = await sql<{
        n: number;
      }>`select count(*) as n from outbox_test_effects where event_id = ${ev.id}`.execute(t.database.db);
      assert.equal(rows[0]?.n, 1);
    });

    it('does not record an event as consumed when the effect fails', async () => {
      const ev = await t.database.transact((trx) => enqueueEvent(trx, { topic: 'effect.fail', payload: {} }));
      await assert.rejects(
        consumeOnce(t.database, {
          consumer: 'failing',
          event: ev,
          effect: async () => {
            throw new Error('effect failed');
          },
        }),
        /effect failed/,
      );
      assert.equal(
        await consumeOnce(t.database, { consumer: 'failing', event: ev, effect: async () => undefined }),
        true,
      );
    });

    it('records dead letters with their reason and still marks the event relayed', async () => {
      const bus = localBus();
      await bus.subscribe({
        group: 'poison-consumer',
        topics: ['poison.>'],
        maxDeliver: 2,
        handler: async () => {
          throw new Error('unparseable reading');
        },
      });
      const relay = relayFor(t, bus);
      const ev = await t.database.transact((trx) =>
        enqueueEvent(trx, { topic: 'poison.pill', payload: { x: 1 } }),
      );
      await relay.drain();
      const rows = await t.database.db
        .selectFrom('kernel.dead_letters')
        .selectAll()
        .where('event_id', '=', ev.id)
        .execute();
      assert.equal(rows.length, 1);
      assert.equal(rows[0]?.reason, 'unparseable reading');
      assert.equal(rows[0].attempts, 2);
      assert.equal((await relay.backlog()).pending, 0);
      await bus.close();
    });

    it('refuses to write an event outside a transaction', async () => {
      await assert.rejects(
        enqueueEvent(t.database.db, { topic: 'no.tx', payload: {} }),
        /must be called with the transaction of the change/,
      );
    });

    it('relays each event once when several relays run at the same time', async () => {
      const bus = localBus();
      const seen = new Map<string, number>();
      await bus.subscribe({
        group: 'concurrent',
        topics: ['many.>'],
        handler: async (e) => {
          seen.set(e.id, (seen.get(e.id) ?? 0) + 1);
        },
      });
      const ids: string[] = [];
      for (let i = 0; i < 30; i++)
        ids.push(
          (await t.database.transact((trx) => enqueueEvent(trx, { topic: 'many.events', payload: { i } })))
            .id,
        );
      const relays = [relayFor(t, bus), relayFor(t, bus), relayFor(t, bus)];
      await Promise.all(relays.map((r) => r.drain()));
      assert.deepEqual(
        ids.map((id) => seen.get(id)),
        ids.map(() => 1),
      );
      await bus.close();
    });

    it('rejects invalid topics and oversized payloads inside the transaction, writing nothing', async () => {
      const before = await relayFor(t, localBus()).backlog();
      await assert.rejects(
        t.database.transact((trx) =>
          enqueueEvent(trx, { topic: "x'; drop table kernel.outbox;--", payload: {} }),
        ),
        /invalid event topic/,
      );
      await assert.rejects(
        t.database.transact((trx) => enqueueEvent(trx, { topic: 'big.one', payload: 'x'.repeat(300_000) })),
        /exceeds/,
      );
      assert.deepEqual(await relayFor(t, localBus()).backlog(), before);
    });

    const nats = natsUrl();
    describe(`NATS JetStream bus with ${engine.name}`, { skip: nats ? false : 'NATS_URL not set' }, () => {
      const stream = `PJTEST_${randomBytes(4).toString('hex').toUpperCase()}`;
      const metrics = createMetrics({ defaults: false });
      // Everything a test opens is closed after it, pass or fail, so no handle keeps the run alive.
      const cleanups: (() => Promise<unknown>)[] = [];
      afterEach(async () => {
        for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
      });
      const openBus = async (url = nats ?? '') => {
        const bus = await createNatsBus({
          url,
          stream,
          connectTimeoutMs: 5_000,
          logger: silentLogger(),
          metrics,
          deadLetter: deadLetterSink(t.database),
        });
        cleanups.push(() => bus.close());
        return bus;
      };
      const natsHostPort = () => {
        const u = new URL(nats ?? 'nats://127.0.0.1:4222');
        return { host: u.hostname, port: Number(u.port || 4222) };
      };

      it('delivers relayed events to durable consumer groups, de-duplicating republished ids', async () => {
        const bus = await openBus();
        const got: string[] = [];
        const stop = await bus.subscribe({
          group: 'nats-collector',
          topics: ['nats.>'],
          handler: async (e) => void got.push(e.id),
        });
        const relay = relayFor(t, bus);
        const ev = await t.database.transact((trx) =>
          enqueueEvent(trx, { topic: 'nats.hello', payload: { hi: 1 } }),
        );
        assert.equal(await relay.drain(), 1);
        // A relay that crashed after publishing would publish the same event again: JetStream drops it.
        await bus.publish(ev);
        await until(() => got.length >= 1);
        await sleep(300);
        assert.deepEqual(got, [ev.id]);
        await stop();
        await bus.close();
      });

      it('keeps events in the outbox while NATS is unreachable and relays them when it returns', async () => {
        const proxy = await createTcpProxy(natsHostPort());
        cleanups.push(() => proxy.close());
        const bus = await openBus(`nats://127.0.0.1:${proxy.port}`);
        const relay = relayFor(t, bus);
        await proxy.cut();
        await until(() => !bus.connected(), 5_000);
        const ids: string[] = [];
        for (let i = 0; i < 3; i++)
          ids.push(
            (await t.database.transact((trx) => enqueueEvent(trx, { topic: 'nats.outage', payload: { i } })))
              .id,
          );
        assert.equal(await relay.drain(), 0);
        assert.equal((await relay.backlog()).pending, 3);
        await proxy.restore();
        await until(() => bus.connected(), 10_000);
        await until(async () => (await relay.drain()) >= 0 && (await relay.backlog()).pending === 0, 15_000);
        // A fresh consumer group reads all three from the stream.
        const direct = await openBus();
        const got: string[] = [];
        const stop = await direct.subscribe({
          group: 'outage-check',
          topics: ['nats.outage'],
          handler: async (e) => void got.push(e.id),
        });
        await until(() => ids.every((id) => got.includes(id)));
        await stop();
        await direct.close();
        await bus.close();
        await proxy.close();
      });

      it('redelivers after a handler failure and dead-letters after maxDeliver', async () => {
        const bus = await openBus();
        let attempts = 0;
        const stop = await bus.subscribe({
          group: 'nats-poison',
          topics: ['nats.poison'],
          maxDeliver: 3,
          handler: async () => {
            attempts++;
            throw new Error('always fails');
          },
        });
        const ev = await t.database.transact((trx) =>
          enqueueEvent(trx, { topic: 'nats.poison', payload: {} }),
        );
        await relayFor(t, bus).drain();
        await until(
          async () =>
            (
              await t.database.db
                .selectFrom('kernel.dead_letters')
                .select('id')
                .where('event_id', '=', ev.id)
                .execute()
            ).length === 1,
          15_000,
        );
        assert.equal(attempts, 3);
        await stop();
        await bus.close();
      });

      it('fails start-up clearly when NATS cannot be reached', async () => {
        await assert.rejects(
          createNatsBus({
            url: 'nats://127.0.0.1:1',
            stream,
            connectTimeoutMs: 500,
            logger: silentLogger(),
            metrics,
            deadLetter: deadLetterSink(t.database),
          }),
          /cannot reach NATS at nats:\/\/127\.0\.0\.1:1 within 500 ms.*does not fall back/s,
        );
      });
    });
  });
}
