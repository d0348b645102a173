/** Polling for tests that wait on background work (notifications, webhooks, relays). */
import { setTimeout as sleep } from 'node:timers/promises';

/** Resolves to `fn`'s first value other than undefined/false, polling every 25 ms; throws after `ms`. */
export async function until<T>(
  what: string,
  fn: () => T | undefined | false | Promise<T | undefined | false>,
  ms = 8_000,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}
