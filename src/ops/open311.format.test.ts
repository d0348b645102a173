/** Open311 GeoReport v2 format layer: schemas, XML both ways, the POST form and the service list. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import {
  checkOpen311Attributes,
  OPEN311_CATEGORY_PATTERN,
  open311ServiceDefinition,
  open311Services,
  parseOpen311Form,
  parseOpen311Xml,
  readOpen311Report,
  toOpen311Xml,
  validateGeoReport,
  type GeoReportDocuments,
  type GeoReportKind,
  type Open311Form,
  type Open311ServiceDefinition,
} from './open311.format.ts';

const DECLARATION = '<?xml version="1.0" encoding="utf-8"?>';

const definition: Open311ServiceDefinition = {
  service_code: 'event:0102',
  attributes: [
    {
      variable: true,
      code: 'occurred_at',
      datatype: 'datetime',
      required: false,
      datatype_description: 'ISO 8601',
      order: 1,
      description: '事件发生时间',
    },
    {
      variable: true,
      code: 'sides',
      datatype: 'multivaluelist',
      required: true,
      datatype_description: '',
      order: 2,
      description: 'Which sides of the road?',
      values: [
        { key: 'north', name: '北侧' },
        { key: 'south', name: '南侧' },
      ],
    },
    {
      variable: false,
      code: 'notice',
      datatype: 'text',
      required: false,
      datatype_description: '',
      order: 3,
      description: 'Photos help: 请附照片',
    },
  ],
};

/** One valid document of every kind, with optional fields both present and absent. */
const samples: { [K in GeoReportKind]: GeoReportDocuments[K] } = {
  services: open311Services('zh').slice(0, 3),
  'service-definition': definition,
  'request-created': [
    { service_request_id: '2025-000123', service_notice: '预计 2 小时内处置', account_id: '' },
    { token: 'a1b2c3' },
  ],
  tokens: [{ service_request_id: '2025-000123', token: 'a1b2c3' }],
  requests: [
    {
      service_request_id: '2025-000123',
      status: 'open',
      status_notes: '已派遣至黄浦区城管',
      service_name: '上水井盖',
      service_code: 'component:0101',
      description: '井盖缺失 — "危险" & <紧急>',
      agency_responsible: '黄浦区城运中心',
      service_notice: '',
      requested_datetime: '2025-05-01T08:30:00+08:00',
      updated_datetime: '2025-05-01T09:00:00.250+08:00',
      expected_datetime: '2025-05-02T08:30:00Z',
      address: '中山东一路 1 号',
      address_id: 'addr-1',
      zipcode: '200002',
      lat: 31.2397,
      long: 121.4909,
      media_url: 'https://example.org/p/1.jpg?a=1&b=2',
    },
    {
      service_request_id: '2025-000124',
      status: 'closed',
      service_name: '道路破损',
      service_code: 'event:0102',
      requested_datetime: '2025-05-01T08:30:00Z',
      updated_datetime: '2025-05-01T08:30:00Z',
      lat: -0.0000001,
      long: 0,
    },
  ],
  errors: [
    { code: 400, description: 'service_code is required' },
    { code: 404, description: '找不到服务' },
  ],
};

const KINDS = Object.keys(samples) as GeoReportKind[];

function roundTrip<K extends GeoReportKind>(kind: K, doc: GeoReportDocuments[K]): unknown {
  return parseOpen311Xml(kind, toOpen311Xml(kind, doc));
}

