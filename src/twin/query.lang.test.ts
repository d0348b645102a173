/**
 * The NGSI-LD query languages: parser unit tests (good input, bad input with positions, hostile
 * input), then evaluation of q, type and scope expressions against hand-made entities in the
 * storage format, on every engine of this run.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql, type RawBuilder } from 'kysely';
import { engines, type TestDatabase } from '../../test/helpers/engines.ts';
import { NgsiError } from './errors.ts';
import {
  compileQ,
  parseAttrList,
  parseQ,
  parseScopeQ,
  parseTypeSelection,
  qToSql,
  QUERY_LIMITS,
  scopeQToSql,
  typeNamesIn,
  typeSelectionToSql,
  type QNode,
  type QTerm,
} from './query.lang.ts';
import { seededRandom } from '../../test/helpers/random.ts';

const EX = 'https://example.org/';
const NGSI_LD = 'https://uri.etsi.org/ngsi-ld/';

/** A stand-in for the request's @context: `ex:` and `ngsi-ld:` prefixes, everything else under EX. */
function expand(term: string): string {
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(term) || term.startsWith('urn:')) return term;
  if (term.startsWith('ex:')) return EX + term.slice(3);
  if (term.startsWith('ngsi-ld:')) return NGSI_LD + term.slice(8);
  return EX + term;
}

/** Asserts BadRequestData whose detail matches `detail`. */
function rejects(fn: () => unknown, detail: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof NgsiError, `not an NgsiError: ${String(e)}`);
    assert.equal(e.type, 'BadRequestData');
    assert.equal(e.status, 400);
    assert.match(e.detail, detail);
    return true;
  });
}

function term(n: QNode): QTerm {
  if (n.kind === 'and' || n.kind === 'or') throw new Error('expected a single term');
  return n as QTerm; // TypeScript does not narrow a two-valued discriminant checked twice
}

