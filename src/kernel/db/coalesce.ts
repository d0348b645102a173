/**
 * Group commit (合并写入): while one batch of writes is on its way to the database, the writes that
 * arrive queue up and go out together as the next batch, so under load many small writes share
 * one statement, one plan and one commit; a write that arrives alone goes out at once, with no
 * added wait. A failed batch of several is retried one write at a time, so one bad write fails
 * alone and the others still commit.
 */
export function createCoalescer<I, R>(options: {
  /** The most writes one batch carries. */
  max: number;
  /** Writes the items as one statement; resolves to one result per item, in order. */
  write: (items: I[]) => Promise<R[]>;
}): (item: I) => Promise<R> {
  const queue: { item: I; resolve: (r: R) => void; reject: (e: unknown) => void }[] = [];
  let running = false;

  const writeOne = async (q: (typeof queue)[number]) => {
    try {
      const [r] = await options.write([q.item]);
      if (r === undefined) throw new Error('coalescer: the write returned no result');
      q.resolve(r);
    } catch (e) {
      q.reject(e);
    }
  };

  const drain = async () => {
    running = true;
    while (queue.length > 0) {
      const batch = queue.splice(0, options.max);
      if (batch.length === 1) {
        const [only] = batch;
        if (only) await writeOne(only);
        continue;
      }
      try {
        const results = await options.write(batch.map((b) => b.item));
        batch.forEach((b, i) => {
          const r = results[i];
          if (r === undefined) b.reject(new Error('coalescer: the write returned too few results'));
          else b.resolve(r);
        });
      } catch {
        for (const b of batch) await writeOne(b);
      }
    }
    running = false;
  };

  return (item) =>
    new Promise<R>((resolve, reject) => {
      queue.push({ item, resolve, reject });
      if (!running) void drain();
    });
}