describe('GeoReport documents', () => {
  for (const kind of KINDS) {
    it(`${kind}: valid, and JSON → XML → JSON gives the same document`, () => {
      const doc = samples[kind];
      assert.deepEqual(validateGeoReport(kind, doc), []);
      const xml = toOpen311Xml(kind, doc);
      assert.ok(xml.startsWith(`${DECLARATION}\n<`), xml.slice(0, 60));
      const back = parseOpen311Xml(kind, xml);
      assert.deepEqual(back, doc);
      assert.deepEqual(validateGeoReport(kind, back), []);
    });
  }

  it('writes the element structure of the spec', () => {
    assert.equal(
      toOpen311Xml('errors', [{ code: 400, description: 'bad' }]),
      `${DECLARATION}\n<errors><error><code>400</code><description>bad</description></error></errors>`,
    );
    assert.equal(
      toOpen311Xml('tokens', [{ service_request_id: '1', token: 't' }]),
      `${DECLARATION}\n<service_requests><request><service_request_id>1</service_request_id><token>t</token></request></service_requests>`,
    );
    assert.equal(
      toOpen311Xml('request-created', [{ service_request_id: '7' }]),
      `${DECLARATION}\n<service_requests><request><service_request_id>7</service_request_id></request></service_requests>`,
    );
    assert.equal(toOpen311Xml('services', []), `${DECLARATION}\n<services></services>`);
    const def = toOpen311Xml('service-definition', definition);
    assert.match(
      def,
      /^<\?xml[^>]*>\n<service_definition><service_code>event:0102<\/service_code><attributes><attribute>/,
    );
    assert.match(
      def,
      /<values><value><key>north<\/key><name>北侧<\/name><\/value><value><key>south<\/key><name>南侧<\/name><\/value><\/values>/,
    );
    assert.match(def, /<variable>false<\/variable>.*<required>false<\/required>/);
    const service = toOpen311Xml('services', samples.services);
    assert.match(service, /^<\?xml[^>]*>\n<services><service><service_code>component:0101<\/service_code>/);
    assert.match(service, /<metadata>true<\/metadata><type>realtime<\/type>/);
  });

  it('omits absent optional fields and keeps empty ones', () => {
    const xml = toOpen311Xml('requests', samples.requests);
    const second = xml.slice(xml.lastIndexOf('<request>'));
    for (const absent of ['status_notes', 'description', 'expected_datetime', 'address', 'media_url'])
      assert.ok(!second.includes(`<${absent}>`), absent);
    assert.ok(xml.includes('<service_notice></service_notice>'));
  });

  it('escapes markup characters, keeps Chinese text, and strips characters XML 1.0 forbids', () => {
    const xml = toOpen311Xml('errors', [
      { code: 400, description: `井盖 <b>&"x"'y'\u0001\u0008\u000B\uFFFF\uD800 ok\tz` },
    ]);
    assert.ok(
      xml.includes('<description>井盖 &lt;b&gt;&amp;&quot;x&quot;&apos;y&apos; ok\tz</description>'),
      xml,
    );
    assert.deepEqual(parseOpen311Xml('errors', xml), [{ code: 400, description: `井盖 <b>&"x"'y' ok\tz` }]);
  });

  it('keeps CR and CRLF inside text through a round trip', () => {
    const doc = [{ code: 400, description: 'line 1\r\nline 2\rline 3\nend' }];
    const xml = toOpen311Xml('errors', doc);
    assert.ok(xml.includes('line 1&#13;\nline 2&#13;line 3\nend'));
    assert.deepEqual(parseOpen311Xml('errors', xml), doc);
  });

  it('writes numbers as plain decimals, never in exponent notation', () => {
    const [request] = samples.requests;
    assert.ok(request);
    const xml = toOpen311Xml('requests', [{ ...request, lat: 1.5e-7, long: -1e-7 }]);
    assert.ok(xml.includes('<lat>0.00000015</lat><long>-0.0000001</long>'), xml);
    assert.deepEqual(parseOpen311Xml('requests', xml), [{ ...request, lat: 1.5e-7, long: -1e-7 }]);
  });

  it('refuses to write an invalid document', () => {
    assert.throws(
      () => toOpen311Xml('errors', [{ code: 400, description: '' }]),
      (e) => e instanceof TypeError && e.message.includes('/0/description'),
    );
    assert.throws(() => toOpen311Xml('errors', []), TypeError);
  });
});

