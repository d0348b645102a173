/**
 * In-process point location for areas (区域): a packed Hilbert R-tree (Flatbush) over the bounding
 * boxes of every polygon of every area boundary, and an exact point-in-polygon test that decides
 * as PostGIS's `ST_Covers(polygon, point)` does — the same winding-number rule and the same
 * floating-point side test, with a point on a boundary counted as covered — so the index and the
 * SQL of `locatePointChain` answer alike.
 *
 * Ties: a point covered by several areas of the deepest level (on the shared border of two grids)
 * is given the one with the lowest code. The SQL picks any of them.
 */
import Flatbush from 'flatbush';
import type { AreaRow } from './areas.store.ts';

/** An area as the index is built from: its row, and its boundary as WKB (null when it has none). */
export type AreaIndexRow = AreaRow & { wkb: Uint8Array | null };

/** Figures about a built index (sizes are of its typed arrays; the area rows come on top). */
export interface AreaIndexStats {
  areas: number;
  polygons: number;
  rings: number;
  vertices: number;
  bytes: number;
}

/** Deepest covering area with its ancestors (root first), answered in memory. */
export interface AreaIndex {
  /** The deepest area covering the point and its ancestors, root first; empty when none covers it. */
  chainAt(lon: number, lat: number): readonly AreaRow[];
  readonly stats: AreaIndexStats;
}

const WKB_POLYGON = 3;
const WKB_MULTIPOLYGON = 6;

interface WkbVisitor {
  /** A polygon starts; its rings follow, exterior first. */
  polygon(): void;
  ring(view: DataView, offset: number, points: number, littleEndian: boolean): void;
}

/**
 * Walks a 2D WKB Polygon or MultiPolygon, as `ST_AsBinary` writes it. Rings of fewer than four
 * points are skipped, as PostGIS skips them when testing points against a polygon.
 */
function walkWkb(wkb: Uint8Array, visit: WkbVisitor): void {
  const view = new DataView(wkb.buffer, wkb.byteOffset, wkb.byteLength);
  let pos = 0;
  const header = (): { little: boolean; type: number } => {
    const little = view.getUint8(pos) === 1;
    const type = view.getUint32(pos + 1, little);
    pos += 5;
    return { little, type };
  };
  const polygon = (little: boolean): void => {
    const rings = view.getUint32(pos, little);
    pos += 4;
    let started = false; // a polygon none of whose rings is usable is no polygon
    for (let r = 0; r < rings; r++) {
      const points = view.getUint32(pos, little);
      pos += 4;
      if (points >= 4) {
        if (!started) visit.polygon();
        started = true;
        visit.ring(view, pos, points, little);
      }
      pos += points * 16;
    }
  };
  const top = header();
  if (top.type === WKB_POLYGON) {
    polygon(top.little);
    return;
  }
  if (top.type !== WKB_MULTIPOLYGON) throw new Error(`area boundary: unsupported WKB type ${top.type}`);
  const count = view.getUint32(pos, top.little);
  pos += 4;
  for (let i = 0; i < count; i++) {
    const part = header();
    if (part.type !== WKB_POLYGON) throw new Error(`area boundary: unsupported WKB part type ${part.type}`);
    polygon(part.little);
  }
}

const OUTSIDE = -1;
const BOUNDARY = 0;
const INSIDE = 1;
type RingResult = typeof OUTSIDE | typeof BOUNDARY | typeof INSIDE;

interface PackedBoundaries {
  /** x, y of every vertex of every ring. */
  coords: Float64Array;
  /** Ring r's vertices are [ringStart[r], ringStart[r + 1]). */
  ringStart: Uint32Array;
  /** Polygon p's rings are [polygonRing[p], polygonRing[p + 1]), exterior first. */
  polygonRing: Uint32Array;
  /** The area (its number in the sorted rows) each polygon belongs to. */
  polygonArea: Uint32Array;
  /** minX, minY, maxX, maxY of each polygon. */
  boxes: Float64Array;
}

