/**
 * SQL of cases (ops.cases): the INSERT a new case is written with (its workflow rides on it), the
 * row kept in step with every transition, reads (one, a keyset page, duplicates nearby, the
 * overdue of an area), statistics, media metadata and the in-app feed.
 */
import { sql, type QueryExecutorProvider, type RawBuilder } from 'kysely';
import { insertRows, type Rider } from '../kernel/index.ts';
import type { TransitionPlan } from '../workflow/index.ts';
import { levelOf } from './case.workflow.ts';

type Db = QueryExecutorProvider;

export interface CaseRow {
  id: string;
  /** bigint: text from node-postgres, a number from PGlite. */
  number: string | number;
  instance_id: string;
  source: string;
  channel: 'api' | 'open311';
  category: string;
  description: string;
  address: string | null;
  lon: number;
  lat: number;
  area_code: string;
  area_path: string;
  district_code: string;
  street_code: string | null;
  level: 'street' | 'district' | 'city';
  centres: Partial<Record<'street' | 'district' | 'city', string>>;
  status: string;
  open: boolean;
  department_ids: string[];
  routed_by: 'matrix' | 'dispatcher' | null;
  route_reason: string | null;
  entity_ids: string[];
  photos: { sha256: string; contentType: string; size: number }[];
  media_urls: string[];
  attributes: Record<string, unknown>;
  reporter_user_id: string | null;
  reporter_name: string | null;
  reporter_phone: string | null;
  reporter_email: string | null;
  reported_by_org: string | null;
  watchers: string[];
  merged_into: string | null;
  state_due_at: Date | null;
  state_near_due_at: Date | null;
  due_at: Date | null;
  breached_at: Date | null;
  escalations: number;
  rating: number | null;
  rating_comment: string | null;
  version: number;
  open311_token: string | null;
  created_by: string | null;
  created_at: Date;
  updated_at: Date;
  closed_at: Date | null;
}

const SELECT = sql`select c.*, st_x(c.geom) as lon, st_y(c.geom) as lat from ops.cases c`;

export interface CaseInsert {
  id: string;
  instanceId: string;
  source: string;
  channel: 'api' | 'open311';
  category: string;
  description: string;
  address: string | null;
  lon: number;
  lat: number;
  areaCode: string;
  areaPath: string;
  districtCode: string;
  streetCode: string | null;
  centres: Partial<Record<'street' | 'district' | 'city', string>>;
  routedBy: 'matrix' | 'dispatcher' | null;
  routeReason: string | null;
  entityIds: string[];
  photos: { sha256: string; contentType: string; size: number }[];
  mediaUrls: string[];
  attributes: Record<string, unknown>;
  reporterUserId: string | null;
  reporterName: string | null;
  reporterPhone: string | null;
  reporterEmail: string | null;
  reportedByOrg: string | null;
  open311Token: string | null;
  createdBy: string;
}

/** A text[] literal ('{"a","b"}'), every element quoted and escaped. */
function textArray(values: readonly string[]): string {
  return `{${values.map((v) => `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`).join(',')}}`;
}

const CASE_COLUMNS = [
  ['id', 'uuid'],
  ['instance_id', 'uuid'],
  ['source', 'text'],
  ['channel', 'text'],
  ['category', 'text'],
  ['description', 'text'],
  ['address', 'text'],
  ['geom', 'text', 'geometry'],
  ['area_code', 'text'],
  ['area_path', 'text'],
  ['district_code', 'text'],
  ['street_code', 'text'],
  ['level', 'text'],
  ['centres', 'jsonb'],
  ['status', 'text'],
  ['open', 'boolean'],
  ['department_ids', 'text', 'uuid[]'],
  ['routed_by', 'text'],
  ['route_reason', 'text'],
  ['entity_ids', 'text', 'text[]'],
  ['photos', 'jsonb'],
  ['media_urls', 'text', 'text[]'],
  ['attributes', 'jsonb'],
  ['reporter_user_id', 'uuid'],
  ['reporter_name', 'text'],
  ['reporter_phone', 'text'],
  ['reporter_email', 'text'],
  ['reported_by_org', 'uuid'],
  ['state_due_at', 'timestamptz'],
  ['state_near_due_at', 'timestamptz'],
  ['due_at', 'timestamptz'],
  ['version', 'int'],
  ['open311_token', 'text'],
  ['created_by', 'text'],
  ['created_at', 'timestamptz'],
  ['updated_at', 'timestamptz'],
] as const;

/**
 * The INSERT of new cases (one or a batch), each shaped by its workflow plan (status,
 * departments, due dates); returns their ids and numbers. The change of a `writeWith`.
 */