describe('validateGeoReport', () => {
  it('rejects wrong types', () => {
    const [service] = samples.services;
    assert.ok(service);
    assert.deepEqual(validateGeoReport('services', [{ ...service, metadata: 'true' }]), [
      '/0/metadata: must be boolean',
    ]);
    assert.deepEqual(validateGeoReport('services', [{ ...service, type: 'instant' }]), [
      '/0/type: must be one of realtime, batch, blackbox',
    ]);
    assert.deepEqual(validateGeoReport('services', { service: service }), ['/: must be array']);
    assert.deepEqual(validateGeoReport('errors', [{ code: '400', description: 'x' }]), [
      '/0/code: must be integer',
    ]);
    const [request] = samples.requests;
    assert.ok(request);
    assert.deepEqual(validateGeoReport('requests', [{ ...request, lat: '31.2' }]), [
      '/0/lat: must be number',
    ]);
    assert.deepEqual(validateGeoReport('requests', [{ ...request, lat: 91 }]), ['/0/lat: must be <= 90']);
    assert.deepEqual(validateGeoReport('requests', [{ ...request, status: 'pending' }]), [
      '/0/status: must be one of open, closed',
    ]);
  });

  it('rejects date-times without an offset or outside the ISO 8601 subset', () => {
    const [request] = samples.requests;
    assert.ok(request);
    for (const bad of ['2025-05-01T08:30:00', '2025-05-01 08:30:00Z', '2025-02-30T08:30:00Z', '2025-05-01'])
      assert.ok(
        validateGeoReport('requests', [{ ...request, requested_datetime: bad }]).some((p) =>
          p.startsWith('/0/requested_datetime:'),
        ),
        bad,
      );
  });

  it('rejects missing required fields and extra fields', () => {
    assert.deepEqual(validateGeoReport('tokens', [{ token: 't', status: 'open' }]), [
      '/0/service_request_id: is required',
      '/0/status: unexpected property',
    ]);
    assert.deepEqual(validateGeoReport('service-definition', { service_code: 'event:0102' }), [
      '/attributes: is required',
    ]);
    const [attribute] = definition.attributes;
    assert.ok(attribute);
    assert.deepEqual(
      validateGeoReport('service-definition', { ...definition, attributes: [{ ...attribute, hint: 'x' }] }),
      ['/attributes/0/hint: unexpected property'],
    );
    assert.deepEqual(validateGeoReport('errors', []), ['/: must not have fewer than 1 items']);
  });

  it('checks what the schema cannot: id or token, list values, unique codes', () => {
    assert.deepEqual(validateGeoReport('request-created', [{ service_notice: 'x' }]), [
      '/0: must have service_request_id or token',
    ]);
    const [first, second] = definition.attributes;
    assert.ok(first && second);
    assert.deepEqual(
      validateGeoReport('service-definition', {
        service_code: 'x',
        attributes: [{ ...second, values: [] }, first],
      }),
      ['/attributes/0/values: a multivaluelist needs values'],
    );
    assert.deepEqual(
      validateGeoReport('service-definition', {
        service_code: 'x',
        attributes: [first, { ...first, order: 2, values: [{ key: 'a', name: 'a' }] }],
      }),
      [
        '/attributes/1/code: "occurred_at" appears twice',
        '/attributes/1/values: only list datatypes have values',
      ],
    );
    const [service] = samples.services;
    assert.ok(service);
    assert.deepEqual(validateGeoReport('services', [service, service]), [
      '/1/service_code: "component:0101" appears twice',
    ]);
  });
});

