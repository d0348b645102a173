/**
 * Who may read and write twin entities (docs/twin.md "Security model"). In `open` access (the demo
 * default, as FIWARE brokers run) the NGSI-LD API needs no credentials; in `secured` access (the
 * production default) writes need `twin.entities.write` over the entity's area — the area its
 * `location` lies in, by trust's area lookup; an entity without a location is city-wide — and
 * reads are filtered to the caller's jurisdiction. The decisions themselves are trust's (`can`,
 * `authorize`, `jurisdictionFilter`); this file only says which permission over which area.
 */
import { sql, type RawBuilder } from 'kysely';
import type { Database } from '../kernel/index.ts';
import {
  authorize,
  can,
  jurisdictionFilter,
  loadAreaIndex,
  locateInMemory,
  TwinPermissions,
  type CallContext,
} from '../trust/index.ts';
import { NgsiError } from './errors.ts';

export type TwinAccess = 'open' | 'secured';

export const READ = TwinPermissions['twin.entities.read'];
export const WRITE = TwinPermissions['twin.entities.write'];
export const ADMIN = TwinPermissions['twin.admin'];

/** May the caller see an entity in `areaPath`? */
export function canRead(access: TwinAccess, call: CallContext, areaPath: string | null): boolean {
  return access === 'open' || can(call.actor, READ, { areaPath });
}

/** The SQL condition (row alias `e`) keeping the entities the caller may see. */
export function readScope(access: TwinAccess, call: CallContext): RawBuilder<boolean> {
  if (access === 'open') return sql<boolean>`true`;
  if (call.actor.kind === 'anonymous') throw new NgsiError('Unauthorized', 'Sign in or present an API key');
  return jurisdictionFilter(call.actor, READ, sql`e.area_path`);
}

/**
 * Throws unless the caller may write entities in every one of `areaPaths` (the entity's current
 * and new areas): 401 anonymous, else 403. Callers only ask about entities the caller can see or
 * is creating from its own payload, so a 403 leaks nothing; invisible entities are 404 before.
 */
export function authorizeWrite(access: TwinAccess, call: CallContext, areaPaths: (string | null)[]): void {
  if (access === 'open') return;
  for (const areaPath of new Set(areaPaths)) {
    if (can(call.actor, WRITE, { areaPath })) continue;
    if (call.actor.kind === 'anonymous') throw new NgsiError('Unauthorized', 'Sign in or present an API key');
    const where = areaPath === null ? 'city-wide entities' : `area ${areaPath.split('/').pop() ?? ''}`;
    throw new NgsiError('Forbidden', `Missing permission ${WRITE} for ${where}`);
  }
}

/**
 * Throws unless the caller may manage the twin's integrations (subscriptions, context source
 * registrations): twin administration. Their APIs are public knowledge, so a signed-in caller
 * without it is told 403 (not the 404 `authorizeAdmin` answers to hide resources), anonymous 401.
 */
export function authorizeManage(access: TwinAccess, call: CallContext): void {
  if (access === 'open') return;
  if (can(call.actor, ADMIN, { areaPath: null })) return;
  if (call.actor.kind === 'anonymous') throw new NgsiError('Unauthorized', 'Sign in or present an API key');
  throw new NgsiError('Forbidden', `Missing permission ${ADMIN}`);
}

/** Throws unless the caller administers the twin (tenants, hosted contexts). */
export function authorizeAdmin(access: TwinAccess, call: CallContext): void {
  if (access === 'open') return;
  authorize(call.actor, ADMIN, { areaPath: null }, { visibleWith: ADMIN, what: 'resource' });
}

/** A point standing for a geometry when finding its area: a Point itself, else its bounding-box centre. */
function representativePoint(geometry: unknown): { lon: number; lat: number } | undefined {
  let minX = Infinity;
  let minY = Infinity;
  let maxX = -Infinity;
  let maxY = -Infinity;
  const visit = (c: unknown): void => {
    if (!Array.isArray(c)) return;
    if (typeof c[0] === 'number' && typeof c[1] === 'number') {
      minX = Math.min(minX, c[0]);
      maxX = Math.max(maxX, c[0]);
      minY = Math.min(minY, c[1]);
      maxY = Math.max(maxY, c[1]);
      return;
    }
    for (const child of c) visit(child);
  };
  const g = geometry as { coordinates?: unknown; geometries?: { coordinates?: unknown }[] };
  if (g.geometries) for (const m of g.geometries) visit(m.coordinates);
  else visit(g.coordinates);
  if (!Number.isFinite(minX)) return undefined;
  return { lon: (minX + maxX) / 2, lat: (minY + maxY) / 2 };
}

/**
 * Makes sure the area index is in memory and fresh before a write transaction opens, so that
 * `areaPathOf` inside the transaction needs no database work (on the single-connection embedded
 * engine a query outside the transaction would wait for it forever).
 */
export async function warmAreas(database: Database): Promise<void> {
  await loadAreaIndex(database);
}

/**
 * The jurisdiction path of a location geometry: the deepest area covering it, or null (outside
 * every area, or no location: city-wide). Uses the index `warmAreas` loaded; no database work.
 */
export function areaPathOf(database: Database, geometry: unknown): string | null {
  if (geometry === undefined || geometry === null) return null;
  const point = representativePoint(geometry);
  if (!point) return null;
  const found = locateInMemory(database, point);
  if (found === undefined) throw new Error('areaPathOf: warmAreas was not awaited before the transaction');
  return found === null ? null : found.area.path.join('/');
}
