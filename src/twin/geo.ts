/**
 * Geography for the NGSI-LD API: GeoJSON geometry validation for GeoProperty values (RFC 7946 as
 * ETSI GS CIM 009 v1.8 §4.7 uses it), the Geoquery Language (§4.10) from GET parameters and from
 * a query body's `geoQ`, and its translation to PostGIS SQL over a geometry(4326) expression.
 *
 * Validation is pure JS and bounded: at most 100 000 positions per geometry. Polygon topology
 * (self-intersecting or self-touching rings, spikes, holes crossing, outside their shell or
 * inside another hole) is tested in JS rather than left to the database, because a GeoProperty is
 * checked before any SQL runs and a 400 must name the ring: rings of up to 64 edges pairwise,
 * larger ones through a packed R-tree (Flatbush) over the edge boxes — about 0.1 s for a ring of
 * 100k vertices. A shape whose edge boxes overlap so much that the tests would exceed a fixed
 * budget (10 million; no real boundary comes near) is refused rather than stored unchecked. Not
 * tested: overlapping polygons of one MultiPolygon, and cases decided by floating-point rounding
 * (a vertex a few ulps off an edge); PostGIS predicates answer on such shapes without failing.
 */
import Flatbush from 'flatbush';
import { sql, type RawBuilder } from 'kysely';
import { NgsiError } from './errors.ts';

// ---------------------------------------------------------------------------------------------
// Types

/** Longitude, latitude and optionally altitude (WGS-84, degrees and metres). */
export type Position = [number, number] | [number, number, number];
/** RFC 7946 §5: 2·n numbers, south-west corner first. */
export type BBox = [number, number, number, number] | [number, number, number, number, number, number];

export interface Point {
  type: 'Point';
  coordinates: Position;
  bbox?: BBox;
}
export interface MultiPoint {
  type: 'MultiPoint';
  coordinates: Position[];
  bbox?: BBox;
}
export interface LineString {
  type: 'LineString';
  coordinates: Position[];
  bbox?: BBox;
}
export interface MultiLineString {
  type: 'MultiLineString';
  coordinates: Position[][];
  bbox?: BBox;
}
export interface Polygon {
  type: 'Polygon';
  coordinates: Position[][];
  bbox?: BBox;
}
export interface MultiPolygon {
  type: 'MultiPolygon';
  coordinates: Position[][][];
  bbox?: BBox;
}
/** A geometry with coordinates: the only kind a geo-query may name. */
export type SimpleGeometry = Point | MultiPoint | LineString | MultiLineString | Polygon | MultiPolygon;
export interface GeometryCollection {
  type: 'GeometryCollection';
  geometries: SimpleGeometry[];
  bbox?: BBox;
}
export type Geometry = SimpleGeometry | GeometryCollection;
export type SimpleGeometryType = SimpleGeometry['type'];

export const SIMPLE_GEOMETRY_TYPES: readonly SimpleGeometryType[] = [
  'Point',
  'MultiPoint',
  'LineString',
  'MultiLineString',
  'Polygon',
  'MultiPolygon',
];

export const GEOMETRY_LIMITS = {
  /** Positions in one geometry, all members of a collection together. */
  maxPositions: 100_000,
  maxCollectionMembers: 100,
  /** Edge-pair and ray-edge tests the topology check may run before refusing the shape. */
  maxTopologyTests: 10_000_000,
} as const;

// ---------------------------------------------------------------------------------------------
// Geometry validation

const bad = (path: string, reason: string): NgsiError =>
  new NgsiError('BadRequestData', `${path}: ${reason}`);