describe('parseOpen311Xml', () => {
  it('reads what other servers write: whitespace, comments, CDATA, references, empty elements', () => {
    const xml = `\uFEFF<?xml version='1.0' encoding='UTF-8' standalone="yes"?>\r\n<!-- a GeoReport answer -->\r\n<service_requests>
  <request>
    <service_request_id>638344</service_request_id>
    <status>closed</status>
    <status_notes><![CDATA[Duplicate <request> & closed]]></status_notes>
    <service_name>&#x4E0A;&#27700;井盖</service_name>
    <service_code>component:0101</service_code>
    <description/>
    <requested_datetime>2010-04-14T06:37:38-08:00</requested_datetime>
    <updated_datetime>2010-04-14T06:37:38-08:00</updated_datetime>
    <lat>37.762221815</lat>
    <long>-122.4651145</long>
  </request>
</service_requests>
<!-- end -->
`;
    const doc = parseOpen311Xml('requests', xml);
    assert.deepEqual(doc, [
      {
        service_request_id: '638344',
        status: 'closed',
        status_notes: 'Duplicate <request> & closed',
        service_name: '上水井盖',
        service_code: 'component:0101',
        description: '',
        requested_datetime: '2010-04-14T06:37:38-08:00',
        updated_datetime: '2010-04-14T06:37:38-08:00',
        lat: 37.762221815,
        long: -122.4651145,
      },
    ]);
    assert.deepEqual(validateGeoReport('requests', doc), []);
    assert.deepEqual(parseOpen311Xml('services', '<services/>'), []);
  });

  it('leaves values of the wrong type as text for validation to name', () => {
    const doc = parseOpen311Xml(
      'errors',
      '<errors><error><code>four hundred</code><description>x</description><hint>y</hint></error></errors>',
    );
    assert.deepEqual(doc, [{ code: 'four hundred', description: 'x', hint: 'y' }]);
    assert.deepEqual(validateGeoReport('errors', doc), [
      '/0/hint: unexpected property',
      '/0/code: must be integer',
    ]);
  });

  const malformed: [string, string, RegExp][] = [
    ['empty input', '', /expected the root element/],
    ['an unclosed element', '<errors><error>', /is not closed/],
    ['a mismatched end tag', '<errors><error></errors></error>', /<\/errors> does not close <error>/],
    ['an attribute', '<errors lang="zh"></errors>', /attributes are not supported/],
    ['a DOCTYPE', '<!DOCTYPE errors [<!ENTITY x "y">]><errors/>', /DOCTYPE/],
    ['a processing instruction', '<errors><?php ?></errors>', /processing instructions/],
    [
      'an undefined entity',
      '<errors><error><code>1</code><description>&nbsp;</description></error></errors>',
      /&amp;/,
    ],
    [
      'a bare ampersand',
      '<errors><error><code>1</code><description>a & b</description></error></errors>',
      /&/,
    ],
    [
      'a reference to a forbidden character',
      '<errors><error><description>&#1;</description></error></errors>',
      /&#1;/,
    ],
    ['a raw control character', '<errors>\u0001</errors>', /U\+0001/],
    ['text after the root', '<errors/>x', /after the root element/],
    ['two roots', '<errors/><errors/>', /after the root element/],
    ['mixed content', '<errors>text<error/></errors>', /mixes text and elements/],
    [
      'a second XML declaration',
      '<?xml version="1.0"?><?xml version="1.0"?><errors/>',
      /processing instructions/,
    ],
    ['a non-UTF-8 encoding', '<?xml version="1.0" encoding="GBK"?><errors/>', /utf-8/],
    ['an XML 1.1 declaration', '<?xml version="1.1"?><errors/>', /version must be 1.0/],
    ['"--" in a comment', '<!-- a -- b --><errors/>', /--/],
    ['"]]>" in text', '<errors><error><description>a]]>b</description></error></errors>', /]]>/],
    ['an unterminated CDATA section', '<errors><![CDATA[x</errors>', /CDATA/],
    ['nesting beyond reason', `${'<a>'.repeat(40)}${'</a>'.repeat(40)}`, /nested deeper/],
  ];
  for (const [what, xml, message] of malformed)
    it(`rejects ${what}`, () => {
      assert.throws(
        () => parseOpen311Xml('errors', xml),
        (e) => e instanceof SyntaxError && message.test(e.message),
      );
    });

  it('rejects documents whose structure is not the kind asked for', () => {
    const cases: [GeoReportKind, string, RegExp][] = [
      ['services', '<errors/>', /root <services>, not <errors>/],
      ['services', '<services><request/></services>', /may hold only <service>/],
      ['errors', '<errors><error><code>1</code><code>2</code></error></errors>', /<code> appears twice/],
      ['errors', '<errors><error><description><b>x</b></description></error></errors>', /must hold text/],
      ['service-definition', '<service_definition>x</service_definition>', /must hold elements/],
      [
        'service-definition',
        '<service_definition><attributes>x</attributes></service_definition>',
        /must hold elements/,
      ],
    ];
    for (const [kind, xml, message] of cases)
      assert.throws(
        () => parseOpen311Xml(kind, xml),
        (e) => e instanceof Error && message.test(e.message),
        xml,
      );
  });
});

