/**
 * The load generator of bench/twin-history, in a worker thread (see `worker.mjs`) so that the
 * broker's event loop serves requests only. Two kinds of job:
 *
 * - `append` / `patch`: a closed loop (bench/twin's `closedLoop`) of history writes, bodies built
 *   per request (fresh instance times, fresh values);
 * - `notify`: a loopback notification receiver (node:http, answers 204) and a paced open-loop
 *   sender of entity updates, each carrying a sequence number as its value; sender and receiver
 *   share this thread's monotonic clock, so latency = arrival − the moment the PATCH was sent.
 *   Then a drain wait, then the raw baseline: the same notification body POSTed straight to the
 *   receiver at the same pace.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';
import { closedLoop, httpOp, keepAliveAgent, type LoadResult } from '../twin/load.ts';
import { appendBody, appendEntityId, ATTR, P, patchBody, patchEntityId } from './bodies.ts';

interface LoopJob {
  label: string;
  base: string;
  concurrency: number;
  warmupMs: number;
  durationMs: number;
  /** Entities the requests cycle over. */
  entities: number;
}

export type WorkerJob =
  | (LoopJob & { kind: 'append'; perRequest: number; startMs: number })
  | (LoopJob & { kind: 'patch'; attrs: number })
  | {
      kind: 'notify';
      base: string;
      /** The entity ids updated, round robin (one subscription each). */
      ids: string[];
      /** Updates per second, one paced round each (the parent says 'go' before each). */
      rates: number[];
      warmupMs: number;
      durationMs: number;
      /** Longest wait for the last notifications, and for quiet after the last arrival. */
      drainMs: number;
      /** Pace and length of the raw baseline (direct POSTs to the receiver). */
      baselineMs: number;
    };

