/**
 * Discovery (ETSI GS CIM 009 v1.8 §5.7.5–5.7.10): which entity types and attributes exist, with
 * counts and attribute types — computed over all entities the caller may see, not a sample.
 */
import { randomUUID } from 'node:crypto';
import { readScope } from './access.ts';
import { clip } from './entity.model.ts';
import { attributesInUse, typeDetails, typesInUse } from './entity.store.ts';
import { requireTenant, type TwinCall, type TwinRuntime } from './entity.service.ts';
import { NgsiError } from './errors.ts';

/** GET /types: an EntityTypeList, or with `details` one EntityType per type. */
export async function typeList(rt: TwinRuntime, tc: TwinCall, details: boolean): Promise<unknown> {
  const db = rt.database.db;
  await requireTenant(db, tc.tenant);
  const types = await typesInUse(db, tc.tenant, readScope(rt.access, tc.call));
  if (!details)
    return {
      id: `urn:ngsi-ld:EntityTypeList:${randomUUID()}`,
      type: 'EntityTypeList',
      typeList: types.map((t) => tc.terms.compact(t.type)),
    };
  return types.map((t) => ({
    id: t.type,
    type: 'EntityType',
    typeName: tc.terms.compact(t.type),
    attributeNames: t.attributes.map((a) => tc.terms.compact(a)),
  }));
}

/** GET /types/{type}: EntityTypeInformation; ResourceNotFound when no visible entity has the type. */
export async function typeInformation(rt: TwinRuntime, tc: TwinCall, typeName: string): Promise<unknown> {
  const db = rt.database.db;
  await requireTenant(db, tc.tenant);
  const iri = tc.terms.expand(typeName);
  const info = await typeDetails(db, tc.tenant, iri, readScope(rt.access, tc.call));
  if (info.count === 0) throw new NgsiError('ResourceNotFound', `No entities of type ${clip(typeName)}`);
  return {
    id: iri,
    type: 'EntityTypeInformation',
    typeName: tc.terms.compact(iri),
    entityCount: info.count,
    attributeDetails: info.attributes.map((a) => ({
      id: a.name,
      type: 'Attribute',
      attributeName: tc.terms.compact(a.name),
      attributeTypes: a.types,
    })),
  };
}

/** GET /attributes: an AttributeList, or with `details` one Attribute per attribute. */
export async function attributeList(rt: TwinRuntime, tc: TwinCall, details: boolean): Promise<unknown> {
  const db = rt.database.db;
  await requireTenant(db, tc.tenant);
  const attrs = await attributesInUse(db, tc.tenant, readScope(rt.access, tc.call));
  if (!details)
    return {
      id: `urn:ngsi-ld:AttributeList:${randomUUID()}`,
      type: 'AttributeList',
      attributeList: attrs.map((a) => tc.terms.compact(a.name)),
    };
  return attrs.map((a) => attribute(tc, a));
}

/** GET /attributes/{attrId}: one Attribute; ResourceNotFound when no visible entity has it. */
export async function attributeDetails(rt: TwinRuntime, tc: TwinCall, name: string): Promise<unknown> {
  const db = rt.database.db;
  await requireTenant(db, tc.tenant);
  const iri = tc.terms.expand(name);
  const [a] = await attributesInUse(db, tc.tenant, readScope(rt.access, tc.call), iri);
  if (!a) throw new NgsiError('ResourceNotFound', `No entities with attribute ${clip(name)}`);
  return attribute(tc, a);
}

function attribute(
  tc: TwinCall,
  a: { name: string; count: number; attributeTypes: string[]; entityTypes: string[] },
): unknown {
  return {
    id: a.name,
    type: 'Attribute',
    attributeName: tc.terms.compact(a.name),
    attributeCount: a.count,
    attributeTypes: a.attributeTypes,
    typeNames: a.entityTypes.map((t) => tc.terms.compact(t)),
  };
}
