/** GeoJSON validation, the geo-query language and its SQL, on every engine of this run. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql, type RawBuilder } from 'kysely';
import { engines, type TestDatabase } from '../../test/helpers/engines.ts';
import { isNgsiError } from './errors.ts';
import {
  bboxOf,
  checkGeometry,
  distanceOrder,
  geometryParam,
  geoQueryToJson,
  geoQueryToSql,
  GEOMETRY_LIMITS,
  knnOrder,
  nearEnvelope,
  parseGeoQuery,
  type GeoQuery,
  type GeoQueryInput,
  type Position,
} from './geo.ts';

/** Asserts `fn` throws BadRequestData whose detail matches `detail`. */
function assertBad(fn: () => unknown, detail: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isNgsiError(e), `expected an NgsiError, got ${String(e)}`);
    assert.equal(e.type, 'BadRequestData');
    assert.match(e.detail, detail);
    return true;
  });
}

const badGeometry = (value: unknown, detail: RegExp) =>
  assertBad(() => checkGeometry(value, 'location'), detail);
const badQuery = (input: GeoQueryInput, detail: RegExp, prefix?: string) =>
  assertBad(() => parseGeoQuery(input, prefix), detail);

const square = (x: number, y: number, size: number): Position[] => [
  [x, y],
  [x + size, y],
  [x + size, y + size],
  [x, y + size],
  [x, y],
];

const circle = (n: number, cx: number, cy: number, r: number): Position[] => {
  const ring: Position[] = [];
  for (let i = 0; i < n; i++) {
    const a = (2 * Math.PI * i) / n;
    ring.push([cx + r * Math.cos(a), cy + r * Math.sin(a)]);
  }
  ring.push([cx + r, cy]);
  return ring;
};

