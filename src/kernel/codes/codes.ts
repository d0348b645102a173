/**
 * Validators for the codes Chinese public administration runs on. Each returns a result rather
 * than throwing: `{ valid: true, value }` with what the code encodes, or `{ valid: false, reason,
 * message }` with a stable reason and a precise message (which position, what was expected).
 * `assertValid` turns a failure into the catalogue's 422 error for services.
 */
import { AppError, Errors, type ErrorSpec } from '../errors/errors.ts';
import { referenceData, type CategoryClass, type Division, type ReferenceData } from './reference.ts';

export type CodeCheck<T> = { valid: true; value: T } | { valid: false; reason: string; message: string };

const fail = <T>(reason: string, message: string): CodeCheck<T> => ({ valid: false, reason, message });

/** Throws the matching 422 error if `check` failed; otherwise returns its value. */
export function assertValid<T>(check: CodeCheck<T>, spec: ErrorSpec): T {
  if (check.valid) return check.value;
  throw new AppError(spec, { detail: check.message, extensions: { reason: check.reason } });
}

// ── GB/T 2260 administrative division codes (行政区划代码) ───────────────────────────────────

export interface DivisionInfo extends Division {
  /** Names from the province down to this division. */
  path: string[];
}

/**
 * Checks a 6-digit division code (GB/T 2260) or a 9-digit township code (GB/T 10114) against the
 * reference data: the format, the province, and that the division exists.
 */
export function checkDivisionCode(
  input: string,
  ref: ReferenceData = referenceData(),
): CodeCheck<DivisionInfo> {
  const code = input.trim();
  if (!/^\d+$/.test(code))
    return fail('format', `division code must contain digits only, got "${truncate(code)}"`);
  if (code.length !== 6 && code.length !== 9)
    return fail(
      'length',
      `division code must have 6 digits (GB/T 2260) or 9 digits (township), got ${code.length}`,
    );
  const province = code.slice(0, 2);
  if (!ref.provinces.has(province))
    return fail('unknown-province', `"${province}" (digits 1-2) is not a province-level code of GB/T 2260`);
  if (code.length === 6 && code.slice(2, 4) === '00' && code.slice(4) !== '00')
    return fail(
      'format',
      `digits 3-4 are 00 (province level) so digits 5-6 must be 00 too, got "${code.slice(4)}"`,
    );
  const division = ref.divisions.get(code);
  if (!division) return fail('unknown-division', `division code ${code} is not in the loaded reference data`);
  const path: string[] = [];
  for (let d: Division | undefined = division; d; d = d.parent ? ref.divisions.get(d.parent) : undefined)
    path.unshift(d.name);
  return { valid: true, value: { ...division, path } };
}

// ── GB 11643 citizen identity numbers (公民身份号码) ─────────────────────────────────────────

export interface ResidentIdInfo {
  /** The normalised number (upper-case X). */
  id: string;
  /** The 6-digit address code at issue time (may name a division that has since been abolished). */
  regionCode: string;
  province: string;
  /** YYYY-MM-DD. */
  birthDate: string;
  sex: 'male' | 'female';
  /** Display form: first 3 and last 4 characters, the rest masked. */
  masked: string;
}

const ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK = '10X98765432';

/** The GB 11643 check character for the first 17 digits. */
export function residentIdCheckChar(first17: string): string {
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += Number(first17[i]) * (ID_WEIGHTS[i] ?? 0);
  return ID_CHECK[sum % 11] ?? '?';
}

/**
 * Checks an 18-character resident identity number: characters, province of the address code,
 * a real birth date not in the future, and the check character. County-level address codes are
 * not checked against today's divisions, because numbers keep the codes of abolished counties.
 */
