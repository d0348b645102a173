/**
 * System roles at every start, and the demo city's organisations and accounts (demo mode only):
 * the platform operator, the city and district operations centres (城运中心) and departments
 * (委办局), a street operations centre for each of the 234 streets, a few synthetic enterprises,
 * and one account for every role. Production refuses to start while demo accounts exist.
 */
import { randomUUID } from 'node:crypto';
import {
  creditCodeCheckChar,
  organisationCodeCheckChar,
  referenceData,
  residentIdCheckChar,
  maskResidentId,
  type Database,
  type Logger,
} from '../kernel/index.ts';
import { recordAudit } from './audit.service.ts';
import { systemContext } from './authz.ts';
import { hashPassword, residentIdHash, type TrustKeys } from './credentials.ts';
import {
  countDemoUsers,
  findOrgByCode,
  insertMembership,
  insertOrg,
  insertUser,
  upsertRole,
  type OrgInsert,
} from './identity.store.ts';
import { SYSTEM_ROLES } from './permissions.ts';

/** The password of every demo account (demo mode only; documented in the README). */
export const DEMO_PASSWORD = 'Pujiang@2026';

/** Writes the system roles' current definitions; audited when something changed. */
export async function syncSystemRoles(database: Database): Promise<number> {
  return database.transact(async (trx) => {
    const changed: string[] = [];
    for (const r of SYSTEM_ROLES)
      if (
        await upsertRole(trx, {
          code: r.code,
          name_zh: r.zh,
          name_en: r.en,
          permissions: [...r.permissions].sort(),
          system: true,
        })
      )
        changed.push(r.code);
    if (changed.length > 0)
      await recordAudit(trx, systemContext('start-up'), {
        action: 'role.sync',
        resourceType: 'role',
        details: { roles: changed },
      });
    return changed.length;
  });
}

/** Fails start-up in production while demo accounts exist (they have a published password). */
export async function assertNoDemoAccounts(database: Database): Promise<void> {
  const n = await countDemoUsers(database.db);
  if (n > 0)
    throw new Error(
      `production mode refuses to start: ${n} demo accounts exist in this database (created in demo mode, with a published password). Use a fresh database for production.`,
    );
}

type Categories = (kind: string, majors: string[]) => string[];

const categoriesOf: Categories = (kind, majors) => {
  const out: string[] = [];
  for (const [code, classes] of referenceData().categories)
    for (const c of classes) if (c.kind === kind && majors.includes(c.majorCode)) out.push(`${kind}:${code}`);
  return out.sort();
};

/** Department templates: city name, district name suffix, responsibilities. */
const DEPARTMENTS = [
  {
    key: 'cgj',
    city: '上海市城市管理行政执法局',
    district: '城市管理行政执法局',
    categories: () => [...categoriesOf('event', ['02', '05'])],
  },
  {
    key: 'lhsr',
    city: '上海市绿化和市容管理局',
    district: '绿化和市容管理局',
    categories: () => [...categoriesOf('event', ['01']), ...categoriesOf('component', ['03', '04'])],
  },
  {
    key: 'jsw',
    city: '上海市住房和城乡建设管理委员会',
    district: '建设和管理委员会',
    categories: () => [...categoriesOf('event', ['03']), ...categoriesOf('component', ['02', '05'])],
  },
  {
    key: 'swj',
    city: '上海市水务局',
    district: '水务局',
    categories: () => [...categoriesOf('component', ['01']), ...categoriesOf('hotline', ['06', '13'])],
  },
] as const;

const ENTERPRISES = [
  {
    code: 'ent-baoshan-property',
    name: '上海宝杨物业管理有限公司（模拟）',
    district: '310113',
    body: 'MA1B2C3D',
  },
  {
    code: 'ent-pudong-sensors',
    name: '上海浦江感知科技有限公司（模拟）',
    district: '310115',
    body: 'MA1E4F5G',
  },
  {
    code: 'ent-huangpu-water',
    name: '上海外滩供水服务有限公司（模拟）',
    district: '310101',
    body: 'MA1H6J7K',
  },
];

