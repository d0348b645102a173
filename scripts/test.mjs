#!/usr/bin/env node
// `npm test`: runs every *.test.ts under src/ and test/ with Node's test runner (through tsx),
// in UTC, on embedded PGlite and — when DATABASE_URL is set — on PostgreSQL too.
// `npm test -- <file or folder> …` narrows the run.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;

function collect(path, out) {
  const st = statSync(path);
  if (st.isFile()) {
    if (path.endsWith('.test.ts')) out.push(relative(root, path));
    return out;
  }
  for (const name of readdirSync(path)) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    collect(join(path, name), out);
  }
  return out;
}

const args = process.argv.slice(2);
const targets =
  args.length > 0 ? args.map((a) => join(process.cwd(), a)) : [join(root, 'src'), join(root, 'test')];
const files = targets.flatMap((t) => collect(t, [])).sort();
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
const engines = ['pglite', ...(process.env.DATABASE_URL ? ['postgres'] : [])];
console.log(
  `pujiang tests: ${files.length} files; engines: ${engines.join(' + ')}; ` +
    `NATS: ${process.env.NATS_URL ? 'yes' : 'no (NATS adapter tests skip)'}; ` +
    `MQTT: ${process.env.MQTT_URL ? 'yes' : 'no (MQTT notification tests skip)'}; node ${process.version}`,
);
const result = spawnSync(
  process.execPath,
  [
    '--import',
    'tsx',
    '--test',
    '--test-reporter=spec',
    `--test-concurrency=${process.env.TEST_CONCURRENCY ?? '2'}`,
    ...files,
  ],
  { cwd: root, stdio: 'inherit', env: { ...process.env, TZ: 'UTC', NODE_ENV: 'test' } },
);
process.exit(result.status ?? 1);