export function checkResidentId(
  input: string,
  options: { today?: Date; ref?: ReferenceData } = {},
): CodeCheck<ResidentIdInfo> {
  const ref = options.ref ?? referenceData();
  const id = input.trim().toUpperCase();
  if (id.length === 15 && /^\d{15}$/.test(id))
    return fail(
      'legacy-15-digit',
      'a 15-digit first-generation number is not accepted; use the 18-digit number',
    );
  if (id.length !== 18) return fail('length', `resident ID must have 18 characters, got ${id.length}`);
  const bad = /[^0-9]/.exec(id.slice(0, 17));
  if (bad) return fail('format', `character ${bad.index + 1} must be a digit, got "${bad[0]}"`);
  const last = id.charAt(17);
  if (!/[0-9X]/.test(last)) return fail('format', `character 18 must be a digit or X, got "${last}"`);
  const province = ref.provinces.get(id.slice(0, 2));
  if (!province)
    return fail('unknown-province', `"${id.slice(0, 2)}" (digits 1-2) is not a province-level code`);
  const y = Number(id.slice(6, 10));
  const m = Number(id.slice(10, 12));
  const d = Number(id.slice(12, 14));
  const birth = new Date(Date.UTC(y, m - 1, d));
  if (birth.getUTCFullYear() !== y || birth.getUTCMonth() !== m - 1 || birth.getUTCDate() !== d)
    return fail('birthdate', 'digits 7-14 must be a real date YYYYMMDD');
  // "Today" in China (UTC+8), so a number issued for a baby born today is valid at any hour.
  const today = new Date((options.today ?? new Date()).getTime() + 8 * 3_600_000).toISOString().slice(0, 10);
  const birthDate = `${id.slice(6, 10)}-${id.slice(10, 12)}-${id.slice(12, 14)}`;
  // Messages name the digits, not the date: they reach logs, and a birth date is personal data.
  if (y < 1850 || birthDate > today) return fail('birthdate', 'digits 7-14 are not a plausible birth date');
  const expected = residentIdCheckChar(id);
  if (expected !== last)
    return fail(
      'checksum',
      `check character (18th) is "${last}" but the first 17 digits require "${expected}"`,
    );
  return {
    valid: true,
    value: {
      id,
      regionCode: id.slice(0, 6),
      province,
      birthDate,
      sex: Number(id.charAt(16)) % 2 === 1 ? 'male' : 'female',
      masked: maskResidentId(id),
    },
  };
}

/** Masks a resident ID for display: `310***********123X`. */
export function maskResidentId(id: string): string {
  return id.length <= 7
    ? '*'.repeat(id.length)
    : `${id.slice(0, 3)}${'*'.repeat(id.length - 7)}${id.slice(-4)}`;
}

// ── GB 32100 unified social credit codes (统一社会信用代码) ──────────────────────────────────

export interface CreditCodeInfo {
  code: string;
  registrationAuthority: string;
  organisationType: string;
  /** The registering administration's 6-digit division code. */
  regionCode: string;
  province: string;
  /** The embedded 9-character organisation code (GB 11714). */
  organisationCode: string;
}

const USCC_CHARS = '0123456789ABCDEFGHJKLMNPQRTUWXY';
const USCC_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];

/** GB 32100-2015 table 1: registration authority (登记管理部门) → organisation types (机构类别). */
const USCC_AUTHORITIES: Record<string, { name: string; types: Record<string, string> }> = {
  '1': {
    name: '机构编制',
    types: { '1': '机关', '2': '事业单位', '3': '中央编办直接管理机构编制的群众团体', '9': '其他' },
  },
  '2': { name: '外交', types: { '1': '外国常驻新闻机构', '9': '其他' } },
  '3': {
    name: '司法行政',
    types: {
      '1': '律师执业机构',
      '2': '公证处',
      '3': '基层法律服务所',
      '4': '司法鉴定机构',
      '5': '仲裁委员会',
      '9': '其他',
    },
  },
  '4': { name: '文化', types: { '1': '外国在华文化中心', '9': '其他' } },
  '5': { name: '民政', types: { '1': '社会团体', '2': '民办非企业单位', '3': '基金会', '9': '其他' } },
  '6': {
    name: '旅游',
    types: {
      '1': '外国旅游部门常驻代表机构',
      '2': '港澳台地区旅游部门常驻内地（大陆）代表机构',
      '9': '其他',
    },
  },
  '7': { name: '宗教', types: { '1': '宗教活动场所', '2': '宗教院校', '9': '其他' } },
  '8': { name: '工会', types: { '1': '基层工会', '9': '其他' } },
  '9': { name: '工商', types: { '1': '企业', '2': '个体工商户', '3': '农民专业合作社' } },
  A: { name: '中央军委改革和编制办公室', types: { '1': '军队事业单位', '9': '其他' } },
  N: {
    name: '农业',
    types: { '1': '组级集体经济组织', '2': '村级集体经济组织', '3': '乡镇级集体经济组织', '9': '其他' },
  },
  Y: { name: '其他', types: { '1': '其他' } },
};

/** The GB 32100 check character for the first 17 characters (all from the code's alphabet). */
export function creditCodeCheckChar(first17: string): string {
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += USCC_CHARS.indexOf(first17.charAt(i)) * (USCC_WEIGHTS[i] ?? 0);
  return USCC_CHARS.charAt((31 - (sum % 31)) % 31);
}

const ORG_WEIGHTS = [3, 7, 9, 10, 5, 8, 4, 2];

/** The GB 11714 organisation-code check character for its first 8 characters. */
export function organisationCodeCheckChar(first8: string): string {
  let sum = 0;
  for (let i = 0; i < 8; i++) {
    const c = first8.charAt(i);
    const v = /\d/.test(c) ? Number(c) : c.charCodeAt(0) - 55; // A=10 … Z=35
    sum += v * (ORG_WEIGHTS[i] ?? 0);
  }
  const r = 11 - (sum % 11);
  return r === 10 ? 'X' : r === 11 ? '0' : String(r);
}