describe('parseOpen311Form', () => {
  it('decodes fields, "+" as space, UTF-8 percent-escapes and attributes', () => {
    const form = parseOpen311Form(
      'api_key=k1&service_code=event%3A0102&&description=%E4%BA%95%E7%9B%96+%E7%BC%BA%E5%A4%B1%2B1' +
        '&attribute%5Burgency%5D=urgent&attribute[sides][]=north&attribute[sides][]=south&lat=31.2&empty=&flag',
    );
    assert.deepEqual(form, {
      fields: {
        api_key: 'k1',
        service_code: 'event:0102',
        description: '井盖 缺失+1',
        lat: '31.2',
        empty: '',
        flag: '',
      },
      attributes: { urgency: 'urgent', sides: ['north', 'south'] },
    });
    assert.deepEqual(parseOpen311Form('attribute[one][]=x'), { fields: {}, attributes: { one: ['x'] } });
    assert.deepEqual(parseOpen311Form(''), { fields: {}, attributes: {} });
  });

  it('keeps a field called __proto__ as data', () => {
    const form = parseOpen311Form('__proto__=x&attribute[__proto__]=y');
    assert.equal(Object.getPrototypeOf(form.fields), Object.prototype);
    assert.equal(Object.getOwnPropertyDescriptor(form.fields, '__proto__')?.value, 'x');
    assert.equal(Object.getOwnPropertyDescriptor(form.attributes, '__proto__')?.value, 'y');
  });

  const rejected: [string, string, RegExp][] = [
    ['a repeated field', 'email=a%40b.cn&lat=1&email=c%40d.cn', /field "email" is sent more than once/],
    [
      'a repeated scalar attribute',
      'attribute[urgency]=a&attribute[urgency]=b',
      /attribute\[urgency\] is sent more than once/,
    ],
    ['an attribute with and without []', 'attribute[x][]=a&attribute[x]=b', /both with and without \[\]/],
    ['an attribute without and with []', 'attribute[x]=a&attribute[x][]=b', /both with and without \[\]/],
    ['an attribute without a code', 'attribute[]=a', /malformed attribute field name "attribute\[\]"/],
    ['a malformed attribute name', 'attribute[a]b=1', /malformed attribute field name "attribute\[a\]b"/],
    ['a nameless field', '=1', /field 1 has no name/],
    [
      'a bad percent-escape in a value',
      'lat=1&description=50%',
      /malformed percent-encoding in the value of field "description"/,
    ],
    ['a non-hex percent-escape', 'description=%ZZ', /malformed percent-encoding/],
    ['a truncated UTF-8 sequence', 'description=%E4%BA', /malformed percent-encoding/],
    ['a bad percent-escape in a name', 'desc%G1=1', /malformed percent-encoding in the name of field 1/],
  ];
  for (const [what, body, message] of rejected)
    it(`rejects ${what}`, () => {
      assert.throws(
        () => parseOpen311Form(body),
        (e) => e instanceof RangeError && message.test(e.message),
      );
    });

  it('accepts 100 fields and rejects 101', () => {
    const fields = (n: number): string => Array.from({ length: n }, (_, i) => `f${i}=1`).join('&');
    assert.equal(Object.keys(parseOpen311Form(fields(100)).fields).length, 100);
    assert.throws(
      () => parseOpen311Form(fields(101)),
      (e) => e instanceof RangeError && /101 fields; at most 100/.test(e.message),
    );
  });

  it('accepts 64 KiB and rejects a byte more, counting UTF-8 bytes', () => {
    const limit = 64 * 1024;
    assert.equal(
      parseOpen311Form(`description=${'a'.repeat(limit - 12)}`).fields['description']?.length,
      limit - 12,
    );
    assert.throws(
      () => parseOpen311Form(`description=${'a'.repeat(limit - 11)}`),
      (e) => e instanceof RangeError && /65537 bytes; at most 65536/.test(e.message),
    );
    // 井 is three bytes in UTF-8: 21846 of them exceed the limit though the string is short.
    assert.throws(() => parseOpen311Form('井'.repeat(21846)), RangeError);
  });
});

