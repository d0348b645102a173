/**
 * Case categories (案件类别) from the classification of city components (部件), events (事件)
 * and hotline livelihood classes (`../shared/data/classification/`). A category id is
 * `<kind>:<code>` (e.g. `event:0102` 暴露垃圾) because codes repeat across kinds; organisations'
 * responsibilities and Open311 service codes use the same ids.
 */
import { referenceData, type CategoryClass } from '../kernel/index.ts';

export interface Category extends CategoryClass {
  id: string;
}

let cached: Map<string, Category> | undefined;

function catalogue(): Map<string, Category> {
  if (!cached) {
    cached = new Map();
    for (const classes of referenceData().categories.values())
      for (const c of classes) cached.set(`${c.kind}:${c.code}`, { ...c, id: `${c.kind}:${c.code}` });
  }
  return cached;
}

/** Every category, in classification order. */
export function allCategories(): Category[] {
  return [...catalogue().values()].sort((a, b) => a.id.localeCompare(b.id));
}

export function findCategory(id: string): Category | undefined {
  return catalogue().get(id);
}

export const CATEGORY_PATTERN = '^(component|event|hotline):[0-9]{4}$';