describe('q parser', () => {
  it('parses terms, operators and AND-before-OR structure', () => {
    assert.deepEqual(parseQ('(a;b)|c==1'), {
      kind: 'or',
      items: [
        {
          kind: 'and',
          items: [
            {
              kind: 'exists',
              negated: false,
              position: 1,
              path: { attr: 'a', subAttrs: [], member: undefined, keys: [] },
            },
            {
              kind: 'exists',
              negated: false,
              position: 3,
              path: { attr: 'b', subAttrs: [], member: undefined, keys: [] },
            },
          ],
        },
        {
          kind: 'compare',
          op: '==',
          value: { kind: 'number', text: '1' },
          position: 6,
          path: { attr: 'c', subAttrs: [], member: undefined, keys: [] },
        },
      ],
    });
    const t = parseQ('a;b|c;d');
    assert.equal(t.kind, 'or');
    assert.deepEqual(
      t.items.map((i) => i.kind),
      ['and', 'and'],
      'AND binds tighter than OR',
    );
    for (const op of ['==', '!=', '>', '>=', '<', '<='] as const) {
      const c = term(parseQ(`speed${op}5`));
      assert.equal(c.kind === 'compare' && c.op, op);
    }
    assert.deepEqual(term(parseQ('!speed')), {
      kind: 'exists',
      negated: true,
      position: 0,
      path: { attr: 'speed', subAttrs: [], member: undefined, keys: [] },
    });
    // Spaces between tokens are allowed; only positions differ.
    const unpositioned = (n: QNode): string =>
      JSON.stringify(n, (k, v: unknown) => (k === 'position' ? 0 : v));
    assert.equal(unpositioned(parseQ(' ( a == 1 ; b ) ')), unpositioned(parseQ('(a==1;b)')));
  });

  it('reads attribute paths: sub-attributes, instance members, compound members, IRIs', () => {
    const path = (q: string) => term(parseQ(q)).path;
    assert.deepEqual(path('a.b.c'), { attr: 'a', subAttrs: ['b', 'c'], member: undefined, keys: [] });
    assert.deepEqual(path('a.observedAt'), { attr: 'a', subAttrs: [], member: 'observedAt', keys: [] });
    assert.deepEqual(path('a.b.unitCode'), { attr: 'a', subAttrs: ['b'], member: 'unitCode', keys: [] });
    assert.deepEqual(path('a[b][c]'), { attr: 'a', subAttrs: [], member: undefined, keys: ['b', 'c'] });
    assert.deepEqual(path('a[b.c]'), path('a[b][c]'));
    assert.deepEqual(path('a.s[k]'), { attr: 'a', subAttrs: ['s'], member: undefined, keys: ['k'] });
    assert.deepEqual(path('ngsi-ld:name'), {
      attr: 'ngsi-ld:name',
      subAttrs: [],
      member: undefined,
      keys: [],
    });
    assert.deepEqual(path('https://example.org/speed>10'), {
      attr: 'https://example.org/speed',
      subAttrs: [],
      member: undefined,
      keys: [],
    });
    // Dots inside full IRIs stay part of them unless an IRI or an instance member follows.
    assert.deepEqual(path('https://smartdatamodels.org/dataModel.Weather/temperature.observedAt<1'), {
      attr: 'https://smartdatamodels.org/dataModel.Weather/temperature',
      subAttrs: [],
      member: 'observedAt',
      keys: [],
    });
    assert.deepEqual(path('https://a.org/x.https://b.org/y==1'), {
      attr: 'https://a.org/x',
      subAttrs: ['https://b.org/y'],
      member: undefined,
      keys: [],
    });
    assert.deepEqual(path('https://a.org/ns#x[k]'), {
      attr: 'https://a.org/ns#x',
      subAttrs: [],
      member: undefined,
      keys: ['k'],
    });
  });

  it('reads values: numbers, strings, booleans, ranges, lists, date-times, URIs, patterns', () => {
    const value = (q: string) => {
      const t = term(parseQ(q));
      assert.equal(t.kind, 'compare');
      return t.value;
    };
    assert.deepEqual(value('a==-1.5e+3'), { kind: 'number', text: '-1.5e3' });
    assert.deepEqual(value('a==007'), { kind: 'number', text: '7' }, 'jsonpath refuses leading zeros');
    assert.deepEqual(value('a=="x \\"y\\" \\\\ z"'), { kind: 'string', value: 'x "y" \\ z' });
    assert.deepEqual(value('a=="semi;pipe|paren)"'), { kind: 'string', value: 'semi;pipe|paren)' });
    assert.deepEqual(value('a==true'), { kind: 'boolean', value: true });
    assert.deepEqual(value('a==1..10'), {
      kind: 'range',
      from: { kind: 'number', text: '1' },
      to: { kind: 'number', text: '10' },
    });
    assert.deepEqual(value('a=="x",2,false'), {
      kind: 'list',
      items: [
        { kind: 'string', value: 'x' },
        { kind: 'number', text: '2' },
        { kind: 'boolean', value: false },
      ],
    });
    assert.deepEqual(value('a>2018-01-01T00:00:00Z'), {
      kind: 'dateTime',
      value: '2018-01-01T00:00:00.000Z',
    });
    assert.deepEqual(value('a>2018-01-01T08:00:00+08:00'), {
      kind: 'dateTime',
      value: '2018-01-01T00:00:00.000Z',
    });
    assert.deepEqual(value('a>2018-01-01T00:00'), { kind: 'dateTime', value: '2018-01-01T00:00:00.000Z' });
    assert.deepEqual(value('a==2018-01-01'), { kind: 'date', value: '2018-01-01' });
    assert.deepEqual(value('a<12:30:00Z'), { kind: 'time', value: '12:30:00Z' });
    assert.deepEqual(value('a==2018-01-01T00:00:00.000Z..2018-12-31T00:00:00.000Z'), {
      kind: 'range',
      from: { kind: 'dateTime', value: '2018-01-01T00:00:00.000Z' },
      to: { kind: 'dateTime', value: '2018-12-31T00:00:00.000Z' },
    });
    assert.deepEqual(value('rel==urn:ngsi-ld:Parking:1'), { kind: 'string', value: 'urn:ngsi-ld:Parking:1' });
    assert.deepEqual(value('a==Mercedes'), { kind: 'string', value: 'Mercedes' });
    const match = term(parseQ('a~=(?i)^Merc(e|a)des.*'));
    assert.deepEqual(match.kind === 'match' && [match.pattern, match.caseInsensitive], [
      '^Merc(e|a)des.*',
      true,
    ]);
    const quoted = term(parseQ('a!~="x|y;z"'));
    assert.deepEqual(quoted.kind === 'match' && [quoted.pattern, quoted.negated], ['x|y;z', true]);
    // An unquoted pattern ends at a top-level ';' or '|', or at the ')' of the enclosing group.
    const inGroup = parseQ('(a~=[)]x(y|z);b)');
    assert.equal(inGroup.kind, 'and');
    const first = inGroup.items[0];
    assert.deepEqual(first && 'pattern' in first ? first.pattern : undefined, '[)]x(y|z)');
  });

  it('refuses syntax errors with the position', () => {
    const cases: [string, RegExp][] = [
      ['speed>', /expected a value but found end of input at the end/],
      ['speed==10)', /unexpected '\)' without a matching '\(' at position 10/],
      ['(speed==10', /expected '\)' to close the '\(' at position 1 but found end of input/],
      ['((a) b)', /expected '\)' to close the '\(' at position 1 but found "b" at position 6/],
      ['speed=10', /'=' is not an operator \(use '=='\) at position 6/],
      ['speed~10', /'~' is not an operator/],
      ['a b', /expected an operator, ';', '\|' or '\)' .* at position 3/],
      ['a==1..', /expected a value but found end of input/],
      ['a>1..5', /a range needs '==' or '!=', not '>' at position 3/],
      ['a<1,2', /a value list needs '==' or '!='/],
      ['a==1.."z"', /a range needs two numbers, strings, dates or times of the same kind at position 7/],
      ['a>true', /'>' needs a number, a string or a date\/time, not a boolean at position 3/],
      ['a=="open', /unterminated string at position 4/],
      ['a==b==c', /"b==c" is not a valid value .* at position 4/],
      ["a=='x'", /"'x'" is not a valid value/],
      ['!a==1', /a negated term \('!attr'\) cannot have an operator at position 3/],
      ['!(a)', /expected an attribute name but found "\(" at position 2/],
      ['a;', /expected an attribute name but found end of input/],
      ['|a', /expected an attribute name but found "\|" at position 1/],
      ['a..b', /unexpected '\.\.' in an attribute path at position 2/],
      ['a.', /expected an attribute name/],
      ['a.observedAt.x', /nothing may follow the instance member 'observedAt' at position 13/],
      ['a.observedAt[x]', /'\[' cannot follow the instance member/],
      ['a[b', /'\[' at position 2 needs a member name and a closing '\]'/],
      ['a[]', /empty member name inside \[ \] at position 3/],
      ['a[b].c', /'\.' cannot follow '\[\.\.\.\]'/],
      ['a~=', /expected a regular expression pattern/],
      ['a~=(ab', /invalid pattern: unclosed '\('/],
      ['a~="\\1"', /invalid pattern: unsupported escape \\1/],
      ['a~="[z-a]"', /invalid pattern: invalid range/],
      ['a~="(?<n>x)"', /only '\(…\)' and '\(\?:…\)' groups are supported/],
      ['a~="*a"', /nothing to repeat/],
      ['a~="a{3,2}"', /repetition bounds/],
      ['a~="[[:alpha:]]"', /POSIX classes/],
      ['a~="[\\d-z]"', /invalid pattern: a '-' after \\d, \\w or \\s must be escaped at position 8/],
      ['a~="x\\"[z-a]"', /invalid pattern: invalid range in a bracket expression at position 10/],
      ['a~=[\\w-a]', /a '-' after .* at position 7/],
      ['a~=""', /expected a regular expression pattern at position 4/],
      ['a==2023-02-30', /2023-02-30 is not a valid date at position 4/],
      ['a==2023-01-01T25:00:00Z', /is not a valid date-time/],
      ['a==25:00', /is not a valid time/],
      ['a==1e999', /the number 1e999 is out of range/],
      ['a==1\n', /character U\+000A is not allowed at position 5/],
      ['a==\u0000', /character U\+0000 is not allowed/],
      ['a=="\ud800"', /character U\+D800 is not allowed at position 5/],
      ['', /the expression is empty/],
      ['   ', /the expression is empty/],
    ];
    for (const [q, detail] of cases) rejects(() => parseQ(q), detail);
  });

  it('refuses hostile input: injections, deep nesting, oversize, too many terms', () => {
    rejects(() => parseQ('a==1) || (true'), /unexpected '\)' without a matching '\(' at position 5/);
    rejects(() => parseQ("speed==1'); drop table qtest; --"), /is not a valid value/);
    rejects(() => parseQ('a=="x") || exists($) || ("'), /unexpected '\)'/);
    rejects(() => parseQ('a[x) || (true]'), /needs a member name and a closing/);
    rejects(() => parseQ('a=="unbalanced'), /unterminated string/);
    rejects(() => parseQ('((((a)))'), /expected '\)' to close/);
    // 10k-deep parentheses fail on size; 2,000-deep ones (under 4 KiB) on depth, before recursing.
    rejects(
      () => parseQ(`${'('.repeat(10_000)}a${')'.repeat(10_000)}`),
      /too long \(20001 bytes; at most 4096\)/,
    );
    rejects(
      () => parseQ(`${'('.repeat(2000)}a${')'.repeat(2000)}`),
      /nested more than 32 deep at position 33/,
    );
    const deep = (n: number) => `${'('.repeat(n)}a${')'.repeat(n)}`;
    assert.doesNotThrow(() => parseQ(deep(QUERY_LIMITS.maxDepth)));
    rejects(() => parseQ(deep(QUERY_LIMITS.maxDepth + 1)), /nested more than 32 deep/);
    rejects(() => parseQ(`a=="${'x'.repeat(4096)}"`), /too long/);
    rejects(() => parseQ(`a=="${'é'.repeat(2048)}"`), /too long \(4101 bytes/);
    rejects(() => parseQ(Array(300).fill('a').join(';')), /more than 256 query terms/);
  });

  it('compiles to one jsonpath predicate with escaped literals', () => {
    const jp = compileQ(parseQ('name=="x\\"y\\\\z\')"'), expand);
    assert.ok(jp.includes(`$."${EX}name"[*].value[*] ? (@ == "x\\"y\\\\z')")`), jp);
    assert.equal(
      compileQ(parseQ('!a;a.observedAt'), expand),
      `(!(exists($."${EX}a"[*])) && exists($."${EX}a"[*]."observedAt"))`,
    );
    assert.ok(
      compileQ(parseQ('a~=(?i)^x'), expand).includes('? (@ like_regex "^x" flag "i")'),
      'the (?i) prefix becomes the i flag',
    );
    assert.ok(compileQ(parseQ('a[k]==1'), expand).includes(`$."${EX}a"[*].value."k"[*] ? (@ == 1)`));
    // A vocabulary comparison also tries the expanded literal.
    assert.ok(
      compileQ(parseQ('cat==commercial'), expand).includes(
        `.vocab[*] ? (@ == "commercial" || @ == "${EX}commercial")`,
      ),
    );
    rejects(() => compileQ(parseQ('a'), () => 'bad\u0000'), /invalid characters/);
  });
});

describe('type selection parser', () => {
  it('parses , and | as OR, ; as AND, parentheses; lists the names', () => {
    assert.deepEqual(parseTypeSelection('(Building;Home)|Vehicle'), {
      kind: 'or',
      items: [
        {
          kind: 'and',
          items: [
            { kind: 'type', name: 'Building' },
            { kind: 'type', name: 'Home' },
          ],
        },
        { kind: 'type', name: 'Vehicle' },
      ],
    });
    assert.deepEqual(parseTypeSelection('A,B|C'), {
      kind: 'or',
      items: ['A', 'B', 'C'].map((name) => ({ kind: 'type', name })),
    });
    assert.deepEqual(typeNamesIn(parseTypeSelection('(A;ex:B)|https://x.org/C,A')), [
      'A',
      'ex:B',
      'https://x.org/C',
    ]);
  });

  it('refuses bad selections with the position', () => {
    rejects(() => parseTypeSelection('A,'), /type: expected a type name but found end of input/);
    rejects(() => parseTypeSelection('(A;B'), /expected '\)' to close the '\(' at position 1/);
    rejects(() => parseTypeSelection('A)'), /unexpected '\)' without a matching '\(' at position 2/);
    rejects(() => parseTypeSelection("Vehicle');drop"), /"Vehicle'" is not a valid name at position 1/);
    rejects(() => parseTypeSelection('A B'), /unexpected "B" at position 3/);
    rejects(() => parseTypeSelection(`${'('.repeat(40)}A${')'.repeat(40)}`), /nested more than 32 deep/);
    rejects(() => parseTypeSelection(''), /type: the expression is empty/);
  });
});

describe('scope query parser', () => {
  it('parses exact, + and # patterns combined with , | ;', () => {
    assert.deepEqual(parseScopeQ('/Madrid/#,/A/+/B;C'), {
      kind: 'or',
      items: [
        { kind: 'scope', levels: ['Madrid'], descendants: true },
        {
          kind: 'and',
          items: [
            { kind: 'scope', levels: ['A', '+', 'B'], descendants: false },
            { kind: 'scope', levels: ['C'], descendants: false },
          ],
        },
      ],
    });
    assert.deepEqual(parseScopeQ('/#'), { kind: 'scope', levels: [], descendants: true });
  });

  it('refuses bad scopes with the position', () => {
    rejects(() => parseScopeQ('/Madrid//x'), /scopeQ: empty scope level at position 9/);
    rejects(() => parseScopeQ('/Madrid/'), /empty scope level/);
    rejects(() => parseScopeQ('/#/x'), /'#' may only be the last level of a scope at position 2/);
    rejects(() => parseScopeQ('/a+b'), /invalid scope level "a\+b"/);
    rejects(() => parseScopeQ('/Madrid Norte'), /unexpected "N" at position 9/);
    rejects(
      () => parseScopeQ("/Madrid') or true --"),
      /unexpected '\)' without a matching '\(' at position 9/,
    );
    rejects(() => parseScopeQ('(/A'), /expected '\)' to close/);
  });
});

describe('attribute lists', () => {
  it('splits, trims, de-duplicates, concatenates repeated parameters', () => {
    assert.equal(parseAttrList(undefined), undefined);
    assert.deepEqual(parseAttrList(' a, b ,a,https://x.org/y#z'), ['a', 'b', 'https://x.org/y#z']);
    assert.deepEqual(parseAttrList(['a,b', 'c,a']), ['a', 'b', 'c']);
    assert.deepEqual(parseAttrList('id,type,ngsi-ld:name'), ['id', 'type', 'ngsi-ld:name']);
    const many = Array.from({ length: 256 }, (_, i) => `a${i}`);
    assert.equal(parseAttrList(many.join(','))?.length, 256);
  });

  it('refuses empty items, invalid characters and overlong lists', () => {
    rejects(() => parseAttrList('a,,b'), /attrs: empty name at position 3/);
    rejects(() => parseAttrList(''), /attrs: empty name at position 1/);
    rejects(() => parseAttrList('a,'), /empty name/);
    rejects(() => parseAttrList('a, b c', 'pick'), /pick: "b c" at position 4 is not a valid attribute name/);
    rejects(() => parseAttrList(['a', 'x;y'], 'omit'), /omit: "x;y" at position 1 of occurrence 2/);
    for (const bad of ['a=b', 'a(b)', 'a|b', 'a"b', "a'b", 'a<b>', 'a[0]', 'a!', 'a~', 'a&b', 'a\\b'])
      rejects(() => parseAttrList(bad), /is not a valid attribute name/);
    const many = Array.from({ length: 257 }, (_, i) => `a${i}`);
    rejects(() => parseAttrList(many.join(',')), /more than 256 names/);
  });
});

// ---------------------------------------------------------------------------------------------
// Evaluation against a real database

/** Random q expressions and quoted patterns glued from grammar fragments. */
function fuzzInputs(count: number): string[] {
  const random = seededRandom(20240601);
  const pick = (list: string[]): string => list[Math.floor(random() * list.length)] ?? '';
  const glue = (list: string[], max: number) =>
    Array.from({ length: 1 + Math.floor(random() * max) }, () => pick(list)).join('');
  const q = ['a', 'speed', '.', '[', ']', '==', '!=', '~=', '!~=', '>', '<=', ';', '|', '(', ')', '"'];
  q.push('\\', '1', '..', ',', '-', 'e', '?', '*', '+', '{', '}', '^', '$', ':', '/', 'https://a.org/b');
  q.push('observedAt', ' ', 'T', 'Z', '2020-01-01', '12:00', '(?i)', 'é', '!', '#', '&', "'");
  const re = ['a', '.', '*', '+', '?', '(', ')', '(?:', '[', ']', '[^', 'a-z', '-', '\\d', '\\D', '\\w'];
  re.push('\\s', '\\.', '\\(', '\\]', '{2}', '{1,3}', '{,2}', '|', '^', '$', 'é', '\\u00e9', '\\-', '\\\\');
  re.push('\\w-', '-]', '😀', '[:', '"');
  return Array.from({ length: count }, (_, i) => (i % 2 === 0 ? glue(q, 10) : `a~="${glue(re, 8)}"`));
}

type Attrs = Record<string, unknown[]>;
const P = (value: unknown, more: Record<string, unknown> = {}) => ({ type: 'Property', value, ...more });
const R = (object: unknown, more: Record<string, unknown> = {}) => ({
  type: 'Relationship',
  object,
  ...more,
});
const DT = (s: string) => ({ '@type': 'DateTime', '@value': s });
const a = (entries: Record<string, unknown>): Attrs =>
  Object.fromEntries(
    Object.entries(entries).map(([k, v]) => [k.includes('://') ? k : EX + k, Array.isArray(v) ? v : [v]]),
  );
const id = (n: number) => `urn:ngsi-ld:T:${String(n).padStart(2, '0')}`;
const types = (...t: string[]) => t.map((x) => EX + x);

interface Row {
  n: number;
  types: string[];
  scopes: string[] | null;
  attrs: Attrs;
}

const ROWS: Row[] = [
  {
    n: 1,
    types: types('Vehicle'),
    scopes: ['/Madrid'],
    attrs: a({ speed: P(10), brandName: P('Mercedes') }),
  },
  {
    n: 2,
    types: types('Vehicle'),
    scopes: ['/Madrid/Gardens'],
    attrs: a({ speed: P(50), brandName: P('BMW') }),
  },
  {
    n: 3,
    types: types('Vehicle'),
    scopes: ['/Madrid/Gardens/ParqueNorte'],
    attrs: a({ speed: P([5, 120]), brandName: P('mercedes-benz') }),
  },
  {
    n: 4,
    types: types('Vehicle', 'Car'),
    scopes: ['/Shanghai/Pudong'],
    attrs: a({ speed: [P(30, { datasetId: 'urn:ds:gps' }), P(80, { datasetId: 'urn:ds:radar' })] }),
  },
  {
    n: 5,
    types: types('Building'),
    scopes: ['/Shanghai'],
    attrs: a({ name: { type: 'LanguageProperty', languageMap: { en: 'Town hall', zh: '市政厅' } } }),
  },
  {
    n: 6,
    types: types('Building', 'Home'),
    scopes: ['/Shanghai/Huangpu', '/Public'],
    attrs: a({ address: P({ streetAddress: 'Main St 1', city: 'Shanghai', geo: { floor: 3 } }) }),
  },
  {
    n: 7,
    types: types('Home'),
    scopes: [],
    attrs: a({
      address: P({ city: 'Madrid', zip: '28001' }),
      temperature: P(21.5, { observedAt: '2020-06-01T12:00:00.000Z', unitCode: 'CEL' }),
    }),
  },
  {
    n: 8,
    types: types('Home'),
    scopes: null,
    attrs: a({
      temperature: P(25, {
        observedAt: '2021-01-01T00:00:00.000Z',
        unitCode: 'FAH',
        [`${EX}accuracy`]: P(0.5, { observedAt: '2021-01-01T00:00:00.000Z' }),
      }),
    }),
  },
  {
    n: 9,
    types: types('Sensor'),
    scopes: null,
    attrs: a({ isParked: R('urn:ngsi-ld:Parking:1', { [`${EX}providedBy`]: R('urn:ngsi-ld:Person:Bob') }) }),
  },
  { n: 10, types: types('Sensor'), scopes: null, attrs: a({ isParked: R('urn:ngsi-ld:Parking:2') }) },
  {
    n: 11,
    types: types('Sensor'),
    scopes: null,
    attrs: a({ refs: R(['urn:ngsi-ld:Parking:3', 'urn:ngsi-ld:Parking:1']) }),
  },
  {
    n: 12,
    types: types('Vehicle'),
    scopes: null,
    attrs: a({ category: { type: 'VocabProperty', vocab: `${EX}commercial` } }),
  },
  {
    n: 13,
    types: types('Vehicle'),
    scopes: null,
    attrs: a({ category: { type: 'VocabProperty', vocab: [`${EX}private`, `${EX}municipal`] } }),
  },
  { n: 14, types: types('Event'), scopes: null, attrs: a({ startAt: P(DT('2018-01-01T00:00:00.000Z')) }) },
  { n: 15, types: types('Event'), scopes: null, attrs: a({ startAt: P(DT('2022-05-05T10:00:00.000Z')) }) },
  { n: 16, types: types('Event'), scopes: null, attrs: a({ startAt: P('2019-03-01T00:00:00.000Z') }) },
  {
    n: 17,
    types: types('Thing'),
    scopes: null,
    attrs: a({ tags: { type: 'ListProperty', valueList: ['red', 'green'] } }),
  },
  {
    n: 18,
    types: types('Thing'),
    scopes: null,
    attrs: a({ members: { type: 'ListRelationship', objectList: [{ object: 'urn:ngsi-ld:Person:Alice' }] } }),
  },
  {
    n: 19,
    types: types('Thing'),
    scopes: null,
    attrs: a({ config: { type: 'JsonProperty', json: { mode: 'eco', level: 2 } } }),
  },
  { n: 20, types: types('Thing'), scopes: null, attrs: a({ active: P(true) }) },
  { n: 21, types: types('Thing'), scopes: null, attrs: a({ active: P(false) }) },
  { n: 22, types: types('Device'), scopes: null, attrs: a({ status: P('ok'), speed: P('fast') }) },
  {
    n: 23,
    types: types('Device'),
    scopes: null,
    attrs: a({
      'https://smartdatamodels.org/dataModel.Weather/temperature': P(15, {
        observedAt: '2023-01-01T00:00:00.000Z',
      }),
    }),
  },
  { n: 24, types: types('Device'), scopes: null, attrs: a({ humidity: P(60) }) },
  { n: 25, types: types('Device'), scopes: null, attrs: a({ name: P('say "hi"') }) },
  { n: 26, types: types('Device'), scopes: null, attrs: a({ speed: P({ value: 5 }) }) },
  {
    n: 27,
    types: types('Device'),
    scopes: null,
    attrs: a({ location: { type: 'GeoProperty', value: { type: 'Point', coordinates: [121.47, 31.23] } } }),
  },
  { n: 28, types: types('Parking'), scopes: null, attrs: {} },
  {
    n: 29,
    types: types('Parking', 'Building'),
    scopes: ['/Madrid/Gardens/Retiro', '/Shanghai/Pudong/Lujiazui'],
    attrs: {},
  },
  { n: 30, types: types('Parking'), scopes: null, attrs: a({ description: P('line1 (x) | y; z') }) },
];

const ALL = ROWS.map((r) => r.n);
const except = (...n: number[]) => ALL.filter((x) => !n.includes(x));

/** q expression → the entity numbers it selects. */
const Q_CASES: [string, number[]][] = [
  ['speed', [1, 2, 3, 4, 22, 26]],
  ['!speed', except(1, 2, 3, 4, 22, 26)],
  ['speed>40', [2, 3, 4]],
  ['speed>=50', [2, 3, 4]],
  ['speed<10', [3]],
  ['speed<=10', [1, 3]],
  ['speed==10', [1]],
  ['speed==5', [3]],
  ['speed==30', [4]],
  ['speed>100', [3]],
  ['speed!=10', [2, 3, 4, 22, 26]],
  ['speed==5..40', [1, 3, 4]],
  ['speed!=5..40', [2, 22, 26]],
  ['speed==10,50', [1, 2]],
  ['speed!=10,50', [3, 4, 22, 26]],
  ['speed=="fast"', [22]],
  ['speed>"a"', [22]],
  ['speed>10|speed<10', [2, 3, 4]],
  ['brandName=="Mercedes"', [1]],
  ['brandName==Mercedes', [1]],
  ['brandName~=(?i)^merc', [1, 3]],
  ['brandName~="^merc"', [3]],
  ['brandName~=(Merc|BMW)', [1, 2]],
  ['brandName!~=(?i)mercedes', [2]],
  ['brandName~=\\-benz$', [3]],
  ['name=="Town hall"', [5]],
  ['name=="市政厅"', [5]],
  ['name~=hall$', [5]],
  ['name=="say \\"hi\\""', [25]],
  ['address[city]=="Shanghai"', [6]],
  ['address[geo][floor]>=3', [6]],
  ['address[geo.floor]==3', [6]],
  ['address[zip]', [7]],
  ['address[city]!="Shanghai"', [7]],
  ['temperature.observedAt>=2021-01-01T00:00:00Z', [8]],
  ['temperature.observedAt<2021-01-01T00:00:00Z', [7]],
  ['temperature.observedAt==2020-06-01T12:00:00Z', [7]],
  ['temperature.unitCode=="CEL"', [7]],
  ['temperature.accuracy<1', [8]],
  ['temperature.accuracy.observedAt', [8]],
  ['temperature>21;temperature.unitCode=="FAH"', [8]],
  ['isParked==urn:ngsi-ld:Parking:1', [9]],
  ['isParked!=urn:ngsi-ld:Parking:1', [10]],
  ['isParked.providedBy==urn:ngsi-ld:Person:Bob', [9]],
  ['refs==urn:ngsi-ld:Parking:1', [11]],
  ['refs!=urn:ngsi-ld:Parking:1', []],
  ['category==commercial', [12]],
  ['category=="https://example.org/municipal"', [13]],
  ['category==ex:private', [13]],
  ['startAt>2020-01-01T00:00:00Z', [15]],
  ['startAt<2020-01-01T00:00:00Z', [14, 16]],
  ['startAt==2018-01-01T00:00:00Z', [14]],
  ['startAt==2018-01-01T00:00:00Z..2019-12-31T23:59:59Z', [14, 16]],
  ['tags=="green"', [17]],
  ['members==urn:ngsi-ld:Person:Alice', [18]],
  ['config[mode]=="eco"', [19]],
  ['config[level]>1', [19]],
  ['active==true', [20]],
  ['active==false', [21]],
  ['active!=true', [21]],
  ['https://smartdatamodels.org/dataModel.Weather/temperature>10', [23]],
  ['https://smartdatamodels.org/dataModel.Weather/temperature.observedAt>=2022-12-31', [23]],
  ['ex:humidity==60', [24]],
  ['https://example.org/humidity>=60', [24]],
  ['description=="line1 (x) | y; z"', [30]],
  ['(speed>40;brandName=="BMW")|active==true', [2, 20]],
  ['speed>40;(brandName=="BMW"|brandName~=(?i)benz)', [2, 3]],
  ['location', [27]],
  ['location==1', []],
  ['!temperature;address', [6]],
  ['nothing==1', []],
  ['nothing!=1', []],
  // Injection attempts that are valid q: they are literals, nothing more.
  ['brandName=="\') or 1=1; drop table qtest; --"', []],
  ['brandName=="\\") || exists($) || (\\""', []],
  ['brandName~="x\\" flag \\"i"', []],
  ['$.a==1', []],
];

/** Type selection → the entity numbers it selects. */
const TYPE_CASES: [string, number[]][] = [
  ['Vehicle', [1, 2, 3, 4, 12, 13]],
  ['Car', [4]],
  ['Vehicle;Car', [4]],
  ['Building,Home', [5, 6, 7, 8, 29]],
  ['Building|Home', [5, 6, 7, 8, 29]],
  ['(Building;Home)|Car', [4, 6]],
  ['Building;Parking', [29]],
  ['https://example.org/Sensor', [9, 10, 11]],
  ['ex:Event', [14, 15, 16]],
  ['(Building|Home);(Parking|Home)', [6, 7, 8, 29]],
  ['Unknown', []],
  ['Vehicle$1', []],
];

/** Scope query → the entity numbers it selects. */
const SCOPE_CASES: [string, number[]][] = [
  ['/Madrid', [1]],
  ['/Madrid/#', [1, 2, 3, 29]],
  ['/Madrid/+', [2]],
  ['/Madrid/+/+', [3, 29]],
  ['/Madrid/Gardens/#', [2, 3, 29]],
  ['/#', [1, 2, 3, 4, 5, 6, 29]],
  ['/Shanghai/#', [4, 5, 6, 29]],
  ['/Shanghai/+', [4, 6]],
  ['/Shanghai/+;/Public', [6]],
  ['/Shanghai|/Madrid', [1, 5]],
  ['Shanghai', [5]],
  ['/+/Pudong/#', [4, 29]],
  ['(/Madrid/#;/Shanghai/#),/Public', [6, 29]],
  ['/Mad', []],
  ['/Madrid_x/#', []],
];

for (const engine of engines()) {
  describe(`query languages on ${engine.name}`, () => {
    let t: TestDatabase;
    before(async () => {
      t = await engine.open();
      const db = t.database.db;
      await sql`create table qtest (id text primary key, types text[] not null, scopes text[], attrs jsonb not null)`.execute(
        db,
      );
      for (const r of ROWS) {
        const array = (list: string[]) =>
          list.length === 0 ? sql`'{}'::text[]` : sql`ARRAY[${sql.join(list)}]::text[]`;
        const scopes = r.scopes === null ? sql`null` : array(r.scopes);
        await sql`insert into qtest values (${id(r.n)}, ${array(r.types)}, ${scopes}, ${JSON.stringify(r.attrs)}::jsonb)`.execute(
          db,
        );
      }
    });
    after(async () => {
      await t.dispose();
    });

    const select = async (where: RawBuilder<boolean>): Promise<string[]> => {
      const res = await sql<{ id: string }>`select id from qtest e where ${where} order by id`.execute(
        t.database.db,
      );
      return res.rows.map((r) => r.id);
    };

    it(`selects the expected entities for ${Q_CASES.length} q expressions`, async () => {
      for (const [q, want] of Q_CASES)
        assert.deepEqual(await select(qToSql(q, expand)), want.map(id), `q=${q}`);
    });

    it(`selects the expected entities for ${TYPE_CASES.length} type selections`, async () => {
      for (const [s, want] of TYPE_CASES)
        assert.deepEqual(
          await select(typeSelectionToSql(parseTypeSelection(s), expand)),
          want.map(id),
          `type=${s}`,
        );
    });

    it(`selects the expected entities for ${SCOPE_CASES.length} scope queries`, async () => {
      for (const [s, want] of SCOPE_CASES)
        assert.deepEqual(await select(scopeQToSql(parseScopeQ(s))), want.map(id), `scopeQ=${s}`);
    });

    it('binds user text as parameters: q as one jsonpath, types and scopes per name', () => {
      const q =
        sql`select 1 from qtest e where ${qToSql('brandName=="x\') or true --";speed>1', expand)}`.compile(
          t.database.db,
        );
      assert.equal(q.sql, 'select 1 from qtest e where jsonb_path_match(e.attrs, $1::jsonpath)');
      assert.equal(q.parameters.length, 1);
      const types = sql`${typeSelectionToSql(parseTypeSelection('(A;B)|C|D'), expand)}`.compile(
        t.database.db,
      );
      assert.equal(types.sql, '(e.types && ARRAY[$1, $2]::text[] or (e.types @> ARRAY[$3, $4]::text[]))');
      assert.deepEqual(types.parameters, [`${EX}C`, `${EX}D`, `${EX}A`, `${EX}B`]);
      const scopes = sql`${scopeQToSql(parseScopeQ('/A,/B,/C/#'))}`.compile(t.database.db);
      assert.match(scopes.sql, /^\(e\.scopes && ARRAY\[\$1, \$2\]::text\[\] or exists \(.* ~ \$3\)\)$/);
      assert.deepEqual(scopes.parameters, ['/A', '/B', '^/C(/.*)?$']);
    });

    it('either refuses random input with BadRequestData or runs it without a database error', async () => {
      let accepted = 0;
      for (const q of fuzzInputs(2000)) {
        let where: RawBuilder<boolean>;
        try {
          where = qToSql(q, expand);
        } catch (e) {
          assert.ok(e instanceof NgsiError && e.type === 'BadRequestData', `q=${q}: ${String(e)}`);
          continue;
        }
        accepted++;
        await assert.doesNotReject(select(where), `q=${q}`);
      }
      assert.ok(accepted > 100, `only ${accepted} random inputs were valid`);
    });

    it('leaves the table unchanged after hostile input', async () => {
      const hostile = [
        'a==1) || (true',
        "speed==1'); drop table qtest; --",
        'brandName=="x" ; drop table qtest',
        'a==$.b',
        'a~=(?<x>.)',
        'brandName~="\\") || true || (\\""',
        `${'('.repeat(5000)}a`,
      ];
      for (const q of hostile) {
        try {
          await select(qToSql(q, expand));
          assert.fail(`accepted ${q}`);
        } catch (e) {
          assert.ok(e instanceof NgsiError && e.type === 'BadRequestData', `q=${q}: ${String(e)}`);
        }
      }
      const count = await sql<{ n: number }>`select count(*)::int as n from qtest`.execute(t.database.db);
      assert.equal(count.rows[0]?.n, ROWS.length);
    });
  });
}
