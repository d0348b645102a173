/**
 * The module map of BRIEF.md, enforced: a module imports only modules to its left (kernel imports
 * no one), only through their `index.ts`, and `process.env` is read in one file.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, it } from 'node:test';

const ORDER = ['kernel', 'trust', 'workflow', 'twin', 'iot', 'ops', 'services', 'data', 'sim'];
const root = resolve(new URL('..', import.meta.url).pathname);
const src = join(root, 'src');

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs: string[] = [];
  for (const m of text.matchAll(/(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g)) if (m[1]) specs.push(m[1]);
  return specs.filter((s) => s.startsWith('.'));
}

/** The module a path under `srcDir` belongs to, or undefined for the composition root. */
function moduleOf(srcDir: string, path: string): string | undefined {
  const rel = relative(srcDir, path).split(sep);
  return rel.length > 1 ? rel[0] : undefined;
}

/** Every import in `srcDir` that breaks the module map. */
function importViolations(srcDir: string): string[] {
  const violations: string[] = [];
  for (const file of files(srcDir)) {
    const from = moduleOf(srcDir, file);
    for (const spec of importsOf(file)) {
      const target = resolve(dirname(file), spec);
      if (!target.startsWith(srcDir + sep)) {
        if (!file.endsWith('.test.ts') && from !== undefined)
          violations.push(`${relative(srcDir, file)} imports ${spec} outside src/`);
        continue;
      }
      const to = moduleOf(srcDir, target);
      if (from === undefined || to === undefined || from === to) continue;
      if (ORDER.indexOf(to) > ORDER.indexOf(from))
        violations.push(`${relative(srcDir, file)}: module ${from} must not import ${to} (to its right)`);
      if (relative(join(srcDir, to), target) !== 'index.ts')
        violations.push(`${relative(srcDir, file)}: imports ${spec}; use ${to}'s index.ts`);
    }
  }
  return violations;
}

describe('architecture', () => {
  it('has only the modules of the module map under src/', () => {
    const dirs = readdirSync(src).filter((n) => statSync(join(src, n)).isDirectory());
    for (const d of dirs)
      assert.ok(ORDER.includes(d), `src/${d} is not a module of the map (${ORDER.join(', ')})`);
  });

  it('imports only leftward modules, and only through their index.ts', () => {
    assert.deepEqual(importViolations(src), []);
  });

  it('catches a rightward import and a deep import (the rule itself is tested)', () => {
    const fake = mkdtempSync(join(tmpdir(), 'pj-arch-'));
    mkdirSync(join(fake, 'kernel', 'db'), { recursive: true });
    mkdirSync(join(fake, 'twin'));
    writeFileSync(join(fake, 'kernel', 'db', 'x.ts'), "import { a } from '../../twin/index.ts';\n");
    writeFileSync(join(fake, 'kernel', 'index.ts'), 'export {};\n');
    writeFileSync(
      join(fake, 'twin', 'index.ts'),
      "export { b } from '../kernel/db/x.ts';\nimport '../kernel/index.ts';\n",
    );
    assert.deepEqual(importViolations(fake), [
      'kernel/db/x.ts: module kernel must not import twin (to its right)',
      "twin/index.ts: imports ../kernel/db/x.ts; use kernel's index.ts",
    ]);
  });

  it('reads process.env in one file only', () => {
    const allowed = join(src, 'kernel', 'config', 'config.ts');
    const offenders = [...files(src), ...files(join(root, 'test')), ...files(join(root, 'bench'))].filter(
      (f) =>
        f !== allowed &&
        f !== new URL(import.meta.url).pathname &&
        /process\.env\b/.test(readFileSync(f, 'utf8')),
    );
    assert.deepEqual(
      offenders.map((f) => relative(root, f)),
      [],
    );
  });
});
