/**
 * The Open311 GeoReport v2 format layer (http://wiki.open311.org/GeoReport_v2): response documents
 * as TypeBox schemas, their XML form (writer and a small strict reader), the form-encoded POST body,
 * and the service list derived from the urban-management classification. Pure: no I/O, no clock.
 */
import { Type, type Static, type TSchema } from 'typebox';
import { Compile, type Validator } from 'typebox/compile';
import { checkComponentId, referenceData, type CategoryClass } from '../kernel/index.ts';

// ── Response documents ──────────────────────────────────────────────────────────────────────

const NonEmpty = Type.String({ minLength: 1 });

/** W3C-note subset of ISO 8601 the spec requires: seconds, optional fraction, `Z` or `±hh:mm`. */
const ISO_DATETIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|([+-])(\d{2}):(\d{2}))$/;

const DateTime = Type.String({
  format: 'date-time',
  pattern: ISO_DATETIME.source,
  description: 'ISO 8601 date and time with an offset, e.g. 2025-05-01T08:30:00+08:00',
});

/** One entry of GET services: what a client may report. */
export const Open311Service = Type.Object(
  {
    service_code: NonEmpty,
    service_name: Type.String(),
    description: Type.String(),
    metadata: Type.Boolean({ description: 'true when GET services/{service_code} lists attributes' }),
    type: Type.Enum(['realtime', 'batch', 'blackbox']),
    keywords: Type.String({ description: 'Comma-separated search terms' }),
    group: Type.String(),
  },
  { additionalProperties: false },
);
export type Open311Service = Static<typeof Open311Service>;

/** GET services: the whole service list. */
export const Open311ServiceList = Type.Array(Open311Service);
export type Open311ServiceList = Static<typeof Open311ServiceList>;

/** One choice of a singlevaluelist or multivaluelist attribute. */
export const Open311AttributeValue = Type.Object(
  { key: NonEmpty, name: Type.String() },
  { additionalProperties: false },
);
export type Open311AttributeValue = Static<typeof Open311AttributeValue>;

/** One extra question a service asks, sent back as `attribute[code]`. */
export const Open311ServiceAttribute = Type.Object(
  {
    variable: Type.Boolean({ description: 'false for an informational attribute that takes no input' }),
    code: NonEmpty,
    datatype: Type.Enum(['string', 'number', 'datetime', 'text', 'singlevaluelist', 'multivaluelist']),
    required: Type.Boolean(),
    datatype_description: Type.String(),
    order: Type.Integer({ minimum: 1, description: 'Display order, 1 first' }),
    description: Type.String(),
    values: Type.Optional(Type.Array(Open311AttributeValue)),
  },
  { additionalProperties: false },
);
export type Open311ServiceAttribute = Static<typeof Open311ServiceAttribute>;

/** GET services/{service_code}: the attributes one service asks for. */
export const Open311ServiceDefinition = Type.Object(
  { service_code: NonEmpty, attributes: Type.Array(Open311ServiceAttribute) },
  { additionalProperties: false },
);
export type Open311ServiceDefinition = Static<typeof Open311ServiceDefinition>;

