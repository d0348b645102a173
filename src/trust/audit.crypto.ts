/**
 * The verifiable audit log's cryptographic core (审计 · 责任溯源): canonical JSON, the record hash
 * chain, RFC 9162 Merkle trees with inclusion proofs, Ed25519-signed checkpoints (检查点), the
 * platform's signing key on disk, and the offline verification of a proof document.
 *
 * Pure: no database, no HTTP. Every byte that is hashed or signed here is specified in
 * docs/audit-format.md so that third parties can verify in another language; change both together.
 */
import * as nodeCrypto from 'node:crypto';
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign,
  verify,
  type JsonWebKey,
  type KeyObject,
} from 'node:crypto';
import {
  closeSync,
  existsSync,
  fchmodSync,
  fstatSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';

// ---------------------------------------------------------------------------------------------
// Canonical JSON (RFC 8785 JCS style)
// ---------------------------------------------------------------------------------------------

/**
 * Deterministic JSON of a JSON value: keys sorted by UTF-16 code units, no whitespace; throws a
 * TypeError on anything JSON cannot represent faithfully (NaN, Infinity, bigint, functions,
 * symbols, undefined outside an object member, Dates and other non-plain objects, cycles).
 */
export function canonicalJson(value: unknown): string {
  return serialize(value, new Set(), '$');
}

function serialize(value: unknown, ancestors: Set<object>, path: string): string {
  switch (typeof value) {
    case 'string':
      // JSON.stringify escapes exactly what JCS escapes (ES2019 well-formed: lone surrogates
      // become \udxxx), so its output is the canonical form.
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`canonicalJson: ${String(value)} at ${path}`);
      // ECMAScript Number::toString is the JCS number format; -0 serialises as 0.
      return JSON.stringify(value);
    case 'object':
      if (value === null) return 'null';
      if (ancestors.has(value)) throw new TypeError(`canonicalJson: cycle at ${path}`);
      ancestors.add(value);
      try {
        return Array.isArray(value)
          ? serializeArray(value, ancestors, path)
          : serializeObject(value, ancestors, path);
      } finally {
        ancestors.delete(value);
      }
    default:
      throw new TypeError(`canonicalJson: ${typeof value} at ${path} is not a JSON value`);
  }
}

function serializeArray(items: readonly unknown[], ancestors: Set<object>, path: string): string {
  const parts: string[] = [];
  // An index loop, not map(): map skips holes, and a hole must be refused like undefined.
  for (let i = 0; i < items.length; i++) parts.push(serialize(items[i], ancestors, `${path}[${i}]`));
  return `[${parts.join(',')}]`;
}

function serializeObject(value: object, ancestors: Set<object>, path: string): string {
  if (!isPlainObject(value)) {
    const ctor: unknown = (value as { constructor?: unknown }).constructor;
    const kind = typeof ctor === 'function' && ctor.name !== '' ? ctor.name : 'object';
    throw new TypeError(
      `canonicalJson: ${kind} at ${path} is not a plain object (pass ISO strings for dates)`,
    );
  }
  const parts: string[] = [];
  for (const key of Object.keys(value).sort(compareCodeUnits)) {
    const member = value[key];
    if (member === undefined) continue; // omitted, as JSON.stringify does
    parts.push(`${JSON.stringify(key)}:${serialize(member, ancestors, `${path}.${key}`)}`);
  }
  return `{${parts.join(',')}}`;
}

/** JCS orders keys by UTF-16 code units, which is what the relational operators on strings do. */
function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

// ---------------------------------------------------------------------------------------------
// Hashing primitives
// ---------------------------------------------------------------------------------------------

const HASH_HEX = /^[0-9a-f]{64}$/;
const KEY_ID = /^[0-9a-f]{16}$/;
const HASH_BYTES = 32;

function isHashHex(value: unknown): value is string {
  return typeof value === 'string' && HASH_HEX.test(value);
}

// crypto.hash (Node >= 20.12) is a one-shot digest without a Hash object per call: it is what
// makes a 100k-leaf tree cheap. The cast keeps a fallback for older Node 20 releases, whose
// module namespace lacks the export even though the type definitions declare it.
const oneShotHash = (nodeCrypto as { hash?: typeof nodeCrypto.hash }).hash;
const sha256: (data: Buffer) => Buffer = oneShotHash
  ? (data) => oneShotHash('sha256', data, 'buffer')
  : (data) => createHash('sha256').update(data).digest();

