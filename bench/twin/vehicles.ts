/**
 * The bench/twin data set: Vehicles in the shape of Stellio's NGSI-LD load tests as the issue
 * describes it — 6 properties (`speed` and `fuel` multi-instance by datasetId, `status` with a
 * `reliability` sub-property, `brand`, `temperature` with observedAt and unitCode, `name`), one
 * relationship (`isParked`) and one geo-property (`location`, a Point in Shanghai) — and their bulk
 * load into twin.entities, rows built exactly as the broker stores them.
 */
import type { Database } from '../../src/kernel/index.ts';
// Internals, for rows identical to the broker's: the public surface offers only the HTTP API.
import { areaPathOf, warmAreas } from '../../src/twin/access.ts';
import { parseEntity } from '../../src/twin/entity.model.ts';
import { LOCATION } from '../../src/twin/entity.service.ts';
import { CORE_LD_CONTEXT } from '../../src/twin/ldcontext.ts';
import { seededRandom } from '../../test/helpers/random.ts';

export { seededRandom };

/** Ten brands, evenly spread: `brand=="X"` selects a tenth of the vehicles. */
export const BRANDS = [
  'BYD',
  'SAIC',
  'Volkswagen',
  'Tesla',
  'Mercedes',
  'BMW',
  'Toyota',
  'Geely',
  'NIO',
  'Honda',
] as const;

/** Bulk-loaded ids sort in load order (zero-padded), so page n of `type=Vehicle` is known in advance. */
export const vehicleId = (n: number): string => `urn:ngsi-ld:Vehicle:V${String(n).padStart(7, '0')}`;

/** The city's box (lon 121.2–121.8, lat 30.9–31.4): land, river, a little sea and Jiangsu/Zhejiang. */
export function shanghaiPoint(random: () => number): [number, number] {
  const round = (x: number) => Math.round(x * 1e6) / 1e6;
  return [round(121.2 + random() * 0.6), round(30.9 + random() * 0.5)];
}

const BASE_TIME = Date.UTC(2026, 10, 1);
const STATUSES = ['moving', 'parked', 'charging', 'maintenance'] as const;
const pick = <T>(list: readonly T[], random: () => number): T =>
  list[Math.floor(random() * list.length)] as T;
const isoAt = (random: () => number) => new Date(BASE_TIME + Math.floor(random() * 86_400_000)).toISOString();

/** One Vehicle in normalized NGSI-LD (core @context only), as a client would POST it. */
export function vehicle(id: string, random: () => number): Record<string, unknown> {
  const observedAt = isoAt(random);
  return {
    id,
    type: 'Vehicle',
    speed: [
      {
        type: 'Property',
        value: Math.round(random() * 1200) / 10,
        observedAt,
        datasetId: 'urn:ngsi-ld:Dataset:GPS',
      },
      {
        type: 'Property',
        value: Math.round(random() * 1200) / 10,
        observedAt,
        datasetId: 'urn:ngsi-ld:Dataset:OBD',
      },
    ],
    fuel: [
      {
        type: 'Property',
        value: Math.round(random() * 1000) / 10,
        unitCode: 'P1',
        datasetId: 'urn:ngsi-ld:Dataset:MainTank',
      },
      {
        type: 'Property',
        value: Math.round(random() * 1000) / 10,
        unitCode: 'P1',
        datasetId: 'urn:ngsi-ld:Dataset:ReserveTank',
      },
    ],
    brand: { type: 'Property', value: pick(BRANDS, random) },
    temperature: { type: 'Property', value: Math.round(random() * 400) / 10, observedAt, unitCode: 'CEL' },
    status: {
      type: 'Property',
      value: pick(STATUSES, random),
      reliability: { type: 'Property', value: Math.round(random() * 100) / 100 },
    },
    name: { type: 'Property', value: `沪A·${String(Math.floor(random() * 100_000)).padStart(5, '0')}` },
    isParked: {
      type: 'Relationship',
      object: `urn:ngsi-ld:OffStreetParking:P${String(Math.floor(random() * 5_000)).padStart(4, '0')}`,
    },
    location: { type: 'GeoProperty', value: { type: 'Point', coordinates: shanghaiPoint(random) } },
  };
}

/** The columns `insertEntity` writes, in its order. */
export const ENTITY_COLUMNS =
  'tenant, id, types, scopes, created_at, modified_at, attrs, location, area_path' as const;

/** One row's placeholders with the store's casts and geometry expression (`insertEntity`). */
export const rowPlaceholders = (p: number): string =>
  `($${p + 1}, $${p + 2}, $${p + 3}::text[], $${p + 4}::text[], $${p + 5}, $${p + 6}, $${p + 7}::jsonb, ` +
  `st_force2d(st_setsrid(st_geomfromgeojson($${p + 8}), 4326)), $${p + 9})`;

/**
 * A stored row as `createEntity` builds it for `insertEntity` (default tenant, no scope): the
 * entity parsed with the core @context, its location as GeoJSON text and its jurisdiction path.
 * Call after `warmAreas` (the area index must be in memory).
 */
export function storedRow(database: Database, body: Record<string, unknown>, at: Date): unknown[] {
  const e = parseEntity(body, CORE_LD_CONTEXT, { now: at.toISOString() });
  const geometry = e.attrs[LOCATION]?.[0]?.value ?? null;
  return [
    '',
    e.id,
    e.types,
    null,
    at,
    at,
    JSON.stringify(e.attrs),
    geometry === null ? null : JSON.stringify(geometry),
    areaPathOf(database, geometry),
  ];
}

const CHUNK = 1_000;

/**
 * Loads vehicles `from`..`to - 1` (ids `vehicleId(n)`, content from a PRNG seeded by `seed`) into
 * twin.entities, 1,000 rows per multi-row INSERT; prints progress; resolves to rows/s.
 */
export async function loadVehicles(
  database: Database,
  options: { from: number; to: number; seed: number; label: string },
): Promise<number> {
  const { from, to } = options;
  await warmAreas(database);
  const random = seededRandom(options.seed);
  const at = new Date();
  const t0 = performance.now();
  let lastPrint = 0;
  // One statement in flight while the next chunk is built: the server inserts while Node parses.
  let inFlight: Promise<unknown> = Promise.resolve();
  for (let start = from; start < to; start += CHUNK) {
    const end = Math.min(to, start + CHUNK);
    const params: unknown[] = [];
    const tuples: string[] = [];
    for (let n = start; n < end; n++) {
      tuples.push(rowPlaceholders(params.length));
      params.push(...storedRow(database, vehicle(vehicleId(n), random), at));
    }
    await inFlight;
    inFlight = database.raw(
      `insert into twin.entities (${ENTITY_COLUMNS}) values ${tuples.join(', ')}`,
      params,
    );
    const now = performance.now();
    if (process.stdout.isTTY && now - lastPrint > 500) {
      lastPrint = now;
      const done = start - from;
      process.stdout.write(
        `\r  ${options.label}: ${Math.round((done / (to - from)) * 100)} % ` +
          `(${fmt(start)} entities, ${fmt((done / (now - t0)) * 1000)} rows/s)   `,
      );
    }
  }
  await inFlight;
  const rate = ((to - from) / (performance.now() - t0)) * 1000;
  if (process.stdout.isTTY) process.stdout.write('\n');
  console.log(
    `  ${options.label}: ${fmt(to - from)} rows in ${fmt(performance.now() - t0)} ms (${fmt(rate)} rows/s)`,
  );
  return rate;
}

/** A count or rate for the terminal and the tables: rounded, with thousands separators. */
export const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