/** One entry of the POST requests answer; it carries service_request_id or, if deferred, token. */
export const Open311RequestCreatedItem = Type.Object(
  {
    service_request_id: Type.Optional(NonEmpty),
    token: Type.Optional(NonEmpty),
    service_notice: Type.Optional(Type.String()),
    account_id: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);
export type Open311RequestCreatedItem = Static<typeof Open311RequestCreatedItem>;

/** POST requests: the answer to a new report. */
export const Open311RequestCreated = Type.Array(Open311RequestCreatedItem, { minItems: 1 });
export type Open311RequestCreated = Static<typeof Open311RequestCreated>;

/** One entry of GET tokens/{token}: the request a deferred report became. */
export const Open311TokenItem = Type.Object(
  { service_request_id: NonEmpty, token: NonEmpty },
  { additionalProperties: false },
);
export type Open311TokenItem = Static<typeof Open311TokenItem>;

/** GET tokens/{token}. */
export const Open311Token = Type.Array(Open311TokenItem);
export type Open311Token = Static<typeof Open311Token>;

/** One service request as GET requests shows it to anyone. */
export const Open311RequestItem = Type.Object(
  {
    service_request_id: NonEmpty,
    status: Type.Enum(['open', 'closed']),
    status_notes: Type.Optional(Type.String()),
    service_name: Type.String(),
    service_code: NonEmpty,
    description: Type.Optional(Type.String()),
    agency_responsible: Type.Optional(Type.String()),
    service_notice: Type.Optional(Type.String()),
    requested_datetime: DateTime,
    updated_datetime: DateTime,
    expected_datetime: Type.Optional(DateTime),
    address: Type.Optional(Type.String()),
    address_id: Type.Optional(Type.String()),
    zipcode: Type.Optional(Type.String()),
    lat: Type.Number({ minimum: -90, maximum: 90 }),
    long: Type.Number({ minimum: -180, maximum: 180 }),
    media_url: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);
export type Open311RequestItem = Static<typeof Open311RequestItem>;

/** GET requests and GET requests/{service_request_id}. */
export const Open311Request = Type.Array(Open311RequestItem);
export type Open311Request = Static<typeof Open311Request>;

/** One Open311 error: an HTTP status and a sentence for the developer. */
export const Open311Error = Type.Object(
  { code: Type.Integer({ minimum: 100, maximum: 599 }), description: NonEmpty },
  { additionalProperties: false },
);
export type Open311Error = Static<typeof Open311Error>;

/** Any failed GeoReport call. */
export const Open311Errors = Type.Array(Open311Error, { minItems: 1 });
export type Open311Errors = Static<typeof Open311Errors>;

/** The document each GeoReport kind names, so routes get the right type for the kind they send. */
export interface GeoReportDocuments {
  services: Open311ServiceList;
  'service-definition': Open311ServiceDefinition;
  'request-created': Open311RequestCreated;
  tokens: Open311Token;
  requests: Open311Request;
  errors: Open311Errors;
}
/** The six GeoReport response documents, named after the call that returns them. */
export type GeoReportKind = keyof GeoReportDocuments;

/** The schema of each kind: the one source for validation, XML shape and OpenAPI. */
export const GEOREPORT_SCHEMAS = {
  services: Open311ServiceList,
  'service-definition': Open311ServiceDefinition,
  'request-created': Open311RequestCreated,
  tokens: Open311Token,
  requests: Open311Request,
  errors: Open311Errors,
} as const satisfies Record<GeoReportKind, TSchema>;

const validators = new Map<GeoReportKind, Validator>();

function validatorOf(kind: GeoReportKind): Validator {
  let validator = validators.get(kind);
  if (!validator) {
    validator = Compile(GEOREPORT_SCHEMAS[kind]);
    validators.set(kind, validator);
  }
  return validator;
}

/** Problems of `doc` as a `kind` document, each prefixed with its JSON pointer; [] when valid. */
export function validateGeoReport(kind: GeoReportKind, doc: unknown): string[] {
  if (!Object.hasOwn(GEOREPORT_SCHEMAS, kind)) return [`unknown GeoReport document kind "${clip(kind)}"`];
  const problems = new Set<string>();
  for (const e of validatorOf(kind).Errors(doc)) {
    const at = e.instancePath === '' ? '/' : e.instancePath;
    const prefix = e.instancePath;
    switch (e.keyword) {
      case 'additionalProperties':
        for (const name of e.params.additionalProperties)
          problems.add(`${prefix}/${name}: unexpected property`);
        break;
      case 'boolean':
        // The false schema of additionalProperties: reported above with the property's name.
        if (!e.schemaPath.endsWith('/additionalProperties')) problems.add(`${at}: ${e.message}`);
        break;
      case 'required':
        for (const name of e.params.requiredProperties) problems.add(`${prefix}/${name}: is required`);
        break;
      case 'enum':
        problems.add(`${at}: must be one of ${e.params.allowedValues.map(String).join(', ')}`);
        break;
      default:
        problems.add(`${at}: ${e.message}`);
    }
  }
  if (problems.size === 0) for (const p of semanticProblems(kind, doc)) problems.add(p);
  return [...problems];
}

/** What JSON Schema cannot say: one of id/token, list values for list attributes, unique codes. */
function semanticProblems(kind: GeoReportKind, doc: unknown): string[] {
  const problems: string[] = [];
  if (kind === 'request-created') {
    (doc as Open311RequestCreated).forEach((item, i) => {
      if (item.service_request_id === undefined && item.token === undefined)
        problems.push(`/${i}: must have service_request_id or token`);
    });
  } else if (kind === 'service-definition') {
    const seen = new Set<string>();
    (doc as Open311ServiceDefinition).attributes.forEach((a, i) => {
      if (seen.has(a.code)) problems.push(`/attributes/${i}/code: "${a.code}" appears twice`);
      seen.add(a.code);
      const isList = a.datatype === 'singlevaluelist' || a.datatype === 'multivaluelist';
      const values = a.values ?? [];
      if (isList && values.length === 0)
        problems.push(`/attributes/${i}/values: a ${a.datatype} needs values`);
      if (!isList && values.length > 0)
        problems.push(`/attributes/${i}/values: only list datatypes have values`);
      const keys = new Set<string>();
      values.forEach((v, j) => {
        if (keys.has(v.key)) problems.push(`/attributes/${i}/values/${j}/key: "${v.key}" appears twice`);
        keys.add(v.key);
      });
    });
  } else if (kind === 'services') {
    const seen = new Set<string>();
    (doc as Open311ServiceList).forEach((s, i) => {
      if (seen.has(s.service_code)) problems.push(`/${i}/service_code: "${s.service_code}" appears twice`);
      seen.add(s.service_code);
    });
  }
  return problems;
}

// ── XML ─────────────────────────────────────────────────────────────────────────────────────

/** How a value is written as XML: derived from the schemas, so writer and reader never drift. */
type XmlShape =
  | { readonly kind: 'text' | 'number' | 'boolean' }
  | { readonly kind: 'list'; readonly item: string; readonly of: XmlShape }
  | { readonly kind: 'record'; readonly fields: ReadonlyMap<string, XmlShape> };

const XML_ROOT: Record<GeoReportKind, string> = {
  services: 'services',
  'service-definition': 'service_definition',
  'request-created': 'service_requests',
  tokens: 'service_requests',
  requests: 'service_requests',
  errors: 'errors',
};

/** The element of one item in each list element the spec defines. */
const XML_ITEM: Partial<Record<string, string>> = {
  services: 'service',
  service_requests: 'request',
  errors: 'error',
  attributes: 'attribute',
  values: 'value',
};

const XML_DECLARATION = '<?xml version="1.0" encoding="utf-8"?>';

function xmlShape(schema: TSchema, element: string): XmlShape {
  if (Type.IsArray(schema)) {
    const item = XML_ITEM[element];
    if (item === undefined) throw new Error(`no item element is defined for the list <${element}>`);
    return { kind: 'list', item, of: xmlShape(schema.items, item) };
  }
  if (Type.IsObject(schema)) {
    const fields = new Map<string, XmlShape>();
    for (const [name, property] of Object.entries(schema.properties))
      fields.set(name, xmlShape(property, name));
    return { kind: 'record', fields };
  }
  if (Type.IsBoolean(schema)) return { kind: 'boolean' };
  if (Type.IsNumber(schema) || Type.IsInteger(schema)) return { kind: 'number' };
  if (Type.IsString(schema) || Type.IsEnum(schema)) return { kind: 'text' };
  throw new Error(`no XML form for the schema of <${element}>`);
}

const shapes = new Map<GeoReportKind, XmlShape>();

function shapeOf(kind: GeoReportKind): XmlShape {
  let shape = shapes.get(kind);
  if (!shape) {
    shape = xmlShape(GEOREPORT_SCHEMAS[kind], XML_ROOT[kind]);
    shapes.set(kind, shape);
  }
  return shape;
}

/** Characters XML 1.0 forbids (C0 controls other than tab/LF/CR, surrogates, U+FFFE/U+FFFF). */
const ILLEGAL_XML_CHAR = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;
const ILLEGAL_XML_CHARS = new RegExp(ILLEGAL_XML_CHAR.source, 'gu');

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&apos;',
  // A parser turns a raw CR into LF; the reference keeps it.
  '\r': '&#13;',
};

function escapeXml(text: string): string {
  return text.replace(ILLEGAL_XML_CHARS, '').replace(/[&<>"'\r]/g, (c) => ESCAPES[c] ?? c);
}

/** `n` without exponent notation, as the spec's examples write numbers. */
function plainDecimal(n: number): string {
  if (!Number.isFinite(n)) throw new RangeError(`${n} has no XML form`);
  const s = String(n);
  const e = s.indexOf('e');
  if (e < 0) return s;
  const negative = s.startsWith('-');
  const mantissa = s.slice(negative ? 1 : 0, e);
  const exponent = Number(s.slice(e + 1));
  const dot = mantissa.indexOf('.');
  const digits = mantissa.replace('.', '');
  const point = (dot < 0 ? mantissa.length : dot) + exponent;
  const body =
    point <= 0
      ? `0.${'0'.repeat(-point)}${digits}`
      : point >= digits.length
        ? digits + '0'.repeat(point - digits.length)
        : `${digits.slice(0, point)}.${digits.slice(point)}`;
  return (negative ? '-' : '') + body;
}

function writeXml(name: string, shape: XmlShape, value: unknown, out: string[]): void {
  out.push(`<${name}>`);
  switch (shape.kind) {
    case 'list':
      for (const item of value as unknown[]) writeXml(shape.item, shape.of, item, out);
      break;
    case 'record': {
      const record = value as Record<string, unknown>;
      for (const [field, fieldShape] of shape.fields)
        if (record[field] !== undefined) writeXml(field, fieldShape, record[field], out);
      break;
    }
    case 'number':
      out.push(plainDecimal(value as number));
      break;
    case 'boolean':
      out.push(value === true ? 'true' : 'false');
      break;
    case 'text':
      out.push(escapeXml(value as string));
  }
  out.push(`</${name}>`);
}

/** The spec's XML for a `kind` document; throws a TypeError listing the problems of an invalid one. */
export function toOpen311Xml<K extends GeoReportKind>(kind: K, doc: GeoReportDocuments[K]): string {
  const problems = validateGeoReport(kind, doc);
  if (problems.length > 0) throw new TypeError(`not a valid ${kind} document: ${problems.join('; ')}`);
  const out: string[] = [XML_DECLARATION, '\n'];
  writeXml(XML_ROOT[kind], shapeOf(kind), doc, out);
  return out.join('');
}

interface XmlElement {
  readonly name: string;
  readonly children: XmlElement[];
  readonly text: string;
  readonly offset: number;
}

const MAX_XML_DEPTH = 16;
const XML_NAME = /[A-Za-z_][A-Za-z0-9._-]*/y;
const XML_SPACE = /^[ \t\n]*$/;
const XML_DECL =
  /<\?xml[ \t\n]+version[ \t\n]*=[ \t\n]*(["'])1\.0\1(?:[ \t\n]+encoding[ \t\n]*=[ \t\n]*(["'])([A-Za-z][A-Za-z0-9._-]*)\2)?(?:[ \t\n]+standalone[ \t\n]*=[ \t\n]*(["'])(?:yes|no)\4)?[ \t\n]*\?>/y;
const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/** A well-formedness reader for the subset GeoReport uses: elements, text, CDATA, comments. */
class XmlCursor {
  pos = 0;
  constructor(private readonly src: string) {}

  fail(message: string, at = this.pos): never {
    throw new SyntaxError(`malformed XML at offset ${at}: ${message}`);
  }

  at(s: string): boolean {
    return this.src.startsWith(s, this.pos);
  }

  document(): XmlElement {
    XML_DECL.lastIndex = 0;
    if (this.at('<?xml')) {
      const decl = XML_DECL.exec(this.src);
      if (!decl) this.fail('malformed XML declaration (version must be 1.0)');
      const encoding = decl[3];
      if (encoding !== undefined && encoding.toLowerCase() !== 'utf-8')
        this.fail(`encoding must be utf-8, not ${encoding}`);
      this.pos = XML_DECL.lastIndex;
    }
    this.misc();
    if (!this.at('<')) this.fail('expected the root element');
    const root = this.element(0);
    this.misc();
    if (this.pos < this.src.length) this.fail('content after the root element');
    return root;
  }

  /** Whitespace and comments; anything else outside elements is refused. */
  misc(): void {
    for (;;) {
      while (this.pos < this.src.length && ' \t\n'.includes(this.src.charAt(this.pos))) this.pos++;
      if (this.at('<!--')) this.comment();
      else if (this.at('<!')) this.fail('DOCTYPE and other declarations are not supported');
      else if (this.at('<?')) this.fail('processing instructions are not supported');
      else return;
    }
  }

  comment(): void {
    const end = this.src.indexOf('-->', this.pos + 4);
    if (end < 0) this.fail('unterminated comment');
    const body = this.src.slice(this.pos + 4, end);
    if (body.includes('--') || body.endsWith('-')) this.fail('"--" inside a comment');
    this.pos = end + 3;
  }

  name(): string {
    XML_NAME.lastIndex = this.pos;
    const m = XML_NAME.exec(this.src);
    if (!m) this.fail('expected an element name');
    this.pos = XML_NAME.lastIndex;
    return m[0];
  }

  element(depth: number): XmlElement {
    if (depth > MAX_XML_DEPTH) this.fail(`elements nested deeper than ${MAX_XML_DEPTH}`);
    const offset = this.pos;
    this.pos++; // '<'
    const name = this.name();
    while (' \t\n'.includes(this.src.charAt(this.pos)) && this.pos < this.src.length) this.pos++;
    if (this.at('/>')) {
      this.pos += 2;
      return { name, children: [], text: '', offset };
    }
    if (!this.at('>'))
      this.fail(
        /[A-Za-z_]/.test(this.src.charAt(this.pos))
          ? `attributes are not supported (on <${name}>)`
          : `expected ">" to end <${name}>`,
      );
    this.pos++;
    const children: XmlElement[] = [];
    let text = '';
    for (;;) {
      if (this.pos >= this.src.length) this.fail(`<${name}> is not closed`, offset);
      if (this.at('</')) {
        this.pos += 2;
        const closing = this.name();
        if (closing !== name) this.fail(`</${closing}> does not close <${name}>`);
        while (' \t\n'.includes(this.src.charAt(this.pos)) && this.pos < this.src.length) this.pos++;
        if (!this.at('>')) this.fail(`expected ">" to end </${name}>`);
        this.pos++;
        break;
      }
      if (this.at('<!--')) this.comment();
      else if (this.at('<![CDATA[')) {
        const end = this.src.indexOf(']]>', this.pos + 9);
        if (end < 0) this.fail('unterminated CDATA section');
        text += this.src.slice(this.pos + 9, end);
        this.pos = end + 3;
      } else if (this.at('<!')) this.fail('declarations are not allowed inside elements');
      else if (this.at('<?')) this.fail('processing instructions are not supported');
      else if (this.at('<')) children.push(this.element(depth + 1));
      else {
        let end = this.src.indexOf('<', this.pos);
        if (end < 0) end = this.src.length;
        text += this.characters(this.src.slice(this.pos, end));
        this.pos = end;
      }
    }
    if (children.length > 0 && !XML_SPACE.test(text)) this.fail(`<${name}> mixes text and elements`, offset);
    return { name, children, text, offset };
  }

  /** Character data with its references resolved. */
  characters(raw: string): string {
    if (raw.includes(']]>')) this.fail('"]]>" is not allowed in text');
    let out = '';
    let from = 0;
    for (let amp = raw.indexOf('&'); amp >= 0; amp = raw.indexOf('&', from)) {
      out += raw.slice(from, amp);
      const semi = raw.indexOf(';', amp);
      const ref = semi < 0 ? '' : raw.slice(amp + 1, semi);
      const at = this.pos + amp;
      let char = ENTITIES[ref];
      if (char === undefined) {
        const numeric = /^#(?:([0-9]{1,7})|x([0-9a-fA-F]{1,6}))$/.exec(ref);
        if (!numeric) this.fail(`"&" must start a character reference such as &amp;`, at);
        const codePoint = numeric[1] !== undefined ? Number(numeric[1]) : parseInt(numeric[2] ?? '', 16);
        if (codePoint > 0x10ffff) this.fail(`&${ref}; is not a character`, at);
        char = String.fromCodePoint(codePoint);
        if (ILLEGAL_XML_CHAR.test(char)) this.fail(`&${ref}; is not allowed in XML 1.0`, at);
      }
      out += char;
      from = semi + 1;
    }
    return out + raw.slice(from);
  }
}

const DECIMAL_TEXT = /^-?\d+(\.\d+)?$/;

function fromXml(element: XmlElement, shape: XmlShape): unknown {
  const where = `<${element.name}> at offset ${element.offset}`;
  if ((shape.kind === 'list' || shape.kind === 'record') && !XML_SPACE.test(element.text))
    throw new Error(`${where} must hold elements, not text`);
  switch (shape.kind) {
    case 'list':
      return element.children.map((child) => {
        if (child.name !== shape.item)
          throw new Error(`${where} may hold only <${shape.item}>, not <${child.name}>`);
        return fromXml(child, shape.of);
      });
    case 'record': {
      const entries = new Map<string, unknown>();
      for (const child of element.children) {
        if (entries.has(child.name)) throw new Error(`<${child.name}> appears twice in ${where}`);
        // An unknown leaf is kept as text so validation names it; an unknown structure has no JSON form.
        entries.set(child.name, fromXml(child, shape.fields.get(child.name) ?? { kind: 'text' }));
      }
      return Object.fromEntries(entries);
    }
    case 'text':
    case 'number':
    case 'boolean': {
      if (element.children.length > 0) throw new Error(`${where} must hold text, not elements`);
      const text = element.text;
      // Text that is no number or boolean stays a string: validation then reports the field.
      if (shape.kind === 'number') return DECIMAL_TEXT.test(text) ? Number(text) : text;
      if (shape.kind === 'boolean') return text === 'true' ? true : text === 'false' ? false : text;
      return text;
    }
  }
}

/** A GeoReport XML document back in its JSON shape (validate it next); throws on malformed XML. */
export function parseOpen311Xml(kind: GeoReportKind, text: string): unknown {
  const illegal = ILLEGAL_XML_CHAR.exec(text.replace(/^\uFEFF/, ''));
  if (illegal) {
    const code = (illegal[0].codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0');
    throw new SyntaxError(`malformed XML at offset ${illegal.index}: character U+${code} is not allowed`);
  }
  // XML 1.0 §2.11: CRLF and lone CR are read as LF.
  const root = new XmlCursor(text.replace(/^\uFEFF/, '').replace(/\r\n?/g, '\n')).document();
  const expected = XML_ROOT[kind];
  if (root.name !== expected)
    throw new Error(`a ${kind} document has the root <${expected}>, not <${root.name}>`);
  return fromXml(root, shapeOf(kind));
}

// ── Form-encoded POST requests ──────────────────────────────────────────────────────────────

/** A POST requests body, decoded: plain fields and `attribute[code]` answers. */
export interface Open311Form {
  fields: Record<string, string>;
  attributes: Record<string, string | string[]>;
}

/** A report is a few fields of text (media goes by URL), so anything larger is abuse, not a report. */
export const OPEN311_FORM_MAX_BYTES = 64 * 1024;
/** Fifteen spec fields plus a service's attributes fit well within this; it bounds the work per body. */
export const OPEN311_FORM_MAX_FIELDS = 100;

const ATTRIBUTE_NAME = /^attribute\[([^[\]]+)\](\[\])?$/;

function decodeFormComponent(raw: string, what: string): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    throw new RangeError(`malformed percent-encoding in ${what}`);
  }
}

/** Decodes an x-www-form-urlencoded body strictly; throws a RangeError naming the first problem. */
export function parseOpen311Form(body: string): Open311Form {
  const bytes = Buffer.byteLength(body, 'utf8');
  if (bytes > OPEN311_FORM_MAX_BYTES)
    throw new RangeError(`form body is ${bytes} bytes; at most ${OPEN311_FORM_MAX_BYTES} are accepted`);
  const pairs = body.split('&').filter((p) => p !== '');
  if (pairs.length > OPEN311_FORM_MAX_FIELDS)
    throw new RangeError(`form has ${pairs.length} fields; at most ${OPEN311_FORM_MAX_FIELDS} are accepted`);
  const fields = new Map<string, string>();
  const single = new Map<string, string>();
  const multi = new Map<string, string[]>();
  pairs.forEach((pair, i) => {
    const eq = pair.indexOf('=');
    const name = decodeFormComponent(eq < 0 ? pair : pair.slice(0, eq), `the name of field ${i + 1}`);
    if (name === '') throw new RangeError(`field ${i + 1} has no name`);
    const value = decodeFormComponent(eq < 0 ? '' : pair.slice(eq + 1), `the value of field "${clip(name)}"`);
    if (!name.startsWith('attribute[')) {
      if (fields.has(name)) throw new RangeError(`field "${clip(name)}" is sent more than once`);
      fields.set(name, value);
      return;
    }
    const m = ATTRIBUTE_NAME.exec(name);
    const code = m?.[1];
    if (m === null || code === undefined)
      throw new RangeError(
        `malformed attribute field name "${clip(name)}"; use attribute[code] or attribute[code][]`,
      );
    if (m[2] === undefined) {
      if (single.has(code))
        throw new RangeError(
          `attribute[${clip(code)}] is sent more than once; use attribute[${clip(code)}][]`,
        );
      if (multi.has(code)) throw new RangeError(`attribute[${clip(code)}] is sent both with and without []`);
      single.set(code, value);
    } else {
      if (single.has(code)) throw new RangeError(`attribute[${clip(code)}] is sent both with and without []`);
      const values = multi.get(code) ?? [];
      values.push(value);
      multi.set(code, values);
    }
  });
  return {
    fields: Object.fromEntries(fields),
    attributes: Object.fromEntries<string | string[]>([...single, ...multi]),
  };
}

/** A citizen report as POST requests carries it, checked and renamed to the platform's style. */
export interface Open311Report {
  apiKey?: string;
  jurisdictionId?: string;
  serviceCode: string;
  lat?: number;
  long?: number;
  addressString?: string;
  addressId?: string;
  email?: string;
  deviceId?: string;
  accountId?: string;
  firstName?: string;
  lastName?: string;
  phone?: string;
  description?: string;
  mediaUrl?: string;
  attributes: Record<string, string | string[]>;
}

/** A service code: the platform's category id, kind and four-digit classification code. */
export const OPEN311_CATEGORY_PATTERN = /^(component|event|hotline):(\d{4})$/;

const LENGTH_RULES = [
  { field: 'jurisdiction_id', key: 'jurisdictionId', max: 100 },
  { field: 'address_string', key: 'addressString', max: 500 },
  { field: 'address_id', key: 'addressId', max: 100 },
  { field: 'device_id', key: 'deviceId', max: 100 },
  { field: 'account_id', key: 'accountId', max: 100 },
  { field: 'first_name', key: 'firstName', max: 50 },
  { field: 'last_name', key: 'lastName', max: 50 },
  { field: 'description', key: 'description', max: 4000 },
] as const;

const REPORT_FIELDS = new Set<string>([
  'api_key',
  'service_code',
  'lat',
  'long',
  'email',
  'phone',
  'media_url',
  ...LENGTH_RULES.map((r) => r.field),
]);

const COORDINATE = /^[+-]?(\d+(\.\d*)?|\.\d+)$/;
const EMAIL = /^[^\s@]+@[^\s@.]+(\.[^\s@.]+)+$/;
const PHONE = /^[0-9+\- ]{5,20}$/;
/** C0 controls other than tab, LF and CR, and DEL: never part of a report. */
function hasControl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) || c === 0x7f) return true;
  }
  return false;
}

