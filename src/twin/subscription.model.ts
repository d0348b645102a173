/**
 * NGSI-LD subscriptions on the way in and out (ETSI GS CIM 009 v1.8 §5.2.12 Subscription,
 * §5.2.14 NotificationParams, §5.2.15 Endpoint): a subscription body validated into its stored
 * form (expanded IRIs, the endpoint checked by the SSRF guard, q and geoQ compiled once to prove
 * them) and rendered back with its notification status. Pure functions: every refusal is
 * BadRequestData naming the member, before any SQL.
 */
import { randomUUID } from 'node:crypto';
import {
  checkAttributeName,
  checkEntityId,
  clip,
  isDateTime,
  isPlainObject,
  isUri,
  parseTypes,
  type Terms,
} from './entity.model.ts';
import { NgsiError } from './errors.ts';
import { parseGeoQuery, type GeoQuery } from './geo.ts';
import { checkNotificationHeaders, parseEndpoint } from './notify.transport.ts';
import { parseScopeQ, qToSql } from './query.lang.ts';

const bad = (detail: string): NgsiError => new NgsiError('BadRequestData', detail);

/** What changes a subscription is told about (§5.2.12 notificationTrigger). */
export const TRIGGERS = [
  'entityCreated',
  'entityUpdated',
  'entityDeleted',
  'attributeCreated',
  'attributeUpdated',
  'attributeDeleted',
] as const;
export type Trigger = (typeof TRIGGERS)[number];
const DEFAULT_TRIGGERS: Trigger[] = ['attributeCreated', 'attributeUpdated'];

/** One entity selector of a subscription (type expanded). */
export interface SubscriptionEntity {
  id?: string;
  idPattern?: string;
  type: string;
}

/** A subscription as stored (expanded IRIs; the @context it was made with, to render notifications). */
export interface StoredSubscription {
  id: string;
  subscriptionName?: string;
  description?: string;
  entities?: SubscriptionEntity[];
  watchedAttributes?: string[];
  notificationTrigger: Trigger[];
  timeInterval?: number;
  q?: string;
  geoQ?: { georel: string; geometry: string; coordinates: unknown; geoproperty?: string };
  scopeQ?: string;
  isActive: boolean;
  expiresAt?: string;
  throttling?: number;
  lang?: string;
  notification: {
    attributes?: string[];
    format: 'normalized' | 'keyValues' | 'concise';
    sysAttrs: boolean;
    endpoint: {
      uri: string;
      accept: 'application/json' | 'application/ld+json';
      receiverInfo?: { key: string; value: string }[];
      notifierInfo?: { key: string; value: string }[];
    };
  };
  /** The user @context sources of the request that made it (none: core only). */
  context: (string | object)[];
}

const SUBSCRIPTION_MEMBERS = new Set([
  'id',
  'type',
  'subscriptionName',
  'description',
  'entities',
  'watchedAttributes',
  'notificationTrigger',
  'timeInterval',
  'q',
  'geoQ',
  'scopeQ',
  'isActive',
  'notification',
  'expiresAt',
  'throttling',
  'lang',
  'jsonldContext',
  'status',
  'createdAt',
  'modifiedAt',
  '@context',
]);

const MAX_ENTITIES = 100;
const MAX_NAMES = 100;
/** Longest periodic interval and throttling (a year, seconds). */
const MAX_SECONDS = 366 * 86_400;

function text(v: unknown, where: string, max = 1024): string {
  if (typeof v !== 'string' || v === '' || v.length > max)
    throw bad(`${where}: text of 1 to ${max} characters`);
  return v;
}

function seconds(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > MAX_SECONDS)
    throw bad(`${where}: a number of seconds greater than 0 and at most ${MAX_SECONDS}`);
  return v;
}

