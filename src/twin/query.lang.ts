/**
 * The NGSI-LD query languages (ETSI GS CIM 009 v1.8): the `q` query language (§4.9), type
 * selection (§4.17), scope queries (§4.19) and the attribute lists of `attrs`, `pick` and `omit`.
 * Each language has a hand-written parser that refuses anything off-grammar with BadRequestData
 * naming the position, and a compiler to SQL over the entity row `e` in which user text only ever
 * travels as bound parameters: `q` compiles to ONE jsonpath predicate (every literal escaped as a
 * jsonpath literal) bound as `$n::jsonpath`; type and scope queries bind each name or pattern.
 */
import { sql, type RawBuilder } from 'kysely';
import { NgsiError } from './errors.ts';

/** Input limits shared by the three expression languages. */
export const QUERY_LIMITS = {
  /** UTF-8 bytes of one expression. */
  maxBytes: 4096,
  /** Nesting depth of parentheses. */
  maxDepth: 32,
  /** Query terms in one `q` (each compiles to a few jsonpath clauses). */
  maxTerms: 256,
  /** Names in one `attrs` / `pick` / `omit` list. */
  maxAttrs: 256,
} as const;

// ---------------------------------------------------------------------------------------------
// Shared lexical pieces

/**
 * A type or attribute name (term, compact IRI or IRI): the entity model refuses these characters
 * in names (§4.6.2; they would break the query languages), so queries accept the same names.
 */
