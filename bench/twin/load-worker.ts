/** The worker thread of `httpLoad` (load.ts): runs the closed loop and posts its result. */
import { parentPort, workerData } from 'node:worker_threads';
import { closedLoop, httpOp, keepAliveAgent, type HttpCall, type HttpLoad } from './load.ts';

const load = workerData as HttpLoad;
const agent = keepAliveAgent(load.concurrency);
const result = await closedLoop({
  label: load.label,
  concurrency: load.concurrency,
  warmupMs: load.warmupMs,
  durationMs: load.durationMs,
  op: httpOp(agent, new URL(load.base), (seq) => load.calls[seq % load.calls.length] as HttpCall),
});
agent.destroy();
parentPort?.postMessage(result);