function names(v: unknown, where: string, terms: Terms): string[] {
  if (!Array.isArray(v) || v.length === 0 || v.length > MAX_NAMES)
    throw bad(`${where}: a list of 1 to ${MAX_NAMES} attribute names`);
  return [
    ...new Set(
      v.map((n, i) => {
        if (typeof n !== 'string') throw bad(`${where}[${i}]: an attribute name`);
        return terms.expand(checkAttributeName(n, `${where}[${i}]`));
      }),
    ),
  ];
}

function keyValues(v: unknown, where: string): { key: string; value: string }[] {
  if (!Array.isArray(v) || v.length > 32) throw bad(`${where}: a list of at most 32 {key, value} pairs`);
  return v.map((kv, i) => {
    if (!isPlainObject(kv) || Object.keys(kv).some((k) => k !== 'key' && k !== 'value'))
      throw bad(`${where}[${i}]: an object with key and value`);
    return {
      key: text(kv['key'], `${where}[${i}].key`, 256),
      value: text(kv['value'], `${where}[${i}].value`, 4096),
    };
  });
}

function checkPattern(p: unknown, where: string): string {
  const s = text(p, where, 256);
  try {
    new RegExp(s, 'u');
  } catch {
    throw bad(`${where}: "${clip(s)}" is not a regular expression`);
  }
  return s;
}

/**
 * Validates a subscription (create: the whole body; update: `patch` merged into `base`) into its
 * stored form. `allowPrivate` is the SSRF guard's setting for the endpoint.
 */
