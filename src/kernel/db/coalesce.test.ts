import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createCoalescer } from './coalesce.ts';

describe('group commit (createCoalescer)', () => {
  it('writes a lone item at once and batches what arrives meanwhile, in order', async () => {
    const batches: number[][] = [];
    const write = createCoalescer<number, number>({
      max: 3,
      write: async (items) => {
        batches.push(items);
        await sleep(20);
        return items.map((i) => i * 10);
      },
    });
    const results = await Promise.all([1, 2, 3, 4, 5, 6].map((i) => write(i)));
    assert.deepEqual(results, [10, 20, 30, 40, 50, 60]);
    assert.deepEqual(batches, [[1], [2, 3, 4], [5, 6]]);
  });

  it('retries a failed batch one by one, so only the bad item fails', async () => {
    const batches: number[][] = [];
    const write = createCoalescer<number, number>({
      max: 10,
      write: async (items) => {
        batches.push(items);
        await sleep(5);
        if (items.includes(3)) throw new Error(`bad ${items.join(',')}`);
        return items;
      },
    });
    const settled = await Promise.allSettled([1, 2, 3, 4].map((i) => write(i)));
    assert.deepEqual(
      settled.map((s) => s.status),
      ['fulfilled', 'fulfilled', 'rejected', 'fulfilled'],
    );
    assert.deepEqual(batches, [[1], [2, 3, 4], [2], [3], [4]]);
    const rejected = settled[2];
    assert.ok(rejected?.status === 'rejected');
    assert.match(String(rejected.reason), /bad 3/);
  });

  it('rejects when the write returns too few results', async () => {
    const write = createCoalescer<number, number>({ max: 5, write: async () => [] });
    await assert.rejects(write(1), /no result/);
  });
});
