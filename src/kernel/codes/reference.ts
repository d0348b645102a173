/**
 * Reference data the validators check against: administrative divisions (GB/T 2260 + GB/T 10114
 * township codes) and the urban-management classification (部件/事件 classes). Loaded once from
 * `data/reference/` (see its README for provenance); a city deploying Pujiang replaces those files.
 */
import { readFileSync } from 'node:fs';

export type DivisionLevel = 'province' | 'prefecture' | 'county' | 'township';

export interface Division {
  code: string;
  name: string;
  level: DivisionLevel;
  /** Code of the enclosing division, absent for provinces. */
  parent?: string;
}

export interface CategoryClass {
  kind: 'component' | 'event' | 'hotline';
  majorCode: string;
  majorName: string;
  /** Four digits: major + minor. */
  code: string;
  name: string;
}

export interface ReferenceData {
  divisions: ReadonlyMap<string, Division>;
  categories: ReadonlyMap<string, CategoryClass[]>;
  /** Province-level codes (first two digits) and names, for checks on codes from anywhere in China. */
  provinces: ReadonlyMap<string, string>;
}

/** GB/T 2260 province-level divisions (省级行政区划代码). */
export const PROVINCES: ReadonlyMap<string, string> = new Map([
  ['11', '北京市'],
  ['12', '天津市'],
  ['13', '河北省'],
  ['14', '山西省'],
  ['15', '内蒙古自治区'],
  ['21', '辽宁省'],
  ['22', '吉林省'],
  ['23', '黑龙江省'],
  ['31', '上海市'],
  ['32', '江苏省'],
  ['33', '浙江省'],
  ['34', '安徽省'],
  ['35', '福建省'],
  ['36', '江西省'],
  ['37', '山东省'],
  ['41', '河南省'],
  ['42', '湖北省'],
  ['43', '湖南省'],
  ['44', '广东省'],
  ['45', '广西壮族自治区'],
  ['46', '海南省'],
  ['50', '重庆市'],
  ['51', '四川省'],
  ['52', '贵州省'],
  ['53', '云南省'],
  ['54', '西藏自治区'],
  ['61', '陕西省'],
  ['62', '甘肃省'],
  ['63', '青海省'],
  ['64', '宁夏回族自治区'],
  ['65', '新疆维吾尔自治区'],
  ['71', '台湾省'],
  ['81', '香港特别行政区'],
  ['82', '澳门特别行政区'],
]);

const REFERENCE_DIR = new URL('../../../data/reference/', import.meta.url);

/** Parses a simple CSV (no quoted fields, as the reference files are) into header-keyed rows. */
export function parseSimpleCsv(text: string): Record<string, string>[] {
  const lines = text.split(/\r?\n/).filter((l) => l.trim().length > 0);
  const header = (lines.shift() ?? '').split(',').map((h) => h.trim());
  return lines.map((line, i) => {
    const cells = line.split(',');
    if (cells.length !== header.length)
      throw new Error(`CSV line ${i + 2}: expected ${header.length} fields, found ${cells.length}`);
    return Object.fromEntries(header.map((h, j) => [h, (cells[j] ?? '').trim()]));
  });
}

/** The text of a file under `data/reference/` (e.g. `shanghai/districts.geojson`). */
export function readReferenceFile(relative: string): string {
  return readFileSync(new URL(relative, REFERENCE_DIR), 'utf8');
}

function readCsv(relative: string): Record<string, string>[] {
  return parseSimpleCsv(readReferenceFile(relative));
}

let cached: ReferenceData | undefined;

/** The reference data shipped in `data/reference/`, loaded on first use and then shared. */
export function referenceData(): ReferenceData {
  if (cached) return cached;
  const divisions = new Map<string, Division>();
  for (const [p, name] of PROVINCES) divisions.set(`${p}0000`, { code: `${p}0000`, name, level: 'province' });
  // Shanghai's prefecture level is the statistical placeholder 市辖区 (310100).
  divisions.set('310100', { code: '310100', name: '市辖区', level: 'prefecture', parent: '310000' });
  for (const r of readCsv('shanghai/districts.csv')) {
    const code = r['code'] ?? '';
    divisions.set(code, { code, name: r['name'] ?? '', level: 'county', parent: `${code.slice(0, 4)}00` });
  }
  for (const r of readCsv('shanghai/streets.csv')) {
    const code = r['code'] ?? '';
    divisions.set(code, { code, name: r['name'] ?? '', level: 'township', parent: r['district_code'] ?? '' });
  }
  const categories = new Map<string, CategoryClass[]>();
  for (const r of readCsv('classification/urban-management-categories.csv')) {
    const c: CategoryClass = {
      kind: r['kind'] as CategoryClass['kind'],
      majorCode: r['major_code'] ?? '',
      majorName: r['major_name'] ?? '',
      code: r['code'] ?? '',
      name: r['name'] ?? '',
    };
    const list = categories.get(c.code) ?? [];
    list.push(c);
    categories.set(c.code, list);
  }
  cached = { divisions, categories, provinces: PROVINCES };
  return cached;
}
