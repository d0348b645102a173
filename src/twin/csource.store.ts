/**
 * SQL for context source registrations (twin.csource_registrations). A registration is stored
 * whole as normalized JSON; discovery's conditions run over that document (jsonb) and over the
 * materialised `types`, `location` and `expires_at` columns. Matching an idPattern runs in
 * PostgreSQL, whose regex engine does not backtrack exponentially, never in the Node event loop.
 */
import { sql, type Kysely, type QueryExecutorProvider, type RawBuilder } from 'kysely';
import { writeWith, type KernelTables, type Rider } from '../kernel/index.ts';
import type { Mode, Registration, RegistrationInfo } from './csource.model.ts';
import { geometryParam } from './geo.ts';

type Db = QueryExecutorProvider;
type Writer = Kysely<KernelTables>;

interface RegistrationRow {
  body: Registration;
  created_at: Date;
  modified_at: Date;
  version: number;
}

/** A stored registration with its system timestamps and version. */
export interface StoredRegistration {
  registration: Registration;
  createdAt: string;
  modifiedAt: string;
  version: number;
}

const toStored = (r: RegistrationRow): StoredRegistration => ({
  registration: r.body,
  createdAt: r.created_at.toISOString(),
  modifiedAt: r.modified_at.toISOString(),
  version: r.version,
});

const COLUMNS = sql`r.body, r.created_at, r.modified_at, r.version`;

/** What a write stores: the registration and the columns derived from it. */
export interface RegistrationWrite {
  tenant: string;
  registration: Registration;
  types: string[];
  at: Date;
}

const locationValue = (reg: Registration): RawBuilder<unknown> =>
  reg.location ? geometryParam(reg.location) : sql`null`;

const expiresValue = (reg: Registration): Date | null =>
  reg.expiresAt === undefined ? null : new Date(reg.expiresAt);

/** Not expired at the time the statement runs. */
const live = sql<boolean>`(r.expires_at is null or r.expires_at > now())`;

/** One registration, optionally locked for the rest of the transaction. */
export async function findRegistration(
  db: Db,
  tenant: string,
  id: string,
  options: { forUpdate?: boolean } = {},
): Promise<StoredRegistration | undefined> {
  const lock = options.forUpdate ? sql` for update` : sql``;
  const { rows } = await sql<RegistrationRow>`select ${COLUMNS} from twin.csource_registrations r
    where r.tenant = ${tenant} and r.id = ${id}${lock}`.execute(db);
  const row = rows[0];
  return row ? toStored(row) : undefined;
}

/** Inserts a registration and its riders in one statement; false (nothing written) when the id is taken. */
export async function insertRegistration(
  db: Writer,
  w: RegistrationWrite,
  riders: Rider[],
): Promise<boolean> {
  const reg = w.registration;
  const rows = await writeWith(
    db,
    sql<{ id: string }>`insert into twin.csource_registrations
        (tenant, id, body, types, location, expires_at, mode, created_at, modified_at)
      values (${w.tenant}, ${reg.id}, ${JSON.stringify(reg)}::jsonb, ${w.types}::text[], ${locationValue(reg)},
              ${expiresValue(reg)}, ${reg.mode}, ${w.at}, ${w.at})
      on conflict (tenant, id) do nothing returning id`,
    riders,
  );
  return rows.length > 0;
}

/** Rewrites a registration and writes its riders if it is still at `version`; false otherwise. */
export async function updateRegistration(
  db: Writer,
  w: RegistrationWrite,
  version: number,
  riders: Rider[],
): Promise<boolean> {
  const reg = w.registration;
  const rows = await writeWith(
    db,
    sql<{ id: string }>`update twin.csource_registrations set body = ${JSON.stringify(reg)}::jsonb,
        types = ${w.types}::text[], location = ${locationValue(reg)}, expires_at = ${expiresValue(reg)},
        mode = ${reg.mode}, modified_at = ${w.at}, version = version + 1
      where tenant = ${w.tenant} and id = ${reg.id} and version = ${version} returning id`,
    riders,
  );
  return rows.length > 0;
}