export function insertCases(cases: readonly { c: CaseInsert; plan: TransitionPlan }[]) {
  const statement = insertRows({
    table: 'ops.cases',
    columns: CASE_COLUMNS,
    rows: cases.map(({ c, plan }) => {
      const n = plan.next;
      return [
        c.id,
        c.instanceId,
        c.source,
        c.channel,
        c.category,
        c.description,
        c.address,
        `SRID=4326;POINT(${c.lon} ${c.lat})`,
        c.areaCode,
        c.areaPath,
        c.districtCode,
        c.streetCode,
        levelOf(n.data),
        JSON.stringify(c.centres),
        n.state,
        n.endedAt === null,
        textArray(n.assignees),
        c.routedBy,
        c.routeReason,
        textArray(c.entityIds),
        JSON.stringify(c.photos),
        textArray(c.mediaUrls),
        JSON.stringify(c.attributes),
        c.reporterUserId,
        c.reporterName,
        c.reporterPhone,
        c.reporterEmail,
        c.reportedByOrg,
        n.stateDueAt,
        n.stateNearDueAt,
        n.dueAt,
        n.version,
        c.open311Token,
        c.createdBy,
        n.startedAt,
        n.startedAt,
      ];
    }),
    returning: ['id', 'number'],
  });
  return statement(sql`true`) as RawBuilder<{ id: string; number: string | number }>;
}

const OPEN_STATES = ['registered', 'handling', 'verifying', 'suspended'];

/** The rider keeping a case's row in step with a transition of its workflow. */
export function caseFollows(plan: TransitionPlan): Rider {
  const n = plan.next;
  const last = plan.entries[plan.entries.length - 1];
  const at = last?.at ?? new Date();
  const rating = typeof n.data['rating'] === 'number' ? n.data['rating'] : null;
  const ratingComment = typeof n.data['ratingComment'] === 'string' ? n.data['ratingComment'] : null;
  const escalations = typeof n.data['escalations'] === 'number' ? n.data['escalations'] : 0;
  const merge = plan.entries.find((e) => e.action === 'merge');
  const into = typeof merge?.details['into'] === 'string' ? merge.details['into'] : null;
  const routed = plan.entries.find((e) => e.action === 'dispatch');
  return {
    statement: (
      when,
    ) => sql`update ops.cases set status = ${n.state}, open = ${OPEN_STATES.includes(n.state)},
        department_ids = ${n.assignees}::uuid[], level = ${levelOf(n.data)}, escalations = ${escalations},
        state_due_at = ${n.stateDueAt}, state_near_due_at = ${n.stateNearDueAt}, due_at = ${n.dueAt},
        breached_at = ${n.breachedAt}, version = ${n.version}, updated_at = ${at},
        closed_at = case when ${n.state} = 'closed' then ${at}::timestamptz
          when ${n.state} in ('registered', 'handling', 'verifying', 'suspended') then null else closed_at end,
        rating = ${rating}, rating_comment = ${ratingComment},
        merged_into = coalesce(${into}::uuid, merged_into),
        routed_by = case when ${routed !== undefined} then ${routed?.details['routedBy'] ?? 'dispatcher'} else routed_by end,
        route_reason = case when ${routed !== undefined} then ${routed?.comment ?? null} else route_reason end
      where instance_id = ${n.id} and ${when}`,
  };
}

/** Adds the reporters and watchers of a merged case to the one it was merged into. */
export function mergeWatchers(instanceId: string, into: string): Rider {
  return {
    statement: (when) => sql`update ops.cases t set watchers = array(
        select distinct u from unnest(t.watchers || s.watchers || array_remove(array[s.reporter_user_id], null)) u)
      from ops.cases s where s.instance_id = ${instanceId} and t.id = ${into} and ${when}`,
  };
}

export async function findCase(db: Db, id: string): Promise<CaseRow | undefined> {
  const { rows } = await sql<CaseRow>`${SELECT} where c.id = ${id}`.execute(db);
  return rows[0];
}

export async function findCaseByNumber(db: Db, number: string): Promise<CaseRow | undefined> {
  const { rows } = await sql<CaseRow>`${SELECT} where c.number = ${number}::bigint`.execute(db);
  return rows[0];
}

export async function findCaseByToken(db: Db, token: string): Promise<CaseRow | undefined> {
  const { rows } = await sql<CaseRow>`${SELECT} where c.open311_token = ${token}`.execute(db);
  return rows[0];
}

export type SlaState = 'overdue' | 'near-due' | 'on-time' | 'none';

