/**
 * The bench/twin-history data: entity ids, the NGSI-LD request bodies the load generator sends,
 * and the attribute instances the raw baselines insert — the same instances, stored as the
 * broker stores them (`instanceRiders` in src/twin/temporal.store.ts).
 */
import { randomUUID } from 'node:crypto';

export const P = '/ngsi-ld/v1';

/** The attribute every history section reads and writes (core @context: default-context IRI). */
export const ATTR = 'power';

/** Entities the history write (a) appends to, one per client at a time: `urn:ngsi-ld:Meter:A<k>`. */
export const appendEntityId = (k: number): string => `urn:ngsi-ld:Meter:A${k}`;
/** Entities the entity-update write (b) patches. */
export const patchEntityId = (k: number): string => `urn:ngsi-ld:Meter:P${k}`;
/** The entities the notification section updates, one subscription each. */
export const notifyEntityId = (k: number): string => `urn:ngsi-ld:Meter:${k}`;

/** A reading that looks like a meter's: a daily wave plus noise, two decimals. */
export function reading(n: number): number {
  const wave = 100 + 50 * Math.sin(n / 997);
  const noise = ((n * 7919) % 1000) / 100;
  return Math.round((wave + noise) * 100) / 100;
}

/** One Property instance as a client sends it and as the store keeps it (`value` jsonb). */
export const instance = (
  value: number,
  observedAt: string,
): { type: string; value: number; observedAt: string } => ({
  type: 'Property',
  value,
  observedAt,
});

/**
 * Instance `i` of append request `seq`: each request carries `perRequest` instances 1 ms apart,
 * each request after the one before, from `startMs` on (so no two instances share a time).
 */
export const appendTime = (startMs: number, seq: number, i: number, perRequest: number): string =>
  new Date(startMs + seq * perRequest + i).toISOString();

/** The body of POST /temporal/entities/{id}/attrs for request `seq`: `perRequest` instances of `power`. */
export function appendBody(seq: number, perRequest: number, startMs: number): string {
  const list = Array.from({ length: perRequest }, (_, i) =>
    instance(reading(seq * perRequest + i), appendTime(startMs, seq, i, perRequest)),
  );
  return JSON.stringify({ [ATTR]: list });
}

/** Names of the attributes an entity update (b) sets: `m0` … `m<n-1>`. */
export const patchAttrNames = (n: number): string[] => Array.from({ length: n }, (_, i) => `m${i}`);

/** The body of PATCH /entities/{id}/attrs for update `seq`: every attribute a new value. */
export function patchBody(seq: number, attrs: number): string {
  return JSON.stringify(
    Object.fromEntries(
      patchAttrNames(attrs).map((name, i) => [name, { type: 'Property', value: reading(seq * attrs + i) }]),
    ),
  );
}

/** The columns of twin.attr_instances, in the order `instanceRow` gives them. */
export const INSTANCE_COLUMNS =
  'tenant, entity_id, attr, dataset_id, instance_id, ts, observed_at, created_at, modified_at, num, value, deleted';

/** One row of twin.attr_instances for a Property instance, as `instanceRiders` builds it. */
export function instanceRow(
  entityId: string,
  attrIri: string,
  value: number,
  observedAt: string | undefined,
  recorded: string,
): unknown[] {
  const stored = observedAt === undefined ? { type: 'Property', value } : instance(value, observedAt);
  return [
    '',
    entityId,
    attrIri,
    '',
    randomUUID(),
    observedAt ?? recorded,
    observedAt ?? null,
    recorded,
    recorded,
    value,
    JSON.stringify(stored),
    false,
  ];
}

/** `($1, …, $12), ($13, …)`: placeholders of a multi-row VALUES list of `rows` instance rows. */
export function valuesPlaceholders(rows: number, from = 0): string {
  const width = 12;
  return Array.from(
    { length: rows },
    (_, r) => `(${Array.from({ length: width }, (_, c) => `$${from + r * width + c + 1}`).join(', ')})`,
  ).join(', ');
}