/** Reused input buffer for node hashes: 0x01 ‖ left ‖ right. Safe because hashing is synchronous. */
const nodeInput = Buffer.alloc(1 + 2 * HASH_BYTES);
/** Reused input buffer for leaf hashes: 0x00 ‖ record hash. */
const leafInput = Buffer.alloc(1 + HASH_BYTES);

function nodeHash(left: Buffer, right: Buffer): Buffer {
  nodeInput[0] = 0x01;
  left.copy(nodeInput, 1);
  right.copy(nodeInput, 1 + HASH_BYTES);
  return sha256(nodeInput);
}

/** RFC 9162 leaf hash of a record hash (already validated as 64 lowercase hex). */
function leafHash(recordHashHex: string): Buffer {
  leafInput[0] = 0x00;
  leafInput.write(recordHashHex, 1, 'hex');
  return sha256(leafInput);
}

// ---------------------------------------------------------------------------------------------
// The record chain
// ---------------------------------------------------------------------------------------------

/** The prevHash of the first record ever written. */
export const AUDIT_GENESIS_HASH = '0'.repeat(64);

const RECORD_DOMAIN = Buffer.from('pujiang-audit-record-v1\n', 'utf8');

/**
 * Hex SHA-256 chaining one record to its predecessor: H("pujiang-audit-record-v1\n" ‖ prevHash
 * bytes ‖ canonicalJson(body)). Throws a TypeError on a malformed prevHash or a non-JSON body.
 */
export function recordHash(prevHash: string, body: Record<string, unknown>): string {
  if (!isHashHex(prevHash)) throw new TypeError('recordHash: prevHash must be 64 lowercase hex characters');
  if (!isPlainObject(body)) throw new TypeError('recordHash: the record body must be a plain object');
  return createHash('sha256')
    .update(RECORD_DOMAIN)
    .update(Buffer.from(prevHash, 'hex'))
    .update(canonicalJson(body), 'utf8')
    .digest('hex');
}

// ---------------------------------------------------------------------------------------------
// Merkle trees (RFC 9162 §2.1)
// ---------------------------------------------------------------------------------------------
//
// RFC 9162 defines the tree recursively, splitting n leaves at the largest power of two k < n.
// It is computed here bottom-up, level by level: adjacent nodes are paired left to right and a
// level's odd last node is carried up unchanged. Both give the same tree, because every left
// subtree in the recursive definition is a perfect tree of 2^j leaves, which pairing builds
// exactly, and the unpaired last node of a level is the root of the right-hand remainder that
// the recursion only joins higher up. Bottom-up needs no recursion and touches each node once.

function leafLevel(leafRecordHashes: readonly string[], caller: string): Buffer[] {
  if (!Array.isArray(leafRecordHashes) || leafRecordHashes.length === 0) {
    throw new RangeError(`${caller}: a Merkle tree needs at least one leaf`);
  }
  return leafRecordHashes.map((h, i) => {
    if (!isHashHex(h)) throw new TypeError(`${caller}: leaf ${i} is not 64 lowercase hex characters`);
    return leafHash(h);
  });
}

function nodeAt(level: readonly Buffer[], i: number): Buffer {
  const node = level[i];
  if (node === undefined) throw new Error(`unreachable: no Merkle node at ${i}`);
  return node;
}

/** Replaces level[0..size) by its parent level in place and returns the parent level's size. */
function reduceLevel(level: Buffer[], size: number): number {
  let out = 0;
  for (let i = 0; i + 1 < size; i += 2) level[out++] = nodeHash(nodeAt(level, i), nodeAt(level, i + 1));
  if (size % 2 === 1) level[out++] = nodeAt(level, size - 1);
  return out;
}

/** RFC 9162 Merkle tree head (hex) over record hashes in leaf order; throws on an empty list. */
export function merkleRoot(leafRecordHashes: string[]): string {
  const level = leafLevel(leafRecordHashes, 'merkleRoot');
  for (let size = level.length; size > 1;) size = reduceLevel(level, size);
  return nodeAt(level, 0).toString('hex');
}

/**
 * The RFC 9162 §2.1.3.1 audit path (hex, leaf side first) proving leaf `index` is in the tree over
 * `leafRecordHashes`; throws a RangeError when index is not a leaf of that tree.
 */