export interface CaseFilter {
  status?: string[] | undefined;
  category?: string[] | undefined;
  /** An area path: cases at it or below. */
  areaPath?: string | undefined;
  districtCode?: string | undefined;
  streetCode?: string | undefined;
  department?: string | undefined;
  level?: string | undefined;
  source?: string | undefined;
  channel?: 'open311' | undefined;
  sla?: SlaState | undefined;
  open?: boolean | undefined;
  createdFrom?: Date | undefined;
  createdTo?: Date | undefined;
  numbers?: string[] | undefined;
  /** Keyset: after this (created_at, id) in the order. */
  after?: { createdAt: Date; id: string } | undefined;
  /** Order by the state deadline (supervision) rather than newest first. */
  byDue?: boolean | undefined;
  afterDue?: { dueAt: Date; id: string } | undefined;
  limit: number;
  offset?: number | undefined;
  now: Date;
}

function conditions(f: CaseFilter, scope: RawBuilder<boolean>): RawBuilder<unknown>[] {
  const where: RawBuilder<unknown>[] = [scope];
  if (f.status) where.push(sql`c.status = any(${f.status}::text[])`);
  if (f.category) where.push(sql`c.category = any(${f.category}::text[])`);
  if (f.areaPath) where.push(sql`(c.area_path = ${f.areaPath} or c.area_path like ${`${f.areaPath}/%`})`);
  if (f.districtCode) where.push(sql`c.district_code = ${f.districtCode}`);
  if (f.streetCode) where.push(sql`c.street_code = ${f.streetCode}`);
  if (f.department) where.push(sql`c.department_ids @> array[${f.department}]::uuid[]`);
  if (f.level) where.push(sql`c.level = ${f.level}`);
  if (f.source) where.push(sql`c.source = ${f.source}`);
  if (f.channel) where.push(sql`c.channel = ${f.channel}`);
  if (f.open !== undefined) where.push(sql`c.open = ${f.open}`);
  if (f.createdFrom) where.push(sql`c.created_at >= ${f.createdFrom}`);
  if (f.createdTo) where.push(sql`c.created_at < ${f.createdTo}`);
  if (f.numbers) where.push(sql`c.number = any(${f.numbers}::bigint[])`);
  if (f.sla === 'overdue') where.push(sql`c.open and c.state_due_at < ${f.now}`);
  if (f.sla === 'near-due')
    where.push(sql`c.open and c.state_near_due_at <= ${f.now} and c.state_due_at >= ${f.now}`);
  if (f.sla === 'on-time') where.push(sql`c.open and c.state_near_due_at > ${f.now}`);
  if (f.sla === 'none') where.push(sql`c.state_due_at is null`);
  return where;
}

/**
 * A page of cases matching `f` within `scope`: newest first with a (created_at, id) keyset, or by
 * state deadline (supervision lists) with a (state_due_at, id) keyset.
 */
export async function listCases(db: Db, f: CaseFilter, scope: RawBuilder<boolean>): Promise<CaseRow[]> {
  const where = conditions(f, scope);
  if (f.byDue) {
    where.push(sql`c.open and c.state_due_at is not null`);
    if (f.afterDue) where.push(sql`(c.state_due_at, c.id) > (${f.afterDue.dueAt}, ${f.afterDue.id})`);
    const { rows } = await sql<CaseRow>`${SELECT} where ${sql.join(where, sql` and `)}
      order by c.state_due_at, c.id limit ${f.limit}`.execute(db);
    return rows;
  }
  if (f.after) where.push(sql`(c.created_at, c.id) < (${f.after.createdAt}, ${f.after.id})`);
  const { rows } = await sql<CaseRow>`${SELECT} where ${sql.join(where, sql` and `)}
    order by c.created_at desc, c.id desc limit ${f.limit} offset ${f.offset ?? 0}`.execute(db);
  return rows;
}

/** How many cases match (for Open311 paging and statistics headers). */
export async function countCases(db: Db, f: CaseFilter, scope: RawBuilder<boolean>): Promise<number> {
  const { rows } = await sql<{ n: string }>`select count(*) as n from ops.cases c
    where ${sql.join(conditions(f, scope), sql` and `)}`.execute(db);
  return Number(rows[0]?.n ?? 0);
}

