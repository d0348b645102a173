/**
 * `POST /api/v1/codes/validate`: validates a code and tells what it encodes, or why it is invalid.
 * A POST body rather than a URL, because a resident ID is personal data and URLs end up in logs.
 */
import { Type } from 'typebox';
import type { HttpServer } from '../http/server.ts';
import { assertValid, CODE_KINDS } from './codes.ts';

export function registerCodeRoutes(app: HttpServer): void {
  app.post(
    '/api/v1/codes/validate',
    {
      schema: {
        tags: ['codes'],
        summary: 'Validate a division code, resident ID, credit code or component identifier',
        description:
          'Answers 200 with the decoded parts when the code is valid, or 422 with a problem document whose ' +
          '`reason` is stable (format, length, unknown-province, unknown-division, birthdate, checksum, …) and ' +
          'whose `detail` names the offending position. A resident ID is answered in masked form only.',
        body: Type.Object(
          {
            kind: Type.Enum(['division', 'resident-id', 'credit-code', 'component-id']),
            value: Type.String({ minLength: 1, maxLength: 64 }),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            kind: Type.String(),
            valid: Type.Literal(true),
            value: Type.Record(Type.String(), Type.Unknown()),
          }),
        },
      },
    },
    async (request) => {
      const { kind, value } = request.body;
      const entry = CODE_KINDS[kind];
      const decoded = {
        ...(assertValid<object>(entry.check(value), entry.error) as Record<string, unknown>),
      };
      if (kind === 'resident-id') delete decoded['id'];
      return { kind, valid: true as const, value: decoded };
    },
  );
}
