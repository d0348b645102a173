/**
 * A closed-loop load generator for bench/twin: `concurrency` workers each issue one operation, wait
 * for its answer and issue the next, through a warm-up and then a measured window. HTTP operations
 * use Node's own `http` over keep-alive connections (one per worker) and run in a worker thread
 * (`httpLoad`), as external clients would, so the broker's event loop serves requests only; the
 * generator still runs on the same cores, so its cost is part of what the machine does. Raw-driver
 * operations are plain async functions on the main thread, measured the same way.
 */
import http from 'node:http';
import { Worker } from 'node:worker_threads';
import { existsSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';

/** One operation; resolves to its status (the HTTP code; 200 for a driver call) or throws. */
export type Op = (seq: number) => Promise<number>;

/** A refused operation: counted under `status`, with its first answer kept as a sample. */
export class OpFailure extends Error {
  readonly status: string;
  constructor(status: string, detail: string) {
    super(detail);
    this.status = status;
  }
}

export interface LoadResult {
  concurrency: number;
  /** Operations completed inside the measured window. */
  completed: number;
  seconds: number;
  rate: number;
  /** Latency percentiles and mean, milliseconds. */
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
  /** Completions by status ('200', '204', '500', 'exception' …). */
  statuses: Record<string, number>;
  /** Completions whose status is not 2xx. */
  errors: number;
  /** The first answer of each failing status. */
  samples: Record<string, string>;
  /** CPU over the window, in cores: this process, and the whole machine (Linux). */
  processCores: number;
  machineCores: number | undefined;
}

/** Busy and total jiffies of the machine (Linux /proc/stat), or undefined elsewhere. */
function machineTicks(): { busy: number; total: number } | undefined {
  if (!existsSync('/proc/stat')) return undefined;
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: total - idle, total };
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? NaN;
}

/**
 * Runs `op` from `concurrency` workers for `warmupMs` (not measured) and then `durationMs`;
 * latencies and statuses count for operations that end inside the measured window. Prints a
 * progress line on a terminal.
 */
