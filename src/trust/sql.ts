/** SQL fragments the trust stores share: LIKE escaping and materialized-path containment. */
import { sql, type RawBuilder } from 'kysely';

/** Escapes LIKE wildcards (and the escape character) so user text matches literally. */
export const escapeLike = (s: string): string => s.replace(/[\\%_]/g, (c) => `\\${c}`);

/** Rows whose area path (`column`) is `path` or lies below it. */
export const withinPath = (column: RawBuilder<unknown>, path: string): RawBuilder<boolean> =>
  sql<boolean>`(${column} = ${path} or ${column} like ${`${escapeLike(path)}/%`})`;