/** A valid (synthetic) unified social credit code: 9 (工商) 1 (企业), district, organisation code. */
export function syntheticCreditCode(district: string, body8: string): string {
  const first17 = `91${district}${body8}${organisationCodeCheckChar(body8)}`;
  return first17 + creditCodeCheckChar(first17);
}

/** A valid (synthetic) resident ID for a district, birth date and serial. */
export function syntheticResidentId(district: string, birth: string, serial: string): string {
  const first17 = `${district}${birth}${serial}`;
  return first17 + residentIdCheckChar(first17);
}

/**
 * Seeds the demo organisations and accounts in one audited transaction; does nothing when any
 * organisation exists. Resolves to the number of organisations created.
 */
export async function seedDemoIdentity(
  database: Database,
  options: { keys: TrustKeys; logger: Logger },
): Promise<number> {
  if (await findOrgByCode(database.db, 'pujiang-platform')) return 0;
  // One hash for all demo accounts: they share one published password anyway.
  const passwordHash = await hashPassword(DEMO_PASSWORD);
  const ref = referenceData();
  const districts = [...ref.divisions.values()].filter(
    (d) => d.level === 'county' && d.code.startsWith('31'),
  );
  const streets = [...ref.divisions.values()].filter(
    (d) => d.level === 'township' && d.code.startsWith('31'),
  );
  const orgs: OrgInsert[] = [];
  const byCode = new Map<string, string>();
  const add = (o: Omit<OrgInsert, 'id' | 'demo' | 'services' | 'creditCode'> & { creditCode?: string }) => {
    const id = randomUUID();
    orgs.push({ services: [], creditCode: null, ...o, id, demo: true });
    byCode.set(o.code, id);
    return id;
  };
  const incidents = categoriesOf('event', ['04']);
  const platform = add({
    code: 'pujiang-platform',
    name: '浦江平台运营中心',
    kind: 'platform',
    level: 'city',
    areaCode: '310000',
    parentId: null,
    categories: [],
  });
  const cityOps = add({
    code: 'city-ops',
    name: '上海市城市运行管理中心',
    kind: 'operations-centre',
    level: 'city',
    areaCode: '310000',
    parentId: null,
    categories: incidents,
  });
  for (const d of DEPARTMENTS)
    add({
      code: `city-${d.key}`,
      name: d.city,
      kind: 'department',
      level: 'city',
      areaCode: '310000',
      parentId: null,
      categories: d.categories(),
    });
  for (const district of districts) {
    const ops = add({
      code: `district-${district.code}-ops`,
      name: `${district.name}城市运行管理中心`,
      kind: 'operations-centre',
      level: 'district',
      areaCode: district.code,
      parentId: cityOps,
      categories: incidents,
    });
    for (const d of DEPARTMENTS)
      add({
        code: `district-${district.code}-${d.key}`,
        name: `${district.name}${d.district}`,
        kind: 'department',
        level: 'district',
        areaCode: district.code,
        parentId: byCode.get(`city-${d.key}`) ?? null,
        categories: d.categories(),
      });
    for (const s of streets.filter((x) => x.parent === district.code))
      add({
        code: `street-${s.code}-ops`,
        name: `${s.name}城市运行管理中心`,
        kind: 'operations-centre',
        level: 'street',
        areaCode: s.code,
        parentId: ops,
        categories: incidents,
      });
  }
  for (const e of ENTERPRISES)
    add({
      code: e.code,
      name: e.name,
      kind: 'enterprise',
      level: null,
      areaCode: e.district,
      parentId: null,
      categories: [],
      creditCode: syntheticCreditCode(e.district, e.body),
    });

  const org = (code: string) => {
    const id = byCode.get(code);
    if (!id) throw new Error(`demo seed: no organisation ${code}`);
    return id;
  };
  const youyi = '310113003'; // 友谊路街道, 宝山区
  const citizenId = syntheticResidentId('310113', '19880512', '002');
  const users = [
    {
      username: 'admin',
      name: '平台管理员',
      kind: 'staff',
      area: '310000',
      grants: [[platform, 'platform-admin']],
    },
    {
      username: 'city-auditor',
      name: '市级审计员',
      kind: 'staff',
      area: '310000',
      grants: [[platform, 'auditor']],
    },
    {
      username: 'city-ops',
      name: '市城运中心值班员',
      kind: 'staff',
      area: '310000',
      grants: [[cityOps, 'ops-operator']],
    },
    {
      username: 'city-cgj',
      name: '市城管执法局工作人员',
      kind: 'staff',
      area: '310000',
      grants: [[org('city-cgj'), 'department-staff']],
    },
    {
      username: 'baoshan-admin',
      name: '宝山区城运中心管理员',
      kind: 'staff',
      area: '310113',
      grants: [[org('district-310113-ops'), 'org-admin']],
    },
    {
      username: 'baoshan-ops',
      name: '宝山区城运中心值班员',
      kind: 'staff',
      area: '310113',
      grants: [[org('district-310113-ops'), 'ops-operator']],
    },
    {
      username: 'baoshan-cgj',
      name: '宝山区城管执法局工作人员',
      kind: 'staff',
      area: '310113',
      grants: [[org('district-310113-cgj'), 'department-staff']],
    },
    {
      username: 'baoshan-auditor',
      name: '宝山区审计员',
      kind: 'staff',
      area: '310113',
      grants: [[org('district-310113-ops'), 'auditor']],
    },
    {
      username: 'youyi-admin',
      name: '友谊路街道城运中心管理员',
      kind: 'staff',
      area: youyi,
      grants: [[org(`street-${youyi}-ops`), 'org-admin']],
    },
    {
      username: 'youyi-ops',
      name: '友谊路街道城运中心值班员',
      kind: 'staff',
      area: youyi,
      grants: [[org(`street-${youyi}-ops`), 'ops-operator']],
    },
    {
      username: 'inspector-youyi',
      name: '友谊路街道网格员',
      kind: 'inspector',
      area: youyi,
      grants: [[org(`street-${youyi}-ops`), 'grid-inspector']],
    },
    {
      username: 'enterprise-user',
      name: '宝杨物业联系人',
      kind: 'enterprise',
      area: '310113',
      grants: [[org('ent-baoshan-property'), 'enterprise-user']],
    },
    {
      username: 'citizen',
      name: '张市民（模拟）',
      kind: 'citizen',
      area: youyi,
      grants: [],
      residentId: citizenId,
    },
  ] as const;

  return database.transact(async (trx) => {
    for (const o of orgs) await insertOrg(trx, o);
    for (const u of users) {
      const id = randomUUID();
      const resident = 'residentId' in u ? u.residentId : null;
      await insertUser(trx, {
        id,
        username: u.username,
        displayName: u.name,
        kind: u.kind,
        areaCode: u.area,
        passwordHash,
        residentIdHash: resident ? residentIdHash(options.keys, resident) : null,
        residentIdMasked: resident ? maskResidentId(resident) : null,
        externalSubject: null,
        demo: true,
      });
      for (const [orgId, role] of u.grants)
        await insertMembership(trx, { id: randomUUID(), userId: id, orgId, role });
    }
    await recordAudit(trx, systemContext('demo seed'), {
      action: 'demo.seed',
      resourceType: 'organisation',
      details: { organisations: orgs.length, users: users.map((u) => u.username) },
    });
    options.logger.info(
      { organisations: orgs.length, users: users.length },
      'demo organisations and accounts seeded',
    );
    return orgs.length;
  });
}