/** A value for an error message: short, quoted when a string, never a wall of JSON. */
function show(v: unknown): string {
  let s: string;
  if (typeof v === 'number') s = String(v);
  else if (v === undefined) s = 'undefined';
  else {
    try {
      s = JSON.stringify(v);
    } catch {
      s = typeof v;
    }
  }
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

interface Walk {
  positions: number;
  tests: number;
  /** The path the position limit is reported on (the whole geometry). */
  root: string;
}

function reserve(walk: Walk, n: number): void {
  walk.positions += n;
  if (walk.positions > GEOMETRY_LIMITS.maxPositions)
    throw bad(walk.root, `more than ${GEOMETRY_LIMITS.maxPositions} positions`);
}

function checkArray(v: unknown, path: string, what: string): unknown[] {
  if (!Array.isArray(v)) throw bad(path, `must be an array of ${what}, got ${show(v)}`);
  return v;
}

function checkPosition(v: unknown, path: string): Position {
  if (!Array.isArray(v))
    throw bad(
      path,
      `a position must be an array of 2 or 3 numbers (longitude, latitude[, altitude]), got ${show(v)}`,
    );
  if (v.length > 3)
    throw bad(path, `a position has 2 or 3 numbers (longitude, latitude[, altitude]), got ${v.length}`);
  for (let i = 0; i < v.length; i++) {
    const n: unknown = v[i];
    if (Array.isArray(n)) throw bad(`${path}[${i}]`, `${show(n)} is not a number (one array level too deep)`);
    if (typeof n !== 'number') throw bad(`${path}[${i}]`, `${show(n)} is not a number`);
    if (!Number.isFinite(n)) throw bad(`${path}[${i}]`, `${show(n)} is not a finite number`);
  }
  if (v.length < 2)
    throw bad(path, `a position has 2 or 3 numbers (longitude, latitude[, altitude]), got ${v.length}`);
  const [lon, lat, alt] = v as number[];
  if (lon === undefined || lat === undefined) throw bad(path, 'a position needs longitude and latitude');
  if (lon < -180 || lon > 180) throw bad(`${path}[0]`, `longitude ${lon} is outside [-180, 180]`);
  if (lat < -90 || lat > 90) throw bad(`${path}[1]`, `latitude ${lat} is outside [-90, 90]`);
  return alt === undefined ? [lon, lat] : [lon, lat, alt];
}

function checkPositions(v: unknown, path: string, walk: Walk, min: number, what: string): Position[] {
  const arr = checkArray(v, path, 'positions');
  if (arr.length < min)
    throw bad(path, `${what} needs at least ${min} position${min === 1 ? '' : 's'}, got ${arr.length}`);
  reserve(walk, arr.length);
  return arr.map((p, i) => checkPosition(p, `${path}[${i}]`));
}

function checkRing(v: unknown, path: string, walk: Walk): Position[] {
  const ring = checkPositions(v, path, walk, 4, 'a linear ring');
  const first = ring[0];
  const last = ring[ring.length - 1];
  if (!first || !last || first[0] !== last[0] || first[1] !== last[1] || first[2] !== last[2])
    throw bad(
      path,
      `linear ring is not closed: first position ${show(first)} differs from last ${show(last)}`,
    );
  return ring;
}

function checkPolygon(v: unknown, path: string, walk: Walk): Position[][] {
  const arr = checkArray(v, path, 'linear rings');
  if (arr.length === 0) throw bad(path, 'a Polygon needs at least its exterior ring');
  const rings = arr.map((r, i) => checkRing(r, `${path}[${i}]`, walk));
  checkPolygonTopology(rings, path, walk);
  return rings;
}

function checkNonEmpty(v: unknown, path: string, what: string): unknown[] {
  const arr = checkArray(v, path, what);
  if (arr.length === 0) throw bad(path, `needs at least one of its ${what}`);
  return arr;
}

/** How many arrays deep each geometry type nests its numbers (RFC 7946 §3.1). */
const COORDINATE_DEPTH: Record<SimpleGeometryType, number> = {
  Point: 1,
  MultiPoint: 2,
  LineString: 2,
  MultiLineString: 3,
  Polygon: 3,
  MultiPolygon: 4,
};

/** Array depth down the first elements, when it ends at a non-array; undefined at an empty array. */
function firstDepth(v: unknown): number | undefined {
  let depth = 0;
  for (let x = v; Array.isArray(x); x = x[0] as unknown) {
    if (x.length === 0) return undefined;
    if (++depth > 8) break; // deep enough to be wrong for every type
  }
  return depth;
}

function checkSimple(
  type: SimpleGeometryType,
  coordinates: unknown,
  path: string,
  walk: Walk,
): SimpleGeometry {
  if (coordinates === undefined) throw bad(path, `a ${type} needs "coordinates"`);
  // A wrong nesting level is named as such rather than as whatever the first misfit looks like.
  const depth = firstDepth(coordinates);
  if (depth !== undefined && depth > 0 && depth !== COORDINATE_DEPTH[type])
    throw bad(path, `${type} coordinates nest ${COORDINATE_DEPTH[type]} arrays deep, these nest ${depth}`);
  switch (type) {
    case 'Point':
      reserve(walk, 1);
      return { type, coordinates: checkPosition(coordinates, path) };
    case 'MultiPoint':
      return { type, coordinates: checkPositions(coordinates, path, walk, 1, 'a MultiPoint') };
    case 'LineString':
      return { type, coordinates: checkPositions(coordinates, path, walk, 2, 'a LineString') };
    case 'MultiLineString':
      return {
        type,
        coordinates: checkNonEmpty(coordinates, path, 'line strings').map((l, i) =>
          checkPositions(l, `${path}[${i}]`, walk, 2, 'a LineString'),
        ),
      };
    case 'Polygon':
      return { type, coordinates: checkPolygon(coordinates, path, walk) };
    case 'MultiPolygon':
      return {
        type,
        coordinates: checkNonEmpty(coordinates, path, 'polygons').map((p, i) =>
          checkPolygon(p, `${path}[${i}]`, walk),
        ),
      };
  }
}

function checkBbox(v: unknown, path: string): BBox {
  if (
    !Array.isArray(v) ||
    (v.length !== 4 && v.length !== 6) ||
    !v.every((n) => typeof n === 'number' && Number.isFinite(n))
  )
    throw bad(path, `a bbox must be an array of 4 or 6 numbers, got ${show(v)}`);
  return [...(v as number[])] as BBox;
}

function isSimpleType(t: unknown): t is SimpleGeometryType {
  return typeof t === 'string' && (SIMPLE_GEOMETRY_TYPES as readonly string[]).includes(t);
}

function checkGeometryAt(value: unknown, path: string, walk: Walk, inCollection: boolean): Geometry {
  if (!isObject(value))
    throw bad(path, `a geometry must be a JSON object with "type" and "coordinates", got ${show(value)}`);
  const type = value['type'];
  let out: Geometry;
  if (type === 'GeometryCollection') {
    // RFC 7946 §3.1.8: nested collections SHOULD be avoided; we refuse them.
    if (inCollection) throw bad(`${path}.type`, 'a GeometryCollection cannot contain a GeometryCollection');
    const members = checkNonEmpty(value['geometries'], `${path}.geometries`, 'geometries');
    if (members.length > GEOMETRY_LIMITS.maxCollectionMembers)
      throw bad(
        `${path}.geometries`,
        `a GeometryCollection has at most ${GEOMETRY_LIMITS.maxCollectionMembers} members, got ${members.length}`,
      );
    out = {
      type,
      geometries: members.map(
        (m, i) => checkGeometryAt(m, `${path}.geometries[${i}]`, walk, true) as SimpleGeometry,
      ),
    };
  } else if (isSimpleType(type)) {
    out = checkSimple(type, value['coordinates'], `${path}.coordinates`, walk);
  } else {
    throw bad(
      `${path}.type`,
      `${show(type)} is not a GeoJSON geometry type (expected one of ${SIMPLE_GEOMETRY_TYPES.join(', ')}, GeometryCollection)`,
    );
  }
  if (value['bbox'] !== undefined) out.bbox = checkBbox(value['bbox'], `${path}.bbox`);
  return out;
}

/**
 * A GeoProperty value checked against RFC 7946 and returned as a fresh typed geometry (type,
 * coordinates or geometries, and bbox when given; foreign members and `crs` are dropped).
 * Throws BadRequestData naming the path and the precise problem.
 */
export function checkGeometry(value: unknown, path: string): Geometry {
  return checkGeometryAt(value, path, { positions: 0, tests: 0, root: path }, false);
}

// ---------------------------------------------------------------------------------------------
// Polygon topology

/** Edge pairs below this count are tested pairwise; above, through an R-tree. */
const BRUTE_FORCE_EDGES = 64;

const NONE = 0;
const TOUCH = 1;
const CROSS = 2;
const OVERLAP = 3;

/**
 * The rings of one polygon as flat arrays: each ring's distinct vertices (consecutive repeats and
 * the closing position dropped), edge `e` running from vertex `e` to vertex `next[e]`.
 */
interface RingSet {
  xs: Float64Array;
  ys: Float64Array;
  next: Int32Array;
  /** Index, in the ring's input, of each vertex (for messages). */
  source: Int32Array;
  ringOf: Int32Array;
  /** Ring r owns vertices [start[r], start[r + 1]). */
  start: Int32Array;
  size: number;
  rings: number;
}

function ringSet(rings: Position[][], path: string): RingSet {
  let total = 0;
  for (const r of rings) total += r.length;
  const xs = new Float64Array(total);
  const ys = new Float64Array(total);
  const next = new Int32Array(total);
  const source = new Int32Array(total);
  const ringOf = new Int32Array(total);
  const start = new Int32Array(rings.length + 1);
  let n = 0;
  for (let r = 0; r < rings.length; r++) {
    const ring = rings[r] as Position[];
    const first = n;
    start[r] = first;
    for (let i = 0; i < ring.length - 1; i++) {
      const p = ring[i] as Position;
      if (n > first && xs[n - 1] === p[0] && ys[n - 1] === p[1]) continue;
      xs[n] = p[0];
      ys[n] = p[1];
      source[n] = i;
      ringOf[n] = r;
      next[n] = n + 1;
      n++;
    }
    // [a, b, c, a, a] leaves a trailing copy of the first vertex.
    while (n - first > 1 && xs[n - 1] === xs[first] && ys[n - 1] === ys[first]) n--;
    if (n - first < 3) throw bad(`${path}[${r}]`, 'a linear ring needs at least 3 distinct positions');
    next[n - 1] = first;
  }
  start[rings.length] = n;
  return { xs, ys, next, source, ringOf, start, size: n, rings: rings.length };
}

/** Twice the signed area of (a, b, c): > 0 when c lies left of a→b. */
function orient(ax: number, ay: number, bx: number, by: number, cx: number, cy: number): number {
  return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax);
}

