/** Runs the `pujiang` CLI as a child process, for tests of commands as an operator meets them. */
import { spawn } from 'node:child_process';
import { readProcessEnv } from '../../src/kernel/index.ts';

const bin = new URL('../../bin/pujiang.mjs', import.meta.url).pathname;

export interface Run {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the CLI without the run's DATABASE_URL/NATS_URL (tests pass what they mean); `onLine` may
 * act on output lines (e.g. send a signal once it is listening); `input` is written to stdin.
 */
export function pujiang(
  args: string[],
  env: Record<string, string>,
  onLine?: (line: string, kill: (signal: NodeJS.Signals) => void) => void,
  timeoutMs = 90_000,
  input?: string,
): Promise<Run> {
  const base = readProcessEnv();
  delete base['DATABASE_URL'];
  delete base['NATS_URL'];
  const proc = spawn(process.execPath, [bin, ...args], {
    env: { ...base, LOG_FORMAT: 'json', ...env },
    stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  if (input !== undefined) proc.stdin?.end(input);
  const { stdout: out, stderr: err } = proc;
  if (!out || !err) throw new Error('spawn gave no output pipes');
  let stdout = '';
  let stderr = '';
  let pending = '';
  out.on('data', (d: Buffer) => {
    stdout += d.toString();
    pending += d.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const l of lines) onLine?.(l, (s) => proc.kill(s));
  });
  err.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve) =>
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    }),
  );
}