/** Open cases of the same category within `metres` reported in the last `hours` (duplicate candidates). */
export async function nearbyOpenCases(
  db: Db,
  args: { category: string; lon: number; lat: number; metres: number; since: Date; limit: number },
): Promise<{ id: string; number: string | number; distance: number; status: string }[]> {
  // A box in degrees first (index), then the true distance on the spheroid.
  const deg = args.metres / 111_000 / Math.max(0.2, Math.cos((args.lat * Math.PI) / 180));
  const { rows } = await sql<{ id: string; number: string | number; distance: number; status: string }>`
    select c.id, c.number, c.status,
      st_distance(c.geom::geography, st_setsrid(st_makepoint(${args.lon}, ${args.lat}), 4326)::geography) as distance
    from ops.cases c
    where c.open and c.category = ${args.category} and c.created_at >= ${args.since}
      and c.geom && st_expand(st_setsrid(st_makepoint(${args.lon}, ${args.lat}), 4326), ${deg})
    order by distance limit ${args.limit}`.execute(db);
  // The box holds the circle; the spheroid distance decides.
  return rows.filter((r) => r.distance <= args.metres);
}

export type StatsDimension = 'area' | 'department' | 'category' | 'level' | 'status';

export interface StatsRow {
  key: string;
  total: number;
  open: number;
  overdue: number;
  closed: number;
  /** Mean hours from registration to closing, of the cases closed. */
  meanHoursToClose: number | null;
}

/** Counts per dimension within scope; `area` groups by the next level below `areaPath`. */
export async function caseStats(
  db: Db,
  args: {
    by: StatsDimension;
    areaPath: string | undefined;
    depth: number;
    now: Date;
    from?: Date | undefined;
    to?: Date | undefined;
  },
  scope: RawBuilder<boolean>,
): Promise<StatsRow[]> {
  const key =
    args.by === 'area'
      ? sql`split_part(c.area_path, '/', ${args.depth + 1})`
      : args.by === 'department'
        ? sql`d::text`
        : args.by === 'category'
          ? sql`c.category`
          : args.by === 'level'
            ? sql`c.level`
            : sql`c.status`;
  const from =
    args.by === 'department'
      ? sql`ops.cases c cross join lateral unnest(c.department_ids) d`
      : sql`ops.cases c`;
  const where: RawBuilder<unknown>[] = [scope];
  if (args.areaPath)
    where.push(sql`(c.area_path = ${args.areaPath} or c.area_path like ${`${args.areaPath}/%`})`);
  if (args.from) where.push(sql`c.created_at >= ${args.from}`);
  if (args.to) where.push(sql`c.created_at < ${args.to}`);
  const { rows } = await sql<{
    key: string;
    total: string;
    open: string;
    overdue: string;
    closed: string;
    mean: number | string | null;
  }>`
    select ${key} as key, count(*) as total, count(*) filter (where c.open) as open,
      count(*) filter (where c.open and c.state_due_at < ${args.now}) as overdue,
      count(*) filter (where c.closed_at is not null) as closed,
      avg(extract(epoch from (c.closed_at - c.created_at)) / 3600) filter (where c.closed_at is not null) as mean
    from ${from} where ${sql.join(where, sql` and `)}
    group by 1 order by 2 desc, 1 limit 1000`.execute(db);
  return rows.map((r) => ({
    key: r.key,
    total: Number(r.total),
    open: Number(r.open),
    overdue: Number(r.overdue),
    closed: Number(r.closed),
    meanHoursToClose: r.mean === null ? null : Math.round(Number(r.mean) * 10) / 10,
  }));
}

/** Appends photos to a case (already stored media), returning the new list; undefined if gone. */
export function addPhotos(caseId: string, photos: { sha256: string; contentType: string; size: number }[]) {
  return sql<{
    id: string;
  }>`update ops.cases set photos = photos || ${JSON.stringify(photos)}::jsonb, updated_at = now()
    where id = ${caseId} returning id`;
}

// --- Media ----------------------------------------------------------------------------------------

export async function insertMedia(
  db: Db,
  m: { sha256: string; contentType: string; size: number; createdBy: string },
): Promise<void> {
  await sql`insert into ops.media (sha256, content_type, size, created_by)
    values (${m.sha256}, ${m.contentType}, ${m.size}, ${m.createdBy}) on conflict (sha256) do nothing`.execute(
    db,
  );
}

export async function findMedia(
  db: Db,
  hashes: readonly string[],
): Promise<{ sha256: string; contentType: string; size: number }[]> {
  if (hashes.length === 0) return [];
  const { rows } = await sql<{
    sha256: string;
    content_type: string;
    size: number;
  }>`select sha256, content_type, size
    from ops.media where sha256 = any(${hashes}::text[])`.execute(db);
  return rows.map((r) => ({ sha256: r.sha256, contentType: r.content_type, size: r.size }));
}

/** Who uploaded a file (the actor's name), if it was uploaded. */
export async function mediaUploader(db: Db, sha256: string): Promise<string | undefined> {
  const { rows } = await sql<{ created_by: string | null }>`select created_by from ops.media
    where sha256 = ${sha256}`.execute(db);
  return rows[0]?.created_by ?? undefined;
}