describe('readOpen311Report', () => {
  const base = { api_key: 'k1', service_code: 'component:0101', lat: '31.2397', long: '121.4909' };
  const read = (fields: Record<string, string>, attributes: Open311Form['attributes'] = {}) =>
    readOpen311Report({ fields, attributes });
  /** The error descriptions for `fields`, asserting each is an Open311 400. */
  const problems = (fields: Record<string, string>, apiKeyRequired = true): string[] => {
    const result = readOpen311Report({ fields, attributes: {} }, { apiKeyRequired });
    if (result.ok) return [];
    for (const e of result.errors) assert.equal(e.code, 400);
    return result.errors.map((e) => e.description);
  };

  it('maps every GeoReport field to the report', () => {
    const result = read(
      {
        ...base,
        jurisdiction_id: 'shanghai.gov.cn',
        address_string: ' 中山东一路1号 ',
        address_id: 'addr-1',
        email: 'li.lei@example.cn',
        device_id: 'dev-1',
        account_id: 'acc-1',
        first_name: '雷',
        last_name: '李',
        phone: '+86 138-0000-0000',
        description: '  井盖缺失\n请尽快处理  ',
        media_url: 'https://example.org/p/1.jpg',
      },
      { urgency: 'urgent' },
    );
    assert.deepEqual(result, {
      ok: true,
      report: {
        apiKey: 'k1',
        jurisdictionId: 'shanghai.gov.cn',
        serviceCode: 'component:0101',
        lat: 31.2397,
        long: 121.4909,
        addressString: '中山东一路1号',
        addressId: 'addr-1',
        email: 'li.lei@example.cn',
        deviceId: 'dev-1',
        accountId: 'acc-1',
        firstName: '雷',
        lastName: '李',
        phone: '+86 138-0000-0000',
        description: '  井盖缺失\n请尽快处理  ',
        mediaUrl: 'https://example.org/p/1.jpg',
        attributes: { urgency: 'urgent' },
      },
    });
  });

  it('accepts an address instead of coordinates, and treats blank fields as absent', () => {
    const { lat: _lat, long: _long, ...noPoint } = base;
    assert.deepEqual(problems({ ...noPoint, address_string: '人民广场' }), []);
    assert.deepEqual(problems({ ...noPoint, address_id: 'addr-9' }), []);
    assert.deepEqual(problems({ ...base, email: '', phone: ' ', description: '' }), []);
    assert.deepEqual(problems({ ...base, lat: '0', long: '-0.0' }), []);
  });

  it('requires api_key unless the caller says otherwise', () => {
    const { api_key: _key, ...noKey } = base;
    assert.deepEqual(problems(noKey), ['api_key is required']);
    assert.deepEqual(problems({ ...noKey, api_key: '  ' }), ['api_key is required']);
    assert.deepEqual(problems(noKey, false), []);
    assert.deepEqual(problems({ ...base, api_key: 'k'.repeat(257) }), [
      'api_key must be at most 256 characters',
    ]);
  });

  const cases: [string, Record<string, string>, string[]][] = [
    ['no service_code', { service_code: '' }, ['service_code is required']],
    [
      'a service_code that is no category id',
      { service_code: '0101' },
      ['service_code must be a category id such as event:0102 or component:0101, got "0101"'],
    ],
    ['lat without long', { long: '' }, ['lat and long must be sent together']],
    ['a non-numeric lat', { lat: '31.2N' }, ['lat must be a decimal number between -90 and 90']],
    ['a lat out of range', { lat: '90.0001' }, ['lat must be a decimal number between -90 and 90']],
    ['a long in exponent notation', { long: '1e2' }, ['long must be a decimal number between -180 and 180']],
    ['a long out of range', { long: '-180.5' }, ['long must be a decimal number between -180 and 180']],
    [
      'no location',
      { lat: '', long: '' },
      ['a location is required: lat and long, address_string or address_id'],
    ],
    ['a bad email', { email: 'li.lei@' }, ['email must be an e-mail address such as name@example.com']],
    [
      'an email with spaces',
      { email: 'li lei@example.cn' },
      ['email must be an e-mail address such as name@example.com'],
    ],
    [
      'a phone with letters',
      { phone: '138-CALL-ME' },
      ['phone must be 5 to 20 characters: digits, "+", "-" and spaces'],
    ],
    ['a short phone', { phone: '1234' }, ['phone must be 5 to 20 characters: digits, "+", "-" and spaces']],
    [
      'a long phone',
      { phone: '1'.repeat(21) },
      ['phone must be 5 to 20 characters: digits, "+", "-" and spaces'],
    ],
    ['a long first_name', { first_name: '李'.repeat(51) }, ['first_name must be at most 50 characters']],
    ['a long last_name', { last_name: 'x'.repeat(51) }, ['last_name must be at most 50 characters']],
    [
      'a long description',
      { description: '井'.repeat(4001) },
      ['description must be at most 4000 characters'],
    ],
    [
      'a relative media_url',
      { media_url: '/p/1.jpg' },
      ['media_url must be an absolute http or https URL of at most 2048 characters'],
    ],
    [
      'an ftp media_url',
      { media_url: 'ftp://example.org/1.jpg' },
      ['media_url must be an absolute http or https URL of at most 2048 characters'],
    ],
    [
      'a javascript: media_url',
      { media_url: 'javascript:alert(1)' },
      ['media_url must be an absolute http or https URL of at most 2048 characters'],
    ],
    [
      'a too long media_url',
      { media_url: `https://example.org/${'a'.repeat(2029)}` },
      ['media_url must be an absolute http or https URL of at most 2048 characters'],
    ],
    ['a long device_id', { device_id: 'd'.repeat(101) }, ['device_id must be at most 100 characters']],
    ['a long account_id', { account_id: 'a'.repeat(101) }, ['account_id must be at most 100 characters']],
    [
      'a long address_string',
      { address_string: 'a'.repeat(501) },
      ['address_string must be at most 500 characters'],
    ],
    ['an unknown field', { format: 'json' }, ['format is not a field of a GeoReport v2 request']],
    ['a control character', { description: 'a\u0000b' }, ['description must not contain control characters']],
  ];
  for (const [what, change, expected] of cases)
    it(`reports ${what}`, () => {
      assert.deepEqual(problems({ ...base, ...change }), expected);
    });

  it('accepts the limits themselves', () => {
    assert.deepEqual(
      problems({
        ...base,
        first_name: '李'.repeat(50),
        description: '𠀀'.repeat(4000),
        phone: '12345',
        media_url: `https://example.org/${'a'.repeat(2028)}`,
        device_id: 'd'.repeat(100),
        lat: '-90',
        long: '180',
      }),
      [],
    );
  });

  it('reports every problem at once', () => {
    assert.deepEqual(problems({ lat: 'x', long: '200', email: 'no' }), [
      'api_key is required',
      'service_code is required',
      'lat must be a decimal number between -90 and 90',
      'long must be a decimal number between -180 and 180',
      'email must be an e-mail address such as name@example.com',
    ]);
  });

  it('refuses control characters in attributes', () => {
    const result = read(base, { sides: ['north', 'so\u0007uth'] });
    assert.deepEqual(result, {
      ok: false,
      errors: [{ code: 400, description: 'attribute[sides] must not contain control characters' }],
    });
  });
});

