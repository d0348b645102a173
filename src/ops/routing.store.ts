/** SQL of the responsibility matrix (ops.routing_rules). */
import { sql, type QueryExecutorProvider } from 'kysely';
import { insertRows } from '../kernel/index.ts';

type Db = QueryExecutorProvider;

export interface RuleRow {
  id: string;
  category: string;
  areaCode: string;
  orgId: string;
  createdBy: string | null;
  createdAt: string;
}

interface RuleDbRow {
  id: string;
  category: string;
  area_code: string;
  org_id: string;
  created_by: string | null;
  created_at: Date;
}

const toRule = (r: RuleDbRow): RuleRow => ({
  id: r.id,
  category: r.category,
  areaCode: r.area_code,
  orgId: r.org_id,
  createdBy: r.created_by,
  createdAt: r.created_at.toISOString(),
});

export async function allRules(db: Db): Promise<RuleRow[]> {
  const { rows } = await sql<RuleDbRow>`select * from ops.routing_rules order by area_code, category`.execute(
    db,
  );
  return rows.map(toRule);
}

export async function countRules(db: Db): Promise<number> {
  const { rows } = await sql<{ n: string }>`select count(*) as n from ops.routing_rules`.execute(db);
  return Number(rows[0]?.n ?? 0);
}

export async function findRule(db: Db, id: string): Promise<RuleRow | undefined> {
  const { rows } = await sql<RuleDbRow>`select * from ops.routing_rules where id = ${id}`.execute(db);
  return rows[0] ? toRule(rows[0]) : undefined;
}

/** Sets the department of (category, area), replacing an earlier rule for the same pair. */
export async function upsertRule(
  db: Db,
  r: { id: string; category: string; areaCode: string; orgId: string; createdBy: string | null },
): Promise<RuleRow> {
  const { rows } =
    await sql<RuleDbRow>`insert into ops.routing_rules (id, category, area_code, org_id, created_by)
    values (${r.id}, ${r.category}, ${r.areaCode}, ${r.orgId}, ${r.createdBy})
    on conflict (category, area_code) do update set org_id = excluded.org_id, created_by = excluded.created_by,
      created_at = now()
    returning *`.execute(db);
  const row = rows[0];
  if (!row) throw new Error('upsertRule: nothing returned');
  return toRule(row);
}

export async function deleteRule(db: Db, id: string): Promise<boolean> {
  const { rows } = await sql`delete from ops.routing_rules where id = ${id} returning id`.execute(db);
  return rows.length > 0;
}

/** Inserts many rules at once (seeding), skipping pairs that have one. */
export async function insertRules(
  db: Db,
  rules: readonly { id: string; category: string; areaCode: string; orgId: string }[],
): Promise<void> {
  if (rules.length === 0) return;
  const statement = insertRows({
    table: 'ops.routing_rules',
    columns: [
      ['id', 'uuid'],
      ['category', 'text'],
      ['area_code', 'text'],
      ['org_id', 'uuid'],
      ['created_by', 'text'],
    ],
    rows: rules.map((r) => [r.id, r.category, r.areaCode, r.orgId, 'system']),
    onConflictDoNothing: true,
  });
  await statement(sql`true`).execute(db);
}
