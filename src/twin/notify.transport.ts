/**
 * Delivery of one NGSI-LD notification to a subscription's endpoint (ETSI GS CIM 009 §5.2.15
 * `notification.endpoint`, HTTP binding and the MQTT binding of §7.2), behind an SSRF guard.
 *
 * The subscription engine decides what to send and when to retry; this module only validates an
 * endpoint URI and performs one attempt, reporting every failure as an outcome (never a throw) with
 * a short client-safe reason and whether retrying can help.
 *
 * SSRF guard (`TWIN_NOTIFY_PRIVATE=false`): literal non-public IPs and `localhost` names are refused
 * when a subscription is validated; host names are resolved at delivery time and a connection only
 * ever goes to an address that was checked — HTTP through the agents' `lookup`, MQTT by resolving
 * first and connecting to the checked address — so DNS rebinding between check and connect cannot
 * reach an internal service.
 */
import { randomBytes } from 'node:crypto';
import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  connect as connectMqtt,
  type IClientOptions,
  type IClientPublishOptions,
  type MqttClient,
} from 'mqtt';
import { NgsiError } from './errors.ts';

// ---------------------------------------------------------------------------------------------
// Types

export type EndpointScheme = 'http' | 'https' | 'mqtt' | 'mqtts';

/** A validated notification endpoint. */
export interface Endpoint {
  /** The URI as the subscription gave it. */
  uri: string;
  scheme: EndpointScheme;
  /** Parsed URI; for mqtt(s) the host is canonicalised as for http (lower case, IPv4 normalised). */
  url: URL;
  /** MQTT topic (path without leading '/', percent-decoded), for mqtt(s) */
  topic?: string;
}

export interface OutgoingNotification {
  /** The serialized notification (JSON text) */
  body: string;
  contentType: 'application/json' | 'application/ld+json';
  /** receiverInfo key/values → HTTP headers; for MQTT they go into the message's metadata */
  headers: Record<string, string>;
  /** notifierInfo for MQTT: MQTT-Version ('mqtt3.1.1' | 'mqtt5.0'), MQTT-QoS (0|1|2) */
  mqtt?: { version?: 'mqtt3.1.1' | 'mqtt5.0'; qos?: 0 | 1 | 2 };
}

export interface SendOutcome {
  ok: boolean;
  /** HTTP status when one came back */
  status?: number;
  /** short client-safe reason on failure, e.g. 'HTTP 500', 'timeout after 5000 ms', 'connection closed (ECONNRESET)', 'address 10.0.0.1 is not public (TWIN_NOTIFY_PRIVATE=false)' */
  error?: string;
  /** true when retrying cannot help (e.g. blocked address, 4xx other than 408/429) */
  permanent?: boolean;
  /** How long the receiver asked to wait (HTTP Retry-After on a retryable status), capped at one day. */
  retryAfterMs?: number;
  durationMs: number;
}

export interface Notifier {
  /** Delivers one notification; resolves with the outcome, never rejects. */
  send(endpoint: Endpoint, message: OutgoingNotification): Promise<SendOutcome>;
  /** Ends every connection (HTTP agents, MQTT clients); later sends fail with 'notifier closed'. */
  close(): Promise<void>;
}

type Result = Omit<SendOutcome, 'durationMs'>;

// ---------------------------------------------------------------------------------------------
// Limits and defaults

const MAX_URI_LENGTH = 2048;
const DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024;
/** Connections kept per receiver host; more concurrent sends to one host wait for a socket. */
const MAX_SOCKETS_PER_HOST = 64;
const MAX_FREE_SOCKETS_PER_HOST = 16;
/** Idle keep-alive sockets close before the common 5 s server keep-alive, to avoid reuse races. */
const FREE_SOCKET_TIMEOUT_MS = 4_000;
const USER_AGENT = 'pujiang';
/** receiverInfo is user data copied into every request: bounded so it cannot bloat each one. */
const MAX_HEADER_BYTES = 16 * 1024;
const MAX_RETRY_AFTER_MS = 24 * 3600 * 1000;
/** CIM 009 §7.2 Table 7.2-1: MQTT-Version defaults to mqtt5.0, MQTT-QoS to 0. */
const DEFAULT_MQTT_VERSION = 'mqtt5.0';
const MQTT_KEEPALIVE_S = 60;
/** A broker connection unused this long is closed (subscriptions to many brokers hold no sockets). */
const MQTT_IDLE_MS = 5 * 60 * 1000;
const MQTT_SWEEP_MS = 60 * 1000;
/** How long close() waits for one MQTT client to finish closing. */
const MQTT_END_WAIT_MS = 1_000;

