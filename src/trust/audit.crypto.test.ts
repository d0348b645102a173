/**
 * The audit log's cryptographic core: canonical JSON, the record chain, RFC 9162 Merkle trees
 * (checked against a naive implementation of the RFC text, itself checked against the
 * Certificate Transparency reference vectors), checkpoint signatures, key files, proof documents,
 * and the worked example of docs/audit-format.md.
 */
import assert from 'node:assert/strict';
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
} from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  AUDIT_GENESIS_HASH,
  AUDIT_PROOF_FORMAT,
  canonicalJson,
  checkpointProblem,
  generateSigningKey,
  inclusionProof,
  keyIdOf,
  loadOrCreateSigningKey,
  merkleRoot,
  parsePublicKey,
  publicKeyJwk,
  publicKeyPem,
  recordHash,
  signCheckpoint,
  verifyCheckpointSignature,
  verifyInclusion,
  verifyProofDocument,
  writeSigningKey,
  type CheckpointStatement,
  type InclusionProofDocument,
} from './audit.crypto.ts';

// ---------------------------------------------------------------------------------------------
// Helpers

const sha256 = (...parts: Buffer[]): Buffer => createHash('sha256').update(Buffer.concat(parts)).digest();
const hex = (b: Buffer): string => b.toString('hex');
const unhex = (s: string): Buffer => Buffer.from(s, 'hex');

/** `hash` with one bit of byte `byte` flipped. */
function flip(hash: string, byte = 0): string {
  const b = unhex(hash);
  b.writeUInt8(b.readUInt8(byte) ^ 0x01, byte);
  return hex(b);
}

function must<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`test fixture: no ${what}`);
  return value;
}

/** Deterministic stand-ins for record hashes. */
const fakeRecordHashes = (n: number, salt = 'r'): string[] =>
  Array.from({ length: n }, (_, i) => hex(sha256(Buffer.from(`${salt}${i}`))));

// ---------------------------------------------------------------------------------------------
// A naive RFC 9162 §2.1 implementation, transcribed from the RFC's recursive definitions.

