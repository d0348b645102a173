/**
 * What ops needs to know of the city's organisations, held in memory per database (a few hundred
 * rows, refreshed every minute): operations centres by level and area, departments, names. Case
 * writes read it without database work, so a transition's riders can name the centre to notify.
 */
import { sql } from 'kysely';
import type { Database } from '../kernel/index.ts';
import { listOrgs, type OrgRow } from '../trust/index.ts';
import type { CaseLevel } from './case.workflow.ts';

export interface OrgInfo {
  id: string;
  code: string;
  name: string;
  kind: OrgRow['kind'];
  level: OrgRow['level'];
  areaCode: string;
  areaPath: string;
  categories: readonly string[];
}

interface Directory {
  byId: Map<string, OrgInfo>;
  byCode: Map<string, OrgInfo>;
  /** Operations centre of an area code at a level: `${level}|${areaCode}`. */
  centres: Map<string, OrgInfo>;
  loadedAt: number;
}

const directories = new WeakMap<Database, Directory>();
const TTL_MS = 60_000;

/** Loads (or refreshes when older than a minute) the directory of `database`. */
export async function loadDirectory(database: Database, options: { force?: boolean } = {}): Promise<void> {
  const d = directories.get(database);
  if (d && !options.force && Date.now() - d.loadedAt < TTL_MS) return;
  const rows = await listOrgs(
    database.db,
    { status: 'active', limit: 100_000, offset: 0 },
    sql<boolean>`true`,
  );
  const byId = new Map<string, OrgInfo>();
  const byCode = new Map<string, OrgInfo>();
  const centres = new Map<string, OrgInfo>();
  for (const r of rows) {
    const info: OrgInfo = {
      id: r.id,
      code: r.code,
      name: r.name,
      kind: r.kind,
      level: r.level,
      areaCode: r.area_code,
      areaPath: r.area_path,
      categories: r.categories,
    };
    byId.set(r.id, info);
    byCode.set(r.code, info);
    if (r.kind === 'operations-centre' && r.level) {
      const key = `${r.level}|${r.area_code}`;
      if (!centres.has(key)) centres.set(key, info);
    }
  }
  directories.set(database, { byId, byCode, centres, loadedAt: Date.now() });
}

function directory(database: Database): Directory {
  const d = directories.get(database);
  if (!d) throw new Error('ops directory: loadDirectory was not awaited');
  return d;
}

export function orgById(database: Database, id: string): OrgInfo | undefined {
  return directory(database).byId.get(id);
}

/** An organisation by its code (history entries name the actor's organisation by code). */
export function orgByCode(database: Database, code: string): OrgInfo | undefined {
  return directory(database).byCode.get(code);
}

/**
 * The operations centre responsible at `level` for a case at `areaPath` ('310000/310113/310113xxx/…'):
 * the city centre, the district's, or the street's.
 */
export function centreFor(database: Database, areaPath: string, level: CaseLevel): OrgInfo | undefined {
  const parts = areaPath.split('/');
  const code = level === 'city' ? parts[0] : level === 'district' ? parts[1] : parts[2];
  return code === undefined ? undefined : directory(database).centres.get(`${level}|${code}`);
}