/** Length in code points, the characters a person counts (a CJK extension character is one). */
function length(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

function isHttpUrl(s: string): boolean {
  if (!URL.canParse(s)) return false;
  const url = new URL(s);
  return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '';
}

/**
 * Checks a decoded POST requests form against GeoReport v2 and returns the report, or every
 * problem as Open311 400 errors; attributes pass through (see checkOpen311Attributes).
 */
export function readOpen311Report(
  input: Open311Form,
  options: { apiKeyRequired: boolean } = { apiKeyRequired: true },
): { ok: true; report: Open311Report } | { ok: false; errors: { code: number; description: string }[] } {
  const errors: { code: number; description: string }[] = [];
  const problem = (description: string): void => {
    errors.push({ code: 400, description });
  };
  for (const [name, value] of Object.entries(input.fields)) {
    if (!REPORT_FIELDS.has(name)) problem(`${clip(name)} is not a field of a GeoReport v2 request`);
    else if (hasControl(value)) problem(`${name} must not contain control characters`);
  }
  for (const [code, value] of Object.entries(input.attributes))
    if ((Array.isArray(value) ? value : [value]).some(hasControl))
      problem(`attribute[${clip(code)}] must not contain control characters`);
  /** A known field's value with blank meaning absent, as HTML forms send unfilled inputs. */
  const field = (name: string): string | undefined => {
    if (!Object.hasOwn(input.fields, name)) return undefined;
    const value = input.fields[name] ?? '';
    return value.trim() === '' ? undefined : value;
  };

  const report: Open311Report = { serviceCode: '', attributes: { ...input.attributes } };

  const apiKey = field('api_key')?.trim();
  if (apiKey === undefined) {
    if (options.apiKeyRequired) problem('api_key is required');
  } else if (length(apiKey) > 256) problem('api_key must be at most 256 characters');
  else report.apiKey = apiKey;

  const serviceCode = field('service_code')?.trim();
  if (serviceCode === undefined) problem('service_code is required');
  else if (!OPEN311_CATEGORY_PATTERN.test(serviceCode))
    problem(
      `service_code must be a category id such as event:0102 or component:0101, got "${clip(serviceCode)}"`,
    );
  else report.serviceCode = serviceCode;

  const lat = field('lat')?.trim();
  const long = field('long')?.trim();
  if ((lat === undefined) !== (long === undefined)) problem('lat and long must be sent together');
  if (lat !== undefined) {
    const n = Number(lat);
    if (COORDINATE.test(lat) && n >= -90 && n <= 90) report.lat = n;
    else problem('lat must be a decimal number between -90 and 90');
  }
  if (long !== undefined) {
    const n = Number(long);
    if (COORDINATE.test(long) && n >= -180 && n <= 180) report.long = n;
    else problem('long must be a decimal number between -180 and 180');
  }

  for (const rule of LENGTH_RULES) {
    const raw = field(rule.field);
    const value = rule.field === 'description' ? raw : raw?.trim();
    if (value === undefined) continue;
    if (length(value) > rule.max) problem(`${rule.field} must be at most ${rule.max} characters`);
    else report[rule.key] = value;
  }
  if (
    lat === undefined &&
    long === undefined &&
    field('address_string') === undefined &&
    field('address_id') === undefined
  )
    problem('a location is required: lat and long, address_string or address_id');

  const email = field('email')?.trim();
  if (email !== undefined) {
    if (email.length <= 254 && EMAIL.test(email)) report.email = email;
    else problem('email must be an e-mail address such as name@example.com');
  }
  const phone = field('phone')?.trim();
  if (phone !== undefined) {
    if (PHONE.test(phone) && /\d/.test(phone)) report.phone = phone;
    else problem('phone must be 5 to 20 characters: digits, "+", "-" and spaces');
  }
  const mediaUrl = field('media_url')?.trim();
  if (mediaUrl !== undefined) {
    if (mediaUrl.length <= 2048 && isHttpUrl(mediaUrl)) report.mediaUrl = mediaUrl;
    else problem('media_url must be an absolute http or https URL of at most 2048 characters');
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, report };
}

function clip(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}

// ── Services from the classification ────────────────────────────────────────────────────────

const KIND_LABELS: Record<CategoryClass['kind'], { zh: string; en: string; short: string }> = {
  component: { zh: '城市部件', en: 'City component (部件)', short: '部件' },
  event: { zh: '城市事件', en: 'City event (事件)', short: '事件' },
  hotline: { zh: '12345热线', en: '12345 hotline (热线)', short: '热线' },
};
const KIND_ORDER: CategoryClass['kind'][] = ['component', 'event', 'hotline'];

/** The classification row a service code names, if any. */
function categoryOf(serviceCode: string): CategoryClass | undefined {
  const m = OPEN311_CATEGORY_PATTERN.exec(serviceCode);
  if (!m) return undefined;
  return referenceData()
    .categories.get(m[2] ?? '')
    ?.find((c) => c.kind === m[1]);
}

/** GET services: one realtime service per classification row, coded `${kind}:${code}` like every category id. */
export function open311Services(lang: 'zh' | 'en'): Open311Service[] {
  return [...referenceData().categories.values()]
    .flat()
    .sort((a, b) => KIND_ORDER.indexOf(a.kind) - KIND_ORDER.indexOf(b.kind) || a.code.localeCompare(b.code))
    .map((c) => ({
      service_code: `${c.kind}:${c.code}`,
      service_name: c.name,
      description: `${KIND_LABELS[c.kind][lang]} · ${c.majorName} · ${c.name}`,
      metadata: true,
      type: 'realtime',
      keywords: `${c.kind},${KIND_LABELS[c.kind].short},${c.majorName}`,
      group: c.majorName,
    }));
}

const URGENCY_VALUES = { zh: ['一般', '紧急'], en: ['Normal (一般)', 'Urgent (紧急)'] } as const;

/** GET services/{service_code}: its optional attributes, or undefined for an unknown service. */
export function open311ServiceDefinition(
  serviceCode: string,
  lang: 'zh' | 'en' = 'zh',
): Open311ServiceDefinition | undefined {
  const category = categoryOf(serviceCode);
  if (!category) return undefined;
  const zh = lang === 'zh';
  const attributes: Open311ServiceAttribute[] = [];
  if (category.kind === 'component')
    attributes.push({
      variable: true,
      code: 'component_id',
      datatype: 'string',
      required: false,
      datatype_description: `${zh ? '16位数字，例如' : '16 digits, e.g.'} 310101${category.code}000001`,
      order: attributes.length + 1,
      description: zh
        ? '城市部件标识（16位：区划代码 + 大类 + 小类 + 序号）'
        : '16-digit city component identifier: district code + major + minor + serial',
    });
  if (category.kind === 'event')
    attributes.push({
      variable: true,
      code: 'occurred_at',
      datatype: 'datetime',
      required: false,
      datatype_description: `${zh ? 'ISO 8601 日期时间（含时区），例如' : 'ISO 8601 date and time with offset, e.g.'} 2025-05-01T08:30:00+08:00`,
      order: attributes.length + 1,
      description: zh ? '事件发生时间' : 'When the event happened',
    });
  const [normal, urgent] = URGENCY_VALUES[lang];
  attributes.push({
    variable: true,
    code: 'urgency',
    datatype: 'singlevaluelist',
    required: false,
    datatype_description: zh ? '一般或紧急' : 'normal or urgent',
    order: attributes.length + 1,
    description: zh ? '紧急程度' : 'Urgency',
    values: [
      { key: 'normal', name: normal },
      { key: 'urgent', name: urgent },
    ],
  });
  return { service_code: `${category.kind}:${category.code}`, attributes };
}

const NUMBER_TEXT = /^[+-]?(\d+(\.\d*)?|\.\d+)$/;

/** True for an ISO 8601 date-time with offset that names a real instant (no 30 February). */
function isIsoDateTime(s: string): boolean {
  const m = ISO_DATETIME.exec(s);
  if (!m) return false;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number);
  if (year === undefined || month === undefined || day === undefined) return false;
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  const offsetOk = m[8] === 'Z' || (Number(m[10]) <= 23 && Number(m[11]) <= 59);
  return (
    month >= 1 &&
    month <= 12 &&
    day >= 1 &&
    day <= daysInMonth &&
    (hour ?? 99) <= 23 &&
    (minute ?? 99) <= 59 &&
    (second ?? 99) <= 59 &&
    offsetOk
  );
}

