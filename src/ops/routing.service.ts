/**
 * The responsibility matrix (责任矩阵): category × area → department, inherited down the area
 * tree. A case goes to the department of the deepest area on its path that has a rule, preferring
 * the exact category over its major class (`event:01*`) over any (`*`). Rules are cached per
 * database (10 s, dropped at once on a local change), so routing a case costs no query.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { AppError, Errors, type Database } from '../kernel/index.ts';
import {
  authorize,
  getArea,
  listOrgs,
  OpsPermissions,
  recordAudit,
  type CallContext,
} from '../trust/index.ts';
import { findCategory } from './categories.ts';
import { loadDirectory, orgById } from './directory.ts';
import * as store from './routing.store.ts';

interface RuleCache {
  rules: Map<string, store.RuleRow>;
  loadedAt: number;
}

const caches = new WeakMap<Database, RuleCache>();
const TTL_MS = 10_000;

async function rules(database: Database): Promise<Map<string, store.RuleRow>> {
  const c = caches.get(database);
  if (c && Date.now() - c.loadedAt < TTL_MS) return c.rules;
  const map = new Map<string, store.RuleRow>();
  for (const r of await store.allRules(database.db)) map.set(`${r.areaCode}|${r.category}`, r);
  caches.set(database, { rules: map, loadedAt: Date.now() });
  return map;
}

export interface Route {
  orgId: string;
  /** The rule that decided: its category pattern and area. */
  rule: { id: string; category: string; areaCode: string };
}

/** The department responsible for `category` at `areaPath`, or undefined when no rule applies. */
export async function routeCase(
  database: Database,
  category: string,
  areaPath: string,
): Promise<Route | undefined> {
  const all = await rules(database);
  const [kind, code] = category.split(':');
  const patterns = [category, `${kind ?? ''}:${(code ?? '').slice(0, 2)}*`, '*'];
  const codes = areaPath.split('/').reverse();
  for (const area of codes)
    for (const p of patterns) {
      const r = all.get(`${area}|${p}`);
      if (r) return { orgId: r.orgId, rule: { id: r.id, category: r.category, areaCode: r.areaCode } };
    }
  return undefined;
}

const RULE_CATEGORY = /^(\*|(component|event|hotline):[0-9]{2}(\*|[0-9]{2}))$/;

/** Sets the department for (category, area) — `routing.manage` over the area — audited. */
export async function setRule(
  database: Database,
  ctx: CallContext,
  input: { category: string; areaCode: string; orgId: string },
): Promise<store.RuleRow> {
  const area = await getArea(database, input.areaCode);
  const areaPath = area.path.join('/');
  authorize(ctx.actor, OpsPermissions['routing.manage'], { areaPath }, { what: 'area' });
  if (!RULE_CATEGORY.test(input.category) || (!input.category.includes('*') && !findCategory(input.category)))
    throw new AppError(Errors.unprocessable, {
      detail: `Unknown category "${input.category}" (a category id like event:0102, a major class like event:01*, or *)`,
    });
  await loadDirectory(database);
  const org = orgById(database, input.orgId);
  if (!org || org.kind !== 'department')
    throw new AppError(Errors.unprocessable, {
      detail: `Organisation ${input.orgId} is not an active department`,
    });
  if (!(areaPath === org.areaPath || areaPath.startsWith(`${org.areaPath}/`)))
    throw new AppError(Errors.unprocessable, {
      detail: `Department ${org.code} works in ${org.areaCode}, which does not cover area ${input.areaCode}`,
    });
  return database.transact(async (trx) => {
    const rule = await store.upsertRule(trx, { id: randomUUID(), ...input, createdBy: ctx.actor.name });
    await recordAudit(trx, ctx, {
      action: 'routing.rule.set',
      resourceType: 'routing-rule',
      resourceId: rule.id,
      area: input.areaCode,
      details: { category: input.category, org: org.code },
    });
    caches.delete(database);
    return rule;
  });
}

/** Removes a rule — `routing.manage` over its area — audited; 404 when it does not exist or is not visible. */
export async function removeRule(database: Database, ctx: CallContext, id: string): Promise<void> {
  const rule = await store.findRule(database.db, id);
  if (!rule) throw new AppError(Errors['not-found'], { detail: 'No such routing rule' });
  const area = await getArea(database, rule.areaCode);
  authorize(
    ctx.actor,
    OpsPermissions['routing.manage'],
    { areaPath: area.path.join('/') },
    { what: 'routing rule' },
  );
  await database.transact(async (trx) => {
    await store.deleteRule(trx, id);
    await recordAudit(trx, ctx, {
      action: 'routing.rule.delete',
      resourceType: 'routing-rule',
      resourceId: id,
      area: rule.areaCode,
      details: { category: rule.category },
    });
  });
  caches.delete(database);
}

/** The rules set at one area (and above it, with `inherited`), for the routing screen. */
export async function rulesAt(
  database: Database,
  ctx: CallContext,
  areaCode: string,
): Promise<(store.RuleRow & { inherited: boolean })[]> {
  const area = await getArea(database, areaCode);
  authorize(ctx.actor, OpsPermissions['cases.read'], { areaPath: area.path.join('/') }, { what: 'area' });
  const all = await rules(database);
  const codes = new Set(area.path);
  return [...all.values()]
    .filter((r) => codes.has(r.areaCode))
    .map((r) => ({ ...r, inherited: r.areaCode !== areaCode }))
    .sort((a, b) => a.category.localeCompare(b.category) || b.areaCode.length - a.areaCode.length);
}

/**
 * Demo seeding: every department answers for its categories in its own area (a district
 * department for its district, a city department for the city). Does nothing once rules exist.
 */
export async function seedRoutingFromOrganisations(database: Database): Promise<number> {
  if ((await store.countRules(database.db)) > 0) return 0;
  await loadDirectory(database, { force: true });
  const seeds: { id: string; category: string; areaCode: string; orgId: string }[] = [];
  const depts = await listOrgs(
    database.db,
    { kind: 'department', status: 'active', limit: 100_000, offset: 0 },
    sql<boolean>`true`,
  );
  for (const d of depts)
    for (const c of d.categories)
      if (findCategory(c)) seeds.push({ id: randomUUID(), category: c, areaCode: d.area_code, orgId: d.id });
  await store.insertRules(database.db, seeds);
  caches.delete(database);
  return seeds.length;
}
