/** Audit API: published keys and checkpoints (public), records and proofs (jurisdiction-scoped). */
import { Type } from 'typebox';
import type { Database, HttpServer } from '../kernel/index.ts';
import type { TrustRuntime } from './auth.service.ts';
import {
  checkpointNow,
  checkpointsPage,
  listAuditRecords,
  proveRecord,
  publishedKeys,
  type AuditSigner,
} from './audit.service.ts';
import { callContext, SECURED } from './context.ts';

const Hex64 = Type.String({ pattern: '^[0-9a-f]{64}$' });

const Statement = Type.Object({
  v: Type.Literal(1),
  checkpoint: Type.Integer(),
  fromSeq: Type.Integer(),
  toSeq: Type.Integer(),
  treeSize: Type.Integer(),
  root: Hex64,
  headHash: Hex64,
  prevRoot: Type.Union([Hex64, Type.Null()]),
  createdAt: Type.String(),
  keyId: Type.String(),
});
const SignedCheckpoint = Type.Object({ statement: Statement, signature: Type.String() });

const RecordView = Type.Object(
  {
    seq: Type.Integer(),
    id: Type.String(),
    at: Type.String(),
    actor: Type.Union([Type.String(), Type.Null()]),
    actorKind: Type.String(),
    org: Type.Union([Type.String(), Type.Null()]),
    action: Type.String(),
    resourceType: Type.String(),
    resourceId: Type.Union([Type.String(), Type.Null()]),
    area: Type.Union([Type.String(), Type.Null()]),
    purpose: Type.Union([Type.String(), Type.Null()]),
    requestId: Type.Union([Type.String(), Type.Null()]),
    outcome: Type.String(),
    details: Type.Record(Type.String(), Type.Unknown()),
    prevHash: Hex64,
    hash: Hex64,
  },
  { additionalProperties: false },
);

const RecordQuery = Type.Object(
  {
    actor: Type.Optional(Type.String({ maxLength: 100 })),
    action: Type.Optional(Type.String({ maxLength: 100 })),
    resourceType: Type.Optional(Type.String({ maxLength: 100 })),
    resourceId: Type.Optional(Type.String({ maxLength: 200 })),
    area: Type.Optional(Type.String({ pattern: '^[0-9]{6}([0-9]{3}){0,3}$' })),
    outcome: Type.Optional(
      Type.Union([Type.Literal('success'), Type.Literal('denied'), Type.Literal('failed')]),
    ),
    from: Type.Optional(Type.String({ format: 'date-time' })),
    to: Type.Optional(Type.String({ format: 'date-time' })),
    before: Type.Optional(
      Type.Integer({
        minimum: 1,
        description: 'Records with seq below this (the `next` of the previous page)',
      }),
    ),
    limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }),
  },
  { additionalProperties: false },
);

export function registerAuditRoutes(app: HttpServer, rt: TrustRuntime, signer: AuditSigner): void {
  const database: Database = rt.database;
  app.get(
    '/api/v1/audit/keys',
    {
      schema: {
        tags: ['audit'],
        summary: 'Public keys that sign audit checkpoints (Ed25519), including retired ones',
        response: {
          200: Type.Object({
            keys: Type.Array(
              Type.Object({
                keyId: Type.String(),
                algorithm: Type.Literal('Ed25519'),
                publicKeyPem: Type.String(),
                jwk: Type.Record(Type.String(), Type.Unknown()),
                createdAt: Type.String(),
                retiredAt: Type.Union([Type.String(), Type.Null()]),
              }),
            ),
          }),
        },
      },
    },
    async () => ({ keys: await publishedKeys(database) }),
  );

  app.get(
    '/api/v1/audit/checkpoints',
    {
      schema: {
        tags: ['audit'],
        summary: 'Signed checkpoints, newest first (public: roots reveal nothing of the records)',
        querystring: Type.Object(
          {
            before: Type.Optional(Type.Integer({ minimum: 1 })),
            limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Array(SignedCheckpoint) },
      },
    },
    async (request) =>
      checkpointsPage(database, {
        limit: request.query.limit,
        ...(request.query.before !== undefined && { before: request.query.before }),
      }),
  );

  app.post(
    '/api/v1/audit/checkpoints',
    {
      schema: {
        tags: ['audit'],
        summary: 'Sign a checkpoint over pending records now',
        security: SECURED,
        response: { 200: Type.Array(SignedCheckpoint) },
      },
    },
    async (request) => checkpointNow(database, signer, await callContext(rt, request)),
  );

  app.get(
    '/api/v1/audit/records',
    {
      schema: {
        tags: ['audit'],
        summary: "Audit records in the caller's jurisdiction, newest first (this read is audited too)",
        security: SECURED,
        querystring: RecordQuery,
        response: {
          200: Type.Object({
            records: Type.Array(RecordView),
            next: Type.Union([Type.Integer(), Type.Null()]),
          }),
        },
      },
    },
    async (request) => {
      const ctx = await callContext(rt, request);
      const { area, ...rest } = request.query;
      return listAuditRecords(database, ctx, { ...rest, ...(area !== undefined && { areaCode: area }) });
    },
  );

  app.get(
    '/api/v1/audit/proof/:seq',
    {
      schema: {
        tags: ['audit'],
        summary:
          'An inclusion proof of one record against its signed checkpoint (verify offline: docs/audit-format.md)',
        security: SECURED,
        params: Type.Object({ seq: Type.Integer({ minimum: 1 }) }),
      },
    },
    async (request) => proveRecord(database, await callContext(rt, request), request.params.seq),
  );
}