describe('services from the classification', () => {
  const csv = readFileSync(
    new URL('../../data/reference/classification/urban-management-categories.csv', import.meta.url),
    'utf8',
  );
  const rows = csv.split(/\r?\n/).filter((l) => l.trim() !== '').length - 1;

  for (const lang of ['zh', 'en'] as const)
    it(`lists one valid service per classification row (${lang})`, () => {
      const services = open311Services(lang);
      assert.equal(services.length, rows);
      assert.equal(new Set(services.map((s) => s.service_code)).size, rows);
      for (const s of services) assert.match(s.service_code, OPEN311_CATEGORY_PATTERN);
      assert.deepEqual(validateGeoReport('services', services), []);
      assert.deepEqual(parseOpen311Xml('services', toOpen311Xml('services', services)), services);
    });

  it('names services in Chinese and describes them in the asked language', () => {
    const zh = open311Services('zh').find((s) => s.service_code === 'component:0101');
    const en = open311Services('en').find((s) => s.service_code === 'component:0101');
    assert.deepEqual(zh, {
      service_code: 'component:0101',
      service_name: '上水井盖',
      description: '城市部件 · 公共设施 · 上水井盖',
      metadata: true,
      type: 'realtime',
      keywords: 'component,部件,公共设施',
      group: '公共设施',
    });
    assert.ok(en);
    assert.equal(en.service_name, '上水井盖');
    assert.equal(en.description, 'City component (部件) · 公共设施 · 上水井盖');
    // Codes repeat across kinds; the kind keeps the services apart.
    const kinds = open311Services('zh')
      .filter((s) => s.service_code.endsWith(':0101'))
      .map((s) => s.service_code.split(':')[0]);
    assert.deepEqual(kinds, ['component', 'event', 'hotline']);
  });

  it('defines every service, and every definition is a valid document', () => {
    for (const lang of ['zh', 'en'] as const)
      for (const s of open311Services(lang)) {
        const def = open311ServiceDefinition(s.service_code, lang);
        assert.ok(def, s.service_code);
        assert.equal(def.service_code, s.service_code);
        assert.deepEqual(validateGeoReport('service-definition', def), [], s.service_code);
        assert.deepEqual(roundTrip('service-definition', def), def);
        const codes = def.attributes.map((a) => a.code);
        const kind = s.service_code.split(':')[0];
        assert.deepEqual(
          codes,
          kind === 'component'
            ? ['component_id', 'urgency']
            : kind === 'event'
              ? ['occurred_at', 'urgency']
              : ['urgency'],
        );
      }
  });

  it('offers urgency with Chinese names, and a service-specific component example', () => {
    const def = open311ServiceDefinition('component:0101');
    assert.ok(def);
    assert.deepEqual(def.attributes.find((a) => a.code === 'urgency')?.values, [
      { key: 'normal', name: '一般' },
      { key: 'urgent', name: '紧急' },
    ]);
    const componentId = def.attributes.find((a) => a.code === 'component_id');
    assert.ok(componentId);
    assert.equal(componentId.datatype, 'string');
    assert.equal(componentId.required, false);
    assert.match(componentId.datatype_description, /3101010101000001/);
    assert.deepEqual(checkOpen311Attributes('component:0101', { component_id: '3101010101000001' }), []);
    assert.equal(open311ServiceDefinition('event:0101')?.attributes[0]?.datatype, 'datetime');
  });

  it('knows no service outside the classification', () => {
    for (const code of ['event:9999', 'component:0101x', 'incident:0101', '0101', 'Event:0101', ''])
      assert.equal(open311ServiceDefinition(code), undefined, code);
  });
});