export function parseSubscription(
  raw: unknown,
  options: {
    terms: Terms;
    context: (string | object)[];
    allowPrivate: boolean;
    now: Date;
    base?: StoredSubscription;
  },
): StoredSubscription {
  if (!isPlainObject(raw)) throw bad('A subscription must be a JSON object');
  for (const k of Object.keys(raw))
    if (!SUBSCRIPTION_MEMBERS.has(k)) throw bad(`${clip(k)}: not a member of a subscription`);
  const { terms, base } = options;
  if (raw['type'] !== undefined && raw['type'] !== 'Subscription') throw bad('type: must be "Subscription"');
  if (!base && raw['type'] === undefined) throw bad('type: required ("Subscription")');
  if (base && raw['id'] !== undefined && raw['id'] !== base.id) throw bad('id: cannot be changed');
  if (raw['jsonldContext'] !== undefined && !isUri(raw['jsonldContext'])) throw bad('jsonldContext: a URI');
  const has = (k: string) => raw[k] !== undefined;
  const out: StoredSubscription = base
    ? structuredClone(base)
    : {
        id: raw['id'] === undefined ? `urn:ngsi-ld:Subscription:${randomUUID()}` : checkEntityId(raw['id']),
        notificationTrigger: DEFAULT_TRIGGERS,
        isActive: true,
        notification: undefined as unknown as StoredSubscription['notification'],
        context: options.context,
      };
  if (base) out.context = options.context.length > 0 ? options.context : base.context;
  // A member sent as null is removed (PATCH); the optional members are the only ones cleared.
  const clear = (k: keyof StoredSubscription) => {
    if (raw[k] === null) {
      Reflect.deleteProperty(out, k);
      return true;
    }
    return false;
  };
  if (has('subscriptionName') && !clear('subscriptionName'))
    out.subscriptionName = text(raw['subscriptionName'], 'subscriptionName', 256);
  if (has('description') && !clear('description'))
    out.description = text(raw['description'], 'description', 4096);
  if (has('entities') && !clear('entities')) {
    const list = raw['entities'];
    if (!Array.isArray(list) || list.length === 0 || list.length > MAX_ENTITIES)
      throw bad(`entities: a list of 1 to ${MAX_ENTITIES} entity selectors`);
    out.entities = list.map((s, i) => {
      if (!isPlainObject(s)) throw bad(`entities[${i}]: an object with type and optionally id or idPattern`);
      for (const k of Object.keys(s))
        if (!['id', 'idPattern', 'type'].includes(k))
          throw bad(`entities[${i}].${clip(k)}: not a member of an entity selector`);
      if (s['type'] === undefined) throw bad(`entities[${i}].type: required`);
      const types = parseTypes(s['type'], terms, `entities[${i}].type`);
      if (types.length !== 1) throw bad(`entities[${i}].type: one type`);
      if (s['id'] !== undefined && s['idPattern'] !== undefined)
        throw bad(`entities[${i}]: id and idPattern exclude each other`);
      const sel: SubscriptionEntity = { type: types[0] as string };
      if (s['id'] !== undefined) sel.id = checkEntityId(s['id'], `entities[${i}].id`);
      if (s['idPattern'] !== undefined)
        sel.idPattern = checkPattern(s['idPattern'], `entities[${i}].idPattern`);
      return sel;
    });
  }
  if (has('watchedAttributes') && !clear('watchedAttributes'))
    out.watchedAttributes = names(raw['watchedAttributes'], 'watchedAttributes', terms);
  if (has('notificationTrigger')) {
    const list = raw['notificationTrigger'];
    if (!Array.isArray(list) || list.length === 0) throw bad('notificationTrigger: a list of triggers');
    out.notificationTrigger = [
      ...new Set(
        list.map((x, i) => {
          if (!(TRIGGERS as readonly unknown[]).includes(x))
            throw bad(`notificationTrigger[${i}]: one of ${TRIGGERS.join(', ')}`);
          return x as Trigger;
        }),
      ),
    ];
  }
  if (has('timeInterval') && !clear('timeInterval'))
    out.timeInterval = seconds(raw['timeInterval'], 'timeInterval');
  if (has('throttling') && !clear('throttling')) out.throttling = seconds(raw['throttling'], 'throttling');
  if (has('q') && !clear('q')) {
    out.q = text(raw['q'], 'q', 4096);
    try {
      qToSql(out.q, (t) => terms.expand(t));
    } catch (e) {
      throw bad(`q: ${e instanceof NgsiError ? e.detail : 'not a valid query'}`);
    }
  }
  if (has('scopeQ') && !clear('scopeQ')) {
    out.scopeQ = text(raw['scopeQ'], 'scopeQ', 1024);
    parseScopeQ(out.scopeQ);
  }
  if (has('geoQ') && !clear('geoQ')) {
    const g = raw['geoQ'];
    if (!isPlainObject(g)) throw bad('geoQ: an object with georel, geometry and coordinates');
    for (const k of Object.keys(g))
      if (!['georel', 'geometry', 'coordinates', 'geoproperty'].includes(k))
        throw bad(`geoQ.${clip(k)}: not a member of geoQ`);
    const parsed = parseGeoQuery(
      {
        georel: g['georel'],
        geometry: g['geometry'],
        coordinates: g['coordinates'],
        geoproperty: g['geoproperty'],
      },
      'geoQ.',
    );
    if (!parsed) throw bad('geoQ: georel, geometry and coordinates are required');
    // Kept as sent (parseGeoQuery has checked each member is valid text) to be shown back as given.
    out.geoQ = {
      georel: g['georel'] as string,
      geometry: g['geometry'] as string,
      coordinates: g['coordinates'],
      ...(g['geoproperty'] === undefined ? {} : { geoproperty: parsed.geoproperty }),
    };
  }
  if (has('isActive')) {
    if (typeof raw['isActive'] !== 'boolean') throw bad('isActive: true or false');
    out.isActive = raw['isActive'];
  }
  if (has('expiresAt') && !clear('expiresAt')) {
    if (!isDateTime(raw['expiresAt'])) throw bad('expiresAt: an ISO 8601 date-time');
    const at = new Date(raw['expiresAt']);
    if (at.getTime() <= options.now.getTime()) throw bad('expiresAt: must be in the future');
    out.expiresAt = at.toISOString();
  }
  if (has('lang') && !clear('lang')) out.lang = text(raw['lang'], 'lang', 256);
  if (has('notification'))
    out.notification = parseNotification(raw['notification'], out.notification, options);
  if (!(out.notification as StoredSubscription['notification'] | undefined))
    throw bad('notification: required');

  if (out.timeInterval !== undefined && out.watchedAttributes !== undefined)
    throw bad('timeInterval: a periodic subscription has no watchedAttributes');
  if (out.timeInterval !== undefined && out.throttling !== undefined)
    throw bad('throttling: not with timeInterval (a periodic subscription is paced by its interval)');
  if (out.entities === undefined && out.watchedAttributes === undefined && out.timeInterval === undefined)
    throw bad('entities or watchedAttributes: at least one is required');
  if (out.timeInterval !== undefined && out.entities === undefined)
    throw bad('entities: required for a periodic subscription (timeInterval)');
  return out;
}