const SCHEMES: readonly EndpointScheme[] = ['http', 'https', 'mqtt', 'mqtts'];
const PRIVATE_HINT = '(TWIN_NOTIFY_PRIVATE=false)';

// ---------------------------------------------------------------------------------------------
// Addresses

/** IPv4 ranges that are not public unicast (IANA special-purpose registry, RFC 6890 and successors). */
const V4_NOT_PUBLIC: readonly (readonly [string, number])[] = [
  ['0.0.0.0', 8], // "this network", unspecified
  ['10.0.0.0', 8], // private
  ['100.64.0.0', 10], // CGNAT shared address space
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local, incl. cloud metadata 169.254.169.254
  ['172.16.0.0', 12], // private
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation TEST-NET-1
  ['192.88.99.0', 24], // 6to4 relay anycast
  ['192.168.0.0', 16], // private
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation TEST-NET-2
  ['203.0.113.0', 24], // documentation TEST-NET-3
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, incl. broadcast 255.255.255.255
];

/**
 * Special ranges inside 2000::/3, the only IPv6 block allocated as global unicast; everything
 * outside it (::, ::1, 100::/64, fc00::/7, fe80::/10, ff00::/8, …) is refused by that test alone.
 */
const V6_NOT_PUBLIC_IN_GLOBAL: readonly (readonly [string, number])[] = [
  ['2001::', 32], // Teredo: tunnels to an embedded, possibly internal, IPv4
  ['2001:2::', 48], // benchmarking
  ['2001:10::', 28], // ORCHID (deprecated)
  ['2001:20::', 28], // ORCHIDv2: identifiers, not routable
  ['2001:db8::', 32], // documentation
  ['3fff::', 20], // documentation (RFC 9637)
];

const v4Ranges = V4_NOT_PUBLIC.map(([base, bits]) => {
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return { base: (v4ToInt(base) & mask) >>> 0, mask };
});

const v6Ranges = V6_NOT_PUBLIC_IN_GLOBAL.map(([base, bits]) => {
  const groups = parseV6(base);
  // The table above is constant and valid; a typo there should fail at start-up, loudly.
  if (!groups) throw new Error(`bad IPv6 range ${base}`);
  return { groups, bits };
});

function v4ToInt(ip: string): number {
  let n = 0;
  for (const part of ip.split('.')) n = n * 256 + Number(part);
  return n >>> 0;
}

function isPublicV4(n: number): boolean {
  return !v4Ranges.some((r) => (n & r.mask) >>> 0 === r.base);
}