describe('checkGeometry', () => {
  it('accepts every geometry type and returns a clean typed copy', () => {
    const point = { type: 'Point', coordinates: [121.47, 31.23], crs: { type: 'name' }, name: 'foreign' };
    const checked = checkGeometry(point, 'location');
    assert.deepEqual(checked, { type: 'Point', coordinates: [121.47, 31.23] });
    assert.notEqual(checked.coordinates, point.coordinates);
    assert.deepEqual(checkGeometry({ type: 'Point', coordinates: [121.47, 31.23, 12.5] }, 'l'), {
      type: 'Point',
      coordinates: [121.47, 31.23, 12.5],
    });
    const cases: unknown[] = [
      {
        type: 'MultiPoint',
        coordinates: [
          [0, 0],
          [1, 1, 5],
        ],
      },
      {
        type: 'LineString',
        coordinates: [
          [0, 0],
          [1, 1],
        ],
      },
      {
        type: 'MultiLineString',
        coordinates: [
          [
            [0, 0],
            [1, 1],
          ],
          [
            [2, 2],
            [3, 3],
            [4, 2],
          ],
        ],
      },
      { type: 'Polygon', coordinates: [square(0, 0, 10), square(2, 2, 2).reverse()] },
      { type: 'MultiPolygon', coordinates: [[square(0, 0, 1)], [square(5, 5, 1)]] },
      {
        type: 'Polygon',
        coordinates: [
          [
            [-180, -90],
            [180, -90],
            [180, 90],
            [-180, 90],
            [-180, -90],
          ],
        ],
      },
    ];
    for (const g of cases) assert.deepEqual(checkGeometry(g, 'l'), g);
    const collection = {
      type: 'GeometryCollection',
      geometries: [
        { type: 'Point', coordinates: [1, 2] },
        {
          type: 'LineString',
          coordinates: [
            [0, 0],
            [1, 1],
          ],
        },
      ],
    };
    assert.deepEqual(checkGeometry(collection, 'l'), collection);
  });

  it('keeps a well-formed bbox and refuses a malformed one', () => {
    const g = {
      type: 'LineString',
      coordinates: [
        [0, 0],
        [1, 1],
      ],
      bbox: [0, 0, 1, 1],
    };
    assert.deepEqual(checkGeometry(g, 'l'), g);
    badGeometry({ ...g, bbox: [0, 0, 1] }, /^location\.bbox: a bbox must be an array of 4 or 6 numbers/);
    badGeometry({ ...g, bbox: 'x' }, /^location\.bbox:/);
  });

  it('accepts what OGC validity allows: repeated positions, a hole touching its shell, either orientation', () => {
    const repeated: Position[] = [
      [0, 0],
      [0, 0],
      [4, 0],
      [4, 4],
      [4, 4],
      [0, 4],
      [0, 0],
      [0, 0],
    ];
    checkGeometry({ type: 'Polygon', coordinates: [repeated] }, 'l');
    const touching: Position[] = [
      [0, 0],
      [3, 1],
      [1, 3],
      [0, 0],
    ];
    checkGeometry({ type: 'Polygon', coordinates: [square(0, 0, 10), touching] }, 'l');
    checkGeometry({ type: 'Polygon', coordinates: [square(0, 0, 10).reverse(), square(1, 1, 1)] }, 'l');
  });

  it('refuses what is not a geometry', () => {
    badGeometry(null, /^location: a geometry must be a JSON object/);
    badGeometry([1, 2], /^location: a geometry must be a JSON object/);
    badGeometry('POINT(1 2)', /^location: a geometry must be a JSON object/);
    badGeometry(
      { type: 'Feature', geometry: null },
      /^location\.type: "Feature" is not a GeoJSON geometry type/,
    );
    badGeometry({ type: 'point', coordinates: [1, 2] }, /^location\.type: "point" is not/);
    badGeometry({ type: 'Point' }, /^location\.coordinates: a Point needs "coordinates"/);
  });

  it('refuses bad positions with the path of the number', () => {
    badGeometry(
      { type: 'Point', coordinates: [181, 0] },
      /^location\.coordinates\[0\]: longitude 181 is outside/,
    );
    badGeometry(
      { type: 'Point', coordinates: [0, -91] },
      /^location\.coordinates\[1\]: latitude -91 is outside/,
    );
    badGeometry(
      { type: 'Point', coordinates: ['NaN', 0] },
      /^location\.coordinates\[0\]: "NaN" is not a number/,
    );
    badGeometry(
      { type: 'Point', coordinates: [0, '31.2'] },
      /^location\.coordinates\[1\]: "31.2" is not a number/,
    );
    badGeometry({ type: 'Point', coordinates: [NaN, 0] }, /coordinates\[0\]: NaN is not a finite number/);
    badGeometry({ type: 'Point', coordinates: [0, Infinity] }, /coordinates\[1\]: Infinity is not a finite/);
    badGeometry(
      { type: 'Point', coordinates: [1, 2, 3, 4] },
      /^location\.coordinates: a position has 2 or 3 numbers.*got 4/,
    );
    badGeometry({ type: 'Point', coordinates: [1] }, /got 1$/);
    badGeometry(
      {
        type: 'LineString',
        coordinates: [
          [0, 0],
          [1, 200],
        ],
      },
      /^location\.coordinates\[1\]\[1\]: latitude 200/,
    );
  });

  it('refuses extra or missing nesting', () => {
    badGeometry(
      { type: 'Point', coordinates: [[1, 2]] },
      /^location\.coordinates: Point coordinates nest 1 arrays deep, these nest 2/,
    );
    badGeometry(
      { type: 'LineString', coordinates: [0, 1] },
      /^location\.coordinates: LineString coordinates nest 2 arrays deep, these nest 1/,
    );
    badGeometry(
      {
        type: 'Polygon',
        coordinates: [
          [
            [
              [0, 0],
              [1, 0],
              [1, 1],
              [0, 0],
            ],
          ],
        ],
      },
      /^location\.coordinates: Polygon coordinates nest 3 arrays deep, these nest 4/,
    );
    badGeometry(
      { type: 'MultiPolygon', coordinates: [square(0, 0, 1)] },
      /^location\.coordinates: MultiPolygon coordinates nest 4 arrays deep, these nest 3/,
    );
    const deep: unknown[] = [];
    let inner = deep;
    for (let i = 0; i < 10_000; i++) {
      const next: unknown[] = [];
      inner.push(next);
      inner = next;
    }
    badGeometry(
      { type: 'Polygon', coordinates: deep },
      /^location\.coordinates: Polygon coordinates nest 3 arrays deep, these nest 9/,
    );
    // A later member nested differently from the first is caught where it is.
    badGeometry(
      { type: 'MultiPoint', coordinates: [[0, 0], [[1, 1]]] },
      /^location\.coordinates\[1\]\[0\]: \[1,1\] is not a number \(one array level too deep\)/,
    );
    badGeometry(
      { type: 'GeometryCollection', geometries: [{ type: 'GeometryCollection', geometries: [] }] },
      /^location\.geometries\[0\]\.type: a GeometryCollection cannot contain a GeometryCollection/,
    );
  });

  it('refuses too-short and empty shapes', () => {
    badGeometry(
      { type: 'LineString', coordinates: [[0, 0]] },
      /a LineString needs at least 2 positions, got 1/,
    );
    badGeometry(
      { type: 'MultiPoint', coordinates: [] },
      /^location\.coordinates: a MultiPoint needs at least 1 position/,
    );
    badGeometry(
      { type: 'MultiPolygon', coordinates: [] },
      /^location\.coordinates: needs at least one of its polygons/,
    );
    badGeometry({ type: 'Polygon', coordinates: [] }, /a Polygon needs at least its exterior ring/);
    badGeometry({ type: 'GeometryCollection', geometries: [] }, /^location\.geometries: needs at least one/);
    badGeometry(
      { type: 'GeometryCollection', geometries: [{ type: 'Point', coordinates: [0, 95] }] },
      /^location\.geometries\[0\]\.coordinates\[1\]: latitude 95/,
    );
  });

  it('refuses unclosed, short and degenerate rings', () => {
    badGeometry(
      {
        type: 'Polygon',
        coordinates: [
          [
            [0, 0],
            [1, 0],
            [1, 1],
            [0, 1],
          ],
        ],
      },
      /^location\.coordinates\[0\]: linear ring is not closed: first position \[0,0\] differs from last \[0,1\]/,
    );
    badGeometry(
      {
        type: 'Polygon',
        coordinates: [
          [
            [0, 0],
            [1, 0],
            [0, 0],
          ],
        ],
      },
      /^location\.coordinates\[0\]: a linear ring needs at least 4 positions, got 3/,
    );
    badGeometry(
      {
        type: 'Polygon',
        coordinates: [
          [
            [0, 0],
            [1, 0],
            [1, 0],
            [0, 0],
          ],
        ],
      },
      /^location\.coordinates\[0\]: a linear ring needs at least 3 distinct positions/,
    );
    badGeometry(
      {
        type: 'Polygon',
        coordinates: [
          [
            [0, 0],
            [1, 0],
            [2, 0],
            [0, 0],
          ],
        ],
      },
      /^location\.coordinates\[0\]: linear ring folds back on itself/,
    );
  });

  it('refuses self-intersecting and self-touching rings', () => {
    badGeometry(
      {
        type: 'Polygon',
        coordinates: [
          [
            [0, 0],
            [1, 1],
            [1, 0],
            [0, 1],
            [0, 0],
          ],
        ],
      },
      /^location\.coordinates\[0\]: linear ring self-intersects \(edge after position 0 meets edge after position 2\)/,
    );
    // A figure eight through one shared vertex.
    badGeometry(
      {
        type: 'Polygon',
        coordinates: [
          [
            [0, 0],
            [2, 2],
            [4, 0],
            [4, 4],
            [2, 2],
            [0, 4],
            [0, 0],
          ],
        ],
      },
      /^location\.coordinates\[0\]: linear ring self-intersects/,
    );
    // A spike out and back along the same line.
    badGeometry(
      {
        type: 'Polygon',
        coordinates: [
          [
            [0, 0],
            [4, 0],
            [4, 4],
            [6, 6],
            [4, 4],
            [0, 4],
            [0, 0],
          ],
        ],
      },
      /^location\.coordinates\[0\]: linear ring (folds back|self-intersects)/,
    );
    // The same bow-tie in the second polygon of a MultiPolygon, and in a large ring (R-tree path).
    badGeometry(
      {
        type: 'MultiPolygon',
        coordinates: [
          [square(0, 0, 1)],
          [
            [
              [0, 0],
              [1, 1],
              [1, 0],
              [0, 1],
              [0, 0],
            ],
          ],
        ],
      },
      /^location\.coordinates\[1\]\[0\]: linear ring self-intersects/,
    );
    const big = circle(1000, 10, 10, 1);
    [big[100], big[600]] = [big[600] as Position, big[100] as Position];
    badGeometry(
      { type: 'Polygon', coordinates: [big] },
      /^location\.coordinates\[0\]: linear ring self-intersects/,
    );
  });

  it('refuses holes crossing, outside or inside other holes', () => {
    badGeometry(
      { type: 'Polygon', coordinates: [square(0, 0, 10), square(5, 5, 10)] },
      /^location\.coordinates\[1\]: hole crosses the exterior ring/,
    );
    badGeometry(
      { type: 'Polygon', coordinates: [square(0, 0, 10), square(20, 20, 1)] },
      /^location\.coordinates\[1\]: hole lies outside the exterior ring/,
    );
    badGeometry(
      { type: 'Polygon', coordinates: [square(0, 0, 10), square(1, 1, 8), square(2, 2, 1)] },
      /^location\.coordinates\[2\]: hole lies inside hole 1/,
    );
    badGeometry(
      { type: 'Polygon', coordinates: [square(0, 0, 10), square(1, 1, 2), square(2, 2, 2)] },
      /^location\.coordinates\[2\]: hole crosses hole 1/,
    );
    // A hole sharing a stretch of the shell's edge.
    badGeometry(
      {
        type: 'Polygon',
        coordinates: [
          square(0, 0, 10),
          [
            [0, 2],
            [3, 2],
            [3, 4],
            [0, 4],
            [0, 2],
          ],
        ],
      },
      /^location\.coordinates\[1\]: hole crosses the exterior ring/,
    );
    // Large rings take the R-tree path.
    const shell = circle(2000, 0, 0, 10);
    const holes = [circle(500, 3, 0, 1).reverse(), circle(500, 9.5, 0, 1).reverse()];
    badGeometry(
      { type: 'Polygon', coordinates: [shell, ...holes] },
      /^location\.coordinates\[2\]: hole crosses the exterior/,
    );
    checkGeometry(
      { type: 'Polygon', coordinates: [shell, circle(500, 3, 0, 1), circle(500, -3, 0, 1)] },
      'l',
    );
    badGeometry(
      { type: 'Polygon', coordinates: [shell, circle(500, 30, 0, 1)] },
      /^location\.coordinates\[1\]: hole lies outside the exterior ring/,
    );
  });

  it('validates the largest geometry quickly and refuses larger ones', () => {
    const started = performance.now();
    checkGeometry(
      { type: 'Polygon', coordinates: [circle(GEOMETRY_LIMITS.maxPositions - 1, 121.47, 31.23, 0.1)] },
      'l',
    );
    const elapsed = performance.now() - started;
    assert.ok(elapsed < 3_000, `validating 100k vertices took ${elapsed} ms`);
    const many: Position[] = Array.from({ length: GEOMETRY_LIMITS.maxPositions + 1 }, (_, i) => [i / 1e4, 0]);
    badGeometry({ type: 'MultiPoint', coordinates: many }, /^location: more than 100000 positions/);
    const lines = Array.from({ length: 3 }, () => many.slice(0, 40_000));
    badGeometry({ type: 'MultiLineString', coordinates: lines }, /^location: more than 100000 positions/);
    const members = Array.from({ length: 101 }, () => ({ type: 'Point', coordinates: [0, 0] }));
    badGeometry({ type: 'GeometryCollection', geometries: members }, /at most 100 members, got 101/);
  });

  it('refuses a pathological polygon as too complex instead of spinning', () => {
    // Thousands of long parallel diagonal teeth: every edge box overlaps every other.
    const ring: Position[] = [];
    const teeth = 20_000;
    for (let i = 0; i < teeth; i++) {
      const x = i * 0.001;
      ring.push([x, 0], [x + 5, 5], [x + 5.0005, 5], [x + 0.0005, 0]);
    }
    ring.push([teeth * 0.001 + 0.0005, -1], [0, -1], [0, 0]);
    const started = performance.now();
    badGeometry(
      { type: 'Polygon', coordinates: [ring] },
      /^location\.coordinates: polygon too complex to validate/,
    );
    assert.ok(performance.now() - started < 5_000);
  });
});