function largestPowerOfTwoBelow(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** MTH(D[n]). */
function naiveRoot(d: Buffer[]): Buffer {
  if (d.length === 0) return sha256();
  if (d.length === 1) return sha256(Buffer.from([0x00]), must(d[0], 'leaf'));
  const k = largestPowerOfTwoBelow(d.length);
  return sha256(Buffer.from([0x01]), naiveRoot(d.slice(0, k)), naiveRoot(d.slice(k)));
}

/** PATH(m, D[n]), each entry with the side its sibling sits on. */
function naivePath(m: number, d: Buffer[]): { side: 'left' | 'right'; hash: Buffer }[] {
  if (d.length <= 1) return [];
  const k = largestPowerOfTwoBelow(d.length);
  return m < k
    ? [...naivePath(m, d.slice(0, k)), { side: 'right', hash: naiveRoot(d.slice(k)) }]
    : [...naivePath(m - k, d.slice(k)), { side: 'left', hash: naiveRoot(d.slice(0, k)) }];
}

/** The left/right pattern of a leaf's path: all the verification algorithm learns from index and size. */
const pathShape = (m: number, n: number): string =>
  naivePath(
    m,
    Array.from({ length: n }, () => Buffer.alloc(0)),
  )
    .map((s) => s.side[0])
    .join('');

describe('the naive RFC implementation used as reference', () => {
  // Certificate Transparency's published test data (RFC 6962 trees, identical in RFC 9162).
  const entries = [
    '',
    '00',
    '10',
    '2021',
    '3031',
    '40414243',
    '5051525354555657',
    '606162636465666768696a6b6c6d6e6f',
  ].map(unhex);
  const roots = [
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
    'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
    'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
    'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
    '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
    'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
    '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
  ];

  it('reproduces the CT reference tree heads for sizes 0..8', () => {
    for (let n = 0; n <= 8; n++) assert.equal(hex(naiveRoot(entries.slice(0, n))), roots[n], `size ${n}`);
  });

  it('reproduces the CT reference audit paths', () => {
    assert.deepEqual(
      naivePath(0, entries).map((s) => hex(s.hash)),
      [
        '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
        '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
        '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
      ],
    );
    assert.deepEqual(
      naivePath(5, entries).map((s) => hex(s.hash)),
      [
        'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
        'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
        'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
      ],
    );
  });
});

// ---------------------------------------------------------------------------------------------

describe('canonicalJson', () => {
  it('sorts keys, so member order does not matter', () => {
    assert.equal(canonicalJson({ b: 1, a: 2 }), '{"a":2,"b":1}');
    assert.equal(canonicalJson({ b: 1, a: 2 }), canonicalJson({ a: 2, b: 1 }));
  });

  it('serialises nested objects and arrays without whitespace, keeping array order', () => {
    const value = { z: [3, { y: 1, x: [true, false, null] }], a: { c: 'd', b: 'e' }, e: [], o: {} };
    assert.equal(
      canonicalJson(value),
      '{"a":{"b":"e","c":"d"},"e":[],"o":{},"z":[3,{"x":[true,false,null],"y":1}]}',
    );
  });

  it('keeps Chinese text as UTF-8 characters and orders keys by UTF-16 code units', () => {
    assert.equal(canonicalJson({ 名称: '浦江', a: '上海市' }), '{"a":"上海市","名称":"浦江"}');
    // U+1F600 is the surrogate pair D83D DE00, which sorts before U+FFFF by code unit (not by code point).
    assert.equal(canonicalJson({ '\uffff': 1, '\u{1F600}': 2 }), '{"\u{1F600}":2,"\uffff":1}');
  });

  it('escapes strings and formats numbers as ECMAScript does', () => {
    assert.equal(canonicalJson('a"b\\c\n\u0001\u007f'), '"a\\"b\\\\c\\n\\u0001\u007f"');
    assert.equal(canonicalJson('\ud800'), '"\\ud800"'); // a lone surrogate is escaped, not mangled
    assert.equal(
      canonicalJson([0, -0, 1.5e-7, 0.1, 1e21, 123456789012, -3]),
      '[0,0,1.5e-7,0.1,1e+21,123456789012,-3]',
    );
  });

  it('omits undefined members and accepts null-prototype objects', () => {
    assert.equal(canonicalJson({ a: undefined, b: 1 }), '{"b":1}');
    const bare = Object.create(null) as Record<string, unknown>;
    bare['k'] = 'v';
    assert.equal(canonicalJson(bare), '{"k":"v"}');
  });

  it('agrees with JSON.stringify on already-sorted plain data', () => {
    const value = { a: [1, 'two', { b: null }], c: { d: true }, e: '浦东新区' };
    assert.equal(canonicalJson(value), JSON.stringify(value));
  });

  it('refuses what JSON cannot represent, with a TypeError naming where', () => {
    const holey: unknown[] = [1];
    holey[2] = 3;
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    class Thing {
      x = 1;
    }
    const rejected: [unknown, RegExp][] = [
      [Number.NaN, /NaN at \$/],
      [{ a: Infinity }, /Infinity at \$\.a/],
      [[-Infinity], /\$\[0\]/],
      [[undefined], /undefined at \$\[0\]/],
      [holey, /\$\[1\]/],
      [undefined, /undefined/],
      [{ f: () => 1 }, /function at \$\.f/],
      [10n, /bigint/],
      [{ s: Symbol('x') }, /symbol/],
      [{ when: new Date(0) }, /Date at \$\.when is not a plain object/],
      [new Map(), /Map/],
      [new Thing(), /Thing/],
      [cyclic, /cycle at \$\.self/],
    ];
    for (const [value, message] of rejected) {
      assert.throws(
        () => canonicalJson(value),
        (err: unknown) => err instanceof TypeError && message.test(err.message),
      );
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('record chain', () => {
  const body = {
    seq: 42,
    id: '3f1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a5b',
    at: '2025-03-01T08:00:00.000Z',
    actor: 'u-zhang-wei',
    actorKind: 'user',
    org: 'org-huangpu-ops',
    action: 'case.update',
    resourceType: 'case',
    resourceId: 'c-1001',
    area: '310101002',
    purpose: '办件',
    requestId: 'req-1',
    outcome: 'success',
    details: { status: { from: 'open', to: 'closed' }, note: '已处理' },
  };
  const prev = fakeRecordHashes(1)[0] ?? '';

  it('starts from 64 zeros', () => {
    assert.equal(AUDIT_GENESIS_HASH, '0'.repeat(64));
  });

  it('hashes domain ‖ prevHash bytes ‖ canonical JSON, independent of key order', () => {
    const canonical = canonicalJson({ b: '浦江', a: 1 });
    assert.equal(canonical, '{"a":1,"b":"浦江"}');
    const expected = hex(
      sha256(Buffer.from('pujiang-audit-record-v1\n'), unhex(prev), Buffer.from(canonical)),
    );
    assert.equal(recordHash(prev, { b: '浦江', a: 1 }), expected);
    assert.equal(recordHash(prev, { a: 1, b: '浦江' }), expected);
  });

  it('changes when one byte of any body field changes', () => {
    const original = recordHash(prev, body);
    const mutate = (v: unknown): unknown => {
      if (typeof v === 'number') return v + 1;
      if (typeof v === 'string')
        return v.slice(0, -1) + String.fromCharCode((v.codePointAt(v.length - 1) ?? 0) ^ 1);
      return { ...(v as Record<string, unknown>), note: '已处理。' };
    };
    for (const key of Object.keys(body) as (keyof typeof body)[]) {
      assert.notEqual(recordHash(prev, { ...body, [key]: mutate(body[key]) }), original, key);
    }
    assert.notEqual(recordHash(prev, { ...body, purpose: null }), original);
    assert.notEqual(recordHash(prev, { ...body, extra: null }), original);
  });

  it('changes when any byte of prevHash changes', () => {
    const original = recordHash(prev, body);
    for (let byte = 0; byte < 32; byte++) assert.notEqual(recordHash(flip(prev, byte), body), original);
  });

  it('refuses a malformed prevHash or body', () => {
    for (const bad of ['', '0'.repeat(63), prev.toUpperCase(), `${prev}00`, 'g'.repeat(64)]) {
      assert.throws(() => recordHash(bad, body), TypeError);
    }
    assert.throws(() => recordHash(prev, [] as unknown as Record<string, unknown>), TypeError);
    assert.throws(() => recordHash(prev, { at: new Date() }), TypeError);
  });
});

// ---------------------------------------------------------------------------------------------

describe('Merkle tree (RFC 9162)', () => {
  const all = fakeRecordHashes(17);

  it('has the leaf hash as the root of a one-leaf tree', () => {
    const h = must(all[0], 'hash');
    assert.equal(merkleRoot([h]), hex(sha256(Buffer.from([0x00]), unhex(h))));
    assert.deepEqual(inclusionProof([h], 0), []);
    assert.ok(verifyInclusion({ recordHash: h, index: 0, treeSize: 1, proof: [], root: merkleRoot([h]) }));
  });

  it('matches the RFC definitions for sizes 1..17 and every index', () => {
    for (let n = 1; n <= 17; n++) {
      const hashes = all.slice(0, n);
      const data = hashes.map(unhex);
      assert.equal(merkleRoot(hashes), hex(naiveRoot(data)), `root of ${n}`);
      for (let i = 0; i < n; i++) {
        assert.deepEqual(
          inclusionProof(hashes, i),
          naivePath(i, data).map((s) => hex(s.hash)),
          `path of ${i} in ${n}`,
        );
      }
    }
  });

  it('verifies every leaf, and rejects any altered element, index, size, root, leaf or length', () => {
    for (let n = 1; n <= 17; n++) {
      const hashes = all.slice(0, n);
      const root = merkleRoot(hashes);
      for (let i = 0; i < n; i++) {
        const claim = {
          recordHash: must(hashes[i], 'leaf'),
          index: i,
          treeSize: n,
          proof: inclusionProof(hashes, i),
          root,
        };
        const at = `leaf ${i} of ${n}`;
        assert.equal(verifyInclusion(claim), true, at);

        claim.proof.forEach((_, j) => {
          const proof = claim.proof.map((p, k) => (k === j ? flip(p, 31) : p));
          assert.equal(verifyInclusion({ ...claim, proof }), false, `${at}, element ${j}`);
        });
        for (let index = -1; index <= n; index++) {
          if (index !== i)
            assert.equal(verifyInclusion({ ...claim, index }), false, `${at} as index ${index}`);
        }
        // A proof does not bind the size by itself (the signed checkpoint does): where the path
        // has the same left/right pattern in another size, the same computation succeeds.
        for (const treeSize of [n - 1, n + 1, 2 * n, n + 16]) {
          const sameShape = i < treeSize && pathShape(i, treeSize) === pathShape(i, n);
          assert.equal(verifyInclusion({ ...claim, treeSize }), sameShape, `${at} in size ${treeSize}`);
        }
        assert.equal(verifyInclusion({ ...claim, treeSize: 0 }), false);
        assert.equal(verifyInclusion({ ...claim, root: flip(root) }), false, `${at}, root`);
        assert.equal(verifyInclusion({ ...claim, recordHash: flip(claim.recordHash) }), false, `${at}, leaf`);
        const extra = must(all[16], 'hash');
        assert.equal(verifyInclusion({ ...claim, proof: [...claim.proof, extra] }), false, `${at}, one more`);
        assert.equal(
          verifyInclusion({ ...claim, proof: [extra, ...claim.proof] }),
          false,
          `${at}, one more first`,
        );
        if (claim.proof.length > 0) {
          assert.equal(
            verifyInclusion({ ...claim, proof: claim.proof.slice(0, -1) }),
            false,
            `${at}, one less`,
          );
          assert.equal(
            verifyInclusion({ ...claim, proof: claim.proof.slice(1) }),
            false,
            `${at}, first missing`,
          );
        }
      }
    }
  });

  it('answers false, never throws, on malformed claims', () => {
    const hashes = all.slice(0, 5);
    const claim = {
      recordHash: must(hashes[2], 'leaf'),
      index: 2,
      treeSize: 5,
      proof: inclusionProof(hashes, 2),
      root: merkleRoot(hashes),
    };
    const bad: Record<string, unknown>[] = [
      { recordHash: claim.recordHash.toUpperCase() },
      { root: 'zz' },
      { proof: [...claim.proof.slice(0, -1), 'not hex'] },
      { proof: 'abc' },
      { proof: null },
      { index: 2.5 },
      { index: Number.NaN },
      { treeSize: Infinity },
      { index: '2' },
    ];
    for (const patch of bad) {
      assert.equal(verifyInclusion({ ...claim, ...patch }), false, JSON.stringify(patch));
    }
  });

  it('refuses to build an empty tree, a proof outside it, or one from malformed hashes', () => {
    assert.throws(() => merkleRoot([]), RangeError);
    assert.throws(() => inclusionProof([], 0), RangeError);
    assert.throws(() => inclusionProof(all.slice(0, 3), 3), RangeError);
    assert.throws(() => inclusionProof(all.slice(0, 3), -1), RangeError);
    assert.throws(() => merkleRoot(['abc']), TypeError);
  });

  it('handles 100k leaves well under a second', (t) => {
    const hashes = fakeRecordHashes(100_000);
    const t0 = performance.now();
    const root = merkleRoot(hashes);
    const t1 = performance.now();
    const proof = inclusionProof(hashes, 77_777);
    const t2 = performance.now();
    const ok = verifyInclusion({
      recordHash: must(hashes[77_777], 'leaf'),
      index: 77_777,
      treeSize: 100_000,
      proof,
      root,
    });
    t.diagnostic(
      `100k leaves: merkleRoot ${(t1 - t0).toFixed(0)} ms, inclusionProof ${(t2 - t1).toFixed(0)} ms`,
    );
    assert.ok(ok);
    assert.equal(proof.length, 17);
    // The bound is loose for slow CI machines; a typical run takes a few hundred milliseconds.
    assert.ok(t1 - t0 < 2_000, `merkleRoot took ${(t1 - t0).toFixed(0)} ms`);
  });
});

// ---------------------------------------------------------------------------------------------

describe('checkpoint signatures', () => {
  const { privateKey, publicKey } = generateSigningKey();
  const other = generateSigningKey();
  const hashes = fakeRecordHashes(3, 'cp');
  const statement: CheckpointStatement = {
    v: 1,
    checkpoint: 7,
    fromSeq: 101,
    toSeq: 103,
    treeSize: 3,
    root: merkleRoot(hashes),
    headHash: must(hashes[2], 'hash'),
    prevRoot: merkleRoot(fakeRecordHashes(4, 'earlier')),
    createdAt: '2025-03-01T08:05:00.000Z',
    keyId: keyIdOf(publicKey),
  };

  it('round-trips, deterministically (Ed25519)', () => {
    const signature = signCheckpoint(statement, privateKey);
    assert.match(signature, /^[A-Za-z0-9+/]{86}==$/);
    assert.equal(signCheckpoint({ ...statement }, privateKey), signature);
    assert.equal(verifyCheckpointSignature(statement, signature, publicKey), true);
    assert.equal(checkpointProblem(statement), null);
  });

  it('fails when any field of the statement is altered', () => {
    const signature = signCheckpoint(statement, privateKey);
    const altered: Partial<Record<keyof CheckpointStatement, unknown>> = {
      v: 2,
      checkpoint: 8,
      fromSeq: 102,
      toSeq: 104,
      treeSize: 4,
      root: flip(statement.root),
      headHash: flip(statement.headHash),
      prevRoot: null,
      createdAt: '2025-03-01T08:05:00.001Z',
      keyId: keyIdOf(other.publicKey),
    };
    for (const [key, value] of Object.entries(altered)) {
      const tampered = { ...statement, [key]: value } as CheckpointStatement;
      assert.equal(verifyCheckpointSignature(tampered, signature, publicKey), false, key);
    }
    // A consistent shift of the range still changes the signed bytes.
    const shifted = { ...statement, fromSeq: 102, toSeq: 104 };
    assert.equal(verifyCheckpointSignature(shifted, signature, publicKey), false);
    const first = { ...statement, prevRoot: null };
    assert.equal(verifyCheckpointSignature(first, signCheckpoint(first, privateKey), publicKey), true);
    assert.equal(
      verifyCheckpointSignature(
        { ...first, prevRoot: statement.prevRoot },
        signCheckpoint(first, privateKey),
        publicKey,
      ),
      false,
    );
  });

  it('fails with another key', () => {
    const signature = signCheckpoint(statement, privateKey);
    assert.equal(verifyCheckpointSignature(statement, signature, other.publicKey), false);
    const claimsOther = { ...statement, keyId: keyIdOf(other.publicKey) };
    assert.equal(verifyCheckpointSignature(claimsOther, signature, other.publicKey), false);
  });

  it('returns false, never throws, on garbage', () => {
    const signature = signCheckpoint(statement, privateKey);
    const last = must(signature[85], 'character');
    const nonCanonical = `${signature.slice(0, 85)}${last === 'A' ? 'B' : 'A'}==`;
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const garbage: [unknown, unknown, unknown][] = [
      [statement, '', publicKey],
      [statement, 'abc', publicKey],
      [statement, `${'A'.repeat(86)}==`, publicKey],
      [statement, signature.slice(0, -4), publicKey],
      [statement, `${signature}A`, publicKey],
      [statement, nonCanonical, publicKey],
      [statement, 42, publicKey],
      [statement, null, publicKey],
      [statement, signature, privateKey],
      [statement, signature, ec.publicKey],
      [statement, signature, undefined],
      [statement, signature, 'key'],
      [null, signature, publicKey],
      ['{}', signature, publicKey],
      [{ ...statement, extra: 1 }, signature, publicKey],
      [{ ...statement, root: 10n }, signature, publicKey],
    ];
    for (const [s, sig, key] of garbage) {
      assert.equal(
        verifyCheckpointSignature(s as CheckpointStatement, sig as string, key as KeyObject),
        false,
        String(sig).slice(0, 20),
      );
    }
  });

  it('refuses to sign a malformed statement or one naming another key', () => {
    assert.throws(() => signCheckpoint({ ...statement, treeSize: 4 }, privateKey), /treeSize/);
    assert.throws(
      () => signCheckpoint({ ...statement, createdAt: '2025-03-01 08:05' }, privateKey),
      /createdAt/,
    );
    assert.throws(() => signCheckpoint({ ...statement, root: 'x' }, privateKey), /root/);
    assert.throws(
      () => signCheckpoint({ ...statement, keyId: keyIdOf(other.publicKey) }, privateKey),
      /names key/,
    );
    assert.throws(() => signCheckpoint(statement, publicKey), /Ed25519 private key/);
  });
});

// ---------------------------------------------------------------------------------------------

describe('signing keys', () => {
  let dir: string;
  const posix = process.platform !== 'win32';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'pujiang-audit-'));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  const modeOf = (path: string): number => statSync(path).mode & 0o777;

  it('creates a 0o600 PKCS#8 file (and its directory), then reloads the same key', () => {
    const path = join(dir, 'keys', 'audit-signing.pem');
    const created = loadOrCreateSigningKey(path);
    assert.equal(created.created, true);
    assert.match(created.keyId, /^[0-9a-f]{16}$/);
    assert.match(readFileSync(path, 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/);
    if (posix) assert.equal(modeOf(path), 0o600);
    const again = loadOrCreateSigningKey(path);
    assert.equal(again.created, false);
    assert.equal(again.keyId, created.keyId);
    assert.equal(keyIdOf(again.publicKey), created.keyId);
    assert.deepEqual(readdirSync(join(dir, 'keys')), ['audit-signing.pem']); // no temp files left
  });

  it('refuses a key file readable by group or others, naming the path and the fix', { skip: !posix }, () => {
    const path = join(dir, 'open.pem');
    loadOrCreateSigningKey(path);
    chmodSync(path, 0o644);
    assert.throws(
      () => loadOrCreateSigningKey(path),
      (err: unknown) =>
        err instanceof Error &&
        err.message.includes(path) &&
        err.message.includes('0644') &&
        err.message.includes(`chmod 600 ${path}`),
    );
  });

  it('refuses a file that is not an Ed25519 private key, naming the path and the fix', () => {
    const cases: [string, string, RegExp][] = [
      [
        'ec.pem',
        generateKeyPairSync('ec', { namedCurve: 'P-256' })
          .privateKey.export({ type: 'pkcs8', format: 'pem' })
          .toString(),
        /is a ec key, not Ed25519/,
      ],
      ['public.pem', publicKeyPem(generateSigningKey().publicKey), /is not a PEM private key/],
      ['garbage.pem', 'hello\n', /is not a PEM private key/],
    ];
    for (const [name, contents, message] of cases) {
      const path = join(dir, name);
      writeFileSync(path, contents, { mode: 0o600 });
      assert.throws(
        () => loadOrCreateSigningKey(path),
        (err: unknown) =>
          err instanceof Error &&
          message.test(err.message) &&
          err.message.includes(path) &&
          err.message.includes('openssl genpkey'),
        name,
      );
    }
  });

  it('rotates by atomically replacing the file, keeping it 0o600', () => {
    const path = join(dir, 'rotate', 'key.pem');
    const first = loadOrCreateSigningKey(path);
    const next = generateSigningKey();
    writeSigningKey(path, next.privateKey);
    const loaded = loadOrCreateSigningKey(path);
    assert.equal(loaded.keyId, keyIdOf(next.publicKey));
    assert.notEqual(loaded.keyId, first.keyId);
    if (posix) assert.equal(modeOf(path), 0o600);
    assert.deepEqual(readdirSync(join(dir, 'rotate')), ['key.pem']);
    assert.throws(() => writeSigningKey(path, next.publicKey), /Ed25519 private key/);
  });

  it('derives the key id from the SPKI DER', () => {
    const { publicKey } = generateSigningKey();
    const der = publicKey.export({ type: 'spki', format: 'der' });
    assert.equal(keyIdOf(publicKey), createHash('sha256').update(der).digest('hex').slice(0, 16));
  });

  it('round-trips public keys through PEM and JWK', () => {
    const { publicKey } = generateSigningKey();
    const keyId = keyIdOf(publicKey);
    const jwk = publicKeyJwk(publicKey);
    assert.deepEqual(Object.keys(jwk).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x']);
    assert.equal(jwk.kty, 'OKP');
    assert.equal(jwk.crv, 'Ed25519');
    assert.equal(jwk.kid, keyId);
    const pem = publicKeyPem(publicKey);
    assert.match(pem, /^-----BEGIN PUBLIC KEY-----\n/);
    for (const form of [pem, `\n${pem}\n`, jwk, JSON.stringify(jwk)]) {
      const parsed = parsePublicKey(form);
      assert.equal(keyIdOf(parsed), keyId);
      assert.ok(parsed.equals(publicKey));
    }
  });

  it('refuses anything but an Ed25519 public key, saying why', () => {
    const { privateKey, publicKey } = generateSigningKey();
    const jwk = publicKeyJwk(publicKey);
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const cases: [string | object, RegExp][] = [
      [privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), /private key/],
      [{ ...jwk, d: 'secret' }, /private key/],
      [ec.publicKey.export({ type: 'spki', format: 'pem' }).toString(), /expected Ed25519, got ec/],
      [{ ...jwk, kty: 'EC' }, /expected an OKP JWK/],
      [{ ...jwk, crv: 'X25519' }, /crv Ed25519/],
      [{ ...jwk, kid: '0000000000000000' }, /kid "0000000000000000" is not the key's id/],
      [{ ...jwk, x: 'AAAA' }, /not a valid Ed25519 key/],
      [{ kty: 'OKP', crv: 'Ed25519' }, /lacks its x/],
      ['{not json', /not valid JSON/],
      ['ssh-ed25519 AAAA', /expected a PEM/],
      ['-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----', /not a public key/],
      [[], /plain JSON object/],
    ];
    for (const [input, message] of cases) {
      assert.throws(() => parsePublicKey(input), message, JSON.stringify(input).slice(0, 60));
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('proof documents', () => {
  const { privateKey, publicKey } = generateSigningKey();
  const other = generateSigningKey();

  const bodyOf = (seq: number): Record<string, unknown> => ({
    seq,
    id: `00000000-0000-4000-8000-${String(seq).padStart(12, '0')}`,
    at: new Date(Date.UTC(2025, 2, 1, 8, 0, seq, seq)).toISOString(),
    actor: seq % 5 === 0 ? null : `u-${seq % 3}`,
    actorKind: seq % 5 === 0 ? 'system' : 'user',
    org: seq % 5 === 0 ? null : 'org-huangpu-ops',
    action: 'case.update',
    resourceType: 'case',
    resourceId: `c-${seq}`,
    area: '310101002',
    purpose: seq % 2 === 0 ? '办件' : null,
    requestId: `req-${seq}`,
    outcome: seq % 7 === 0 ? 'denied' : 'success',
    details: { status: { from: 'open', to: 'closed' }, note: '已处理', n: seq },
  });

  // A chain of 37 records; checkpoint 1 covers 1..10, checkpoint 2 covers 11..37.
  const bodies = new Map<number, Record<string, unknown>>();
  const hashes = new Map<number, string>();
  let prev = AUDIT_GENESIS_HASH;
  for (let seq = 1; seq <= 37; seq++) {
    const body = bodyOf(seq);
    prev = recordHash(prev, body);
    bodies.set(seq, body);
    hashes.set(seq, prev);
  }
  const hashAt = (seq: number): string => must(hashes.get(seq), `hash ${seq}`);
  const range = (from: number, to: number): string[] =>
    Array.from({ length: to - from + 1 }, (_, i) => hashAt(from + i));
  const statement: CheckpointStatement = {
    v: 1,
    checkpoint: 2,
    fromSeq: 11,
    toSeq: 37,
    treeSize: 27,
    root: merkleRoot(range(11, 37)),
    headHash: hashAt(37),
    prevRoot: merkleRoot(range(1, 10)),
    createdAt: '2025-03-01T09:00:00.000Z',
    keyId: keyIdOf(publicKey),
  };
  const signature = signCheckpoint(statement, privateKey);

  function docFor(seq: number, checkpoint = statement, sig = signature): InclusionProofDocument {
    const index = seq - checkpoint.fromSeq;
    return {
      format: AUDIT_PROOF_FORMAT,
      record: structuredClone(must(bodies.get(seq), `body ${seq}`)),
      seq,
      prevHash: seq === 1 ? AUDIT_GENESIS_HASH : hashAt(seq - 1),
      hash: hashAt(seq),
      leafIndex: index,
      proof:
        index >= 0 && index < checkpoint.treeSize
          ? inclusionProof(range(checkpoint.fromSeq, checkpoint.toSeq), index)
          : [],
      checkpoint: { ...checkpoint },
      signature: sig,
    };
  }

  /** The verdict on `docFor(20)` after `tamper` changed it (on a JSON copy, like a received document). */
  function verdictAfter(
    tamper: (doc: Record<string, unknown> & InclusionProofDocument) => void,
    key = publicKey,
  ) {
    const doc = JSON.parse(JSON.stringify(docFor(20))) as Record<string, unknown> & InclusionProofDocument;
    tamper(doc);
    return verifyProofDocument(doc, key);
  }

  function assertFails(tamper: Parameters<typeof verdictAfter>[0], reason: RegExp, key = publicKey): void {
    const verdict = verdictAfter(tamper, key);
    assert.equal(verdict.ok, false, `expected ${String(reason)}`);
    assert.match(verdict.reason, reason);
  }

  it('verifies every record of the checkpoint, also after a JSON round trip', () => {
    for (let seq = 11; seq <= 37; seq++) {
      const doc = docFor(seq);
      assert.deepEqual(verifyProofDocument(doc, publicKey), { ok: true, seq, checkpoint: 2 });
      assert.deepEqual(verifyProofDocument(JSON.parse(JSON.stringify(doc)), publicKey), {
        ok: true,
        seq,
        checkpoint: 2,
      });
    }
  });

  it('rejects an altered record, prevHash or hash', () => {
    assertFails((d) => (d.record['actor'] = 'u-9'), /^record hash does not match its contents$/);
    assertFails(
      (d) => ((d.record['details'] as Record<string, unknown>)['note'] = '未处理'),
      /record hash does not match/,
    );
    assertFails((d) => (d.record['injected'] = true), /record hash does not match/);
    assertFails((d) => (d.prevHash = flip(d.prevHash)), /record hash does not match/);
    assertFails((d) => (d.hash = hashAt(21)), /record hash does not match/);
    assertFails((d) => (d.record['seq'] = 21), /record body seq is not the document's seq 20/);
    assertFails((d) => (d.seq = 21), /record body seq is not the document's seq 21/);
    assertFails((d) => (d.record['at'] = { not: 'a string' }), /record hash does not match/);
  });

  it('rejects an altered proof or leaf index', () => {
    assertFails(
      (d) => (d.proof[2] = flip(must(d.proof[2], 'element'))),
      /inclusion proof does not lead to the root of checkpoint 2/,
    );
    assertFails((d) => d.proof.push(hashAt(1)), /inclusion proof/);
    assertFails((d) => d.proof.pop(), /inclusion proof/);
    assertFails((d) => (d.proof = []), /inclusion proof/);
    assertFails((d) => (d.leafIndex = 10), /leafIndex 10 is not seq - checkpoint.fromSeq = 9/);
    assertFails((d) => (d.proof[0] = 'zz'), /proof is missing or not a list of 64-hex hashes/);
  });

  it('rejects an altered checkpoint or signature, and the wrong key', () => {
    assertFails(
      (d) => (d.checkpoint.root = flip(d.checkpoint.root)),
      /^checkpoint signature does not verify with key [0-9a-f]{16}$/,
    );
    assertFails((d) => {
      d.checkpoint.toSeq = 36;
      d.checkpoint.treeSize = 26;
    }, /signature does not verify/);
    assertFails((d) => (d.checkpoint.toSeq = 36), /^checkpoint treeSize is not toSeq - fromSeq \+ 1$/);
    assertFails((d) => (d.checkpoint.prevRoot = null), /signature does not verify/);
    assertFails(
      (d) => (d.signature = signCheckpoint({ ...statement, checkpoint: 3 }, privateKey)),
      /signature does not verify/,
    );
    assertFails((d) => (d.signature = 'garbage'), /signature does not verify/);
    const otherId = keyIdOf(other.publicKey);
    assertFails(
      () => undefined,
      new RegExp(`signed by key ${statement.keyId}, not by the given key ${otherId}`),
      other.publicKey,
    );
    assertFails(
      (d) => (d.checkpoint.keyId = otherId),
      new RegExp(`signature does not verify with key ${otherId}`),
      other.publicKey,
    );
    assertFails(() => undefined, /not an Ed25519 public key/, privateKey);
  });

  it('rejects a record outside the checkpoint, and a last record that is not the head', () => {
    const outside = { ...docFor(5), leafIndex: 0 };
    const verdict = verifyProofDocument(outside, publicKey);
    assert.deepEqual(verdict, {
      ok: false,
      reason: 'record 5 is not covered by checkpoint 2 (records 11..37)',
    });
    // Only a signer can produce this inconsistency, but a verifier still catches it.
    const lying = { ...statement, headHash: hashAt(36) };
    const doc = docFor(37, lying, signCheckpoint(lying, privateKey));
    const last = verifyProofDocument(doc, publicKey);
    assert.equal(last.ok, false);
    assert.match(last.reason, /headHash/);
  });

  it('rejects missing fields and non-objects with a reason naming what is wrong', () => {
    const required: (keyof InclusionProofDocument)[] = [
      'format',
      'record',
      'seq',
      'prevHash',
      'hash',
      'leafIndex',
      'proof',
      'checkpoint',
      'signature',
    ];
    for (const key of required) {
      const { [key]: _dropped, ...rest } = docFor(20);
      const verdict = verifyProofDocument(rest, publicKey);
      assert.equal(verdict.ok, false, key);
      assert.match(verdict.reason, new RegExp(key));
    }
    for (const key of ['root', 'keyId', 'createdAt']) {
      const doc = docFor(20);
      const { [key]: _dropped, ...checkpoint } = doc.checkpoint as unknown as Record<string, unknown>;
      assert.deepEqual(verifyProofDocument({ ...doc, checkpoint }, publicKey), {
        ok: false,
        reason: `checkpoint lacks fields: ${key}`,
      });
    }
    assertFails(
      (d) => ((d.checkpoint as unknown as Record<string, unknown>)['note'] = 'x'),
      /unknown fields: note/,
    );
    assertFails(
      (d) => (d.format = 'pujiang-audit-proof/v2' as typeof AUDIT_PROOF_FORMAT),
      /format is not pujiang-audit-proof\/v1/,
    );
    for (const value of [null, undefined, 42, 'proof', [], [docFor(20)]]) {
      assert.deepEqual(verifyProofDocument(value, publicKey), {
        ok: false,
        reason: 'proof document is not a JSON object',
      });
    }
  });

  it('never throws on arbitrarily mangled documents', () => {
    // A deterministic walk: replace one value anywhere in the document with junk, many times.
    const junk: unknown[] = [
      null,
      0,
      -1,
      1.5,
      '',
      'x',
      [],
      {},
      [null],
      { a: 1 },
      true,
      2 ** 60,
      '0'.repeat(64),
    ];
    let state = 7;
    const next = (n: number): number => {
      state = (state * 1_103_515_245 + 12_345) % 2_147_483_648;
      return state % n;
    };
    for (let round = 0; round < 500; round++) {
      const doc = JSON.parse(JSON.stringify(docFor(11 + next(27)))) as Record<string, unknown>;
      let node: Record<string, unknown> = doc;
      for (;;) {
        const keys = Object.keys(node);
        const key = must(keys[next(keys.length)], 'key');
        const child = node[key];
        if (typeof child === 'object' && child !== null && next(2) === 0 && Object.keys(child).length > 0) {
          node = child as Record<string, unknown>;
          continue;
        }
        node[key] = junk[next(junk.length)];
        break;
      }
      const verdict = verifyProofDocument(doc, publicKey);
      assert.equal(typeof verdict.ok, 'boolean');
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('the worked example of docs/audit-format.md', () => {
  // RFC 8032 §7.1 TEST 1: a published test key, so anyone can reproduce these values. Never use it.
  const seed = '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60';
  const privateKey = createPrivateKey({
    key: Buffer.concat([unhex('302e020100300506032b657004220420'), unhex(seed)]),
    format: 'der',
    type: 'pkcs8',
  });
  const publicKey = createPublicKey(privateKey);
  const bodies: Record<string, unknown>[] = [
    {
      seq: 1,
      id: '0b7c5f4e-2f4a-4c1e-9a53-6f1d2c3b4a51',
      at: '2025-03-01T08:00:00.000Z',
      actor: 'u-zhang-wei',
      actorKind: 'user',
      org: 'org-huangpu-ops',
      action: 'case.create',
      resourceType: 'case',
      resourceId: 'c-1001',
      area: '310101002',
      purpose: null,
      requestId: 'req-7f3a',
      outcome: 'success',
      details: { title: '井盖缺失', channel: '12345' },
    },
    {
      seq: 2,
      id: '5d2e8a90-61b3-4f0c-8e7d-2a9c4b1f3e62',
      at: '2025-03-01T08:00:05.250Z',
      actor: 'u-li-na',
      actorKind: 'user',
      org: 'org-huangpu-ops',
      action: 'person.read',
      resourceType: 'person',
      resourceId: 'p-88',
      area: '310101002',
      purpose: '办件核验',
      requestId: 'req-7f3b',
      outcome: 'success',
      details: { fields: ['name', 'phone'] },
    },
    {
      seq: 3,
      id: 'c4a1f7d2-9b8e-4d6a-b3c5-7e2f1a0d9c83',
      at: '2025-03-01T08:01:12.007Z',
      actor: 'k-sensor-gw',
      actorKind: 'api-key',
      org: 'org-city-iot',
      action: 'area.update',
      resourceType: 'area',
      resourceId: '310104',
      area: '310104',
      purpose: null,
      requestId: null,
      outcome: 'denied',
      details: { reason: 'forbidden' },
    },
  ];
  const expectedHashes = [
    'f108af0d6ce6268a419fce1384909ddb8fd46c4bad2c20b5a008fcf70d5255d5',
    'c8836785e8b9662d7b7aa87b27fcb78d21b439911a3de84b3713eb3c41f3a0a4',
    '7ebb1d918328a47a745d1ddd54ff198815f0f7ce0defcd4d86ab6d1255c76289',
  ];
  const root = '7431464768e4075ff198cac938b93c45c8430a8a3fb70ba0cd83833c21fcaa98';

  it('reproduces the canonical JSON, record hashes, tree, key id, signature and proof', () => {
    assert.equal(
      canonicalJson(bodies[0]),
      '{"action":"case.create","actor":"u-zhang-wei","actorKind":"user","area":"310101002",' +
        '"at":"2025-03-01T08:00:00.000Z","details":{"channel":"12345","title":"井盖缺失"},' +
        '"id":"0b7c5f4e-2f4a-4c1e-9a53-6f1d2c3b4a51","org":"org-huangpu-ops","outcome":"success",' +
        '"purpose":null,"requestId":"req-7f3a","resourceId":"c-1001","resourceType":"case","seq":1}',
    );
    let prev = AUDIT_GENESIS_HASH;
    const hashes = bodies.map((b) => (prev = recordHash(prev, b)));
    assert.deepEqual(hashes, expectedHashes);
    assert.equal(merkleRoot(hashes), root);
    assert.deepEqual(inclusionProof(hashes, 1), [
      'bd06b1e7668d3aa88230513adeec767f493190ca40d710453ff8eba54addafa3',
      'b70c996009d21848c2140645a780ecadf3b51b880391b1901b0f8c3df0bf1771',
    ]);
    assert.equal(keyIdOf(publicKey), '06e3fd8fda29bb60');
    assert.equal(publicKeyJwk(publicKey).x, '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo');
    const statement: CheckpointStatement = {
      v: 1,
      checkpoint: 1,
      fromSeq: 1,
      toSeq: 3,
      treeSize: 3,
      root,
      headHash: must(expectedHashes[2], 'head'),
      prevRoot: null,
      createdAt: '2025-03-01T08:05:00.000Z',
      keyId: '06e3fd8fda29bb60',
    };
    assert.equal(
      canonicalJson(statement),
      '{"checkpoint":1,"createdAt":"2025-03-01T08:05:00.000Z","fromSeq":1,' +
        '"headHash":"7ebb1d918328a47a745d1ddd54ff198815f0f7ce0defcd4d86ab6d1255c76289","keyId":"06e3fd8fda29bb60",' +
        '"prevRoot":null,"root":"7431464768e4075ff198cac938b93c45c8430a8a3fb70ba0cd83833c21fcaa98","toSeq":3,' +
        '"treeSize":3,"v":1}',
    );
    const signature = signCheckpoint(statement, privateKey);
    assert.equal(
      signature,
      'DRRvwLY95w7U806R1w6X5P7YD8bC4qca8JhEB0I52mR0WRq4+d7axEpavy/Y873e1F3qVhL5UsuH66iQlSs3CQ==',
    );
    const doc: InclusionProofDocument = {
      format: AUDIT_PROOF_FORMAT,
      record: must(bodies[1], 'body'),
      seq: 2,
      prevHash: must(expectedHashes[0], 'prev'),
      hash: must(expectedHashes[1], 'hash'),
      leafIndex: 1,
      proof: inclusionProof(hashes, 1),
      checkpoint: statement,
      signature,
    };
    assert.deepEqual(verifyProofDocument(doc, parsePublicKey(publicKeyPem(publicKey))), {
      ok: true,
      seq: 2,
      checkpoint: 1,
    });
  });
});