/** Eight 16-bit groups of a syntactically valid IPv6 address (`isIP` checked it), or undefined. */
function parseV6(ip: string): number[] | undefined {
  let text = ip;
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    if (isIP(tail) !== 4) return undefined;
    const v = v4ToInt(tail);
    text = `${text.slice(0, lastColon + 1)}${(v >>> 16).toString(16)}:${(v & 0xffff).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const groupsOf = (s: string | undefined) => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const head = groupsOf(halves[0]);
  const rest = groupsOf(halves[1]);
  const fill = 8 - head.length - rest.length;
  if (halves.length === 1 ? fill !== 0 : fill < 1) return undefined;
  const groups = [...head, ...new Array<number>(halves.length === 1 ? 0 : fill).fill(0), ...rest];
  return groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : undefined;
}

function inV6Prefix(groups: readonly number[], prefix: readonly number[], bits: number): boolean {
  for (let i = 0; i < 8 && bits > 0; i++, bits -= 16) {
    const mask = bits >= 16 ? 0xffff : (0xffff << (16 - bits)) & 0xffff;
    if (((groups[i] ?? 0) & mask) !== ((prefix[i] ?? 0) & mask)) return false;
  }
  return true;
}

/** The IPv4 address in groups 6 and 7 (IPv4-mapped, NAT64), or in groups 1 and 2 (6to4). */
const embeddedV4 = (hi: number | undefined, lo: number | undefined): number =>
  (((hi ?? 0) << 16) | (lo ?? 0)) >>> 0;

/** True when an IP address (v4 or v6, incl. IPv4-mapped v6) is a public unicast address. */
export function isPublicAddress(ip: string): boolean {
  // A zone id (fe80::1%eth0) only qualifies a link-local address; judge the address itself.
  const zone = ip.indexOf('%');
  const address = zone === -1 ? ip : ip.slice(0, zone);
  const kind = isIP(address);
  if (kind === 4) return isPublicV4(v4ToInt(address));
  if (kind !== 6) return false;
  const g = parseV6(address);
  if (!g) return false;
  const zeros = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  // ::ffff:a.b.c.d reaches the IPv4 host on a dual-stack socket: judge the IPv4.
  if (zeros(0, 5) && g[5] === 0xffff) return isPublicV4(embeddedV4(g[6], g[7]));
  // NAT64 well-known prefix 64:ff9b::/96 translates to the embedded IPv4.
  if (g[0] === 0x64 && g[1] === 0xff9b && zeros(2, 6)) return isPublicV4(embeddedV4(g[6], g[7]));
  // 6to4 2002::/16 tunnels to the embedded IPv4.
  if (g[0] === 0x2002) return isPublicV4(embeddedV4(g[1], g[2]));
  if (((g[0] ?? 0) & 0xe000) !== 0x2000) return false;
  return !v6Ranges.some((r) => inV6Prefix(g, r.groups, r.bits));
}

/** `[::1]` → `::1`: URL keeps IPv6 literals bracketed, sockets and `isIP` want them bare. */
const bareHost = (hostname: string): string =>
  hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;

/** RFC 6761: `localhost` and `*.localhost` name the loopback, whatever DNS says. */
function isLocalhostName(host: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  return h === 'localhost' || h.endsWith('.localhost');
}

const notPublic = (address: string) => `address ${address} is not public ${PRIVATE_HINT}`;

/** Raised by the guarded resolver; carries the refused address for the outcome. */
class BlockedAddressError extends Error {
  readonly code = 'EPUJIANG_NOT_PUBLIC';
  constructor(readonly address: string) {
    super(notPublic(address));
    this.name = 'BlockedAddressError';
  }
}

class TimeoutError extends Error {
  constructor(readonly ms: number) {
    super(`timeout after ${ms} ms`);
    this.name = 'TimeoutError';
  }
}

/** A connection that ended without a more precise error (MQTT stream closed, notifier closed). */
class ClosedError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'ClosedError';
  }
}

/** Resolves a name to all its addresses; keeps only public ones unless private ones are allowed. */
function resolveChecked(
  hostname: string,
  options: { allowPrivate: boolean; family?: number | 'IPv4' | 'IPv6'; hints?: number },
  callback: (err: NodeJS.ErrnoException | null, addresses: dns.LookupAddress[]) => void,
): void {
  dns.lookup(
    hostname,
    {
      all: true,
      family: options.family ?? 0,
      ...(options.hints === undefined ? {} : { hints: options.hints }),
    },
    (err, addresses) => {
      // On error `addresses` is not an array; touching it would throw inside a dns callback.
      if (err) {
        callback(err, []);
        return;
      }
      const usable = options.allowPrivate ? addresses : addresses.filter((a) => isPublicAddress(a.address));
      const first = addresses[0];
      if (usable.length > 0) callback(null, usable);
      else if (first) callback(new BlockedAddressError(first.address), []);
      else callback(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }), []);
    },
  );
}

/**
 * The agents' resolver: sockets connect to what this returns, so the check and the connection use
 * the same addresses. Node asks for one address or, with autoSelectFamily, for all of them.
 */
function guardedLookup(allowPrivate: boolean): LookupFunction {
  return (hostname, options, callback) => {
    resolveChecked(
      hostname,
      {
        allowPrivate,
        ...(options.family === undefined ? {} : { family: options.family }),
        ...(options.hints === undefined ? {} : { hints: options.hints }),
      },
      (err, addresses) => {
        const first = addresses[0];
        if (err || !first) callback(err ?? new Error('no address'), []);
        else if (options.all) callback(null, addresses);
        else callback(null, first.address, first.family);
      },
    );
  };
}

// ---------------------------------------------------------------------------------------------
// Endpoint validation

function isScheme(s: string): s is EndpointScheme {
  return (SCHEMES as readonly string[]).includes(s);
}

/** The port of an authority the URL parser refused, when that port is the reason. */
function badPortOf(uri: string): boolean {
  const m = /^[a-z][a-z0-9+.-]*:\/\/(?:[^/?#@]*@)?(?:\[[^\]]*\]|[^/?#:]*):([^/?#]*)/i.exec(uri);
  if (!m) return false;
  const port = m[1] ?? '';
  return port !== '' && (!/^\d+$/.test(port) || Number(port) > 65535);
}

function decodes(s: string): boolean {
  try {
    decodeURIComponent(s);
    return true;
  } catch {
    return false;
  }
}

/** Validates a subscription's endpoint URI (NGSI-LD notification.endpoint.uri); throws NgsiError('BadRequestData', '<path>: <reason>'). */
export function parseEndpoint(uri: unknown, options: { allowPrivate: boolean; path?: string }): Endpoint {
  const path = options.path ?? 'notification.endpoint.uri';
  const bad = (reason: string) => new NgsiError('BadRequestData', `${path}: ${reason}`);
  if (typeof uri !== 'string') throw bad('must be a string (an absolute URI)');
  if (uri === '') throw bad('must not be empty');
  if (uri.length > MAX_URI_LENGTH) throw bad(`longer than ${MAX_URI_LENGTH} characters`);
  // The URL parser silently drops tabs and newlines and trims spaces: refuse rather than deliver
  // somewhere other than what the subscription shows.
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (/[\u0000-\u0020\u007f]/.test(uri)) throw bad('must not contain spaces or control characters');
  const schemeMatch = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(uri);
  const scheme = schemeMatch?.[1]?.toLowerCase();
  if (scheme === undefined) throw bad('not an absolute URI');
  if (!isScheme(scheme)) throw bad(`scheme "${scheme}" is not supported (http, https, mqtt or mqtts)`);
  const isMqtt = scheme === 'mqtt' || scheme === 'mqtts';
  // Special schemes accept "http:host" and backslashes; an endpoint must spell its authority.
  if (uri.slice(scheme.length + 1, scheme.length + 3) !== '//') throw bad('has no host (scheme://host/…)');
  if (uri.includes('#')) {
    throw bad(isMqtt ? 'MQTT topic must not contain wildcards (+ or #)' : 'must not have a fragment');
  }
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw bad(badPortOf(uri) ? 'port must be 1-65535' : 'not a valid absolute URI');
  }
  if (url.hostname === '') throw bad('has no host (scheme://host/…)');
  if (url.port === '0') throw bad('port must be 1-65535');
  if (!isMqtt && (url.username !== '' || url.password !== '')) {
    throw bad(
      'credentials in the URI are not allowed for http(s); send them in receiverInfo (e.g. Authorization)',
    );
  }
  if (isMqtt) {
    // mqtt: is not a WHATWG special scheme, so its host is opaque (case kept, 0x7f.1 not read as
    // an IPv4): canonicalise it as for http so the checks below and the connection agree.
    try {
      url.hostname = new URL(`http://${url.hostname}/`).hostname;
    } catch {
      throw bad(`invalid host "${url.hostname}"`);
    }
  }
  const host = bareHost(url.hostname);
  if (!options.allowPrivate) {
    if (isIP(host) !== 0) {
      if (!isPublicAddress(host)) throw bad(notPublic(host));
    } else if (isLocalhostName(host)) {
      throw bad(`host ${host} is not public ${PRIVATE_HINT}`);
    }
  }
  if (!isMqtt) return { uri, scheme, url };

  if (url.search !== '') throw bad('MQTT endpoint must not have a query');
  if (!decodes(url.username) || !decodes(url.password)) {
    throw bad('MQTT credentials have malformed percent-encoding');
  }
  const rawTopic = url.pathname.slice(1);
  if (!decodes(rawTopic)) throw bad('MQTT topic has malformed percent-encoding');
  const topic = decodeURIComponent(rawTopic);
  if (topic === '') throw bad('MQTT endpoint needs a topic (mqtt[s]://[user[:password]@]host[:port]/topic)');
  if (/[+#]/.test(topic)) throw bad('MQTT topic must not contain wildcards (+ or #)');
  if (topic.includes('\u0000')) throw bad('MQTT topic must not contain U+0000');
  if (topic.startsWith('$')) throw bad('MQTT topics starting with $ are reserved for brokers');
  return { uri, scheme, url, topic };
}

// ---------------------------------------------------------------------------------------------
// receiverInfo

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// RFC 9110 field-value: visible ASCII, obs-text, spaces and tabs; never CR, LF or other controls.
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** Framing and hop-by-hop headers the transport owns; receiverInfo must not override them. */
const RESERVED_HEADERS = new Set([
  'content-type',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'host',
  'upgrade',
  'te',
  'trailer',
  'expect',
  'proxy-connection',
]);

function headersProblem(headers: Record<string, string>): string | undefined {
  let bytes = 0;
  for (const [name, value] of Object.entries(headers)) {
    if (!HEADER_NAME.test(name))
      return `receiverInfo key ${JSON.stringify(name.slice(0, 64))} is not a header name`;
    if (RESERVED_HEADERS.has(name.toLowerCase())) return `receiverInfo key "${name}" is reserved`;
    // The record type says string; stored subscriptions are data, so check anyway.
    if (typeof value !== 'string' || !HEADER_VALUE.test(value)) {
      return `receiverInfo value of "${name}" has characters not allowed in a header`;
    }
    bytes += name.length + value.length + 4;
  }
  if (bytes > MAX_HEADER_BYTES) return `receiverInfo exceeds ${MAX_HEADER_BYTES} bytes`;
  return undefined;
}

/** Throws NgsiError('BadRequestData', '<path>: <reason>') when receiverInfo could not be sent as headers (what `send` would refuse as permanent). */
export function checkNotificationHeaders(
  headers: Record<string, string>,
  path = 'notification.endpoint.receiverInfo',
): void {
  const problem = headersProblem(headers);
  if (problem !== undefined) throw new NgsiError('BadRequestData', `${path}: ${problem}`);
}

// ---------------------------------------------------------------------------------------------
// Outcomes

const failure = (error: string, permanent = false): Result =>
  permanent ? { ok: false, error, permanent: true } : { ok: false, error };

function retryAfterMs(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  const ms = /^\d+$/.test(v) ? Number(v) * 1000 : Date.parse(v) - Date.now();
  return Number.isFinite(ms) ? Math.min(Math.max(0, ms), MAX_RETRY_AFTER_MS) : undefined;
}

function httpStatusResult(status: number, retryAfter: string | undefined): Result {
  if (status >= 200 && status < 300) return { ok: true, status };
  if (status >= 300 && status < 400) {
    return { ok: false, status, error: `HTTP ${status} (redirects are not followed)`, permanent: true };
  }
  if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
    return { ok: false, status, error: `HTTP ${status}`, permanent: true };
  }
  const wait = retryAfterMs(retryAfter);
  return {
    ok: false,
    status,
    error: `HTTP ${status}`,
    ...(wait === undefined ? {} : { retryAfterMs: wait }),
  };
}