/** Copies the boundaries into flat typed arrays: compact, and quick to walk. */
function packBoundaries(rows: readonly AreaIndexRow[]): PackedBoundaries {
  // Pass 1 sizes the arrays, pass 2 fills them.
  let polygons = 0;
  let rings = 0;
  let vertices = 0;
  const counter: WkbVisitor = {
    polygon: () => {
      polygons++;
    },
    ring: (_view, _offset, points) => {
      rings++;
      vertices += points;
    },
  };
  for (const row of rows) if (row.wkb) walkWkb(row.wkb, counter);

  const packed: PackedBoundaries = {
    coords: new Float64Array(vertices * 2),
    ringStart: new Uint32Array(rings + 1),
    polygonRing: new Uint32Array(polygons + 1),
    polygonArea: new Uint32Array(polygons),
    boxes: new Float64Array(polygons * 4),
  };
  const { coords, ringStart, polygonRing, polygonArea, boxes } = packed;
  let p = -1;
  let r = 0;
  let v = 0;
  let area = 0;
  const filler: WkbVisitor = {
    polygon: () => {
      p++;
      polygonRing[p] = r;
      polygonArea[p] = area;
      boxes.set([Infinity, Infinity, -Infinity, -Infinity], p * 4);
    },
    ring: (view, offset, points, little) => {
      ringStart[r++] = v;
      let minX = boxes[p * 4] ?? Infinity;
      let minY = boxes[p * 4 + 1] ?? Infinity;
      let maxX = boxes[p * 4 + 2] ?? -Infinity;
      let maxY = boxes[p * 4 + 3] ?? -Infinity;
      for (let i = 0; i < points; i++, v++) {
        const x = view.getFloat64(offset + i * 16, little);
        const y = view.getFloat64(offset + i * 16 + 8, little);
        coords[v * 2] = x;
        coords[v * 2 + 1] = y;
        if (x < minX) minX = x;
        if (x > maxX) maxX = x;
        if (y < minY) minY = y;
        if (y > maxY) maxY = y;
      }
      boxes.set([minX, minY, maxX, maxY], p * 4);
    },
  };
  for (const [i, row] of rows.entries()) {
    area = i;
    if (row.wkb) walkWkb(row.wkb, filler);
  }
  ringStart[rings] = v;
  polygonRing[polygons] = r;
  return packed;
}

class PackedAreaIndex implements AreaIndex {
  readonly stats: AreaIndexStats;
  readonly #areas: readonly AreaRow[];
  readonly #byCode: ReadonlyMap<string, number>;
  readonly #coords: Float64Array;
  readonly #ringStart: Uint32Array;
  readonly #polygonRing: Uint32Array;
  readonly #polygonArea: Uint32Array;
  readonly #tree: Flatbush | undefined;

