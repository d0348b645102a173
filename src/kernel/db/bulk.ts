/**
 * Bulk inserts for hot paths (sensor history, imports, seeding): one multi-row INSERT per chunk,
 * with the SQL text built directly rather than through the query builder's per-row AST, executed
 * through Kysely's connection (so transactions, logging and both engines behave as usual).
 */
import { CompiledQuery, type QueryResult } from 'kysely';

/** Anything that executes compiled queries: a `Kysely` instance or a transaction. */
export interface QueryExecutorLike {
  executeQuery<R>(query: CompiledQuery<R>): Promise<QueryResult<R>>;
}

/** PostgreSQL's limit on bind parameters per statement. */
const MAX_PARAMS = 65_535;
const IDENTIFIER = /^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$/;

/**
 * Inserts `rows` (arrays of values in `columns` order) into `table` and resolves to the number of
 * rows inserted. Throws before touching the database on a bad identifier or a row of the wrong width.
 * Call it with a transaction to make a multi-chunk insert atomic.
 */
export async function bulkInsert(
  db: QueryExecutorLike,
  args: {
    table: string;
    columns: readonly string[];
    rows: readonly (readonly unknown[])[];
    chunkRows?: number;
  },
): Promise<number> {
  const { table, columns, rows } = args;
  if (!IDENTIFIER.test(table)) throw new Error(`bulkInsert: invalid table name "${table}"`);
  if (columns.length === 0) throw new Error('bulkInsert: no columns');
  for (const c of columns)
    if (!IDENTIFIER.test(c) || c.includes('.')) throw new Error(`bulkInsert: invalid column "${c}"`);
  for (const [i, r] of rows.entries())
    if (r.length !== columns.length)
      throw new Error(`bulkInsert: row ${i} has ${r.length} values for ${columns.length} columns`);
  const chunk = Math.max(1, Math.min(args.chunkRows ?? 1_000, Math.floor(MAX_PARAMS / columns.length)));
  const head = `insert into ${table} (${columns.join(', ')}) values `;
  let inserted = 0;
  for (let start = 0; start < rows.length; start += chunk) {
    const part = rows.slice(start, start + chunk);
    const params: unknown[] = new Array<unknown>(part.length * columns.length);
    const tuples: string[] = new Array<string>(part.length);
    let p = 0;
    for (let r = 0; r < part.length; r++) {
      const row = part[r] ?? [];
      const slots: string[] = new Array<string>(columns.length);
      for (let c = 0; c < columns.length; c++) {
        params[p] = row[c];
        slots[c] = `$${++p}`;
      }
      tuples[r] = `(${slots.join(', ')})`;
    }
    const result = await db.executeQuery(CompiledQuery.raw(head + tuples.join(', '), params));
    inserted += Number(result.numAffectedRows ?? BigInt(part.length));
  }
  return inserted;
}
