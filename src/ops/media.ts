/**
 * Photos and attachments (现场照片), stored content-addressed on disk: a file is named by its
 * SHA-256 under `MEDIA_DIR/ab/abcdef…`, written to a temporary name and renamed, so a file either
 * is whole or is not there, and the same photo sent twice is stored once. The declared type must
 * match the file's first bytes; the size is bounded.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, type ReadStream } from 'node:fs';
import { mkdir, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AppError, Errors, type Database } from '../kernel/index.ts';
import { recordAudit, requireSignedIn, type CallContext } from '../trust/index.ts';
import { instancesWithAttachment } from '../workflow/index.ts';
import { canSeeCase } from './access.ts';
import { casesWithMedia, findMedia, insertMedia, mediaUploader } from './case.store.ts';

/** Accepted types and the magic bytes that prove them. */
const SIGNATURES: Record<string, (b: Buffer) => boolean> = {
  'image/jpeg': (b) => b.length > 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff,
  'image/png': (b) =>
    b.length > 8 && b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])),
  'image/webp': (b) =>
    b.length > 12 && b.toString('latin1', 0, 4) === 'RIFF' && b.toString('latin1', 8, 12) === 'WEBP',
  'application/pdf': (b) => b.length > 5 && b.toString('latin1', 0, 5) === '%PDF-',
};

export const MEDIA_TYPES: readonly string[] = Object.keys(SIGNATURES);

export interface StoredMedia {
  sha256: string;
  contentType: string;
  size: number;
}

const pathOf = (dir: string, sha256: string) => join(dir, sha256.slice(0, 2), sha256);

/** Stores a file after checking its type and size; audited. Resolves to its hash and metadata. */
export async function storeMedia(
  rt: { database: Database; mediaDir: string; mediaMaxBytes: number },
  ctx: CallContext,
  args: { contentType: string | undefined; body: Buffer },
): Promise<StoredMedia> {
  requireSignedIn(ctx.actor);
  const type = (args.contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  const check = SIGNATURES[type];
  if (!check)
    throw new AppError(Errors['unsupported-media-type'], {
      detail: `Content type "${type}" is not accepted; send one of ${MEDIA_TYPES.join(', ')}`,
    });
  if (args.body.length === 0) throw new AppError(Errors['bad-request'], { detail: 'The file is empty' });
  if (args.body.length > rt.mediaMaxBytes)
    throw new AppError(Errors['payload-too-large'], {
      detail: `Files are limited to ${rt.mediaMaxBytes} bytes`,
    });
  if (!check(args.body))
    throw new AppError(Errors['unsupported-media-type'], { detail: `The file's content is not ${type}` });
  const sha256 = createHash('sha256').update(args.body).digest('hex');
  const file = pathOf(rt.mediaDir, sha256);
  const exists = await stat(file).then(
    (s) => s.size === args.body.length,
    () => false,
  );
  if (!exists) {
    await mkdir(join(rt.mediaDir, sha256.slice(0, 2)), { recursive: true });
    const tmp = `${file}.${randomUUID()}.tmp`;
    await writeFile(tmp, args.body);
    await rename(tmp, file);
  }
  const media = { sha256, contentType: type, size: args.body.length };
  await rt.database.transact(async (trx) => {
    await insertMedia(trx, { ...media, createdBy: ctx.actor.name });
    await recordAudit(trx, ctx, {
      action: 'media.store',
      resourceType: 'media',
      resourceId: sha256,
      details: media,
    });
  });
  return media;
}

/** The stored metadata of `hashes`; 422 naming the first one that was never uploaded. */
export async function requireMedia(database: Database, hashes: readonly string[]): Promise<StoredMedia[]> {
  const unique = [...new Set(hashes)];
  const found = await findMedia(database.db, unique);
  const missing = unique.find((h) => !found.some((f) => f.sha256 === h));
  if (missing !== undefined)
    throw new AppError(Errors.unprocessable, {
      detail: `No uploaded file ${missing}; upload it to /api/v1/media first`,
    });
  return unique
    .map((h) => found.find((f) => f.sha256 === h))
    .filter((f): f is StoredMedia => f !== undefined);
}

/**
 * A stored file's metadata and a stream of its bytes, for whoever uploaded it or can see a case it
 * belongs to (a photo of a report is as private as the report); 404 otherwise, when unknown, or
 * when missing on disk.
 */
export async function openMedia(
  rt: { database: Database; mediaDir: string },
  ctx: CallContext,
  sha256: string,
): Promise<{ media: StoredMedia; stream: ReadStream }> {
  requireSignedIn(ctx.actor);
  const [media] = await findMedia(rt.database.db, [sha256]);
  const uploader = media ? await mediaUploader(rt.database.db, sha256) : undefined;
  const mine = uploader !== undefined && uploader === ctx.actor.name;
  const cases =
    media && !mine
      ? await casesWithMedia(rt.database.db, sha256, await instancesWithAttachment(rt.database.db, sha256))
      : [];
  if (!media || (!mine && !cases.some((c) => canSeeCase(ctx.actor, c))))
    throw new AppError(Errors['not-found'], { detail: 'No such file' });
  const file = pathOf(rt.mediaDir, sha256);
  const ok = await stat(file).then(
    () => true,
    () => false,
  );
  if (!ok) throw new AppError(Errors['not-found'], { detail: 'The file is missing from the media store' });
  return { media, stream: createReadStream(file) };
}