export function inclusionProof(leafRecordHashes: string[], index: number): string[] {
  const level = leafLevel(leafRecordHashes, 'inclusionProof');
  if (!Number.isSafeInteger(index) || index < 0 || index >= level.length) {
    throw new RangeError(`inclusionProof: index ${index} is outside a tree of ${level.length} leaves`);
  }
  const path: string[] = [];
  let i = index;
  for (let size = level.length; size > 1;) {
    const sibling = i % 2 === 1 ? i - 1 : i + 1;
    // No sibling means this node is carried up unchanged: the RFC path has no entry for it.
    if (sibling < size) path.push(nodeAt(level, sibling).toString('hex'));
    size = reduceLevel(level, size);
    i = Math.floor(i / 2);
  }
  return path;
}

/** Inputs of {@link verifyInclusion}: a record hash, its leaf index, and the tree it claims to be in. */
export interface InclusionClaim {
  recordHash: string;
  index: number;
  treeSize: number;
  proof: string[];
  root: string;
}

/**
 * True when `proof` shows the record hash at leaf `index` of the `treeSize`-leaf tree with `root`,
 * per the RFC 9162 §2.1.3.2 algorithm. Never throws; malformed input is simply false.
 */
export function verifyInclusion(args: InclusionClaim): boolean {
  const { recordHash: record, index, treeSize, proof, root } = args;
  if (!isHashHex(record) || !isHashHex(root) || !Array.isArray(proof)) return false;
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(treeSize) || index < 0 || index >= treeSize) {
    return false;
  }
  // Halving by division, not >>: shifts would truncate sizes beyond 2^31.
  const half = (x: number): number => Math.floor(x / 2);
  let fn = index;
  let sn = treeSize - 1;
  let r = leafHash(record);
  for (const p of proof) {
    if (sn === 0 || !isHashHex(p)) return false; // sn === 0: the proof is longer than the path
    const sibling = Buffer.from(p, 'hex');
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(sibling, r);
      // Skip the levels where this node was carried up without a sibling.
      while (fn % 2 === 0 && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      r = nodeHash(r, sibling);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && r.equals(Buffer.from(root, 'hex'));
}

// ---------------------------------------------------------------------------------------------
// Checkpoints (检查点)
// ---------------------------------------------------------------------------------------------

/**
 * A signed statement that records fromSeq..toSeq (leaf i = record fromSeq + i) have Merkle root
 * `root`, that the chain hash of record toSeq is `headHash`, and that the previous checkpoint's
 * root was `prevRoot` (null for the first checkpoint).
 */
export interface CheckpointStatement {
  v: 1;
  checkpoint: number;
  fromSeq: number;
  toSeq: number;
  treeSize: number;
  root: string;
  headHash: string;
  prevRoot: string | null;
  createdAt: string;
  keyId: string;
}

const CHECKPOINT_KEYS: readonly (keyof CheckpointStatement)[] = [
  'v',
  'checkpoint',
  'fromSeq',
  'toSeq',
  'treeSize',
  'root',
  'headHash',
  'prevRoot',
  'createdAt',
  'keyId',
];

/** What Date#toISOString produces: UTC with milliseconds. */
const ISO_UTC_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

function isSeq(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/**
 * Null when `value` is a well-formed v1 checkpoint statement (exact keys, consistent sizes),
 * otherwise a sentence saying what is wrong. Never throws.
 */
export function checkpointProblem(value: unknown): string | null {
  if (!isPlainObject(value)) return 'checkpoint is not an object';
  const extra = Object.keys(value).filter((k) => !(CHECKPOINT_KEYS as readonly string[]).includes(k));
  if (extra.length > 0) return `checkpoint has unknown fields: ${extra.join(', ')}`;
  const missing = CHECKPOINT_KEYS.filter((k) => !(k in value));
  if (missing.length > 0) return `checkpoint lacks fields: ${missing.join(', ')}`;
  const s = value as Record<keyof CheckpointStatement, unknown>;
  if (s.v !== 1) return 'checkpoint version v is not 1';
  for (const k of ['checkpoint', 'fromSeq', 'toSeq', 'treeSize'] as const) {
    if (!isSeq(s[k])) return `checkpoint ${k} is not a non-negative integer`;
  }
  const { fromSeq, toSeq, treeSize } = s as Pick<CheckpointStatement, 'fromSeq' | 'toSeq' | 'treeSize'>;
  if (toSeq < fromSeq) return 'checkpoint toSeq is before fromSeq';
  if (treeSize !== toSeq - fromSeq + 1) return 'checkpoint treeSize is not toSeq - fromSeq + 1';
  if (!isHashHex(s.root)) return 'checkpoint root is not 64 lowercase hex characters';
  if (!isHashHex(s.headHash)) return 'checkpoint headHash is not 64 lowercase hex characters';
  if (s.prevRoot !== null && !isHashHex(s.prevRoot)) {
    return 'checkpoint prevRoot is neither null nor 64 lowercase hex characters';
  }
  if (
    typeof s.createdAt !== 'string' ||
    !ISO_UTC_MS.test(s.createdAt) ||
    Number.isNaN(Date.parse(s.createdAt))
  ) {
    return 'checkpoint createdAt is not an ISO-8601 UTC timestamp with milliseconds';
  }
  if (typeof s.keyId !== 'string' || !KEY_ID.test(s.keyId)) return 'checkpoint keyId is not 16 lowercase hex';
  return null;
}

function statementBytes(statement: CheckpointStatement): Buffer {
  return Buffer.from(canonicalJson(statement), 'utf8');
}

/**
 * Base64 Ed25519 signature over utf8(canonicalJson(statement)). Throws when the statement is
 * malformed or its keyId is not the id of `privateKey`'s public key.
 */
export function signCheckpoint(statement: CheckpointStatement, privateKey: KeyObject): string {
  requireEd25519(privateKey, 'private', 'signCheckpoint');
  const problem = checkpointProblem(statement);
  if (problem !== null) throw new TypeError(`signCheckpoint: ${problem}`);
  const keyId = keyIdOf(createPublicKey(privateKey));
  if (statement.keyId !== keyId) {
    throw new Error(`signCheckpoint: statement names key ${statement.keyId} but the signing key is ${keyId}`);
  }
  return sign(null, statementBytes(statement), privateKey).toString('base64');
}

/** Ed25519 signatures are 64 bytes: 86 base64 characters and "==". */
const SIGNATURE_B64 = /^[A-Za-z0-9+/]{86}==$/;

/**
 * True when `signatureB64` is `publicKey`'s signature over the well-formed statement, and the
 * statement names that key. Never throws: garbage in any argument is false.
 */
export function verifyCheckpointSignature(
  statement: CheckpointStatement,
  signatureB64: string,
  publicKey: KeyObject,
): boolean {
  try {
    if (!isEd25519(publicKey, 'public') || checkpointProblem(statement) !== null) return false;
    if (statement.keyId !== keyIdOf(publicKey)) return false;
    if (typeof signatureB64 !== 'string' || !SIGNATURE_B64.test(signatureB64)) return false;
    const signature = Buffer.from(signatureB64, 'base64');
    // Node's base64 decoder is lenient; insist on the one canonical spelling.
    if (signature.toString('base64') !== signatureB64) return false;
    return verify(null, statementBytes(statement), publicKey, signature);
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/** An Ed25519 key pair. */
export interface SigningKeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

/** The platform's signing key as loaded from disk; `created` when this call generated it. */
export interface LoadedSigningKey extends SigningKeyPair {
  keyId: string;
  created: boolean;
}

/** A published audit public key as a JWK (RFC 8037 OKP). */
// A type alias, not an interface, so that it stays assignable to Record<string, unknown>.
export type AuditPublicJwk = {
  kty: 'OKP';
  crv: 'Ed25519';
  x: string;
  kid: string;
  alg: 'EdDSA';
  use: 'sig';
};

function isEd25519(key: unknown, type: 'public' | 'private'): boolean {
  return key instanceof nodeCrypto.KeyObject && key.type === type && key.asymmetricKeyType === 'ed25519';
}

function requireEd25519(key: unknown, type: 'public' | 'private', caller: string): void {
  if (!isEd25519(key, type)) throw new TypeError(`${caller}: expected an Ed25519 ${type} key`);
}

/** A fresh Ed25519 key pair. */
export function generateSigningKey(): SigningKeyPair {
  return generateKeyPairSync('ed25519');
}

/** The key's id: the first 16 hex characters of SHA-256 over its SPKI DER encoding. */
export function keyIdOf(publicKey: KeyObject): string {
  requireEd25519(publicKey, 'public', 'keyIdOf');
  const der = publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('hex').slice(0, 16);
}

/** The public key as an SPKI PEM ("-----BEGIN PUBLIC KEY-----"). */
export function publicKeyPem(publicKey: KeyObject): string {
  requireEd25519(publicKey, 'public', 'publicKeyPem');
  return pemString(publicKey.export({ type: 'spki', format: 'pem' }));
}

/** The public key as an OKP/Ed25519 JWK whose kid is its key id. */
export function publicKeyJwk(publicKey: KeyObject): AuditPublicJwk {
  requireEd25519(publicKey, 'public', 'publicKeyJwk');
  const { x } = publicKey.export({ format: 'jwk' });
  if (typeof x !== 'string') throw new Error('unreachable: an Ed25519 JWK without x');
  return { kty: 'OKP', crv: 'Ed25519', x, kid: keyIdOf(publicKey), alg: 'EdDSA', use: 'sig' };
}

/**
 * An Ed25519 public key from an SPKI PEM, a JWK object or a JWK's JSON text. Throws an Error that
 * says why on anything else, including private keys and a JWK whose kid is not the key's id.
 */
export function parsePublicKey(pemOrJwk: string | object): KeyObject {
  let key: KeyObject;
  if (typeof pemOrJwk === 'string') {
    const text = pemOrJwk.trim();
    if (text.startsWith('{')) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch (err) {
        throw new Error(`audit public key: the JWK is not valid JSON (${errorMessage(err)})`, { cause: err });
      }
      if (typeof parsed !== 'object' || parsed === null)
        throw new Error('audit public key: not a JWK object');
      return parsePublicKey(parsed);
    }
    if (!text.startsWith('-----BEGIN ')) {
      throw new Error('audit public key: expected a PEM ("-----BEGIN PUBLIC KEY-----") or a JWK');
    }
    if (/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(text)) {
      throw new Error('audit public key: this PEM holds a private key; pass the public key only');
    }
    try {
      key = createPublicKey({ key: text, format: 'pem' });
    } catch (err) {
      throw new Error(`audit public key: the PEM is not a public key (${errorMessage(err)})`, { cause: err });
    }
  } else {
    key = parseJwk(pemOrJwk);
  }
  if (!isEd25519(key, 'public')) {
    throw new Error(
      `audit public key: expected Ed25519, got ${key.asymmetricKeyType ?? 'an unknown key type'}`,
    );
  }
  return key;
}

function parseJwk(value: object): KeyObject {
  if (!isPlainObject(value)) throw new Error('audit public key: a JWK must be a plain JSON object');
  if ('d' in value)
    throw new Error('audit public key: this JWK holds a private key (d); pass the public key only');
  if (value['kty'] !== 'OKP' || value['crv'] !== 'Ed25519') {
    throw new Error(
      `audit public key: expected an OKP JWK with crv Ed25519, got kty ${String(value['kty'])} crv ${String(value['crv'])}`,
    );
  }
  if (typeof value['x'] !== 'string') throw new Error('audit public key: the JWK lacks its x member');
  let key: KeyObject;
  try {
    key = createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: value['x'] } satisfies JsonWebKey,
      format: 'jwk',
    });
  } catch (err) {
    throw new Error(`audit public key: the JWK is not a valid Ed25519 key (${errorMessage(err)})`, {
      cause: err,
    });
  }
  const kid = value['kid'];
  if (kid !== undefined && kid !== keyIdOf(key)) {
    throw new Error(
      `audit public key: the JWK's kid ${JSON.stringify(kid)} is not the key's id ${keyIdOf(key)}`,
    );
  }
  return key;
}