describe('parseGeoQuery', () => {
  it('answers undefined when no geo-query is given', () => {
    assert.equal(parseGeoQuery({}), undefined);
  });

  it('parses the GET form', () => {
    assert.deepEqual(
      parseGeoQuery({ georel: 'near;maxDistance==1000', geometry: 'Point', coordinates: '[121.47,31.23]' }),
      {
        georel: 'near',
        maxDistance: 1000,
        geometry: { type: 'Point', coordinates: [121.47, 31.23] },
        geoproperty: 'location',
      },
    );
    assert.deepEqual(
      parseGeoQuery({ georel: 'near;minDistance==12.5', geometry: 'Point', coordinates: ' [8, 40] ' }),
      {
        georel: 'near',
        minDistance: 12.5,
        geometry: { type: 'Point', coordinates: [8, 40] },
        geoproperty: 'location',
      },
    );
    const q = geoQ({
      georel: 'within',
      geometry: 'Polygon',
      coordinates: JSON.stringify([square(121, 31, 1)]),
      geoproperty: 'observationSpace',
    });
    assert.equal(q.georel, 'within');
    assert.equal(q.geoproperty, 'observationSpace');
    assert.deepEqual(q.geometry, { type: 'Polygon', coordinates: [square(121, 31, 1)] });
    for (const georel of ['within', 'contains', 'intersects', 'overlaps', 'disjoint', 'equals'])
      assert.equal(parseGeoQuery({ georel, geometry: 'Point', coordinates: '[1,2]' })?.georel, georel);
  });

  it('parses the POST geoQ form, with coordinates as JSON or as text', () => {
    const geoQ = {
      georel: 'intersects',
      geometry: 'LineString',
      coordinates: [
        [121.4, 31.2],
        [121.5, 31.3],
      ],
      geoproperty: 'https://uri.etsi.org/ngsi-ld/default-context/route',
    };
    const q = parseGeoQuery(geoQ, 'geoQ.');
    assert.deepEqual(q, {
      georel: 'intersects',
      geometry: { type: 'LineString', coordinates: geoQ.coordinates },
      geoproperty: geoQ.geoproperty,
    });
    assert.deepEqual(parseGeoQuery({ ...geoQ, coordinates: JSON.stringify(geoQ.coordinates) }, 'geoQ.'), q);
    assert.ok(q);
    assert.deepEqual(geoQueryToJson(q), geoQ);
    const near = parseGeoQuery({ georel: 'near;maxDistance==2000', geometry: 'Point', coordinates: [8, 40] });
    assert.ok(near);
    assert.deepEqual(geoQueryToJson(near), {
      georel: 'near;maxDistance==2000',
      geometry: 'Point',
      coordinates: [8, 40],
      geoproperty: 'location',
    });
  });

  it('refuses partial geo-queries', () => {
    badQuery(
      { georel: 'within', geometry: 'Point' },
      /^coordinates: a geo-query needs georel, geometry and coordinates together; missing coordinates/,
    );
    badQuery({ geometry: 'Point', coordinates: '[1,2]' }, /^georel: .*missing georel/);
    badQuery({ coordinates: [1, 2] }, /missing georel, geometry/, 'geoQ.');
    badQuery({ geoproperty: 'location' }, /^geoproperty: given without a geo-query/);
  });

  it('refuses bad relations and distances', () => {
    const point = { geometry: 'Point', coordinates: '[1,2]' };
    badQuery({ ...point, georel: 'near' }, /^georel: near needs a distance/);
    badQuery(
      { ...point, georel: 'near;maxDistance==-5' },
      /^georel: "near;maxDistance==-5" is not a near relation/,
    );
    badQuery({ ...point, georel: 'near;maxDistance==abc' }, /is not a near relation/);
    badQuery({ ...point, georel: 'near;maxDistance:1000' }, /is not a near relation/);
    badQuery({ ...point, georel: 'near;maxDistance==1e999' }, /is not a finite number of metres/);
    badQuery({ ...point, georel: 'near;maxDistance==1000;minDistance==10' }, /near takes one distance/);
    badQuery({ ...point, georel: 'coveredBy' }, /^georel: unknown geo-relationship "coveredBy"/);
    badQuery({ ...point, georel: 'Within' }, /unknown geo-relationship/);
    badQuery({ ...point, georel: 42 }, /^geoQ\.georel: must be a string, got 42/, 'geoQ.');
  });

  it('refuses bad geometries and coordinates', () => {
    const rel = { georel: 'within' };
    badQuery(
      { ...rel, geometry: 'point', coordinates: '[1,2]' },
      /^geometry: "point" is not one of Point, MultiPoint/,
    );
    badQuery(
      { ...rel, geometry: 'GeometryCollection', coordinates: '[]' },
      /^geometry: GeometryCollection cannot be used/,
    );
    badQuery(
      { georel: 'near;maxDistance==10', geometry: 'Polygon', coordinates: JSON.stringify([square(0, 0, 1)]) },
      /^geometry: near needs a Point as reference geometry, got Polygon/,
    );
    badQuery(
      { ...rel, geometry: 'Point', coordinates: '8,40' },
      /^coordinates: "8,40" is not a JSON array of coordinates/,
    );
    badQuery({ ...rel, geometry: 'Point', coordinates: '{"a":1}' }, /^coordinates: .* is not a JSON array/);
    badQuery({ ...rel, geometry: 'Point', coordinates: { lon: 1 } }, /^coordinates: must be a JSON array/);
    badQuery(
      { ...rel, geometry: 'Point', coordinates: '[1,91]' },
      /^coordinates\[1\]: latitude 91 is outside/,
    );
    badQuery(
      { ...rel, geometry: 'Point', coordinates: '[[1,2]]' },
      /^coordinates: Point coordinates nest 1 arrays deep, these nest 2/,
    );
    badQuery(
      {
        ...rel,
        geometry: 'Polygon',
        coordinates: [
          [
            [0, 0],
            [1, 1],
            [1, 0],
            [0, 1],
            [0, 0],
          ],
        ],
      },
      /^geoQ\.coordinates\[0\]: linear ring self-intersects/,
      'geoQ.',
    );
  });

  it('refuses injection attempts in every member', () => {
    const point = { geometry: 'Point', coordinates: '[1,2]' };
    badQuery({ ...point, georel: "within'); drop table twin.entities; --" }, /unknown geo-relationship/);
    badQuery(
      { ...point, georel: 'near;maxDistance==1000;drop table x' },
      /near takes one distance|not a near relation/,
    );
    badQuery({ ...point, georel: 'near;maxDistance==1000 or 1=1' }, /is not a near relation/);
    badQuery({ ...point, georel: 'within', geometry: "Point'; --" }, /^geometry: .* is not one of/);
    badQuery(
      { georel: 'within', geometry: 'Point', coordinates: '[1,2]); drop table x; --' },
      /is not a JSON array/,
    );
    badQuery(
      { ...point, georel: 'within', geoproperty: "location' or '1'='1" },
      /^geoproperty: .* is not an attribute name/,
    );
    badQuery({ ...point, georel: 'within', geoproperty: 'a b' }, /is not an attribute name/);
    badQuery({ ...point, georel: 'within', geoproperty: '' }, /is not an attribute name/);
  });
});