/** Deletes a registration and writes its riders; false when it no longer exists. */
export async function deleteRegistration(
  db: Writer,
  key: { tenant: string; id: string },
  riders: Rider[],
): Promise<boolean> {
  const rows = await writeWith(
    db,
    sql<{ id: string }>`delete from twin.csource_registrations
      where tenant = ${key.tenant} and id = ${key.id} returning id`,
    riders,
  );
  return rows.length > 0;
}

/**
 * Serializes registration writes of one tenant until the transaction ends, so two overlapping
 * exclusive registrations cannot both pass the overlap check.
 */
export async function lockTenantRegistrations(db: Db, tenant: string): Promise<void> {
  await sql`select pg_advisory_xact_lock(hashtextextended(${`twin.csource_registrations/${tenant}`}, 0))`.execute(
    db,
  );
}

/** The first pattern PostgreSQL's regex dialect refuses, if any (a stored idPattern must run in SQL). */
export async function firstInvalidPattern(db: Db, patterns: string[]): Promise<string | undefined> {
  for (const p of new Set(patterns)) {
    try {
      await sql`select '' ~ ${p} as ok`.execute(db);
    } catch {
      return p;
    }
  }
  return undefined;
}

// --- Matching --------------------------------------------------------------------------------

/** An entity query a registration may answer: expanded types and attribute names, entity ids. */
export interface RegistrationFilter {
  types?: string[] | undefined;
  ids?: string[] | undefined;
  idPattern?: string | undefined;
  attrs?: string[] | undefined;
}

/** The attribute names of an information entry (alias `i`) as one jsonb array. */
const entryAttrs = (i: RawBuilder<unknown>) =>
  sql`(coalesce(${i} -> 'propertyNames', '[]'::jsonb) || coalesce(${i} -> 'relationshipNames', '[]'::jsonb))`;

/**
 * The condition (row alias `r`) for a registration that may provide what `f` asks: some
 * information entry whose entities match (an entry without entities matches any entity) and whose
 * attributes intersect `f.attrs` (an entry naming none may provide every attribute). An entity
 * matches on a common type; on ids when it names the id or its idPattern matches one; an
 * idPattern query matches named ids, and entities given by pattern or by type only.
 */
export function matchSql(f: RegistrationFilter): RawBuilder<boolean> {
  const entity: RawBuilder<boolean>[] = [];
  if (f.types !== undefined) entity.push(sql<boolean>`(e.value -> 'type') ?| ${f.types}::text[]`);
  if (f.ids !== undefined)
    entity.push(sql<boolean>`(case when e.value ? 'id' then (e.value ->> 'id') = any(${f.ids}::text[])
      when e.value ? 'idPattern' then exists (select from unnest(${f.ids}::text[]) as q(id)
        where q.id ~ (e.value ->> 'idPattern'))
      else true end)`);
  if (f.idPattern !== undefined)
    entity.push(sql<boolean>`(not e.value ? 'id' or (e.value ->> 'id') ~ ${f.idPattern})`);
  const i = sql`i.value`;
  const parts: RawBuilder<boolean>[] = [];
  if (entity.length > 0)
    parts.push(sql<boolean>`(not ${i} ? 'entities' or exists (
      select from jsonb_array_elements(${i} -> 'entities') as e(value) where ${sql.join(entity, sql` and `)}))`);
  if (f.attrs !== undefined)
    parts.push(
      sql<boolean>`(jsonb_array_length(${entryAttrs(i)}) = 0 or ${entryAttrs(i)} ?| ${f.attrs}::text[])`,
    );
  if (parts.length === 0) return sql<boolean>`true`;
  return sql<boolean>`exists (select from jsonb_array_elements(r.body -> 'information') as i(value)
    where ${sql.join(parts, sql` and `)})`;
}

/** The GeoJSON members a registration is located by. */
export const GEO_MEMBERS = ['location', 'observationSpace', 'operationSpace'] as const;
export type GeoMember = (typeof GEO_MEMBERS)[number];