/**
 * The platform's signing key from the PKCS#8 PEM file at `path`, generated and written (0o600,
 * atomically) when the file does not exist. Throws, naming the path and the fix, when the file is
 * not an Ed25519 private key or, on POSIX, is accessible to group or others.
 */
export function loadOrCreateSigningKey(path: string): LoadedSigningKey {
  const existing = readKeyFile(path);
  if (existing !== null) return { ...keyPairFromPem(path, existing), created: false };
  const { privateKey } = generateSigningKey();
  if (!writeKeyFile(path, privateKeyPem(privateKey), 'create')) {
    // Another process created the file between our read and our write: use its key, not ours,
    // or the two would sign with different keys under one path.
    const raced = readKeyFile(path);
    if (raced === null)
      throw new Error(`audit signing key ${path} appeared and vanished while being created`);
    return { ...keyPairFromPem(path, raced), created: false };
  }
  const publicKey = createPublicKey(privateKey);
  return { privateKey, publicKey, keyId: keyIdOf(publicKey), created: true };
}

/** Writes `privateKey` to `path` as a PKCS#8 PEM (0o600, atomically replacing any file there). */
export function writeSigningKey(path: string, privateKey: KeyObject): void {
  requireEd25519(privateKey, 'private', 'writeSigningKey');
  writeKeyFile(path, privateKeyPem(privateKey), 'replace');
}