/**
 * Checks an 18-character unified social credit code: alphabet, registration authority and
 * organisation type, province of the division code, the embedded organisation code's check
 * character (GB 11714) and the code's own check character (GB 32100).
 */
export function checkCreditCode(
  input: string,
  ref: ReferenceData = referenceData(),
): CodeCheck<CreditCodeInfo> {
  const code = input.trim().toUpperCase();
  if (code.length !== 18) return fail('length', `credit code must have 18 characters, got ${code.length}`);
  for (let i = 0; i < 18; i++) {
    if (!USCC_CHARS.includes(code.charAt(i)))
      return fail(
        'format',
        `character ${i + 1} "${code.charAt(i)}" is not allowed (digits and letters except I, O, S, V, Z)`,
      );
  }
  const authority = USCC_AUTHORITIES[code.charAt(0)];
  if (!authority)
    return fail(
      'registration-authority',
      `character 1 "${code.charAt(0)}" is not a registration authority code`,
    );
  const type = authority.types[code.charAt(1)];
  if (!type)
    return fail(
      'organisation-type',
      `character 2 "${code.charAt(1)}" is not an organisation type of authority ${code.charAt(0)} (${authority.name})`,
    );
  const regionCode = code.slice(2, 8);
  if (!/^\d{6}$/.test(regionCode))
    return fail('format', `characters 3-8 must be a 6-digit division code, got "${regionCode}"`);
  const province = ref.provinces.get(regionCode.slice(0, 2));
  if (!province)
    return fail(
      'unknown-province',
      `"${regionCode.slice(0, 2)}" (characters 3-4) is not a province-level code`,
    );
  const orgCode = code.slice(8, 17);
  const orgExpected = organisationCodeCheckChar(orgCode.slice(0, 8));
  if (orgCode.charAt(8) !== orgExpected)
    return fail(
      'organisation-code-checksum',
      `character 17 (organisation code check, GB 11714) is "${orgCode.charAt(8)}" but should be "${orgExpected}"`,
    );
  const expected = creditCodeCheckChar(code);
  if (code.charAt(17) !== expected)
    return fail(
      'checksum',
      `check character (18th) is "${code.charAt(17)}" but the first 17 characters require "${expected}"`,
    );
  return {
    valid: true,
    value: {
      code,
      registrationAuthority: authority.name,
      organisationType: type,
      regionCode,
      province,
      organisationCode: orgCode,
    },
  };
}

// ── City component identifiers (城市部件标识) ────────────────────────────────────────────────

export interface ComponentIdInfo {
  id: string;
  district: DivisionInfo;
  category: CategoryClass;
  serial: string;
}

/**
 * Checks a 16-digit city component identifier: a county-level division in the reference data
 * (digits 1-6), a component class (digits 7-10: major + minor), and a non-zero serial (11-16).
 */
export function checkComponentId(
  input: string,
  ref: ReferenceData = referenceData(),
): CodeCheck<ComponentIdInfo> {
  const id = input.trim();
  if (!/^\d+$/.test(id))
    return fail('format', `component identifier must contain digits only, got "${truncate(id)}"`);
  if (id.length !== 16) return fail('length', `component identifier must have 16 digits, got ${id.length}`);
  const district = checkDivisionCode(id.slice(0, 6), ref);
  if (!district.valid) return fail('district', `digits 1-6: ${district.message}`);
  if (district.value.level !== 'county')
    return fail(
      'district',
      `digits 1-6 must name a district or county, ${id.slice(0, 6)} is a ${district.value.level}`,
    );
  const classCode = id.slice(6, 10);
  const category = ref.categories.get(classCode)?.find((c) => c.kind === 'component');
  if (!category) {
    const majorKnown = [...ref.categories.values()]
      .flat()
      .some((c) => c.kind === 'component' && c.majorCode === classCode.slice(0, 2));
    return fail(
      'class',
      majorKnown
        ? `digits 9-10: minor class "${classCode.slice(2)}" does not exist under component major class ${classCode.slice(0, 2)}`
        : `digits 7-8: "${classCode.slice(0, 2)}" is not a component major class`,
    );
  }
  const serial = id.slice(10);
  if (serial === '000000') return fail('serial', 'digits 11-16 (serial) must not be 000000');
  return { valid: true, value: { id, district: district.value, category, serial } };
}

export const CODE_KINDS = {
  division: { check: (v: string) => checkDivisionCode(v), error: Errors['invalid-division-code'] },
  'resident-id': { check: (v: string) => checkResidentId(v), error: Errors['invalid-resident-id'] },
  'credit-code': { check: (v: string) => checkCreditCode(v), error: Errors['invalid-credit-code'] },
  'component-id': { check: (v: string) => checkComponentId(v), error: Errors['invalid-component-id'] },
} as const;

export type CodeKind = keyof typeof CODE_KINDS;

function truncate(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}