/** Latency summary of one side of the notification run, milliseconds. */
export interface LatencySummary {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export interface NotifyResult {
  /** The pace asked for, updates/s. */
  rate: number;
  /** Updates sent, and answered 2xx, over the whole run (warm-up included). */
  sent: number;
  accepted: number;
  /** Non-2xx answers or failures by status, with a first sample. */
  refused: Record<string, number>;
  refusedSample: string | undefined;
  /** Notifications received (all), distinct sequence numbers, duplicates, and ones for no accepted update. */
  received: number;
  distinct: number;
  duplicates: number;
  unexpected: number;
  /** Accepted updates whose notification never came (after the drain wait). */
  lost: number;
  /** Updates per second actually sent in the measured window, and their PATCH round trips. */
  sentRate: number;
  patch: LatencySummary;
  /** PATCH sent → notification arrived, for updates sent in the measured window. */
  latency: LatencySummary;
  drainedMs: number;
  /** Direct POST of the same body to the receiver, same pace. */
  baseline: LatencySummary & { rate: number };
}

export type WorkerMessage =
  | { type: 'ready'; port: number }
  | { type: 'progress'; text: string }
  | { type: 'loop'; result: LoadResult }
  | { type: 'notify'; result: NotifyResult }
  | { type: 'done' };

const post = (m: WorkerMessage): void => parentPort?.postMessage(m);

function summary(values: number[]): LatencySummary {
  const sorted = Float64Array.from(values).sort();
  const at = (q: number) =>
    sorted.length === 0
      ? NaN
      : (sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? NaN);
  return { count: sorted.length, p50: at(0.5), p95: at(0.95), p99: at(0.99), max: at(1) };
}

async function loop(job: WorkerJob & LoopJob): Promise<void> {
  const agent = keepAliveAgent(job.concurrency);
  const base = new URL(job.base);
  const result = await closedLoop({
    label: job.label,
    concurrency: job.concurrency,
    warmupMs: job.warmupMs,
    durationMs: job.durationMs,
    op: httpOp(agent, base, (seq) =>
      job.kind === 'append'
        ? {
            method: 'POST',
            path: `${P}/temporal/entities/${encodeURIComponent(appendEntityId(seq % job.entities))}/attrs`,
            body: appendBody(seq, job.perRequest, job.startMs),
          }
        : {
            method: 'PATCH',
            path: `${P}/entities/${encodeURIComponent(patchEntityId(seq % job.entities))}/attrs`,
            body: patchBody(seq, job.kind === 'patch' ? job.attrs : 1),
          },
    ),
  });
  agent.destroy();
  post({ type: 'loop', result });
}

/** The sequence number a notification carries: its entity's `power` value. */
function seqOf(body: string): number | undefined {
  try {
    const doc = JSON.parse(body) as { data?: { [ATTR]?: { value?: unknown } }[] };
    const v = doc.data?.[0]?.[ATTR]?.value;
    return typeof v === 'number' ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Sends `send(seq)` at `rate` per second for `ms`, without waiting for answers (open loop). */
async function paced(rate: number, ms: number, send: (seq: number) => void, from = 0): Promise<number> {
  const start = performance.now();
  let n = 0;
  for (;;) {
    const elapsed = performance.now() - start;
    if (elapsed >= ms) break;
    const due = Math.floor((elapsed * rate) / 1000) + 1;
    while (n < due) send(from + n++);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  return n;
}

/** What one paced round records; the receiver writes into the current round's. */
interface Round {
  /** First arrival by sequence number, and every arrival counted. */
  arrived: Map<number, number>;
  received: number;
  lastArrival: number;
  direct: number[];
  directSent: Map<number, number>;
}

const newRound = (): Round => ({
  arrived: new Map(),
  received: 0,
  lastArrival: performance.now(),
  direct: [],
  directSent: new Map(),
});

async function notify(job: WorkerJob & { kind: 'notify' }): Promise<void> {
  let round = newRound();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const at = performance.now();
      res.writeHead(204).end();
      const seq = seqOf(Buffer.concat(chunks).toString('utf8'));
      if (seq === undefined) return;
      if (req.url === '/direct') {
        const t0 = round.directSent.get(seq);
        if (t0 !== undefined) round.direct.push(at - t0);
        return;
      }
      round.received++;
      round.lastArrival = at;
      if (!round.arrived.has(seq)) round.arrived.set(seq, at);
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64, maxFreeSockets: 64 });
  const go = () => new Promise<void>((resolve) => parentPort?.once('message', () => resolve()));
  post({ type: 'ready', port });
  for (const [k, rate] of job.rates.entries()) {
    await go();
    round = newRound();
    // Sequence numbers of round k start at k × 10^7: a late notification of an earlier round is not this one's.
    const result = await notifyRound({ job, rate, from: k * 10_000_000, round: () => round, agent, port });
    post({ type: 'notify', result });
  }
  agent.destroy();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  post({ type: 'done' });
}

function request(
  agent: http.Agent,
  url: URL,
  options: { method: string; path: string; body: string },
  done: (status: number, body: string) => void,
): void {
  const req = http.request(
    {
      agent,
      host: url.hostname,
      port: Number(url.port),
      method: options.method,
      path: options.path,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(options.body) },
    },
    (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => done(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8')));
    },
  );
  req.on('error', (e) => done(0, e.message));
  req.end(options.body);
}

/** One paced round at `rate`: warm-up, measured window, drain, then the direct-POST baseline. */
async function notifyRound(o: {
  job: WorkerJob & { kind: 'notify' };
  rate: number;
  from: number;
  round: () => Round;
  agent: http.Agent;
  port: number;
}): Promise<NotifyResult> {
  const { job, rate, agent } = o;
  const r = o.round();
  const base = new URL(job.base);
  const sentAt = new Map<number, number>();
  const patchMs: number[] = [];
  const accepted = new Set<number>();
  const refused: Record<string, number> = {};
  let refusedSample: string | undefined;
  let measuredFrom = Infinity;
  const update = (seq: number) => {
    const id = job.ids[seq % job.ids.length] ?? '';
    const t0 = performance.now();
    sentAt.set(seq, t0);
    request(
      agent,
      base,
      {
        method: 'PATCH',
        path: `${P}/entities/${encodeURIComponent(id)}/attrs`,
        body: JSON.stringify({ [ATTR]: { type: 'Property', value: seq } }),
      },
      (status, body) => {
        if (t0 >= measuredFrom) patchMs.push(performance.now() - t0);
        if (status >= 200 && status < 300) accepted.add(seq);
        else {
          const k = status === 0 ? 'exception' : String(status);
          refused[k] = (refused[k] ?? 0) + 1;
          refusedSample ??= body.slice(0, 300);
        }
      },
    );
  };
  const progress = setInterval(() => {
    post({
      type: 'progress',
      text: `${sentAt.size.toLocaleString('en-US')} updates sent, ${accepted.size.toLocaleString('en-US')} accepted, ${r.arrived.size.toLocaleString('en-US')} notified`,
    });
  }, 2_000);
  const warm = await paced(rate, job.warmupMs, update, o.from);
  measuredFrom = performance.now();
  const measured = await paced(rate, job.durationMs, update, o.from + warm);
  const sentRate = measured / (job.durationMs / 1000);
  const sent = warm + measured;

  // Drain: until every accepted update is notified, or nothing arrived for a while, or the limit.
  const drainStart = performance.now();
  const answered = () => accepted.size + Object.values(refused).reduce((a, b) => a + b, 0);
  for (;;) {
    const now = performance.now();
    const done = answered() === sent && [...accepted].every((s) => r.arrived.has(s));
    if (done || now - drainStart > job.drainMs) break;
    // Nothing arriving any more: what is missing is lost (or stuck), not late.
    if (answered() === sent && now - r.lastArrival > 10_000) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const drainedMs = performance.now() - drainStart;
  clearInterval(progress);

  const latency: number[] = [];
  for (const [seq, at] of r.arrived) {
    const t0 = sentAt.get(seq);
    if (t0 !== undefined && t0 >= measuredFrom) latency.push(at - t0);
  }
  let lost = 0;
  for (const seq of accepted) if (!r.arrived.has(seq)) lost++;
  let unexpected = 0;
  for (const seq of r.arrived.keys()) if (!accepted.has(seq)) unexpected++;

  // Raw baseline: a notification-sized body POSTed straight to the receiver, same pace.
  const sample = JSON.stringify({
    id: 'urn:ngsi-ld:Notification:00000000-0000-4000-8000-000000000000',
    type: 'Notification',
    subscriptionId: 'urn:ngsi-ld:Subscription:bench',
    notifiedAt: new Date().toISOString(),
    data: [{ id: job.ids[0], type: 'Meter', [ATTR]: { type: 'Property', value: 0 } }],
  });
  const receiver = new URL(`http://127.0.0.1:${o.port}`);
  const directCount = await paced(rate, job.baselineMs, (seq) => {
    r.directSent.set(seq, performance.now());
    request(
      agent,
      receiver,
      { method: 'POST', path: '/direct', body: sample.replace('"value":0', `"value":${seq}`) },
      () => undefined,
    );
  });
  const until = performance.now() + 5_000;
  while (r.direct.length < directCount && performance.now() < until)
    await new Promise((resolve) => setTimeout(resolve, 20));

  return {
    rate,
    sent,
    accepted: accepted.size,
    refused,
    refusedSample,
    received: r.received,
    distinct: r.arrived.size,
    duplicates: r.received - r.arrived.size,
    unexpected,
    lost,
    sentRate,
    patch: summary(patchMs),
    latency: summary(latency),
    drainedMs,
    baseline: { ...summary(r.direct), rate: directCount / (job.baselineMs / 1000) },
  };
}

const job = workerData as WorkerJob;
if (job.kind === 'notify') await notify(job);
else await loop(job);