function privateKeyPem(privateKey: KeyObject): string {
  return pemString(privateKey.export({ type: 'pkcs8', format: 'pem' }));
}

function pemString(exported: string | Buffer): string {
  return typeof exported === 'string' ? exported : exported.toString('utf8');
}

/** The key file's text, or null when it does not exist; permissions are checked before reading. */
function readKeyFile(path: string): string | null {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return null;
    throw new Error(`audit signing key ${path} cannot be opened: ${errorMessage(err)}`, { cause: err });
  }
  try {
    // fstat on the open descriptor, so the file checked is the file read.
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new Error(`audit signing key ${path} is not a regular file`);
    // Windows has no POSIX mode bits; its ACLs are the operator's business.
    if (process.platform !== 'win32' && (stat.mode & 0o077) !== 0) {
      const mode = (stat.mode & 0o777).toString(8).padStart(4, '0');
      throw new Error(
        `audit signing key ${path} is accessible to group or others (mode ${mode}); ` +
          `a signing key must be private to the platform's user: run \`chmod 600 ${path}\``,
      );
    }
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

function keyPairFromPem(path: string, pem: string): SigningKeyPair & { keyId: string } {
  const fix =
    `replace it with an Ed25519 PKCS#8 PEM (\`openssl genpkey -algorithm ed25519 -out ${path}\`), ` +
    'or move it away to have a new key generated';
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: pem, format: 'pem' });
  } catch (err) {
    throw new Error(`audit signing key ${path} is not a PEM private key (${errorMessage(err)}); ${fix}`, {
      cause: err,
    });
  }
  if (!isEd25519(privateKey, 'private')) {
    throw new Error(
      `audit signing key ${path} is a ${privateKey.asymmetricKeyType ?? 'unknown'} key, not Ed25519; ${fix}`,
    );
  }
  const publicKey = createPublicKey(privateKey);
  return { privateKey, publicKey, keyId: keyIdOf(publicKey) };
}