describe('checkOpen311Attributes', () => {
  it('accepts the attributes a service defines', () => {
    assert.deepEqual(checkOpen311Attributes('component:0101', {}), []);
    assert.deepEqual(
      checkOpen311Attributes('component:0101', { component_id: '3101130101000001', urgency: 'urgent' }),
      [],
    );
    assert.deepEqual(
      checkOpen311Attributes('event:0102', { occurred_at: '2025-05-01T08:30:00+08:00', urgency: 'normal' }),
      [],
    );
    assert.deepEqual(checkOpen311Attributes('hotline:0101', { urgency: 'normal' }), []);
  });

  const cases: [string, string, Record<string, string | string[]>, RegExp][] = [
    ['an unknown service', 'event:9999', {}, /service_code "event:9999" is not a known service/],
    [
      'an unknown attribute',
      'event:0102',
      { colour: 'red' },
      /attribute\[colour\] is not an attribute of service event:0102/,
    ],
    [
      'an attribute of another kind',
      'hotline:0101',
      { component_id: '3101010101000001' },
      /attribute\[component_id\] is not an attribute/,
    ],
    [
      'a value outside the list',
      'event:0102',
      { urgency: 'critical' },
      /attribute\[urgency\] must be one of normal, urgent; got "critical"/,
    ],
    [
      'two values for a single-value list',
      'event:0102',
      { urgency: ['normal', 'urgent'] },
      /attribute\[urgency\] takes one value, got 2/,
    ],
    [
      'a date-time without an offset',
      'event:0102',
      { occurred_at: '2025-05-01T08:30:00' },
      /attribute\[occurred_at\] must be an ISO 8601/,
    ],
    [
      'an impossible date',
      'event:0102',
      { occurred_at: '2025-02-29T08:30:00Z' },
      /attribute\[occurred_at\] must be an ISO 8601/,
    ],
    [
      'an impossible hour',
      'event:0102',
      { occurred_at: '2025-05-01T24:00:00Z' },
      /attribute\[occurred_at\] must be an ISO 8601/,
    ],
    [
      'a short component id',
      'component:0101',
      { component_id: '310101010100001' },
      /attribute\[component_id\]: component identifier must have 16 digits, got 15/,
    ],
    [
      'a component id outside Shanghai',
      'component:0101',
      { component_id: '1101010101000001' },
      /attribute\[component_id\]: digits 1-6/,
    ],
    [
      'a zero serial',
      'component:0101',
      { component_id: '3101010101000000' },
      /attribute\[component_id\]: digits 11-16/,
    ],
    [
      'a component id of another class',
      'component:0101',
      { component_id: '3101010102000001' },
      /attribute\[component_id\] identifies a 污水井盖 \(class 0102\), not a component of service component:0101/,
    ],
  ];
  for (const [what, service, attributes, message] of cases)
    it(`reports ${what}`, () => {
      const found = checkOpen311Attributes(service, attributes);
      assert.equal(found.length, 1, found.join('; '));
      assert.match(found[0] ?? '', message);
    });
});