function errorCode(e: unknown): string | number | undefined {
  if (e instanceof AggregateError) return errorCode(e.errors[0]);
  if (typeof e === 'object' && e !== null && 'code' in e) {
    const code = e.code;
    if (typeof code === 'string' || typeof code === 'number') return code;
  }
  return undefined;
}

/** A socket-level failure as a retryable outcome naming the error code, never its message. */
function networkFailure(e: unknown): Result {
  if (e instanceof BlockedAddressError) return failure(e.message, true);
  if (e instanceof TimeoutError || e instanceof ClosedError) return failure(e.message);
  const code = errorCode(e);
  const name = typeof code === 'string' ? code : 'unknown';
  switch (code) {
    case 'ECONNRESET':
    case 'EPIPE':
    case 'ECONNABORTED':
    case 'ERR_STREAM_PREMATURE_CLOSE':
      return failure(`connection closed (${name})`);
    case 'ECONNREFUSED':
      return failure(`connection refused (${name})`);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_FAIL':
    case 'EAI_NODATA':
    case 'ENODATA':
      return failure(`name not resolved (${name})`);
  }
  if (/CERT|TLS|SSL|SIG/.test(name)) return failure(`TLS error (${name})`);
  return failure(`network error (${name})`);
}

/** CONNACK codes (v3 1-5, v5 ≥128) that the same subscription would get again on every retry. */
const MQTT_PERMANENT_CONNACK = new Set([1, 4, 5, 132, 133, 134, 135, 138, 140]);
/** PUBACK/PUBREC codes that depend on the message or topic, not on the broker's state. */
const MQTT_PERMANENT_PUBLISH = new Set([135, 144, 149, 153]);