/**
 * Writes a private file atomically: a 0o600 temp file beside `path`, fsynced, then linked
 * ('create': fails — returns false — when `path` exists) or renamed ('replace') into place.
 */
function writeKeyFile(path: string, contents: string, mode: 'create' | 'replace'): boolean {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let placed: boolean;
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      fchmodSync(fd, 0o600); // the umask may have narrowed the mode further; make it exact
      writeFileSync(fd, contents, 'utf8');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (mode === 'replace') {
      renameSync(tmp, path);
      placed = true;
    } else {
      placed = linkIfAbsent(tmp, path);
    }
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new Error(`audit signing key ${path} cannot be written: ${errorMessage(err)}`, { cause: err });
  }
  rmSync(tmp, { force: true }); // after link(): the now redundant second name; after rename(): gone
  if (placed) fsyncDirectory(dir);
  return placed;
}

/** Hard-links tmp to path unless path exists; link(2) is the atomic create-if-absent. */
function linkIfAbsent(tmp: string, path: string): boolean {
  try {
    linkSync(tmp, path);
    return true;
  } catch (err) {
    if (errorCode(err) === 'EEXIST') return false;
    // File systems without hard links: a rename is still atomic, only the check is racy.
    if (existsSync(path)) return false;
    renameSync(tmp, path);
    return true;
  }
}

/** Makes the new directory entry durable; best effort, as some platforms cannot fsync a directory. */
function fsyncDirectory(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // The key file itself was fsynced; losing only the rename on power failure is recoverable.
  }
}

function errorCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null || !('code' in err)) return undefined;
  return typeof err.code === 'string' ? err.code : undefined;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// ---------------------------------------------------------------------------------------------
// Proof documents
// ---------------------------------------------------------------------------------------------

/** The format tag of {@link InclusionProofDocument}. */
export const AUDIT_PROOF_FORMAT = 'pujiang-audit-proof/v1';