/** For c collinear with a–b: whether c lies on the closed segment. */
function onSegment(ax: number, ay: number, bx: number, by: number, cx: number, cy: number): boolean {
  return (
    (ax <= bx ? ax <= cx && cx <= bx : bx <= cx && cx <= ax) &&
    (ay <= by ? ay <= cy && cy <= by : by <= cy && cy <= ay)
  );
}

/** How edges i and j meet: not at all, at one point (touch), crossing, or along a stretch. */
function classify(s: RingSet, i: number, j: number): number {
  const { xs, ys, next } = s;
  const i2 = next[i] as number;
  const j2 = next[j] as number;
  const ax = xs[i] as number;
  const ay = ys[i] as number;
  const bx = xs[i2] as number;
  const by = ys[i2] as number;
  const cx = xs[j] as number;
  const cy = ys[j] as number;
  const dx = xs[j2] as number;
  const dy = ys[j2] as number;
  const d1 = orient(ax, ay, bx, by, cx, cy);
  const d2 = orient(ax, ay, bx, by, dx, dy);
  const d3 = orient(cx, cy, dx, dy, ax, ay);
  const d4 = orient(cx, cy, dx, dy, bx, by);
  if (((d1 > 0 && d2 < 0) || (d1 < 0 && d2 > 0)) && ((d3 > 0 && d4 < 0) || (d3 < 0 && d4 > 0))) return CROSS;
  if (d1 === 0 && d2 === 0) {
    // Collinear: compare the extents on the axis the first edge spans more.
    const useX = Math.abs(bx - ax) >= Math.abs(by - ay);
    const p0 = useX ? ax : ay;
    const p1 = useX ? bx : by;
    const q0 = useX ? cx : cy;
    const q1 = useX ? dx : dy;
    const overlap =
      Math.min(Math.max(p0, p1), Math.max(q0, q1)) - Math.max(Math.min(p0, p1), Math.min(q0, q1));
    return overlap > 0 ? OVERLAP : overlap === 0 ? TOUCH : NONE;
  }
  if (
    (d1 === 0 && onSegment(ax, ay, bx, by, cx, cy)) ||
    (d2 === 0 && onSegment(ax, ay, bx, by, dx, dy)) ||
    (d3 === 0 && onSegment(cx, cy, dx, dy, ax, ay)) ||
    (d4 === 0 && onSegment(cx, cy, dx, dy, bx, by))
  )
    return TOUCH;
  return NONE;
}