export async function closedLoop(options: {
  label: string;
  concurrency: number;
  warmupMs: number;
  durationMs: number;
  op: Op;
}): Promise<LoadResult> {
  const { concurrency, op } = options;
  let latencies = new Float64Array(1 << 16);
  let count = 0;
  const statuses: Record<string, number> = {};
  const samples: Record<string, string> = {};
  let seq = 0;
  const start = performance.now();
  const warmEnd = start + options.warmupMs;
  const end = warmEnd + options.durationMs;
  // CPU is sampled by the first operation to finish past each edge of the window, not by timers:
  // a driver whose promises resolve without yielding to the event loop would hold timers back.
  let cpu0 = process.cpuUsage();
  let ticks0 = machineTicks();
  let cpuFrom = 0;
  let cpu1 = cpu0;
  let ticks1 = ticks0;
  let cpuTo = 0;
  const record = (status: string, ms: number) => {
    if (count === latencies.length) {
      const bigger = new Float64Array(latencies.length * 2);
      bigger.set(latencies);
      latencies = bigger;
    }
    latencies[count++] = ms;
    statuses[status] = (statuses[status] ?? 0) + 1;
  };
  const worker = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      let status: string;
      try {
        status = String(await op(seq++));
      } catch (e) {
        status = e instanceof OpFailure ? e.status : 'exception';
        samples[status] ??= e instanceof Error ? e.message.slice(0, 300) : String(e);
      }
      const t1 = performance.now();
      if (t1 >= warmEnd && cpuFrom === 0) {
        cpu0 = process.cpuUsage();
        ticks0 = machineTicks();
        cpuFrom = t1;
      }
      if (t1 >= end && cpuTo === 0) {
        cpu1 = process.cpuUsage();
        ticks1 = machineTicks();
        cpuTo = t1;
      }
      if (t1 >= warmEnd && t1 <= end) record(status, t1 - t0);
    }
  };
  const progress = process.stdout.isTTY
    ? setInterval(() => {
        const now = performance.now();
        const phase = now < warmEnd ? 'warm-up' : `${((now - warmEnd) / 1000).toFixed(0)} s`;
        const rate = now > warmEnd ? (count / (now - warmEnd)) * 1000 : 0;
        process.stdout.write(
          `\r    ${options.label}: ${phase}, ${count.toLocaleString('en-US')} done, ${Math.round(rate).toLocaleString('en-US')}/s    `,
        );
      }, 500)
    : undefined;
  await Promise.all(Array.from({ length: concurrency }, worker));
  if (progress) {
    clearInterval(progress);
    process.stdout.write('\r\x1b[K');
  }
  if (cpuTo === 0) {
    cpu1 = process.cpuUsage();
    ticks1 = machineTicks();
    cpuTo = performance.now();
  }
  const cpuSeconds = (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / 1e6;
  const cpuSpan = (cpuTo - cpuFrom) / 1000;
  const seconds = options.durationMs / 1000;
  const sorted = latencies.slice(0, count).sort();
  const errors = Object.entries(statuses)
    .filter(([s]) => !/^2\d\d$/.test(s))
    .reduce((a, [, n]) => a + n, 0);
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    concurrency,
    completed: count,
    seconds,
    rate: count / seconds,
    p50: percentile(sorted, 0.5),
    p95: percentile(sorted, 0.95),
    p99: percentile(sorted, 0.99),
    max: percentile(sorted, 1),
    mean: count > 0 ? sum / count : NaN,
    statuses,
    errors,
    samples,
    processCores: cpuSpan > 0 ? cpuSeconds / cpuSpan : NaN,
    machineCores:
      ticks0 && ticks1 && ticks1.total > ticks0.total
        ? ((ticks1.busy - ticks0.busy) / (ticks1.total - ticks0.total)) * cpus().length
        : undefined,
  };
}

export interface HttpCall {
  method: 'GET' | 'POST' | 'PATCH';
  path: string;
  /** The body; `SEQ` in it becomes the operation's sequence number (7 digits), e.g. for fresh ids. */
  body?: string;
}

/** Replaced by the operation's sequence number in a call's body. */
export const SEQ = '{{seq}}';

/** What `httpLoad` runs: `calls[seq % calls.length]` against `base`. */
export interface HttpLoad {
  label: string;
  concurrency: number;
  warmupMs: number;
  durationMs: number;
  base: string;
  calls: HttpCall[];
}

/** Runs an HTTP closed loop in a worker thread (see the top of this file). */
export function httpLoad(load: HttpLoad): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./load-worker.mjs', import.meta.url), { workerData: load });
    worker.once('message', (result: LoadResult) => resolve(result));
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (code !== 0) reject(new Error(`load worker exited with ${code}`));
    });
  });
}

/** An operation sending the request `make(seq)` builds; a non-2xx answer throws `OpFailure`. */
export function httpOp(agent: http.Agent, base: URL, make: (seq: number) => HttpCall): Op {
  const host = base.hostname;
  const port = Number(base.port);
  return (seq) =>
    new Promise<number>((resolve, reject) => {
      const call = make(seq);
      const body = call.body?.replaceAll(SEQ, String(seq).padStart(7, '0'));
      const headers: http.OutgoingHttpHeaders =
        body === undefined
          ? {}
          : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
      const req = http.request(
        { agent, host, port, method: call.method, path: call.path, headers },
        (res) => {
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) {
            res.resume();
            res.on('end', () => resolve(status));
          } else {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () =>
              reject(new OpFailure(String(status), Buffer.concat(chunks).toString('utf8'))),
            );
          }
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
}

/** A keep-alive agent with one connection per worker. */
export function keepAliveAgent(connections: number): http.Agent {
  return new http.Agent({ keepAlive: true, maxSockets: connections, maxFreeSockets: connections });
}
