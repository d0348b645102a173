/**
 * Recording the twin's history with entity writes (可追溯): the attribute instances a write
 * changed, and the riders that add them (and the temporal entity row) to the write's statement.
 */
import type { Rider } from '../kernel/index.ts';
import { MAIN_MEMBER, NGSI_NULL, type Attrs, type Instance } from './entity.model.ts';
import type { TwinCall } from './entity.service.ts';
import { instanceRiders, temporalEntityRider, type HistoryInstance } from './temporal.store.ts';

const key = (i: Instance): string => i.datasetId ?? '';

/**
 * The instances a write changed, from the attributes before and after it: every instance whose
 * stored form changed (a write always sets modifiedAt, so every instance written counts), and a
 * deletion for every instance that went away.
 */
export function historyOf(before: Attrs, after: Attrs): HistoryInstance[] {
  const out: HistoryInstance[] = [];
  for (const [attr, list] of Object.entries(after)) {
    const old = before[attr];
    const oldByKey = new Map((old ?? []).map((i) => [key(i), JSON.stringify(i)]));
    for (const inst of list) if (oldByKey.get(key(inst)) !== JSON.stringify(inst)) out.push({ attr, inst });
  }
  for (const [attr, list] of Object.entries(before)) {
    const now = new Set((after[attr] ?? []).map(key));
    for (const inst of list) if (!now.has(key(inst))) out.push({ attr, inst: deletion(inst), deleted: true });
  }
  return out;
}

/** The instance recording a deletion: the attribute type with the NGSI-LD null as its value. */
function deletion(inst: Instance): Instance {
  const member = MAIN_MEMBER[inst.type] ?? 'value';
  const out: Instance = { type: inst.type, [member]: NGSI_NULL };
  if (inst.datasetId !== undefined) out.datasetId = inst.datasetId;
  return out;
}

/** The entity as a history record needs it. */
interface Side {
  types: string[];
  areaPath: string | null;
  attrs: Attrs;
}

/** The attribute IRIs a write created, updated and deleted (for subscription triggers). */
export interface AttributeChanges {
  created: string[];
  updated: string[];
  deleted: string[];
}

/**
 * An entity write in its history: the riders recording the changed instances (and the temporal
 * entity row when the entity is new to history or its types, area or attribute names changed), and
 * the attributes it created, updated and deleted — both from one comparison of before and after.
 */
export function entityHistory(
  tc: TwinCall,
  w: { id: string; before: Side | undefined; after: Side | undefined; at: Date },
): { riders: Rider[]; changes: AttributeChanges } {
  const before = w.before?.attrs ?? {};
  const after = w.after?.attrs ?? {};
  const instances = historyOf(before, after);
  const touched = new Set(instances.map((h) => h.attr));
  const changes: AttributeChanges = {
    created: Object.keys(after).filter((a) => !(a in before)),
    updated: [...touched].filter((a) => a in before && a in after),
    deleted: Object.keys(before).filter((a) => !(a in after)),
  };
  const riders = instanceRiders(tc.tenant, w.id, instances, w.at);
  const side = w.after ?? w.before;
  if (!side) return { riders, changes };
  const changed =
    w.before === undefined ||
    (w.after !== undefined &&
      (w.after.areaPath !== w.before.areaPath ||
        w.after.types.length !== w.before.types.length ||
        w.after.types.some((t, i) => w.before?.types[i] !== t) ||
        changes.created.length > 0));
  if (changed)
    riders.push(
      temporalEntityRider({
        tenant: tc.tenant,
        id: w.id,
        types: side.types,
        areaPath: side.areaPath,
        attrs: Object.keys(after),
        at: w.at,
      }),
    );
  return { riders, changes };
}