function spend(walk: Walk, path: string, n: number): void {
  walk.tests += n;
  if (walk.tests > GEOMETRY_LIMITS.maxTopologyTests)
    throw bad(path, 'polygon too complex to validate (its edges overlap too much); simplify it');
}

const edgeAt = (s: RingSet, e: number): string => `edge after position ${s.source[e]}`;

/** Throws when two edges of the polygon meet where OGC simple-feature validity forbids it. */
function testEdgePair(s: RingSet, i: number, j: number, path: string): void {
  const { xs, ys, next, ringOf } = s;
  const ri = ringOf[i] as number;
  const rj = ringOf[j] as number;
  if (ri === rj) {
    const iNext = next[i] as number;
    const jNext = next[j] as number;
    if (iNext === j || jNext === i) {
      // Neighbours share vertex v and may not fold back along each other (a spike).
      const a = iNext === j ? i : j;
      const v = iNext === j ? j : i;
      const c = iNext === j ? jNext : iNext;
      const vx = xs[v] as number;
      const vy = ys[v] as number;
      const ax = (xs[a] as number) - vx;
      const ay = (ys[a] as number) - vy;
      const cx = (xs[c] as number) - vx;
      const cy = (ys[c] as number) - vy;
      if (ax * cy - ay * cx === 0 && ax * cx + ay * cy > 0)
        throw bad(`${path}[${ri}]`, `linear ring folds back on itself at position ${s.source[v]}`);
      return;
    }
    if (classify(s, i, j) !== NONE)
      throw bad(`${path}[${ri}]`, `linear ring self-intersects (${edgeAt(s, i)} meets ${edgeAt(s, j)})`);
    return;
  }
  // Rings of one polygon may touch at points but never cross or share a stretch of boundary.
  const kind = classify(s, i, j);
  if (kind !== CROSS && kind !== OVERLAP) return;
  const lo = Math.min(ri, rj);
  const hi = Math.max(ri, rj);
  const eLo = ri < rj ? i : j;
  const eHi = ri < rj ? j : i;
  if (lo === 0)
    throw bad(
      `${path}[${hi}]`,
      `hole crosses the exterior ring (its ${edgeAt(s, eHi)} meets exterior ${edgeAt(s, eLo)})`,
    );
  throw bad(
    `${path}[${hi}]`,
    `hole crosses hole ${lo} (its ${edgeAt(s, eHi)} meets ${edgeAt(s, eLo)} of hole ${lo})`,
  );
}