const NAME = /^[^\s<>"'=;()[\]\\,|!~&]+$/;
const MAX_NAME = 2048;
/** One name inside a `q` attribute path, where '.' separates sub-attributes. */
const PATH_NAME = /[^\s.<>"'=;()[\]\\,|!~&]+/y;
/** An unquoted word value (`brandName==Mercedes`), read as a string as Orion-LD and Scorpio do. */
const BARE_WORD = /^[\p{L}_][\p{L}\p{N}_-]*(?::[\p{L}\p{N}_][\p{L}\p{N}_-]*)*$/u;
/** The start of an absolute, hierarchical IRI (`scheme://`). */
const IRI_START = /[A-Za-z][A-Za-z0-9+.-]*:\/\//y;
/** An absolute IRI of any form (`urn:…`, `https://…`), no delimiters or spaces inside. */
const ABSOLUTE_IRI = /^[A-Za-z][A-Za-z0-9+.-]*:[^\s"<>{}|\\^`,;()[\]]+$/;
/** Characters that end an IRI written inside a `q` attribute path. */
const IRI_STOP = ' =!<>~;|()[],"\'&\\';

/** Instance members (not sub-attributes, not expanded) a `q` path may end with after a dot. */
export const INSTANCE_MEMBERS = ['observedAt', 'unitCode', 'datasetId', 'createdAt', 'modifiedAt'] as const;
export type InstanceMember = (typeof INSTANCE_MEMBERS)[number];
const isInstanceMember = (s: string): s is InstanceMember =>
  (INSTANCE_MEMBERS as readonly string[]).includes(s);

const describe = (c: string): string => (c === '' ? 'end of input' : JSON.stringify(c));

function syntaxError(param: string, text: string, at: number, message: string): NgsiError {
  const near = text.slice(at, at + 24);
  const where = at >= text.length ? 'at the end' : `at position ${at + 1} (near ${JSON.stringify(near)})`;
  return new NgsiError('BadRequestData', `${param}: ${message} ${where}`);
}

/** Refuses empty, oversized and control-character input before any parsing. */
function checkInput(text: string, param: string): void {
  if (text.trim() === '') throw new NgsiError('BadRequestData', `${param}: the expression is empty`);
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > QUERY_LIMITS.maxBytes)
    throw new NgsiError(
      'BadRequestData',
      `${param}: the expression is too long (${bytes} bytes; at most ${QUERY_LIMITS.maxBytes})`,
    );
  // Control characters and lone surrogates cannot travel in a jsonpath/text literal (PostgreSQL
  // would fail the whole query), so they are refused here as the client's error.
  const bad = unencodable(text, true);
  if (bad >= 0) {
    const code = text.charCodeAt(bad).toString(16).toUpperCase().padStart(4, '0');
    throw syntaxError(param, text, bad, `character U+${code} is not allowed`);
  }
}

/** Index of the first NUL (or any control character) or lone surrogate in `s`, else -1. */
function unencodable(s: string, controls: boolean): number {
  const surrogate = /\p{Cs}/u.exec(s)?.index ?? -1;
  for (let i = 0; i < s.length && (surrogate < 0 || i < surrogate); i++) {
    const code = s.charCodeAt(i);
    if (code === 0 || (controls && (code < 0x20 || code === 0x7f))) return i;
  }
  return surrogate;
}

/** A read position over one expression; failures carry the position. */
class Cursor {
  pos = 0;
  constructor(
    readonly text: string,
    readonly param: string,
  ) {}
  peek(offset = 0): string {
    return this.text.charAt(this.pos + offset);
  }
  at(s: string): boolean {
    return this.text.startsWith(s, this.pos);
  }
  get done(): boolean {
    return this.pos >= this.text.length;
  }
  skipSpaces(): void {
    while (this.peek() === ' ') this.pos++;
  }
  /** Matches a sticky regular expression here and moves past it. */
  match(re: RegExp): string | undefined {
    re.lastIndex = this.pos;
    const m = re.exec(this.text);
    if (!m) return undefined;
    this.pos += m[0].length;
    return m[0];
  }
  fail(message: string, at: number = this.pos): never {
    throw syntaxError(this.param, this.text, at, message);
  }
  /** Whether the next character is one of `chars` (never true at the end). */
  nextIn(chars: string): boolean {
    return !this.done && chars.includes(this.peek());
  }
}

/** Boolean structure shared by the three languages: `;` AND binds tighter than OR. */
export type Logical<T> = { kind: 'and' | 'or'; items: (Logical<T> | T)[] };

/**
 * Parses `leaf (;|or-op) leaf …` with parentheses, AND binding tighter than OR, parentheses
 * nested at most `QUERY_LIMITS.maxDepth` deep (checked before recursing, so hostile nesting
 * fails fast instead of exhausting the stack).
 */
function parseLogical<T>(c: Cursor, orOps: string, leaf: (c: Cursor) => T): Logical<T> | T {
  const parseOr = (depth: number): Logical<T> | T => {
    const items = [parseAnd(depth)];
    c.skipSpaces();
    while (c.nextIn(orOps)) {
      c.pos++;
      items.push(parseAnd(depth));
      c.skipSpaces();
    }
    return items.length === 1 && items[0] !== undefined ? items[0] : { kind: 'or', items };
  };
  const parseAnd = (depth: number): Logical<T> | T => {
    const items = [parsePrimary(depth)];
    c.skipSpaces();
    while (c.peek() === ';') {
      c.pos++;
      items.push(parsePrimary(depth));
      c.skipSpaces();
    }
    return items.length === 1 && items[0] !== undefined ? items[0] : { kind: 'and', items };
  };
  const parsePrimary = (depth: number): Logical<T> | T => {
    c.skipSpaces();
    if (c.peek() === '(') {
      if (depth >= QUERY_LIMITS.maxDepth)
        c.fail(`parentheses are nested more than ${QUERY_LIMITS.maxDepth} deep`);
      const open = c.pos++;
      const inner = parseOr(depth + 1);
      c.skipSpaces();
      if (c.peek() !== ')')
        c.fail(`expected ')' to close the '(' at position ${open + 1} but found ${describe(c.peek())}`);
      c.pos++;
      return inner;
    }
    return leaf(c);
  };
  const node = parseOr(0);
  c.skipSpaces();
  if (!c.done)
    c.fail(c.peek() === ')' ? "unexpected ')' without a matching '('" : `unexpected ${describe(c.peek())}`);
  return node;
}

function isLogical<T>(n: Logical<T> | T): n is Logical<T> {
  const kind = (n as { kind?: unknown }).kind;
  return kind === 'and' || kind === 'or';
}

// ---------------------------------------------------------------------------------------------
// q: the NGSI-LD Query Language (§4.9)

export type QCompareOp = '==' | '!=' | '>' | '>=' | '<' | '<=';

/** A literal of a query term; date-times are normalised to `Date.toISOString()` form. */
export type QScalar =
  | { kind: 'number'; text: string }
  | { kind: 'string'; value: string }
  | { kind: 'boolean'; value: boolean }
  | { kind: 'dateTime' | 'date' | 'time'; value: string };

export type QValue =
  QScalar | { kind: 'range'; from: QScalar; to: QScalar } | { kind: 'list'; items: QScalar[] };

/**
 * `attr(.sub)*(.member)?([key])*`: `attr` and `subAttrs` are terms to expand; `member` is an
 * instance member such as observedAt; `keys` address inside a compound value, taken literally.
 */
export interface QAttrPath {
  attr: string;
  subAttrs: string[];
  member: InstanceMember | undefined;
  keys: string[];
}

export type QTerm =
  | { kind: 'exists'; path: QAttrPath; negated: boolean; position: number }
  | { kind: 'compare'; path: QAttrPath; op: QCompareOp; value: QValue; position: number }
  | {
      kind: 'match';
      path: QAttrPath;
      negated: boolean;
      pattern: string;
      caseInsensitive: boolean;
      position: number;
    };

export type QNode = Logical<QTerm> | QTerm;

/** Parses an NGSI-LD `q` expression; any syntax error is BadRequestData naming the position. */
export function parseQ(q: string): QNode {
  checkInput(q, 'q');
  const c = new Cursor(q, 'q');
  let terms = 0;
  return parseLogical<QTerm>(c, '|', (cur) => {
    if (++terms > QUERY_LIMITS.maxTerms) cur.fail(`more than ${QUERY_LIMITS.maxTerms} query terms`);
    return parseQTerm(cur);
  });
}

function parseQTerm(c: Cursor): QTerm {
  c.skipSpaces();
  const position = c.pos;
  const negated = c.peek() === '!';
  if (negated) {
    c.pos++;
    c.skipSpaces();
  }
  const path = parseAttrPath(c);
  c.skipSpaces();
  const opAt = c.pos;
  const op = (['==', '!=', '!~=', '~=', '>=', '<=', '>', '<'] as const).find((o) => c.at(o));
  if (op === undefined) {
    if (c.peek() === '=') c.fail("'=' is not an operator (use '==')");
    if (c.peek() === '~') c.fail("'~' is not an operator (use '~=')");
    if (!c.done && !c.nextIn(';|)'))
      c.fail(
        `expected an operator, ';', '|' or ')' after the attribute path but found ${describe(c.peek())}`,
      );
    return { kind: 'exists', path, negated, position };
  }
  if (negated) c.fail("a negated term ('!attr') cannot have an operator", opAt);
  c.pos += op.length;
  c.skipSpaces();
  if (op === '~=' || op === '!~=') {
    const { pattern, caseInsensitive } = parsePattern(c);
    return { kind: 'match', path, negated: op === '!~=', pattern, caseInsensitive, position };
  }
  const value = parseQValue(c, op);
  return { kind: 'compare', path, op, value, position };
}

/** One name of an attribute path: a full IRI, a compact IRI or a term. */
function parsePathName(c: Cursor): string {
  const start = c.pos;
  IRI_START.lastIndex = start;
  if (IRI_START.test(c.text)) {
    // Full IRIs contain dots (hosts, `dataModel.Weather/…`): a dot ends the IRI only where a
    // sub-attribute IRI or an instance member (`.observedAt`) clearly follows.
    while (!c.done && !c.nextIn(IRI_STOP)) {
      if (c.peek() === '.' && dotSeparates(c.text, c.pos + 1)) break;
      c.pos++;
    }
    return c.text.slice(start, c.pos);
  }
  const name = c.match(PATH_NAME);
  if (name === undefined) c.fail(`expected an attribute name but found ${describe(c.peek())}`);
  if (name.length > MAX_NAME) c.fail(`names are limited to ${MAX_NAME} characters`, start);
  return name;
}

function dotSeparates(text: string, after: number): boolean {
  IRI_START.lastIndex = after;
  if (IRI_START.test(text)) return true;
  return INSTANCE_MEMBERS.some((m) => {
    if (!text.startsWith(m, after)) return false;
    const next = text.charAt(after + m.length);
    return next === '' || next === '.' || IRI_STOP.includes(next);
  });
}

function parseAttrPath(c: Cursor): QAttrPath {
  const attr = parsePathName(c);
  const subAttrs: string[] = [];
  let member: InstanceMember | undefined;
  while (c.peek() === '.') {
    if (c.peek(1) === '.') c.fail("unexpected '..' in an attribute path");
    if (member !== undefined) c.fail(`nothing may follow the instance member '${member}'`);
    c.pos++;
    const name = parsePathName(c);
    if (isInstanceMember(name)) member = name;
    else subAttrs.push(name);
  }
  const keys: string[] = [];
  while (c.peek() === '[') {
    if (member !== undefined) c.fail(`'[' cannot follow the instance member '${member}'`);
    const open = c.pos++;
    const start = c.pos;
    while (!c.done && !c.nextIn('[]"\\ ')) c.pos++;
    if (c.peek() !== ']') c.fail(`'[' at position ${open + 1} needs a member name and a closing ']'`);
    const inner = c.text.slice(start, c.pos);
    c.pos++;
    // `attr[a.b]` is read as `attr[a][b]` (Orion-LD and Scorpio accept both spellings).
    const parts = inner.split('.');
    if (parts.some((p) => p === '')) c.fail('empty member name inside [ ]', start);
    keys.push(...parts);
  }
  if (c.peek() === '.' && keys.length > 0) c.fail("'.' cannot follow '[...]' in an attribute path");
  return { attr, subAttrs, member, keys };
}

function parseQValue(c: Cursor, op: QCompareOp): QValue {
  const valueAt = c.pos;
  const first = parseScalar(c);
  c.skipSpaces();
  if (c.at('..')) {
    if (op !== '==' && op !== '!=') c.fail(`a range needs '==' or '!=', not '${op}'`, valueAt);
    c.pos += 2;
    c.skipSpaces();
    const toAt = c.pos;
    const to = parseScalar(c);
    if (!['number', 'string', 'dateTime', 'date', 'time'].includes(first.kind) || first.kind !== to.kind)
      c.fail(`a range needs two numbers, strings, dates or times of the same kind`, toAt);
    return { kind: 'range', from: first, to };
  }
  if (c.peek() === ',') {
    if (op !== '==' && op !== '!=') c.fail(`a value list needs '==' or '!=', not '${op}'`, valueAt);
    const items = [first];
    while (c.peek() === ',') {
      c.pos++;
      c.skipSpaces();
      items.push(parseScalar(c));
      c.skipSpaces();
    }
    return { kind: 'list', items };
  }
  if (first.kind === 'boolean' && op !== '==' && op !== '!=')
    c.fail(`'${op}' needs a number, a string or a date/time, not a boolean`, valueAt);
  return first;
}

const NUMBER = /^-?(\d+)(\.\d+)?(?:[eE]([+-]?\d+))?$/;
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?$/;
const DATE = /^\d{4}-\d{2}-\d{2}$/;
const TIME = /^\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?Z?$/;

function parseScalar(c: Cursor): QScalar {
  const start = c.pos;
  if (c.peek() === '"') return { kind: 'string', value: parseQuoted(c).value };
  while (!c.done && !c.nextIn(';|(),"\\ ') && !c.at('..')) c.pos++;
  const token = c.text.slice(start, c.pos);
  if (token === '') c.fail(`expected a value but found ${describe(c.peek())}`);
  if (token === 'true' || token === 'false') return { kind: 'boolean', value: token === 'true' };
  const num = NUMBER.exec(token);
  if (num) {
    const value = Number(token);
    if (!Number.isFinite(value)) c.fail(`the number ${token} is out of range`, start);
    // jsonpath refuses leading zeros ('007'); the exponent is re-rendered for the same reason.
    const int = (num[1] ?? '0').replace(/^0+(?=\d)/, '');
    const exp = num[3] === undefined ? '' : `e${Number(num[3])}`;
    return { kind: 'number', text: `${token.startsWith('-') ? '-' : ''}${int}${num[2] ?? ''}${exp}` };
  }
  if (DATE_TIME.test(token)) {
    // Stored date-times are `toISOString()` strings, so the literal takes the same form (UTC,
    // milliseconds) for string comparison; no zone means UTC.
    const zone = /(?:Z|([+-]\d{2}):?(\d{2}))$/.exec(token.slice(16));
    const local = zone ? token.slice(0, token.length - zone[0].length) : token;
    const ms = Date.parse(`${local}${zone?.[1] ? `${zone[1]}:${zone[2] ?? '00'}` : 'Z'}`);
    if (!validDate(token.slice(0, 10)) || !validTime(local.slice(11)) || Number.isNaN(ms))
      c.fail(`${token} is not a valid date-time`, start);
    return { kind: 'dateTime', value: new Date(ms).toISOString() };
  }
  if (DATE.test(token)) {
    if (!validDate(token)) c.fail(`${token} is not a valid date`, start);
    return { kind: 'date', value: token };
  }
  if (TIME.test(token)) {
    if (!validTime(token.replace(/Z$/, ''))) c.fail(`${token} is not a valid time`, start);
    return { kind: 'time', value: token };
  }
  // Unquoted URIs (relationship targets, compact IRIs) and bare words are strings, as in
  // Orion-LD and Scorpio; anything else (operators glued to values, stray symbols) is refused.
  if (ABSOLUTE_IRI.test(token) || BARE_WORD.test(token)) return { kind: 'string', value: token };
  return c.fail(`${JSON.stringify(token)} is not a valid value (quote strings with "…")`, start);
}

/** `yyyy-mm-dd` naming a real day (`Date.parse` would roll 2023-02-30 over to March 2). */
function validDate(ymd: string): boolean {
  const ms = Date.parse(`${ymd}T00:00:00Z`);
  return !Number.isNaN(ms) && new Date(ms).toISOString().slice(0, 10) === ymd;
}

/** `hh:mm[:ss[.fff]]` within a day. */
function validTime(hms: string): boolean {
  const [h = 0, m = 0, s = 0] = hms.split(':').map(Number);
  return h <= 23 && m <= 59 && s < 60;
}

/**
 * A double-quoted string; `\"` and `\\` are escapes, any other backslash is kept as written.
 * `sourceAt[i]` is the input position of the value's i-th character (for error positions).
 */
function parseQuoted(c: Cursor): { value: string; sourceAt: number[] } {
  const open = c.pos++;
  let value = '';
  const sourceAt: number[] = [];
  for (;;) {
    const ch = c.peek();
    if (ch === '') c.fail('unterminated string', open);
    sourceAt.push(c.pos);
    c.pos++;
    if (ch === '"') return { value, sourceAt };
    if (ch === '\\' && (c.peek() === '"' || c.peek() === '\\')) {
      value += c.peek();
      c.pos++;
    } else value += ch;
  }
}

/**
 * The pattern after `~=`: quoted, or unquoted up to a `;`, `|` or `)` outside its own groups and
 * bracket expressions. A leading `(?i)` becomes the case-insensitive flag.
 */
function parsePattern(c: Cursor): { pattern: string; caseInsensitive: boolean } {
  const start = c.pos;
  let raw: string;
  let sourceAt: (i: number) => number = (i) => start + i;
  if (c.peek() === '"') {
    const quoted = parseQuoted(c);
    raw = quoted.value;
    sourceAt = (i) => quoted.sourceAt[i] ?? c.pos - 1;
  } else {
    let depth = 0;
    let inClass = false;
    for (; !c.done; c.pos++) {
      const ch = c.peek();
      if (ch === '\\') {
        c.pos++;
        continue;
      }
      if (inClass) {
        if (ch === ']') inClass = false;
        continue;
      }
      if (ch === '[') inClass = true;
      else if (ch === '(') depth++;
      else if (ch === ')') {
        if (depth === 0) break;
        depth--;
      } else if ((ch === ';' || ch === '|') && depth === 0) break;
    }
    c.pos = Math.min(c.pos, c.text.length); // a trailing backslash stepped past the end
    raw = c.text.slice(start, c.pos).trimEnd();
  }
  const caseInsensitive = raw.startsWith('(?i)');
  const skip = caseInsensitive ? 4 : 0;
  const pattern = raw.slice(skip);
  if (pattern === '') c.fail('expected a regular expression pattern', start);
  checkPattern(pattern, (message, at) => c.fail(`invalid pattern: ${message}`, sourceAt(skip + at)));
  return { pattern, caseInsensitive };
}

/**
 * Admits a conservative regular-expression subset that PostgreSQL's ARE engine (which runs
 * jsonpath `like_regex`) accepts and that reads the same in the common dialects (no backrefs,
 * lookarounds, POSIX classes or engine-specific escapes), and rejects the rest up front:
 * PostgreSQL compiles the pattern when the jsonpath is cast, so a bad one would fail the whole
 * statement with a server error.
 */
function checkPattern(p: string, fail: (message: string, at: number) => never): void {
  let i = 0;
  let depth = 0;
  let canRepeat = false;
  const quantifier = /\{(\d{1,3})(,(\d{1,3})?)?\}/y;
  while (i < p.length) {
    const ch = p.charAt(i);
    if (ch === '\\') {
      i = escapeEnd(p, i, false, fail);
      canRepeat = true;
    } else if (ch === '(') {
      if (p.startsWith('(?:', i)) i += 3;
      else if (p.charAt(i + 1) === '?') fail("only '(…)' and '(?:…)' groups are supported", i);
      else i++;
      if (++depth > QUERY_LIMITS.maxDepth) fail('groups are nested too deep', i);
      canRepeat = false;
    } else if (ch === ')') {
      if (depth === 0) fail("unbalanced ')'", i);
      depth--;
      i++;
      canRepeat = true;
    } else if (ch === '*' || ch === '+' || ch === '?' || ch === '{') {
      if (!canRepeat) fail(`nothing to repeat before ${JSON.stringify(ch)}`, i);
      if (ch === '{') {
        quantifier.lastIndex = i;
        const m = quantifier.exec(p);
        if (!m) fail("'{' must start a repetition such as {2} or {1,3} (escape it as \\{)", i);
        const min = Number(m[1]);
        const max = m[2] === undefined ? min : m[3] === undefined ? 255 : Number(m[3]);
        if (min > max || max > 255) fail('repetition bounds must satisfy min <= max <= 255', i);
        i += m[0].length;
      } else i++;
      if (p.charAt(i) === '?') i++; // non-greedy
      canRepeat = false;
    } else if (ch === '[') {
      i = bracketEnd(p, i, fail);
      canRepeat = true;
    } else if (ch === ']' || ch === '}') {
      fail(`escape a literal ${JSON.stringify(ch)} as \\${ch}`, i);
    } else {
      canRepeat = ch !== '^' && ch !== '$' && ch !== '|';
      i++;
    }
  }
  if (depth > 0) fail("unclosed '('", p.length);
}

/** Index after the escape at `i`; `inBracket` admits only escapes valid inside `[…]`. */
function escapeEnd(p: string, i: number, inBracket: boolean, fail: (m: string, at: number) => never): number {
  const next = p.charAt(i + 1);
  if (next === '') fail('the pattern ends with a lone backslash', i);
  if (/[dws]/.test(next) || (!inBracket && /[DWS]/.test(next)) || /[ntrfv]/.test(next)) return i + 2;
  if (next === 'u') {
    if (!/^[0-9A-Fa-f]{4}$/.test(p.slice(i + 2, i + 6))) fail('\\u needs four hex digits', i);
    return i + 6;
  }
  if (/[^\p{L}\p{N}]/u.test(next)) return i + 1 + ((p.codePointAt(i + 1) ?? 0) > 0xffff ? 2 : 1);
  return fail(`unsupported escape \\${next}`, i);
}

/** Index after the bracket expression opening at `i`. */
function bracketEnd(p: string, i: number, fail: (m: string, at: number) => never): number {
  const open = i++;
  if (p.charAt(i) === '^') i++;
  if (p.charAt(i) === ']') fail("a bracket expression cannot start with ']' (escape it as \\])", i);
  let prev: number | undefined; // code point of the previous single character, for ranges
  let afterClass = false; // the previous item was \d, \w or \s
  while (i < p.length && p.charAt(i) !== ']') {
    const ch = p.charAt(i);
    if (ch === '[' && /^[:=.]$/.test(p.charAt(i + 1)))
      fail('POSIX classes such as [:alpha:] are not supported', i);
    if (ch === '-' && afterClass && p.charAt(i + 1) !== ']')
      fail("a '-' after \\d, \\w or \\s must be escaped", i);
    let single: number | undefined;
    afterClass = false;
    if (ch === '\\') {
      const end = escapeEnd(p, i, true, fail);
      const esc = p.charAt(i + 1);
      single = /[^\p{L}\p{N}]/u.test(esc) ? esc.codePointAt(0) : undefined;
      afterClass = /[dws]/.test(esc);
      i = end;
    } else if (ch === '-' && prev !== undefined && p.charAt(i + 1) !== ']') {
      const rangeAt = i++;
      let to: number | undefined;
      if (p.charAt(i) === '\\') {
        const esc = p.charAt(i + 1);
        to = /[^\p{L}\p{N}]/u.test(esc) ? esc.codePointAt(0) : undefined;
        i = escapeEnd(p, i, true, fail);
      } else {
        to = p.codePointAt(i);
        i += to !== undefined && to > 0xffff ? 2 : 1;
      }
      if (to === undefined || to < prev) fail('invalid range in a bracket expression', rangeAt);
      if (p.charAt(i) === '-' && p.charAt(i + 1) !== ']') fail("a '-' after a range must be escaped", i);
      prev = undefined;
      continue;
    } else {
      single = p.codePointAt(i);
      i += single !== undefined && single > 0xffff ? 2 : 1;
    }
    prev = single;
  }
  if (i >= p.length) fail("unclosed '['", open);
  return i + 1;
}

// ---------------------------------------------------------------------------------------------
// q → jsonpath

/** The members that hold an instance's main value, per attribute type (storage format). */
const MAIN_VALUES = [
  '.value[*]',
  '.value[*]."@value"', // DateTime values {"@type":"DateTime","@value":…}
  '.object[*]',
  '.languageMap.*',
  '.valueList[*]',
  '.objectList[*]',
  '.objectList[*].object',
  '.json[*]',
] as const;

/**
 * A jsonpath string literal: JSON string escaping is jsonpath's own. NUL and lone surrogates have
 * no jsonpath form; input was screened for them, and this re-checks what `expand` returned.
 */
function jsonString(s: string): string {
  if (unencodable(s, false) >= 0)
    throw new NgsiError('BadRequestData', `q: invalid characters in ${JSON.stringify(s.slice(0, 64))}`);
  return JSON.stringify(s);
}

/** A jsonpath member accessor for an arbitrary key (expanded IRIs, compound-value keys). */
const key = (k: string): string => `.${jsonString(k)}`;

function literal(v: QScalar): string {
  switch (v.kind) {
    case 'number':
      return v.text;
    case 'boolean':
      return v.value ? 'true' : 'false';
    default:
      return jsonString(v.value);
  }
}

/**
 * Compiles a parsed `q` to one jsonpath predicate over `e.attrs` (to be bound as a single
 * parameter): a comparison holds when ANY instance's main value (or ANY element of an array
 * value) satisfies it; `!=` and `!~=` hold only for entities that have the target at all and
 * none of whose values equals / matches.
 */
export function compileQ(node: QNode, expand: (term: string) => string): string {
  if (isLogical(node)) {
    const parts = node.items.map((n) => compileQ(n, expand));
    return `(${parts.join(node.kind === 'and' ? ' && ' : ' || ')})`;
  }
  return compileTerm(node, expand);
}

function compileTerm(t: QTerm, expand: (term: string) => string): string {
  const base = `$${key(expand(t.path.attr))}[*]${t.path.subAttrs.map((s) => key(expand(s))).join('')}`;
  // Value paths with, for each, whether it holds vocabulary IRIs (compared after expansion too).
  let targets: { path: string; vocab: boolean }[];
  let present: string;
  if (t.path.member !== undefined) {
    targets = [{ path: `${base}${key(t.path.member)}`, vocab: false }];
    present = `exists(${base}${key(t.path.member)})`;
  } else if (t.path.keys.length > 0) {
    const inner = t.path.keys.map(key).join('');
    targets = [`.value${inner}[*]`, `.value${inner}[*]."@value"`, `.json${inner}[*]`].map((p) => ({
      path: base + p,
      vocab: false,
    }));
    present = `(exists(${base}.value${inner}) || exists(${base}.json${inner}))`;
  } else {
    targets = [
      ...MAIN_VALUES.map((p) => ({ path: base + p, vocab: false })),
      { path: `${base}.vocab[*]`, vocab: true },
    ];
    present = `exists(${base})`;
  }
  const any = (cond: (vocab: boolean) => string): string =>
    `(${targets.map((x) => `exists(${x.path} ? (${cond(x.vocab)}))`).join(' || ')})`;

  switch (t.kind) {
    case 'exists':
      return t.negated ? `!(${present})` : present;
    case 'match': {
      const flag = t.caseInsensitive ? ' flag "i"' : '';
      const matches = any(() => `@ like_regex ${jsonString(t.pattern)}${flag}`);
      return t.negated ? `(${present} && !${matches})` : matches;
    }
    case 'compare': {
      if (t.op === '==' || t.op === '!=') {
        const equal = any((vocab) => equalityCondition(t.value, vocab, expand));
        return t.op === '==' ? equal : `(${present} && !${equal})`;
      }
      const v = t.value;
      // parseQ never builds this; a hand-made node might.
      if (v.kind === 'range' || v.kind === 'list')
        throw new NgsiError('BadRequestData', `q: '${t.op}' cannot compare with a ${v.kind}`);
      return any(() => `@ ${t.op} ${literal(v)}`);
    }
  }
}

function equalityCondition(v: QValue, vocab: boolean, expand: (term: string) => string): string {
  const eq = (s: QScalar): string[] => {
    const forms = [`@ == ${literal(s)}`];
    if (vocab && s.kind === 'string' && (BARE_WORD.test(s.value) || ABSOLUTE_IRI.test(s.value))) {
      const expanded = expand(s.value);
      if (expanded !== s.value) forms.push(`@ == ${jsonString(expanded)}`);
    }
    return forms;
  };
  switch (v.kind) {
    case 'range':
      return `@ >= ${literal(v.from)} && @ <= ${literal(v.to)}`;
    case 'list':
      return v.items.flatMap(eq).join(' || ');
    default:
      return eq(v).join(' || ');
  }
}

/** `q` as a WHERE condition on the entity row `e`: the compiled jsonpath travels as one parameter. */
export function qToSql(q: string, expand: (term: string) => string): RawBuilder<boolean> {
  const jp = compileQ(parseQ(q), expand);
  return sql<boolean>`jsonb_path_match(e.attrs, ${jp}::jsonpath)`;
}

// ---------------------------------------------------------------------------------------------
// Type selection (§4.17)

export type TypeLeaf = { kind: 'type'; name: string };
export type TypeNode = Logical<TypeLeaf> | TypeLeaf;

/** Parses a type selection (`,`/`|` OR, `;` AND, parentheses), e.g. `(Building;Home)|Vehicle`. */
export function parseTypeSelection(s: string): TypeNode {
  checkInput(s, 'type');
  const c = new Cursor(s, 'type');
  return parseLogical<TypeLeaf>(c, ',|', (cur) => ({
    kind: 'type',
    name: parseListName(cur, 'a type name'),
  }));
}

/** A type or attribute name ended by an operator of the languages, a space or the end. */
function parseListName(c: Cursor, what: string): string {
  c.skipSpaces();
  const start = c.pos;
  while (!c.done && !c.nextIn(',|;() ')) c.pos++;
  const name = c.text.slice(start, c.pos);
  if (name === '') c.fail(`expected ${what} but found ${describe(c.peek())}`);
  if (!isValidName(name)) c.fail(`${JSON.stringify(name)} is not a valid name`, start);
  return name;
}

const isValidName = (name: string): boolean => name.length <= MAX_NAME && NAME.test(name);

/** All type names a selection mentions, as written (unexpanded), first occurrence first. */
export function typeNamesIn(node: TypeNode): string[] {
  const names: string[] = [];
  const walk = (n: TypeNode): void => {
    if (isLogical(n)) n.items.forEach(walk);
    else if (!names.includes(n.name)) names.push(n.name);
  };
  walk(node);
  return names;
}

/**
 * A type selection as a condition on `e.types` (expanded IRIs). Sibling names collapse into one
 * `e.types && ARRAY[…]` (OR) or `e.types @> ARRAY[…]` (AND), both GIN-indexable.
 */
export function typeSelectionToSql(node: TypeNode, expand: (term: string) => string): RawBuilder<boolean> {
  if (!isLogical(node)) return sql<boolean>`e.types @> ARRAY[${expand(node.name)}]::text[]`;
  const leaves = [
    ...new Set(node.items.filter((n): n is TypeLeaf => !isLogical(n)).map((n) => expand(n.name))),
  ];
  const parts: RawBuilder<boolean>[] = [];
  if (leaves.length > 0) {
    const array = sql`ARRAY[${sql.join(leaves)}]::text[]`;
    parts.push(node.kind === 'or' ? sql<boolean>`e.types && ${array}` : sql<boolean>`e.types @> ${array}`);
  }
  for (const n of node.items) if (isLogical(n)) parts.push(typeSelectionToSql(n, expand));
  return sql<boolean>`(${sql.join(parts, sql.raw(node.kind === 'or' ? ' or ' : ' and '))})`;
}

// ---------------------------------------------------------------------------------------------
// Scope queries (§4.19)

/**
 * One scope pattern: `levels` may hold '+' (exactly one level); `descendants` is a trailing `#`
 * (the scope itself and everything below it). `/#` alone is levels [] with descendants.
 */
export interface ScopePattern {
  kind: 'scope';
  levels: string[];
  descendants: boolean;
}

export type ScopeNode = Logical<ScopePattern> | ScopePattern;

/** A scope level as the entity model admits it (stored scopes are `/level/level…`). */
const SCOPE_LEVEL = /^[^/#+\s,;|()]+$/;

/** Parses a scope query, e.g. `/Madrid/#,/Shanghai/+;/Public`. */
export function parseScopeQ(s: string): ScopeNode {
  checkInput(s, 'scopeQ');
  const c = new Cursor(s, 'scopeQ');
  return parseLogical<ScopePattern>(c, ',|', parseScopePattern);
}

function parseScopePattern(c: Cursor): ScopePattern {
  c.skipSpaces();
  const start = c.pos;
  while (!c.done && !c.nextIn(',|;() ')) c.pos++;
  const text = c.text.slice(start, c.pos);
  if (text === '') c.fail(`expected a scope but found ${describe(c.peek())}`);
  // §4.19 makes the leading '/' optional; stored scopes always have it, so 'A/B' means '/A/B'.
  const rooted = text.startsWith('/');
  const parts = (rooted ? text.slice(1) : text).split('/');
  let descendants = false;
  const levels: string[] = [];
  let at = start + (rooted ? 1 : 0);
  for (const [i, part] of parts.entries()) {
    if (part === '#' && i === parts.length - 1) descendants = true;
    else if (part === '#') c.fail("'#' may only be the last level of a scope", at);
    else if (part === '') c.fail('empty scope level', at);
    else if (part === '+' || SCOPE_LEVEL.test(part)) levels.push(part);
    else c.fail(`invalid scope level ${JSON.stringify(part)} ('#' and '+' are whole levels)`, at);
    at += part.length + 1;
  }
  return { kind: 'scope', levels, descendants };
}

const scopeText = (p: ScopePattern): string => `/${p.levels.join('/')}`;

const escapeRegex = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function scopeLeafToSql(p: ScopePattern): RawBuilder<boolean> {
  if (p.levels.length === 0) return sql<boolean>`cardinality(e.scopes) > 0`; // '/#' or '#': any scope
  const body = p.levels.map((l) => (l === '+' ? '[^/]+' : escapeRegex(l))).join('/');
  const re = `^/${body}${p.descendants ? '(/.*)?' : ''}$`;
  return sql<boolean>`exists (select 1 from unnest(e.scopes) as s(scope) where s.scope ~ ${re})`;
}

const isExactScope = (p: ScopePattern): boolean => !p.descendants && !p.levels.includes('+');

/**
 * A scope query as a condition on `e.scopes`. Exact scopes collapse into `&&` / `@>` over a
 * bound array (GIN-indexable); `+` and `#` patterns become an anchored, escaped regex.
 */
export function scopeQToSql(node: ScopeNode): RawBuilder<boolean> {
  if (!isLogical(node))
    return isExactScope(node)
      ? sql<boolean>`e.scopes @> ARRAY[${scopeText(node)}]::text[]`
      : scopeLeafToSql(node);
  const exact = [
    ...new Set(node.items.filter((n): n is ScopePattern => !isLogical(n) && isExactScope(n)).map(scopeText)),
  ];
  const parts: RawBuilder<boolean>[] = [];
  if (exact.length > 0) {
    const array = sql`ARRAY[${sql.join(exact)}]::text[]`;
    parts.push(node.kind === 'or' ? sql<boolean>`e.scopes && ${array}` : sql<boolean>`e.scopes @> ${array}`);
  }
  for (const n of node.items)
    if (isLogical(n)) parts.push(scopeQToSql(n));
    else if (!isExactScope(n)) parts.push(scopeLeafToSql(n));
  return sql<boolean>`(${sql.join(parts, sql.raw(node.kind === 'or' ? ' or ' : ' and '))})`;
}

// ---------------------------------------------------------------------------------------------
// attrs / pick / omit

/**
 * Parses an attribute list (`attrs`, `pick`, `omit`; repeated parameters are concatenated):
 * comma-separated, trimmed, de-duplicated in order, no empty items, names per §4.6.2 or absolute
 * IRIs, at most `QUERY_LIMITS.maxAttrs`. `undefined` (parameter absent) stays `undefined`.
 */
export function parseAttrList(s: string | string[] | undefined, param = 'attrs'): string[] | undefined {
  if (s === undefined) return undefined;
  const names: string[] = [];
  for (const [n, part] of (Array.isArray(s) ? s : [s]).entries()) {
    let offset = 0;
    for (const raw of part.split(',')) {
      const name = raw.trim();
      const at = offset + raw.indexOf(name.charAt(0));
      const where = Array.isArray(s) && s.length > 1 ? ` of occurrence ${n + 1}` : '';
      if (name === '')
        throw new NgsiError('BadRequestData', `${param}: empty name at position ${offset + 1}${where}`);
      if (!isValidName(name))
        throw new NgsiError(
          'BadRequestData',
          `${param}: ${JSON.stringify(name.slice(0, 64))} at position ${at + 1}${where} is not a valid attribute name`,
        );
      if (!names.includes(name)) {
        names.push(name);
        if (names.length > QUERY_LIMITS.maxAttrs)
          throw new NgsiError('BadRequestData', `${param}: more than ${QUERY_LIMITS.maxAttrs} names`);
      }
      offset += raw.length + 1;
    }
  }
  return names;
}