const FORMATS = ['normalized', 'keyValues', 'concise'] as const;

function parseNotification(
  raw: unknown,
  base: StoredSubscription['notification'] | undefined,
  options: { terms: Terms; allowPrivate: boolean },
): StoredSubscription['notification'] {
  if (!isPlainObject(raw)) throw bad('notification: an object with an endpoint');
  for (const k of Object.keys(raw))
    if (
      ![
        'attributes',
        'format',
        'sysAttrs',
        'endpoint',
        'status',
        'timesSent',
        'timesFailed',
        'lastNotification',
        'lastSuccess',
        'lastFailure',
      ].includes(k)
    )
      throw bad(`notification.${clip(k)}: not a member of notification parameters`);
  const out = base
    ? structuredClone(base)
    : ({ format: 'normalized', sysAttrs: false } as StoredSubscription['notification']);
  if (raw['attributes'] !== undefined)
    out.attributes = names(raw['attributes'], 'notification.attributes', options.terms);
  if (raw['format'] !== undefined) {
    if (!(FORMATS as readonly unknown[]).includes(raw['format']))
      throw bad(`notification.format: one of ${FORMATS.join(', ')}`);
    out.format = raw['format'] as (typeof FORMATS)[number];
  }
  if (raw['sysAttrs'] !== undefined) {
    if (typeof raw['sysAttrs'] !== 'boolean') throw bad('notification.sysAttrs: true or false');
    out.sysAttrs = raw['sysAttrs'];
  }
  const ep = raw['endpoint'];
  if (ep === undefined) {
    if (!base) throw bad('notification.endpoint: required');
    return out;
  }
  if (!isPlainObject(ep)) throw bad('notification.endpoint: an object with uri');
  for (const k of Object.keys(ep))
    if (!['uri', 'accept', 'receiverInfo', 'notifierInfo', 'timeout', 'cooldown'].includes(k))
      throw bad(`notification.endpoint.${clip(k)}: not a member of an endpoint`);
  const endpoint = parseEndpoint(ep['uri'], {
    allowPrivate: options.allowPrivate,
    path: 'notification.endpoint.uri',
  });
  const accept = ep['accept'] ?? 'application/json';
  if (accept !== 'application/json' && accept !== 'application/ld+json')
    throw bad('notification.endpoint.accept: application/json or application/ld+json');
  const result: StoredSubscription['notification']['endpoint'] = { uri: endpoint.uri, accept };
  if (ep['receiverInfo'] !== undefined) {
    result.receiverInfo = keyValues(ep['receiverInfo'], 'notification.endpoint.receiverInfo');
    checkNotificationHeaders(Object.fromEntries(result.receiverInfo.map((kv) => [kv.key, kv.value])));
  }
  if (ep['notifierInfo'] !== undefined) {
    result.notifierInfo = keyValues(ep['notifierInfo'], 'notification.endpoint.notifierInfo');
    for (const [i, kv] of result.notifierInfo.entries()) {
      if (kv.key === 'MQTT-Version' && kv.value !== 'mqtt3.1.1' && kv.value !== 'mqtt5.0')
        throw bad(`notification.endpoint.notifierInfo[${i}]: MQTT-Version is mqtt3.1.1 or mqtt5.0`);
      if (kv.key === 'MQTT-QoS' && !['0', '1', '2'].includes(kv.value))
        throw bad(`notification.endpoint.notifierInfo[${i}]: MQTT-QoS is 0, 1 or 2`);
    }
  }
  out.endpoint = result;
  return out;
}