  /** `areas` sorted by code: the tie-break relies on area numbers following codes. */
  constructor(areas: readonly AreaRow[], packed: PackedBoundaries) {
    this.#areas = areas;
    this.#byCode = new Map(areas.map((a, i) => [a.code, i]));
    this.#coords = packed.coords;
    this.#ringStart = packed.ringStart;
    this.#polygonRing = packed.polygonRing;
    this.#polygonArea = packed.polygonArea;
    const polygons = packed.polygonArea.length;
    // Flatbush refuses an empty index; with no boundaries nothing is ever covered.
    if (polygons > 0) {
      const { boxes } = packed;
      const tree = new Flatbush(polygons);
      for (let i = 0; i < polygons; i++)
        tree.add(boxes[i * 4] ?? 0, boxes[i * 4 + 1] ?? 0, boxes[i * 4 + 2] ?? 0, boxes[i * 4 + 3] ?? 0);
      tree.finish();
      this.#tree = tree;
    }
    this.stats = {
      areas: areas.length,
      polygons,
      rings: packed.ringStart.length - 1,
      vertices: packed.coords.length / 2,
      bytes:
        packed.coords.byteLength +
        packed.ringStart.byteLength +
        packed.polygonRing.byteLength +
        packed.polygonArea.byteLength +
        (this.#tree?.data.byteLength ?? 0),
    };
  }

  chainAt(lon: number, lat: number): readonly AreaRow[] {
    // PostGIS finds a non-finite point in nothing.
    if (!this.#tree || !Number.isFinite(lon) || !Number.isFinite(lat)) return [];
    const candidates = this.#tree.search(lon, lat, lon, lat).sort(this.#deepestFirst);
    for (const polygon of candidates)
      if (this.#polygonCovers(polygon, lon, lat)) return this.#chainOf(this.#polygonArea[polygon] ?? 0);
    return [];
  }

  /** Deepest area first, then lowest code (area numbers follow codes), then polygon order. */
  readonly #deepestFirst = (a: number, b: number): number => {
    const areaA = this.#polygonArea[a] ?? 0;
    const areaB = this.#polygonArea[b] ?? 0;
    return (this.#areas[areaB]?.depth ?? 0) - (this.#areas[areaA]?.depth ?? 0) || areaA - areaB || a - b;
  };

  #chainOf(area: number): AreaRow[] {
    const chain: AreaRow[] = [];
    for (const code of this.#areas[area]?.path.split('/') ?? []) {
      const ancestor = this.#areas[this.#byCode.get(code) ?? -1];
      if (ancestor) chain.push(ancestor);
    }
    return chain;
  }

  /** ST_Covers for one polygon: on a boundary, or inside the exterior and outside every hole. */
  #polygonCovers(polygon: number, x: number, y: number): boolean {
    const first = this.#polygonRing[polygon] ?? 0;
    const end = this.#polygonRing[polygon + 1] ?? 0;
    const exterior = this.#ringAt(first, x, y);
    if (exterior !== INSIDE) return exterior === BOUNDARY;
    for (let ring = first + 1; ring < end; ring++) {
      const hole = this.#ringAt(ring, x, y);
      if (hole === BOUNDARY) return true;
      if (hole === INSIDE) return false;
    }
    return true;
  }

  /**
   * Where a point lies against one ring: Sunday's winding number as PostGIS computes it
   * (`itree_point_in_ring` in PostGIS 3.5, `point_in_ring` before): an edge whose side test is
   * exactly zero and whose box holds the point means the point is on the boundary.
   */
  #ringAt(ring: number, x: number, y: number): RingResult {
    const coords = this.#coords;
    let wn = 0;
    // Typed-array reads past the end give undefined; these bounds keep every read inside.
    const end = ((this.#ringStart[ring + 1] ?? 0) - 1) * 2;
    for (let i = (this.#ringStart[ring] ?? 0) * 2; i < end; i += 2) {
      const y1 = coords[i + 1] ?? 0;
      const y2 = coords[i + 3] ?? 0;
      // An edge whose y-range misses the point can neither hold it nor count for the winding.
      if ((y < y1 && y < y2) || (y > y1 && y > y2)) continue;
      const x1 = coords[i] ?? 0;
      const x2 = coords[i + 2] ?? 0;
      if (x1 === x2 && y1 === y2) continue; // zero-length edges are ignored, as in PostGIS
      // The same expression, in the same order, as PostGIS's side test: exactly zero means the
      // point is on the edge's line, so a vertex always tests as on the boundary.
      const side = (x2 - x1) * (y - y1) - (x - x1) * (y2 - y1);
      if (side === 0 && x >= Math.min(x1, x2) && x <= Math.max(x1, x2)) return BOUNDARY;
      if (y1 <= y && y < y2 && side > 0) wn++;
      else if (y2 <= y && y < y1 && side < 0) wn--;
    }
    return wn === 0 ? OUTSIDE : INSIDE;
  }
}

/**
 * Builds the index from every area; those without a boundary are kept for chains only. The rows
 * are held without their WKB, so the caller's buffers can be collected.
 */
export function buildAreaIndex(rows: readonly AreaIndexRow[]): AreaIndex {
  const sorted = [...rows].sort((a, b) => (a.code < b.code ? -1 : a.code > b.code ? 1 : 0));
  const packed = packBoundaries(sorted);
  return new PackedAreaIndex(
    sorted.map(({ wkb: _wkb, ...row }) => row),
    packed,
  );
}