/** A geometry member of the registration (alias `r`) as a 2D geometry(4326); `location` is the indexed column. */
export function geometrySql(member: GeoMember): RawBuilder<unknown> {
  if (member === 'location') return sql`r.location`;
  return sql`st_force2d(st_setsrid(st_geomfromgeojson((r.body -> ${member})::text), 4326))`;
}

export interface RegistrationQuery {
  tenant: string;
  /** Conditions over the row alias `r`, ANDed; expired registrations are always left out. */
  where: RawBuilder<boolean>[];
  limit: number;
  offset: number;
}

const whereOf = (q: RegistrationQuery): RawBuilder<boolean> =>
  sql<boolean>`${sql.join([sql`r.tenant = ${q.tenant}`, live, ...q.where], sql` and `)}`;

/** A page of live registrations in id order. */
export async function queryRegistrations(db: Db, q: RegistrationQuery): Promise<StoredRegistration[]> {
  if (q.limit === 0) return [];
  const { rows } = await sql<RegistrationRow>`select ${COLUMNS} from twin.csource_registrations r
    where ${whereOf(q)} order by r.id limit ${q.limit} offset ${q.offset}`.execute(db);
  return rows.map(toStored);
}

/** How many live registrations match (NGSILD-Results-Count). */
export async function countRegistrations(db: Db, q: RegistrationQuery): Promise<number> {
  const { rows } = await sql<{ n: string }>`select count(*) as n from twin.csource_registrations r
    where ${whereOf(q)}`.execute(db);
  return Number(rows[0]?.n ?? 0);
}

/**
 * The id of a live registration of the tenant (other than `excludeId`) in one of `modes` that
 * claims an entity attribute `information` also claims: both entries name the same entity (the
 * same id, or an idPattern matching the other's id) and their attribute names intersect (an entry
 * naming none claims every attribute). Entities given only by type or pattern on both sides are
 * not an overlap: no entity id is named.
 */
export async function findOverlapping(
  db: Db,
  args: { tenant: string; excludeId: string; modes: Mode[]; information: RegistrationInfo[] },
): Promise<string | undefined> {
  const sameEntity = sql`(re.value ->> 'id' = ne.value ->> 'id'
      or (not re.value ? 'id' and re.value ? 'idPattern' and (ne.value ->> 'id') ~ (re.value ->> 'idPattern'))
      or (not ne.value ? 'id' and ne.value ? 'idPattern' and (re.value ->> 'id') ~ (ne.value ->> 'idPattern')))`;
  const ra = entryAttrs(sql`ri.value`);
  const na = entryAttrs(sql`ni.value`);
  const { rows } = await sql<{ id: string }>`select r.id from twin.csource_registrations r
      cross join lateral jsonb_array_elements(r.body -> 'information') as ri(value)
      cross join lateral jsonb_array_elements(ri.value -> 'entities') as re(value)
      cross join jsonb_array_elements(${JSON.stringify(args.information)}::jsonb) as ni(value)
      cross join lateral jsonb_array_elements(coalesce(ni.value -> 'entities', '[]'::jsonb)) as ne(value)
    where r.tenant = ${args.tenant} and r.id <> ${args.excludeId} and ${live}
      and r.mode = any(${args.modes}::text[]) and ${sameEntity}
      and (jsonb_array_length(${ra}) = 0 or jsonb_array_length(${na}) = 0
        or exists (select from jsonb_array_elements_text(${ra}) as a(name) where ${na} ? a.name))
    order by r.id limit 1`.execute(db);
  return rows[0]?.id;
}

/** Deletes every registration of a tenant (for dropping the tenant); returns how many. */
export async function dropTenantRegistrations(db: Db, tenant: string): Promise<number> {
  const deleted = await sql`delete from twin.csource_registrations where tenant = ${tenant}`.execute(db);
  return Number(deleted.numAffectedRows ?? 0);
}