/** The parsed geoQ of a stored subscription (validated when it was stored). */
export function geoQueryOf(s: StoredSubscription): GeoQuery | undefined {
  return s.geoQ
    ? parseGeoQuery({
        georel: s.geoQ.georel,
        geometry: s.geoQ.geometry,
        coordinates: s.geoQ.coordinates,
        geoproperty: s.geoQ.geoproperty,
      })
    : undefined;
}

/** Notification status as the API shows it (§5.2.14). */
export interface NotificationStatus {
  timesSent: number;
  timesFailed: number;
  lastNotification?: string | undefined;
  lastSuccess?: string | undefined;
  lastFailure?: string | undefined;
  lastFailureReason?: string | undefined;
}

/** A stored subscription rendered for the API, names compacted with the caller's @context. */
export function renderSubscription(
  s: StoredSubscription,
  terms: Terms,
  meta: NotificationStatus & { createdAt: string; modifiedAt: string; sysAttrs: boolean; now: Date },
): Record<string, unknown> {
  const c = (iri: string) => terms.compact(iri);
  const expired = s.expiresAt !== undefined && Date.parse(s.expiresAt) <= meta.now.getTime();
  const failing =
    meta.lastFailure !== undefined && (meta.lastSuccess === undefined || meta.lastFailure > meta.lastSuccess);
  const out: Record<string, unknown> = { id: s.id, type: 'Subscription' };
  if (s.subscriptionName !== undefined) out['subscriptionName'] = s.subscriptionName;
  if (s.description !== undefined) out['description'] = s.description;
  if (s.entities) out['entities'] = s.entities.map((e) => ({ ...e, type: c(e.type) }));
  if (s.watchedAttributes) out['watchedAttributes'] = s.watchedAttributes.map(c);
  out['notificationTrigger'] = s.notificationTrigger;
  if (s.timeInterval !== undefined) out['timeInterval'] = s.timeInterval;
  if (s.q !== undefined) out['q'] = s.q;
  if (s.geoQ !== undefined) out['geoQ'] = s.geoQ;
  if (s.scopeQ !== undefined) out['scopeQ'] = s.scopeQ;
  if (s.lang !== undefined) out['lang'] = s.lang;
  out['isActive'] = s.isActive;
  if (s.expiresAt !== undefined) out['expiresAt'] = s.expiresAt;
  if (s.throttling !== undefined) out['throttling'] = s.throttling;
  out['status'] = expired ? 'expired' : s.isActive ? 'active' : 'paused';
  out['notification'] = {
    ...(s.notification.attributes ? { attributes: s.notification.attributes.map(c) } : {}),
    format: s.notification.format,
    ...(s.notification.sysAttrs ? { sysAttrs: true } : {}),
    endpoint: s.notification.endpoint,
    status: failing ? 'failed' : 'ok',
    timesSent: meta.timesSent,
    timesFailed: meta.timesFailed,
    ...(meta.lastNotification ? { lastNotification: meta.lastNotification } : {}),
    ...(meta.lastSuccess ? { lastSuccess: meta.lastSuccess } : {}),
    ...(meta.lastFailure ? { lastFailure: meta.lastFailure } : {}),
    ...(meta.lastFailureReason ? { lastFailureReason: meta.lastFailureReason } : {}),
  };
  if (meta.sysAttrs) {
    out['createdAt'] = meta.createdAt;
    out['modifiedAt'] = meta.modifiedAt;
  }
  return out;
}
