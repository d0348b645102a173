/**
 * One round trip for a change and the records that go with it. A change (an INSERT, UPDATE or
 * DELETE … RETURNING) and its riders (INSERT … SELECT statements: its audit record, its outbox
 * event) run as one statement of data-modifying CTEs, so they commit together or not at all, and
 * the riders write only when the change returned a row. A small write is then one statement in
 * place of BEGIN, n statements and COMMIT: on a busy server the round trips, not the SQL, are
 * what a small write costs.
 */
import { sql, type Kysely, type RawBuilder } from 'kysely';
import { afterCommit } from './database.ts';
import type { KernelTables } from './tables.ts';

/** A statement that rides along with a change (see `writeWith`). */
export interface Rider {
  /** The rider's statement, writing only when `when` (an SQL boolean) holds. */
  statement(when: RawBuilder<unknown>): RawBuilder<unknown>;
  /** Runs once the change has committed (e.g. wakes a relay). */
  afterCommit?: () => void;
}

const IDENTIFIER = /^[a-z_][a-z0-9_]*$/;
const TABLE = /^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$/;
// Scalar types only: each column travels as one array parameter (unnest cannot split arrays of arrays).
const TYPE = /^[a-z_][a-z0-9_ ]*$/;
const CAST = /^[a-z_][a-z0-9_ ]*(\[\])?$/;

/** Largest number of values one rider may carry (a bound on one statement's parameters, in memory). */
const MAX_VALUES = 1_000_000;

/**
 * The statement of a rider inserting `rows` (values in `columns` order) into `table`. Each column
 * is sent as one typed array parameter and the rows are `unnest`ed from them, so the statement's
 * text and parse cost do not grow with the rows (1,000 rows of 12 columns: 12 parameters, not
 * 12,000 cast literals). Throws, before any SQL runs, on a bad identifier or type, a row of the
 * wrong width or too many values.
 */
export function insertRows(args: {
  table: string;
  /** Name, the scalar type it travels as, and optionally the column's type to cast it to (e.g. text → uuid[]). */
  columns: readonly (readonly [name: string, type: string, cast?: string])[];
  rows: readonly (readonly unknown[])[];
  onConflictDoNothing?: boolean;
  /** Columns to return (when the insert is a change rather than a rider). */
  returning?: readonly string[];
}): Rider['statement'] {
  const { table, columns, rows } = args;
  if (!TABLE.test(table)) throw new Error(`insertRows: invalid table "${table}"`);
  if (columns.length === 0) throw new Error('insertRows: no columns');
  for (const [name, type, cast] of columns)
    if (!IDENTIFIER.test(name) || !TYPE.test(type) || (cast !== undefined && !CAST.test(cast)))
      throw new Error(`insertRows: invalid column "${name}" ${type}`);
  for (const [i, r] of rows.entries())
    if (r.length !== columns.length)
      throw new Error(`insertRows: row ${i} has ${r.length} values for ${columns.length} columns`);
  if (rows.length * columns.length > MAX_VALUES)
    throw new Error(`insertRows: ${rows.length} rows exceed ${MAX_VALUES} values`);
  const names = sql.raw(columns.map(([name]) => name).join(', '));
  // Dates as ISO text: both drivers then serialise every array the same way.
  const arrays = columns.map(([, type], c) => {
    const values = rows.map((r) => {
      const v = r[c];
      return v instanceof Date ? v.toISOString() : (v ?? null);
    });
    return sql`${values}::${sql.raw(type)}[]`;
  });
  for (const r of args.returning ?? [])
    if (!IDENTIFIER.test(r)) throw new Error(`insertRows: invalid returning column "${r}"`);
  const conflict = args.onConflictDoNothing ? sql` on conflict do nothing` : sql``;
  const returning = args.returning?.length ? sql.raw(` returning ${args.returning.join(', ')}`) : sql``;
  const selected = columns.some(([, , cast]) => cast !== undefined)
    ? sql.raw(columns.map(([name, , cast]) => (cast ? `${name}::${cast}` : name)).join(', '))
    : sql`*`;
  return (when) =>
    sql`insert into ${sql.raw(table)} (${names})
      select ${selected} from unnest(${sql.join(arrays)}) as v (${names}) where ${when}${conflict}${returning}`;
}

/**
 * Runs `change` and its riders as one statement and resolves to the rows `change` returned; the
 * riders write only if it returned any. Outside a transaction the statement commits on its own
 * and the riders' `afterCommit` callbacks run when it resolves; inside one (`Database.transact`)
 * they run when that transaction commits.
 */
export async function writeWith<R>(
  db: Kysely<KernelTables>,
  change: RawBuilder<R>,
  riders: readonly Rider[],
): Promise<R[]> {
  const written = sql`exists (select from change)`;
  const ctes = riders.map((r, i) => sql`, ${sql.raw(`rider_${i}`)} as (${r.statement(written)})`);
  const query = sql<R>`with change as (${change})${sql.join(ctes, sql``)} select * from change`;
  const { rows } = await query.execute(db);
  if (rows.length > 0)
    for (const r of riders)
      if (r.afterCommit) {
        if (db.isTransaction) afterCommit(db, r.afterCommit);
        else r.afterCommit();
      }
  return rows;
}
