/**
 * The outbox's promise under a real crash (SIGKILL): an event committed before the process died
 * is delivered after restart, and an idempotent consumer applies it exactly once — also when the
 * crash came after the consumer's effect but before the relay recorded the publish.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import { openDatabase, readProcessEnv, silentLogger, type Database } from '../src/kernel/index.ts';
import { crashConsumer } from './helpers/crash-consumer.ts';
import { createScratchDatabase, engines, postgresUrl } from './helpers/engines.ts';

const child = new URL('./fixtures/crash-child.ts', import.meta.url).pathname;

async function runUntilKilled(
  point: string,
  env: Record<string, string>,
): Promise<{ signal: string | null; lines: Record<string, string>[] }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', child, point], {
    env: { ...readProcessEnv(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const signal = await new Promise<string | null>((resolve) => proc.on('exit', (_code, sig) => resolve(sig)));
  assert.equal(signal, 'SIGKILL', `child did not die by SIGKILL: ${out}\n${err}`);
  const lines = out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, string>);
  return { signal, lines };
}

/** Restarts "the service": the same relay and idempotent consumer, over the same storage. */
async function restartAndDeliver(database: Database): Promise<{ deliveries: string[] }> {
  const deliveries: string[] = [];
  const { bus, relay } = await crashConsumer(database, { onDelivery: (e) => deliveries.push(e.id) });
  await relay.drain();
  assert.equal((await relay.backlog()).pending, 0);
  await bus.close();
  return { deliveries };
}

async function effects(database: Database, id: string): Promise<number> {
  const { rows } = await sql<{
    n: number;
  }>`select count(*) as n from crash_effects where event_id = ${id}`.execute(database.db);
  return rows[0]?.n ?? -1;
}

for (const engine of engines()) {
  describe(`outbox crash recovery on ${engine.name}`, () => {
    async function storage(): Promise<{
      env: Record<string, string>;
      open: () => Promise<Database>;
      drop: () => Promise<void>;
    }> {
      if (engine.name === 'pglite') {
        const dir = mkdtempSync(join(tmpdir(), 'pj-crash-'));
        return {
          env: { DATA_DIR: dir, DATABASE_URL: '' },
          open: () => openDatabase({ dataDir: dir, logger: silentLogger() }),
          drop: async () => undefined,
        };
      }
      const scratch = await createScratchDatabase(postgresUrl() ?? '');
      return {
        env: { DATABASE_URL: scratch.url },
        open: () => openDatabase({ databaseUrl: scratch.url, logger: silentLogger() }),
        drop: scratch.drop,
      };
    }

    it('delivers an event committed just before a SIGKILL exactly once after restart', async () => {
      const s = await storage();
      try {
        const { lines } = await runUntilKilled('after-commit', s.env);
        const id = lines.find((l) => l['committed'])?.['committed'];
        assert.ok(id, 'the child committed an event');
        const database = await s.open();
        try {
          const { deliveries } = await restartAndDeliver(database);
          assert.deepEqual(deliveries, [id]);
          assert.equal(await effects(database, id), 1);
        } finally {
          await database.close();
        }
      } finally {
        await s.drop();
      }
    });

    it('applies the effect once when the crash came after the effect but before the relay marked it', async () => {
      const s = await storage();
      try {
        const { lines } = await runUntilKilled('after-effect', s.env);
        const id = lines.find((l) => l['effect'])?.['effect'];
        assert.ok(id, 'the child applied the effect before dying');
        await sleep(1_200); // the dead relay's claim lease (1 s) runs out
        const database = await s.open();
        try {
          assert.equal(await effects(database, id), 1);
          const { deliveries } = await restartAndDeliver(database);
          assert.deepEqual(deliveries, [id], 'the event is delivered again (at least once)');
          assert.equal(await effects(database, id), 1, 'and its effect is not applied twice');
        } finally {
          await database.close();
        }
      } finally {
        await s.drop();
      }
    });
  });
}