/** Cases a file belongs to: as a photo, or by their workflow instance (attached to a step); at most 50. */
export async function casesWithMedia(
  db: Db,
  sha256: string,
  instanceIds: readonly string[],
): Promise<CaseRow[]> {
  const ref = JSON.stringify([{ sha256 }]);
  const { rows } = await sql<CaseRow>`${SELECT} where c.photos @> ${ref}::jsonb
      or c.instance_id = any(${instanceIds}::uuid[])
    limit 50`.execute(db);
  return rows;
}

// --- In-app notifications -------------------------------------------------------------------------

export interface NotificationRow {
  id: string;
  case_id: string;
  case_number: string | number;
  seq: number;
  kind: string;
  title_zh: string;
  title_en: string;
  created_at: Date;
  read_at: Date | null;
}

const NOTIFICATION_COLUMNS = [
  ['id', 'uuid'],
  ['user_id', 'uuid'],
  ['org_id', 'uuid'],
  ['case_id', 'uuid'],
  ['seq', 'int'],
  ['kind', 'text'],
  ['title_zh', 'text'],
  ['title_en', 'text'],
  ['created_at', 'timestamptz'],
] as const;

export interface NotificationInsert {
  id: string;
  userId: string | null;
  orgId: string | null;
  caseId: string;
  seq: number;
  kind: string;
  titleZh: string;
  titleEn: string;
  at: Date;
}

/** Notifications addressed to known users or organisations, idempotent per (case, entry, recipient). */
export function notificationsRider(rows: readonly NotificationInsert[]): Rider {
  return {
    statement: insertRows({
      table: 'ops.notifications',
      columns: NOTIFICATION_COLUMNS,
      rows: rows.map((r) => [r.id, r.userId, r.orgId, r.caseId, r.seq, r.kind, r.titleZh, r.titleEn, r.at]),
      onConflictDoNothing: true,
    }),
  };
}

/**
 * Notifications to recipients read from the case's row — its reporter and watchers, or its
 * operations centre at `level` — idempotent likewise.
 */
export function rowNotificationsRider(args: {
  instanceId: string;
  to: 'reporters' | { centre: string };
  seq: number;
  kind: string;
  titleZh: string;
  titleEn: string;
  at: Date;
}): Rider {
  const recipients =
    args.to === 'reporters'
      ? sql`(select u as user_id, null::uuid as org_id
          from unnest(array_remove(array[c.reporter_user_id], null) || c.watchers) u)`
      : sql`(select null::uuid as user_id, (c.centres ->> ${args.to.centre})::uuid as org_id
          where c.centres ->> ${args.to.centre} is not null)`;
  return {
    statement: (when) => sql`insert into ops.notifications (id, user_id, org_id, case_id, seq, kind, title_zh,
        title_en, created_at)
      select gen_random_uuid(), r.user_id, r.org_id, c.id, ${args.seq}, ${args.kind}, ${args.titleZh}, ${args.titleEn},
        ${args.at}
      from ops.cases c cross join lateral ${recipients} r
      where c.instance_id = ${args.instanceId} and ${when}
      on conflict do nothing`,
  };
}

/** The feed of a user: addressed to them or to one of their organisations, newest first. */
export async function notificationsFor(
  db: Db,
  args: {
    userId: string | null;
    orgIds: string[];
    unread: boolean;
    limit: number;
    before?: Date | undefined;
  },
): Promise<NotificationRow[]> {
  const { rows } = await sql<NotificationRow>`select n.id, n.case_id, c.number as case_number, n.seq, n.kind,
      n.title_zh, n.title_en, n.created_at, n.read_at
    from ops.notifications n join ops.cases c on c.id = n.case_id
    where (n.user_id = ${args.userId} or n.org_id = any(${args.orgIds}::uuid[]))
      and (not ${args.unread} or n.read_at is null)
      and (${args.before ?? null}::timestamptz is null or n.created_at < ${args.before ?? null}::timestamptz)
    order by n.created_at desc, n.id desc limit ${args.limit}`.execute(db);
  return rows;
}

/** Marks a notification read if addressed to the caller; false when it is not theirs. */
export async function markRead(
  db: Db,
  args: { id: string; userId: string | null; orgIds: string[] },
): Promise<boolean> {
  const { rows } = await sql`update ops.notifications set read_at = coalesce(read_at, now())
    where id = ${args.id} and (user_id = ${args.userId} or org_id = any(${args.orgIds}::uuid[])) returning id`.execute(
    db,
  );
  return rows.length > 0;
}