/** Everything needed to check offline that one audit record is covered by a signed checkpoint. */
export interface InclusionProofDocument {
  format: typeof AUDIT_PROOF_FORMAT;
  /** The record body exactly as hashed. */
  record: Record<string, unknown>;
  seq: number;
  prevHash: string;
  hash: string;
  leafIndex: number;
  proof: string[];
  checkpoint: CheckpointStatement;
  signature: string;
}

/** The outcome of {@link verifyProofDocument}. */
export type ProofVerification = { ok: true; seq: number; checkpoint: number } | { ok: false; reason: string };

/**
 * Checks a proof document offline with the audit public key alone: its shape, the checkpoint's
 * key id and signature, the record hash, the record's position, and its inclusion in the
 * checkpoint's tree. Never throws; every failure carries a specific reason.
 */
export function verifyProofDocument(doc: unknown, publicKey: KeyObject): ProofVerification {
  const fail = (reason: string): ProofVerification => ({ ok: false, reason });
  const shape = proofDocumentProblem(doc);
  if (shape !== null) return fail(shape);
  const d = doc as InclusionProofDocument;
  const cp = d.checkpoint;

  // Authenticate the checkpoint first: every later check trusts its fields.
  if (!isEd25519(publicKey, 'public')) return fail('the given verification key is not an Ed25519 public key');
  const keyId = keyIdOf(publicKey);
  if (cp.keyId !== keyId)
    return fail(`checkpoint is signed by key ${cp.keyId}, not by the given key ${keyId}`);
  if (!verifyCheckpointSignature(cp, d.signature, publicKey)) {
    return fail(`checkpoint signature does not verify with key ${keyId}`);
  }

  if (d.record['seq'] !== d.seq) return fail(`record body seq is not the document's seq ${d.seq}`);
  let computed: string;
  try {
    computed = recordHash(d.prevHash, d.record);
  } catch (err) {
    return fail(`record cannot be hashed: ${errorMessage(err)}`);
  }
  if (computed !== d.hash) return fail('record hash does not match its contents');

  if (d.seq < cp.fromSeq || d.seq > cp.toSeq) {
    return fail(
      `record ${d.seq} is not covered by checkpoint ${cp.checkpoint} (records ${cp.fromSeq}..${cp.toSeq})`,
    );
  }
  if (d.leafIndex !== d.seq - cp.fromSeq) {
    return fail(`leafIndex ${d.leafIndex} is not seq - checkpoint.fromSeq = ${d.seq - cp.fromSeq}`);
  }
  if (d.seq === cp.toSeq && d.hash !== cp.headHash) {
    return fail("record is the checkpoint's last record but its hash is not the checkpoint's headHash");
  }
  const included = verifyInclusion({
    recordHash: d.hash,
    index: d.leafIndex,
    treeSize: cp.treeSize,
    proof: d.proof,
    root: cp.root,
  });
  if (!included) return fail(`inclusion proof does not lead to the root of checkpoint ${cp.checkpoint}`);
  return { ok: true, seq: d.seq, checkpoint: cp.checkpoint };
}

/** Null when `doc` has the shape of a v1 proof document, otherwise what is wrong. */
function proofDocumentProblem(doc: unknown): string | null {
  if (!isPlainObject(doc)) return 'proof document is not a JSON object';
  if (doc['format'] !== AUDIT_PROOF_FORMAT) {
    return `proof document format is not ${AUDIT_PROOF_FORMAT}`;
  }
  if (!isPlainObject(doc['record'])) return 'proof document record is missing or not an object';
  if (!isSeq(doc['seq'])) return 'proof document seq is missing or not a non-negative integer';
  if (!isHashHex(doc['prevHash'])) return 'proof document prevHash is missing or not 64 lowercase hex';
  if (!isHashHex(doc['hash'])) return 'proof document hash is missing or not 64 lowercase hex';
  if (!isSeq(doc['leafIndex'])) return 'proof document leafIndex is missing or not a non-negative integer';
  const proof = doc['proof'];
  if (!Array.isArray(proof) || !proof.every(isHashHex)) {
    return 'proof document proof is missing or not a list of 64-hex hashes';
  }
  if (typeof doc['signature'] !== 'string') return 'proof document signature is missing or not a string';
  if (!('checkpoint' in doc)) return 'proof document checkpoint is missing';
  return checkpointProblem(doc['checkpoint']);
}