function checkAttributeValue(
  serviceCode: string,
  attribute: Open311ServiceAttribute,
  value: string | string[],
): string[] {
  const label = `attribute[${attribute.code}]`;
  const keys = (attribute.values ?? []).map((v) => v.key);
  if (attribute.datatype === 'multivaluelist') {
    const chosen = Array.isArray(value) ? value : [value];
    const unknown = chosen.filter((v) => !keys.includes(v));
    if (unknown.length > 0)
      return [`${label} takes values from ${keys.join(', ')}; got "${clip(unknown.join(', '))}"`];
    return new Set(chosen).size === chosen.length ? [] : [`${label} repeats a value`];
  }
  if (Array.isArray(value)) return [`${label} takes one value, got ${value.length}`];
  switch (attribute.datatype) {
    case 'singlevaluelist':
      return keys.includes(value) ? [] : [`${label} must be one of ${keys.join(', ')}; got "${clip(value)}"`];
    case 'number':
      return NUMBER_TEXT.test(value.trim())
        ? []
        : [`${label} must be a decimal number, got "${clip(value)}"`];
    case 'datetime':
      return isIsoDateTime(value.trim())
        ? []
        : [`${label} must be an ISO 8601 date and time with offset such as 2025-05-01T08:30:00+08:00`];
    case 'string':
    case 'text': {
      const max = attribute.datatype === 'string' ? 500 : 4000;
      if (length(value) > max) return [`${label} must be at most ${max} characters`];
      if (attribute.code !== 'component_id') return [];
      const check = checkComponentId(value);
      if (!check.valid) return [`${label}: ${check.message}`];
      const classCode = serviceCode.slice(serviceCode.indexOf(':') + 1);
      return check.value.category.code === classCode
        ? []
        : [
            `${label} identifies a ${check.value.category.name} (class ${check.value.category.code}), not a component of service ${serviceCode}`,
          ];
    }
  }
}

/** Problems of a report's attributes against the service definition; [] when they may be stored. */
export function checkOpen311Attributes(
  serviceCode: string,
  attributes: Readonly<Record<string, string | string[]>>,
): string[] {
  const definition = open311ServiceDefinition(serviceCode);
  if (!definition) return [`service_code "${clip(serviceCode)}" is not a known service`];
  const byCode = new Map(definition.attributes.map((a) => [a.code, a]));
  const problems: string[] = [];
  for (const [code, value] of Object.entries(attributes)) {
    const attribute = byCode.get(code);
    if (!attribute) problems.push(`attribute[${clip(code)}] is not an attribute of service ${serviceCode}`);
    else problems.push(...checkAttributeValue(serviceCode, attribute, value));
  }
  for (const a of definition.attributes)
    if (a.required && !Object.hasOwn(attributes, a.code)) problems.push(`attribute[${a.code}] is required`);
  return problems;
}