function mqttFailure(e: unknown): Result {
  const code = errorCode(e);
  if (typeof code === 'number' && e instanceof Error) {
    const connack = e.message.startsWith('Connection refused:');
    const reason = e.message.replace(/^(Connection refused|Publish error):\s*/, '').slice(0, 80);
    const what = connack ? 'connection' : 'publish';
    const permanent = (connack ? MQTT_PERMANENT_CONNACK : MQTT_PERMANENT_PUBLISH).has(code);
    return failure(`broker refused ${what}: ${reason} (code ${code})`, permanent);
  }
  if (e instanceof Error && code === undefined && !(e instanceof ClosedError || e instanceof TimeoutError)) {
    // mqtt.js errors without a code are its own protocol-level messages (no secrets in them).
    if (/connection closed|no connection/i.test(e.message)) return failure('connection closed');
    if (/connack timeout/i.test(e.message)) return failure('timeout waiting for the broker (CONNACK)');
    return failure(`MQTT error: ${e.message.slice(0, 80)}`);
  }
  return networkFailure(e);
}

// ---------------------------------------------------------------------------------------------
// Notifier

interface BrokerEntry {
  client: Promise<MqttClient>;
  lastUsed: number;
  inFlight: number;
}

/** Never throws from send: every failure is an outcome. */
export function createNotifier(options: {
  timeoutMs: number;
  allowPrivate: boolean;
  maxResponseBytes?: number;
}): Notifier {
  const { timeoutMs, allowPrivate } = options;
  const maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  const agentOptions = {
    keepAlive: true,
    maxSockets: MAX_SOCKETS_PER_HOST,
    maxFreeSockets: MAX_FREE_SOCKETS_PER_HOST,
    timeout: FREE_SOCKET_TIMEOUT_MS,
    scheduling: 'lifo' as const,
    lookup: guardedLookup(allowPrivate),
  };
  const httpAgent = new http.Agent(agentOptions);
  const httpsAgent = new https.Agent(agentOptions);
  const brokers = new Map<string, BrokerEntry>();
  const mqttClients = new Set<MqttClient>();
  let closed = false;
  let closing: Promise<void> | undefined;

  const sweeper = setInterval(() => {
    const now = Date.now();
    for (const [key, entry] of brokers) {
      if (entry.inFlight > 0 || now - entry.lastUsed < MQTT_IDLE_MS) continue;
      brokers.delete(key);
      entry.client.then(endClient, () => undefined);
    }
  }, MQTT_SWEEP_MS);
  // Housekeeping only: must not keep the process alive.
  sweeper.unref();

  function endClient(client: MqttClient): Promise<void> {
    mqttClients.delete(client);
    return new Promise((resolve) => {
      const wait = setTimeout(resolve, MQTT_END_WAIT_MS);
      wait.unref();
      // Forced: a graceful end waits for in-flight QoS>0 acks, which may never come.
      client.end(true, () => {
        clearTimeout(wait);
        resolve();
      });
    });
  }

  /** A blocked literal IP is refused before any socket exists (names are checked by the resolver). */
  function blockedLiteral(host: string): Result | undefined {
    if (allowPrivate || isIP(host) === 0 || isPublicAddress(host)) return undefined;
    return failure(notPublic(host), true);
  }

  function sendHttp(endpoint: Endpoint, message: OutgoingNotification): Promise<Result> {
    const problem = headersProblem(message.headers);
    if (problem !== undefined) return Promise.resolve(failure(problem, true));
    const host = bareHost(endpoint.url.hostname);
    const blocked = blockedLiteral(host);
    if (blocked) return Promise.resolve(blocked);
    const body = Buffer.from(message.body, 'utf8');
    const headers: http.OutgoingHttpHeaders = {
      'user-agent': USER_AGENT,
      ...message.headers,
      'content-type': message.contentType,
      'content-length': body.length,
    };
    const secure = endpoint.scheme === 'https';

    return new Promise<Result>((resolve) => {
      let settled = false;
      let answered: Result | undefined;
      const request = (secure ? https : http).request({
        host,
        port: endpoint.url.port === '' ? undefined : Number(endpoint.url.port),
        path: `${endpoint.url.pathname}${endpoint.url.search}`,
        method: 'POST',
        headers,
        agent: secure ? httpsAgent : httpAgent,
      });
      // Connect, response headers and body share one budget. Once the status is known it decides
      // the outcome: a receiver that answered 2xx and then stalls has still accepted.
      const timer = setTimeout(() => {
        finish(answered ?? failure(`timeout after ${timeoutMs} ms`));
        request.destroy();
      }, timeoutMs);
      function finish(r: Result): void {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(r);
      }
      // Stays attached after settling: socket errors after a timeout or destroy land here.
      request.on('error', (e) => {
        finish(answered ?? networkFailure(e));
      });
      request.on('response', (response) => {
        const result = httpStatusResult(response.statusCode ?? 0, response.headers['retry-after']);
        answered = result;
        let received = 0;
        response.on('data', (chunk: Buffer) => {
          received += chunk.length;
          // A larger answer is not read: the socket is dropped instead of reused.
          if (received > maxResponseBytes) {
            response.destroy();
            finish(result);
          }
        });
        response.on('end', () => {
          finish(result);
        });
        response.on('error', () => {
          finish(result);
        });
        response.on('close', () => {
          finish(result);
        });
      });
      request.end(body);
    });
  }

  /** The shared client for one broker and identity, connected (or failing) within the timeout. */
  function brokerClient(endpoint: Endpoint, version: 'mqtt3.1.1' | 'mqtt5.0'): BrokerEntry {
    const url = endpoint.url;
    const host = bareHost(url.hostname);
    const port = url.port === '' ? (endpoint.scheme === 'mqtts' ? 8883 : 1883) : Number(url.port);
    const username = decodeURIComponent(url.username);
    const password = decodeURIComponent(url.password);
    // The password is part of the key so a subscription with wrong credentials never rides on a
    // connection another subscription authenticated; the version because it is per connection.
    const key = JSON.stringify([endpoint.scheme, host, port, username, password, version]);
    const existing = brokers.get(key);
    if (existing) return existing;

    const forget = () => {
      if (brokers.get(key) === entry) brokers.delete(key);
    };
    const entry: BrokerEntry = {
      client: openBroker({ endpoint, host, port, username, password, version, forget }),
      lastUsed: Date.now(),
      inFlight: 0,
    };
    // Sends race this promise against their own deadline; a failure is theirs to report, and
    // this handler keeps a rejection nobody awaits any more from becoming unhandled.
    entry.client.catch(forget);
    brokers.set(key, entry);
    return entry;
  }

  async function openBroker(target: {
    endpoint: Endpoint;
    host: string;
    port: number;
    username: string;
    password: string;
    version: 'mqtt3.1.1' | 'mqtt5.0';
    forget: () => void;
  }): Promise<MqttClient> {
    const { endpoint, host, username, password } = target;
    const address = await resolveBroker(host);
    if (closed) throw new ClosedError('notifier closed');
    const clientOptions: IClientOptions = {
      protocol: endpoint.scheme === 'mqtts' ? 'mqtts' : 'mqtt',
      host: address,
      hostname: address,
      port: target.port,
      // TLS verifies the broker's certificate against its name, not the checked address.
      ...(endpoint.scheme === 'mqtts' && isIP(host) === 0 ? { servername: host } : {}),
      ...(username === '' ? {} : { username }),
      ...(password === '' ? {} : { password }),
      protocolVersion: target.version === 'mqtt3.1.1' ? 4 : 5,
      clientId: `pujiang-${randomBytes(8).toString('hex')}`,
      clean: true,
      keepalive: MQTT_KEEPALIVE_S,
      connectTimeout: timeoutMs,
      // No background reconnects: a lost connection is dropped and the next send opens a new one
      // (re-resolving and re-checking the broker's address).
      reconnectPeriod: 0,
      resubscribe: false,
      queueQoSZero: false,
    };
    const client = connectMqtt(clientOptions);
    mqttClients.add(client);
    // mqtt.js emits 'error' for connection and protocol failures; without a listener it would
    // throw. Failures reach senders through the promise below and the publish callbacks.
    client.on('error', () => undefined);
    client.on('close', () => {
      target.forget();
      void endClient(client);
    });
    await new Promise<void>((resolve, reject) => {
      // net has no connect timeout of its own and mqtt.js's only covers the CONNACK.
      const timer = setTimeout(() => {
        reject(new TimeoutError(timeoutMs));
        void endClient(client);
      }, timeoutMs);
      client.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
      client.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
        void endClient(client);
      });
      client.once('close', () => {
        clearTimeout(timer);
        reject(new ClosedError('connection closed'));
      });
    });
    return client;
  }

  function resolveBroker(host: string): Promise<string> {
    if (isIP(host) !== 0) {
      return allowPrivate || isPublicAddress(host)
        ? Promise.resolve(host)
        : Promise.reject(new BlockedAddressError(host));
    }
    return new Promise((resolve, reject) => {
      resolveChecked(host, { allowPrivate }, (err, addresses) => {
        // IPv4 first: brokers are often bound to 0.0.0.0 only while names resolve to ::1 too.
        const chosen = addresses.find((a) => a.family === 4) ?? addresses[0];
        if (err || !chosen) reject(err ?? new Error('no address'));
        else resolve(chosen.address);
      });
    });
  }

  async function sendMqtt(endpoint: Endpoint, message: OutgoingNotification): Promise<Result> {
    const problem = headersProblem(message.headers);
    if (problem !== undefined) return failure(problem, true);
    const topic = endpoint.topic;
    if (topic === undefined || topic === '') return failure('MQTT endpoint has no topic', true);
    // Typed, but read from stored notifierInfo by the caller: checked rather than trusted.
    const qos: unknown = message.mqtt?.qos ?? 0;
    const version: unknown = message.mqtt?.version ?? DEFAULT_MQTT_VERSION;
    if (qos !== 0 && qos !== 1 && qos !== 2) return failure('MQTT-QoS must be 0, 1 or 2', true);
    if (version !== 'mqtt3.1.1' && version !== 'mqtt5.0') {
      return failure('MQTT-Version must be mqtt3.1.1 or mqtt5.0', true);
    }
    let notification: unknown;
    try {
      notification = JSON.parse(message.body);
    } catch {
      return failure('notification body is not JSON', true);
    }
    const blocked = blockedLiteral(bareHost(endpoint.url.hostname));
    if (blocked) return blocked;
    // CIM 009 §7.2: one JSON object, the notification as "body" and everything HTTP would carry as
    // headers (Content-Type, Link, receiverInfo) as "metadata".
    const payload = JSON.stringify({
      metadata: { 'Content-Type': message.contentType, ...message.headers },
      body: notification,
    });

    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TimeoutError(timeoutMs)), timeoutMs);
    });
    const entry = brokerClient(endpoint, version);
    entry.inFlight++;
    entry.lastUsed = Date.now();
    try {
      const client = await Promise.race([entry.client, deadline]);
      if (!client.connected) return failure('connection closed');
      const publishOptions: IClientPublishOptions = {
        qos,
        ...(version === 'mqtt5.0'
          ? { properties: { payloadFormatIndicator: true, contentType: 'application/json' } }
          : {}),
      };
      await Promise.race([
        new Promise<void>((resolve, reject) => {
          // QoS 0 calls back once written; QoS 1 and 2 once the broker acknowledged.
          client.publish(topic, payload, publishOptions, (e) => (e ? reject(e) : resolve()));
        }),
        deadline,
      ]);
      return { ok: true };
    } catch (e) {
      return mqttFailure(e);
    } finally {
      clearTimeout(timer);
      entry.inFlight--;
      entry.lastUsed = Date.now();
    }
  }

  return {
    async send(endpoint, message) {
      const started = performance.now();
      let result: Result;
      try {
        if (closed) result = failure('notifier closed');
        else if (endpoint.scheme === 'http' || endpoint.scheme === 'https')
          result = await sendHttp(endpoint, message);
        else result = await sendMqtt(endpoint, message);
      } catch {
        // Not expected (every path above reports its failures); the contract is never to throw.
        result = failure('internal error');
      }
      return { ...result, durationMs: Math.round(performance.now() - started) };
    },

    close() {
      closing ??= (async () => {
        closed = true;
        clearInterval(sweeper);
        httpAgent.destroy();
        httpsAgent.destroy();
        brokers.clear();
        await Promise.all([...mqttClients].map(endClient));
      })();
      return closing;
    },
  };
}