describe('helpers', () => {
  it('bboxOf spans every position of one or more geometries', () => {
    assert.equal(bboxOf([]), undefined);
    assert.deepEqual(bboxOf({ type: 'Point', coordinates: [1, 2, 3] }), [1, 2, 1, 2]);
    assert.deepEqual(
      bboxOf([
        { type: 'Polygon', coordinates: [square(0, 0, 2)] },
        {
          type: 'GeometryCollection',
          geometries: [
            {
              type: 'LineString',
              coordinates: [
                [-5, 1],
                [1, 7],
              ],
            },
            { type: 'MultiPolygon', coordinates: [[square(3, -4, 1)]] },
          ],
        },
      ]),
      [-5, -4, 4, 7],
    );
  });

  it('nearEnvelope widens with latitude and spans all longitudes at the antimeridian and the poles', () => {
    const [w, s, e, n] = nearEnvelope(121.47, 31.23, 1000);
    assert.ok(n - 31.23 > 1000 / 111_320 && n - 31.23 < 1.05 * (1000 / 110_574));
    assert.ok(e - 121.47 > 1000 / (111_320 * Math.cos((31.23 * Math.PI) / 180)));
    assert.ok(e - 121.47 < 1.05 * (1000 / (111_320 * Math.cos((31.23 * Math.PI) / 180))));
    assert.ok(121.47 - w === e - 121.47 && 31.23 - s === n - 31.23);
    assert.deepEqual([nearEnvelope(179.99, 0, 5000)[0], nearEnvelope(179.99, 0, 5000)[2]], [-180, 180]);
    assert.deepEqual([nearEnvelope(0, 89.99, 5000)[0], nearEnvelope(0, 89.99, 5000)[3]], [-180, 90]);
    assert.deepEqual(nearEnvelope(0, 0, 2e7), [-180, -90, 180, 90]);
  });
});