/** Edge bounding boxes in a packed R-tree, for polygons too large to test pairwise. */
function edgeIndex(s: RingSet): Flatbush {
  const { xs, ys, next } = s;
  const index = new Flatbush(s.size);
  for (let e = 0; e < s.size; e++) {
    const f = next[e] as number;
    const ax = xs[e] as number;
    const ay = ys[e] as number;
    const bx = xs[f] as number;
    const by = ys[f] as number;
    index.add(Math.min(ax, bx), Math.min(ay, by), Math.max(ax, bx), Math.max(ay, by));
  }
  index.finish();
  return index;
}

/**
 * OGC validity of one polygon, as far as it is cheap to decide: each ring simple (no
 * self-intersection or self-touching, no spike, non-zero area), rings meeting only at points,
 * and every hole vertex inside or on the shell and not inside another hole.
 */
function checkPolygonTopology(rings: Position[][], path: string, walk: Walk): void {
  const s = ringSet(rings, path);
  const { xs, ys, next } = s;
  const index = s.size > BRUTE_FORCE_EDGES ? edgeIndex(s) : undefined;
  if (index) {
    // One visitor for all searches (no closure per edge): it tests, never collects.
    let i = 0;
    let hits = 0;
    const visit = (j: number): boolean => {
      hits++;
      if (j > i) testEdgePair(s, i, j, path);
      return false;
    };
    for (; i < s.size; i++) {
      const f = next[i] as number;
      const ax = xs[i] as number;
      const ay = ys[i] as number;
      const bx = xs[f] as number;
      const by = ys[f] as number;
      hits = 0;
      index.search(Math.min(ax, bx), Math.min(ay, by), Math.max(ax, bx), Math.max(ay, by), visit);
      spend(walk, path, hits + 1);
    }
  } else {
    spend(walk, path, (s.size * (s.size - 1)) / 2);
    for (let i = 0; i < s.size; i++) for (let j = i + 1; j < s.size; j++) testEdgePair(s, i, j, path);
  }
  // Simple rings with positive extent cannot be flat; this guards the arithmetic, not the user.
  for (let r = 0; r < s.rings; r++) {
    let area2 = 0;
    for (let v = s.start[r] as number; v < (s.start[r + 1] as number); v++) {
      const w = next[v] as number;
      area2 += (xs[v] as number) * (ys[w] as number) - (xs[w] as number) * (ys[v] as number);
    }
    if (area2 === 0) throw bad(`${path}[${r}]`, 'linear ring has zero area');
  }
  if (s.rings > 1) checkHoles(s, index, path, walk);
}

/**
 * Every hole vertex against every ring at once, by a ray cast to +x: the parity of the edges
 * crossed tells inside or outside each ring, an edge through the vertex tells "on the boundary".
 */
function checkHoles(s: RingSet, index: Flatbush | undefined, path: string, walk: Walk): void {
  const { xs, ys, next, ringOf } = s;
  const parity = new Uint8Array(s.rings);
  const onBoundary = new Uint8Array(s.rings);
  const touched: number[] = [];
  let px = 0;
  let py = 0;
  let hits = 0;
  const visit = (e: number): boolean => {
    hits++;
    const r = ringOf[e] as number;
    touched.push(r);
    const f = next[e] as number;
    const ax = xs[e] as number;
    const ay = ys[e] as number;
    const bx = xs[f] as number;
    const by = ys[f] as number;
    if (orient(ax, ay, bx, by, px, py) === 0 && onSegment(ax, ay, bx, by, px, py)) onBoundary[r] = 1;
    else if (ay > py !== by > py && px < ax + ((py - ay) * (bx - ax)) / (by - ay))
      parity[r] = (parity[r] as number) ^ 1;
    return false;
  };
  for (let v = s.start[1] as number; v < s.size; v++) {
    px = xs[v] as number;
    py = ys[v] as number;
    hits = 0;
    if (index) index.search(px, py, Infinity, py, visit);
    else
      for (let e = 0; e < s.size; e++) {
        const f = next[e] as number;
        if (
          Math.max(xs[e] as number, xs[f] as number) >= px &&
          Math.min(ys[e] as number, ys[f] as number) <= py &&
          Math.max(ys[e] as number, ys[f] as number) >= py
        )
          visit(e);
      }
    spend(walk, path, hits + 1);
    const hole = ringOf[v] as number;
    const outside = onBoundary[0] === 0 && parity[0] === 0;
    let container = -1;
    for (const r of touched) {
      if (r !== 0 && r !== hole && onBoundary[r] === 0 && parity[r] === 1) container = r;
      parity[r] = 0;
      onBoundary[r] = 0;
    }
    touched.length = 0;
    if (outside)
      throw bad(`${path}[${hole}]`, `hole lies outside the exterior ring (position ${s.source[v]})`);
    if (container > 0)
      throw bad(`${path}[${hole}]`, `hole lies inside hole ${container} (position ${s.source[v]})`);
  }
}