/** A parsed geo-query (the tests' inputs are valid). */
function geoQ(input: GeoQueryInput): GeoQuery {
  const q = parseGeoQuery(input);
  assert.ok(q);
  return q;
}

const C: Position = [121.47, 31.23]; // People's Square, Shanghai

for (const engine of engines()) {
  describe(`geo-queries on ${engine.name}`, () => {
    let t: TestDatabase;
    before(async () => {
      t = await engine.open();
      const db = t.database.db;
      await sql`create table geotest (id text primary key, location geometry(Geometry, 4326))`.execute(db);
      await sql`create index geotest_location on geotest using gist (location)`.execute(db);
      const rows: [string, unknown][] = [
        ['c0', { type: 'Point', coordinates: C }],
        ['n500', { type: 'Point', coordinates: [121.47, 31.2345] }], // ~499 m north
        ['e2000', { type: 'Point', coordinates: [121.491, 31.23] }], // ~2.0 km east
        ['ne4000', { type: 'Point', coordinates: [121.4997, 31.2555] }], // ~4.0 km north-east
        ['w8000', { type: 'Point', coordinates: [121.386, 31.23] }], // ~8.0 km west
        [
          'line',
          {
            type: 'LineString',
            coordinates: [
              [121.46, 31.25],
              [121.48, 31.25],
            ],
          },
        ], // ~2.2 km north
        ['poly', { type: 'Polygon', coordinates: [square(121.5, 31.2, 0.02)] }], // ~3.1 km south-east
      ];
      for (const [id, g] of rows)
        await sql`insert into geotest values (${id}, ${geometryParam(checkGeometry(g, id))})`.execute(db);
      await sql`insert into geotest values ('none', null)`.execute(db);
    });
    after(async () => {
      await t.dispose();
    });

    async function ids(q: GeoQuery, order?: (q: GeoQuery, c: RawBuilder<unknown>) => RawBuilder<number>) {
      const where = geoQueryToSql(q, sql`e.location`);
      const orderBy = order ? order(q, sql`e.location`) : sql`e.id`;
      const { rows } = await sql<{
        id: string;
      }>`select e.id from geotest e where ${where} order by ${orderBy}`.execute(t.database.db);
      return rows.map((r) => r.id);
    }

    const near = (georel: string) => geoQ({ georel, geometry: 'Point', coordinates: JSON.stringify(C) });

    it('stores the test shapes at the distances the tests assume', async () => {
      const { rows } = await sql<{ id: string; d: number }>`
        select id, ST_Distance(location::geography, ${geometryParam({ type: 'Point', coordinates: C })}::geography) as d
        from geotest where location is not null order by id`.execute(t.database.db);
      const d = Object.fromEntries(rows.map((r) => [r.id, Math.round(r.d)]));
      assert.equal(d['c0'], 0);
      for (const [id, metres] of Object.entries({ n500: 500, e2000: 2000, ne4000: 4000, w8000: 8000 }))
        assert.ok(Math.abs((d[id] ?? 0) - metres) < 20, `${id} at ${d[id]} m`);
      assert.ok((d['line'] ?? 0) > 2000 && (d['line'] ?? 0) < 2500);
      assert.ok((d['poly'] ?? 0) > 2500 && (d['poly'] ?? 0) < 3500);
    });

    it('near;maxDistance selects within the radius, nearest first with distanceOrder', async () => {
      assert.deepEqual(await ids(near('near;maxDistance==1000')), ['c0', 'n500']);
      assert.deepEqual(await ids(near('near;maxDistance==5000')), [
        'c0',
        'e2000',
        'line',
        'n500',
        'ne4000',
        'poly',
      ]);
      assert.deepEqual(await ids(near('near;maxDistance==5000'), distanceOrder), [
        'c0',
        'n500',
        'e2000',
        'line',
        'poly',
        'ne4000',
      ]);
      assert.deepEqual(await ids(near('near;maxDistance==0')), ['c0']);
      // KNN orders by planar degrees: 'line' (2.2 km north) comes before 'e2000' (2.0 km east).
      assert.deepEqual(await ids(near('near;maxDistance==100000'), knnOrder), [
        'c0',
        'n500',
        'line',
        'e2000',
        'poly',
        'ne4000',
        'w8000',
      ]);
    });

    it('near;minDistance selects outside the radius, never rows without a location', async () => {
      assert.deepEqual(await ids(near('near;minDistance==1000')), [
        'e2000',
        'line',
        'ne4000',
        'poly',
        'w8000',
      ]);
      assert.deepEqual(await ids(near('near;minDistance==5000')), ['w8000']);
    });

    it('within, contains, intersects, disjoint, equals and overlaps select per PostGIS', async () => {
      const around = JSON.stringify([square(121.46, 31.22, 0.02)]);
      assert.deepEqual(await ids(geoQ({ georel: 'within', geometry: 'Polygon', coordinates: around })), [
        'c0',
        'n500',
      ]);
      assert.deepEqual(
        await ids(geoQ({ georel: 'contains', geometry: 'Point', coordinates: '[121.51,31.21]' })),
        ['poly'],
      );
      assert.deepEqual(
        await ids(geoQ({ georel: 'contains', geometry: 'Point', coordinates: JSON.stringify(C) })),
        ['c0'],
      );
      assert.deepEqual(
        await ids(
          geoQ({
            georel: 'intersects',
            geometry: 'LineString',
            coordinates: '[[121.47,31.24],[121.47,31.26]]',
          }),
        ),
        ['line'],
      );
      assert.deepEqual(await ids(geoQ({ georel: 'intersects', geometry: 'Polygon', coordinates: around })), [
        'c0',
        'n500',
      ]);
      assert.deepEqual(await ids(geoQ({ georel: 'disjoint', geometry: 'Polygon', coordinates: around })), [
        'e2000',
        'line',
        'ne4000',
        'poly',
        'w8000',
      ]);
      assert.deepEqual(
        await ids(geoQ({ georel: 'equals', geometry: 'Point', coordinates: JSON.stringify(C) })),
        ['c0'],
      );
      // The same square from another starting vertex and the other way round is topologically equal.
      const rotated: Position[] = [
        [121.52, 31.22],
        [121.52, 31.2],
        [121.5, 31.2],
        [121.5, 31.22],
        [121.52, 31.22],
      ];
      assert.deepEqual(
        await ids(geoQ({ georel: 'equals', geometry: 'Polygon', coordinates: JSON.stringify([rotated]) })),
        ['poly'],
      );
      // An altitude in the reference is ignored, as the columns are 2D.
      assert.deepEqual(
        await ids(geoQ({ georel: 'equals', geometry: 'Point', coordinates: JSON.stringify([...C, 30]) })),
        ['c0'],
      );
      assert.deepEqual(
        await ids(
          geoQ({
            georel: 'overlaps',
            geometry: 'Polygon',
            coordinates: JSON.stringify([square(121.51, 31.21, 0.02)]),
          }),
        ),
        ['poly'],
      );
      assert.deepEqual(
        await ids(
          geoQ({ georel: 'overlaps', geometry: 'LineString', coordinates: '[[121.47,31.25],[121.5,31.25]]' }),
        ),
        ['line'],
      );
    });

    it('passes the reference geometry as a bound parameter, never as SQL text', () => {
      const q = geoQ({ georel: 'within', geometry: 'Point', coordinates: '[1,2]' });
      const compiled = sql`select 1 from geotest e where ${geoQueryToSql(q, sql`e.location`)}`.compile(
        t.database.db,
      );
      assert.match(
        compiled.sql,
        /ST_Within\(\(e\.location\), ST_SetSRID\(ST_GeomFromGeoJSON\(\$1::text\), 4326\)\)/,
      );
      assert.deepEqual(compiled.parameters, ['{"type":"Point","coordinates":[1,2]}']);
      const n = geoQ({ georel: 'near;maxDistance==10', geometry: 'Point', coordinates: '[1,2]' });
      const nc = sql`${geoQueryToSql(n, sql`e.location`)}`.compile(t.database.db);
      assert.doesNotMatch(nc.sql, /[0-9]\.[0-9]/);
    });

    it('never misses a point the prefilter box should hold (high latitudes, antimeridian, poles)', async () => {
      const db = t.database.db;
      await sql`create table geoedge (ref int, location geometry(Point, 4326))`.execute(db);
      const refs: [number, number, number][] = [
        [121.47, 31.23, 1000],
        [121.47, 31.23, 50_000],
        [10, 60, 20_000],
        [-70, -75, 100_000],
        [179.99, 0, 5000],
        [-179.995, 65, 3000],
        [0, 89.99, 5000],
        [45, -89.5, 200_000],
        [30, 0, 3_000_000],
      ];
      for (const [i, [lon, lat, d]] of refs.entries()) {
        // Points just inside the radius in 72 directions (geodesic, on the spheroid).
        await sql`insert into geoedge
          select ${i}, ST_Project(ST_SetSRID(ST_MakePoint(${lon}::float8, ${lat}::float8), 4326)::geography,
                                  ${d}::float8 * 0.9999, radians(a))::geometry
          from generate_series(0, 355, 5) a`.execute(db);
      }
      for (const [i, [lon, lat, d]] of refs.entries()) {
        const q = geoQ({
          georel: `near;maxDistance==${d}`,
          geometry: 'Point',
          coordinates: JSON.stringify([lon, lat]),
        });
        const { rows } = await sql<{ n: number }>`select count(*)::int as n from geoedge e
          where e.ref = ${i} and ${geoQueryToSql(q, sql`e.location`)}`.execute(db);
        assert.equal(rows[0]?.n, 72, `reference ${lon},${lat} within ${d} m`);
      }
    });

    it('answers near;maxDistance through the GiST index on ~20k points', async () => {
      const db = t.database.db;
      await sql`create table geobig (id int primary key, location geometry(Geometry, 4326))`.execute(db);
      await sql`insert into geobig
        select i, ST_SetSRID(ST_MakePoint(120.9 + (i % 141) * 0.01, 30.7 + (i / 141) * 0.007), 4326)
        from generate_series(0, 19999) i`.execute(db);
      await sql`create index geobig_location on geobig using gist (location)`.execute(db);
      await sql`analyze geobig`.execute(db);
      const q = near('near;maxDistance==3000');
      const where = geoQueryToSql(q, sql`e.location`);
      const { rows } = await sql<
        Record<string, string>
      >`explain select e.id from geobig e where ${where}`.execute(db);
      const plan = rows.map((r) => Object.values(r).join(' ')).join('\n');
      assert.match(plan, /Index Scan|Bitmap Index Scan/, plan);
      assert.match(plan, /geobig_location/, plan);
      const counted = await sql<{
        n: number;
      }>`select count(*)::int as n from geobig e where ${where}`.execute(db);
      const exact = await sql<{ n: number }>`select count(*)::int as n from geobig e
        where ST_DWithin(e.location::geography, ${geometryParam(q.geometry)}::geography, 3000)`.execute(db);
      assert.ok((counted.rows[0]?.n ?? 0) > 10);
      assert.equal(counted.rows[0]?.n, exact.rows[0]?.n);
    });
  });
}