// ---------------------------------------------------------------------------------------------
// Geo-queries (§4.10)

export type GeoRelation = 'near' | 'within' | 'contains' | 'intersects' | 'overlaps' | 'disjoint' | 'equals';

/** A parsed geo-query. For `near`, exactly one of the distances (metres) is set and the geometry is a Point. */
export interface GeoQuery {
  georel: GeoRelation;
  maxDistance?: number;
  minDistance?: number;
  geometry: SimpleGeometry;
  /** The GeoProperty as given (a term or an IRI, not expanded); `location` by default. */
  geoproperty: string;
}

/** The members of a geo-query: GET parameters, or a query body's `geoQ` (coordinates as JSON or text). */
export interface GeoQueryInput {
  georel?: unknown;
  geometry?: unknown;
  coordinates?: unknown;
  geoproperty?: unknown;
}

const RELATIONS: readonly GeoRelation[] = [
  'near',
  'within',
  'contains',
  'intersects',
  'overlaps',
  'disjoint',
  'equals',
];
const NEAR = /^near;(maxDistance|minDistance)==([0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)$/;
/** Coordinates text beyond this is refused before parsing (100k positions fit easily). */
const MAX_COORDINATES_TEXT = 8_000_000;
/** Attribute names: no whitespace, controls or the characters §4.6.2 forbids in names. */
const ATTRIBUTE_NAME = /^[^\s\p{Cc}<>"'=;()\\]{1,1024}$/u;

function parseGeorel(v: unknown, path: string): Pick<GeoQuery, 'georel' | 'maxDistance' | 'minDistance'> {
  if (typeof v !== 'string') throw bad(path, `must be a string, got ${show(v)}`);
  if ((RELATIONS as readonly string[]).includes(v) && v !== 'near') return { georel: v as GeoRelation };
  if (v === 'near')
    throw bad(path, 'near needs a distance: near;maxDistance==<metres> or near;minDistance==<metres>');
  if (v.startsWith('near;')) {
    const m = NEAR.exec(v);
    if (m) {
      const metres = Number(m[2]);
      if (!Number.isFinite(metres))
        throw bad(path, `distance ${show(m[2])} is not a finite number of metres`);
      return m[1] === 'maxDistance'
        ? { georel: 'near', maxDistance: metres }
        : { georel: 'near', minDistance: metres };
    }
    if (/^near;(maxDistance|minDistance)==[^;]*;(maxDistance|minDistance)==/.test(v))
      throw bad(path, 'near takes one distance: either maxDistance or minDistance, not both (§4.10)');
    throw bad(
      path,
      `${show(v)} is not a near relation: expected near;maxDistance==<metres> or near;minDistance==<metres> (a non-negative number)`,
    );
  }
  throw bad(
    path,
    `unknown geo-relationship ${show(v)} (expected near;maxDistance==<m>, near;minDistance==<m>, ${RELATIONS.slice(1).join(', ')})`,
  );
}

function parseCoordinates(v: unknown, path: string): unknown[] {
  if (Array.isArray(v)) return v;
  if (typeof v !== 'string')
    throw bad(path, `must be a JSON array (or a string holding one), got ${show(v)}`);
  if (v.length > MAX_COORDINATES_TEXT) throw bad(path, 'coordinates text is too long');
  let parsed: unknown;
  try {
    parsed = JSON.parse(v);
  } catch {
    throw bad(path, `${show(v)} is not a JSON array of coordinates (e.g. [121.47,31.23])`);
  }
  if (!Array.isArray(parsed))
    throw bad(path, `${show(v)} is not a JSON array of coordinates (e.g. [121.47,31.23])`);
  return parsed;
}

/**
 * A geo-query from its members (GET parameters, or the `geoQ` of a query or subscription body),
 * or undefined when none is given. `prefix` goes before member names in error details (e.g.
 * `geoQ.`). Throws BadRequestData for a partial query, an unknown relation, a bad distance,
 * unparseable coordinates or an invalid geometry.
 */
export function parseGeoQuery(input: GeoQueryInput, prefix = ''): GeoQuery | undefined {
  const given = (['georel', 'geometry', 'coordinates'] as const).filter((k) => input[k] !== undefined);
  if (given.length === 0) {
    if (input.geoproperty !== undefined)
      throw bad(`${prefix}geoproperty`, 'given without a geo-query (georel, geometry and coordinates)');
    return undefined;
  }
  if (given.length < 3) {
    const missing = (['georel', 'geometry', 'coordinates'] as const).filter((k) => input[k] === undefined);
    throw bad(
      `${prefix}${missing[0] ?? 'georel'}`,
      `a geo-query needs georel, geometry and coordinates together; missing ${missing.join(', ')}`,
    );
  }
  const rel = parseGeorel(input.georel, `${prefix}georel`);
  const type = input.geometry;
  if (type === 'GeometryCollection')
    throw bad(`${prefix}geometry`, 'GeometryCollection cannot be used in a geo-query (§4.10)');
  if (!isSimpleType(type))
    throw bad(`${prefix}geometry`, `${show(type)} is not one of ${SIMPLE_GEOMETRY_TYPES.join(', ')}`);
  if (rel.georel === 'near' && type !== 'Point')
    throw bad(`${prefix}geometry`, `near needs a Point as reference geometry, got ${type}`);
  const path = `${prefix}coordinates`;
  const coordinates = parseCoordinates(input.coordinates, path);
  const geometry = checkSimple(type, coordinates, path, { positions: 0, tests: 0, root: path });
  let geoproperty = 'location';
  if (input.geoproperty !== undefined) {
    if (typeof input.geoproperty !== 'string' || !ATTRIBUTE_NAME.test(input.geoproperty))
      throw bad(`${prefix}geoproperty`, `${show(input.geoproperty)} is not an attribute name`);
    geoproperty = input.geoproperty;
  }
  return { ...rel, geometry, geoproperty };
}

/** A geo-query back in the `geoQ` form of §5.2.13 (for echoing subscriptions). */
export function geoQueryToJson(q: GeoQuery): {
  georel: string;
  geometry: string;
  coordinates: unknown;
  geoproperty: string;
} {
  let georel: string = q.georel;
  if (q.maxDistance !== undefined) georel = `near;maxDistance==${q.maxDistance}`;
  else if (q.minDistance !== undefined) georel = `near;minDistance==${q.minDistance}`;
  return {
    georel,
    geometry: q.geometry.type,
    coordinates: q.geometry.coordinates,
    geoproperty: q.geoproperty,
  };
}

// ---------------------------------------------------------------------------------------------
// SQL

const to2d = (p: Position): [number, number] => [p[0], p[1]];

/** The geometry without altitudes, bbox or foreign members: what the 2D geometry columns hold. */
function flat(g: Geometry): object {
  switch (g.type) {
    case 'Point':
      return { type: g.type, coordinates: to2d(g.coordinates) };
    case 'MultiPoint':
    case 'LineString':
      return { type: g.type, coordinates: g.coordinates.map(to2d) };
    case 'MultiLineString':
    case 'Polygon':
      return { type: g.type, coordinates: g.coordinates.map((l) => l.map(to2d)) };
    case 'MultiPolygon':
      return { type: g.type, coordinates: g.coordinates.map((p) => p.map((l) => l.map(to2d))) };
    case 'GeometryCollection':
      return { type: g.type, geometries: g.geometries.map(flat) };
  }
}

/**
 * The geometry as a 2D SRID-4326 SQL value, passed as one bound parameter:
 * `ST_SetSRID(ST_GeomFromGeoJSON($1::text), 4326)`. Altitudes are dropped (the columns are 2D).
 */
export function geometryParam(geometry: Geometry): RawBuilder<unknown> {
  return sql`ST_SetSRID(ST_GeomFromGeoJSON(${JSON.stringify(flat(geometry))}::text), 4326)`;
}

/**
 * WGS-84's smallest radius of curvature (the meridian's, at the equator): dividing metres by it
 * overestimates the angle any geodesic of that length spans, so the box below is never too small.
 */
const MIN_EARTH_RADIUS = 6_335_439;
const DEG = 180 / Math.PI;

/**
 * A lon/lat box holding every point within `metres` (geodesic) of (lon, lat), widened by 1 %.
 * Longitude spans the spherical tangent bound asin(sin r / cos φ); a box that would cross the
 * antimeridian or reach a pole spans all longitudes instead.
 */
export function nearEnvelope(lon: number, lat: number, metres: number): [number, number, number, number] {
  const r = (metres / MIN_EARTH_RADIUS) * 1.01 + 1e-9;
  if (r >= Math.PI / 2) return [-180, -90, 180, 90];
  const dLat = r * DEG;
  const minLat = Math.max(-90, lat - dLat);
  const maxLat = Math.min(90, lat + dLat);
  if (minLat <= -90 || maxLat >= 90) return [-180, minLat, 180, maxLat];
  const s = Math.sin(r) / Math.cos(lat / DEG);
  if (s >= 1) return [-180, minLat, 180, maxLat];
  const dLon = Math.asin(s) * DEG * 1.01;
  if (lon - dLon < -180 || lon + dLon > 180) return [-180, minLat, 180, maxLat];
  return [lon - dLon, minLat, lon + dLon, maxLat];
}

/**
 * The geo-query as an SQL condition on `column`, a geometry(4326) expression of the target
 * GeoProperty (null never matches). Distances are geodesic metres on the WGS-84 spheroid; the
 * other relations are planar in lon/lat, as RFC 7946 reads GeoJSON. `near;maxDistance` adds a
 * box prefilter (`&&`) a GiST index on the column serves; the exact test runs on survivors only.
 */
export function geoQueryToSql(q: GeoQuery, column: RawBuilder<unknown>): RawBuilder<boolean> {
  const ref = geometryParam(q.geometry);
  const col = sql`(${column})`;
  switch (q.georel) {
    case 'near': {
      if (q.geometry.type !== 'Point') throw new Error('near needs a Point (parseGeoQuery ensures it)');
      const [lon, lat] = q.geometry.coordinates;
      if (q.maxDistance !== undefined) {
        const [x0, y0, x1, y1] = nearEnvelope(lon, lat, q.maxDistance);
        return sql<boolean>`(${col} && ST_MakeEnvelope(${x0}::float8, ${y0}::float8, ${x1}::float8, ${y1}::float8, 4326)
          and ST_DWithin(${col}::geography, ${ref}::geography, ${q.maxDistance}::float8))`;
      }
      if (q.minDistance !== undefined)
        return sql<boolean>`not ST_DWithin(${col}::geography, ${ref}::geography, ${q.minDistance}::float8)`;
      throw new Error('near needs a distance (parseGeoQuery ensures it)');
    }
    case 'within':
      return sql<boolean>`ST_Within(${col}, ${ref})`;
    case 'contains':
      return sql<boolean>`ST_Contains(${col}, ${ref})`;
    case 'intersects':
      return sql<boolean>`ST_Intersects(${col}, ${ref})`;
    case 'overlaps':
      return sql<boolean>`ST_Overlaps(${col}, ${ref})`;
    case 'disjoint':
      return sql<boolean>`ST_Disjoint(${col}, ${ref})`;
    case 'equals':
      return sql<boolean>`ST_Equals(${col}, ${ref})`;
  }
}

/** Geodesic distance in metres from the query's geometry to `column`: exact order by distance. */
export function distanceOrder(q: GeoQuery, column: RawBuilder<unknown>): RawBuilder<number> {
  return sql<number>`ST_Distance((${column})::geography, ${geometryParam(q.geometry)}::geography)`;
}

/**
 * `column <-> reference`: the KNN operator a GiST index can walk nearest-first (ORDER BY … LIMIT).
 * It measures planar degrees, so the order is only approximately by metres (east–west distances
 * shrink with cos(latitude)); use `distanceOrder` when the order must be exact.
 */
export function knnOrder(q: GeoQuery, column: RawBuilder<unknown>): RawBuilder<number> {
  return sql<number>`(${column}) <-> ${geometryParam(q.geometry)}`;
}

// ---------------------------------------------------------------------------------------------
// Bounding boxes

/** The 2D bounding box [west, south, east, north] of one or more geometries; undefined for none. */
export function bboxOf(
  geometries: Geometry | readonly Geometry[],
): [number, number, number, number] | undefined {
  let minX = Infinity,
    minY = Infinity,
    maxX = -Infinity,
    maxY = -Infinity;
  const add = (p: Position): void => {
    if (p[0] < minX) minX = p[0];
    if (p[0] > maxX) maxX = p[0];
    if (p[1] < minY) minY = p[1];
    if (p[1] > maxY) maxY = p[1];
  };
  const walk = (g: Geometry): void => {
    switch (g.type) {
      case 'Point':
        add(g.coordinates);
        return;
      case 'MultiPoint':
      case 'LineString':
        g.coordinates.forEach(add);
        return;
      case 'MultiLineString':
      case 'Polygon':
        for (const l of g.coordinates) l.forEach(add);
        return;
      case 'MultiPolygon':
        for (const p of g.coordinates) for (const l of p) l.forEach(add);
        return;
      case 'GeometryCollection':
        g.geometries.forEach(walk);
        return;
    }
  };
  const list: readonly Geometry[] = Array.isArray(geometries) ? geometries : [geometries as Geometry];
  list.forEach(walk);
  return minX === Infinity ? undefined : [minX, minY, maxX, maxY];
}
