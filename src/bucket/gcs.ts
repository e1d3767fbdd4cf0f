// The Cloud Storage bucket, through @google-cloud/storage.
//
// Who retries what:
// - The library retries single idempotent requests (metadata, list, download) on 408/429/5xx
//   and dropped connections, and resumable uploads (session start, chunk PUTs, status queries,
//   resuming from the offset the server reports) - uploads only because every one carries
//   `ifGenerationMatch`; without a precondition it treats a 5xx upload as final.
// - `withRetry` (src/retry.ts) retries whole operations the library gives up on or never
//   retries: an upload whose library retries ran out (resuming the same session, so no byte is
//   sent twice), a DELETE (no precondition, so the library does not retry it), a simple upload
//   (the library never retries those), a download whose bytes failed their CRC32C.
// - A compose is sent with the library's retries off and retried here, whole: every compose
//   carries `ifGenerationMatch` on its destination, so a retry after an answer that was lost on
//   the way back gets 412, and only here do we know an earlier attempt was sent and may have
//   taken effect; then the destination is read and accepted if it is that compose's result.
//   `move` is such a compose of one source, then a DELETE of the source pinned by generation.
// - Errors are JobErrors at this edge: 401/403/404/412 are final and name the fix; 429, 5xx,
//   network faults and checksum mismatches are `retryable`.
import { createHash, randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { crc32c } from "@node-rs/crc32";
import { crc32cBase64 } from "../checksum.ts";
import { JobError } from "../errors.ts";
import { withRetry } from "../retry.ts";
import { bucketMissing, httpStatusOf as statusOf } from "../gcp/errors.ts";
import { GCS_MAX_COMPOSE_SOURCES, GcsObjects, PROBE_PREFIX, contentTypeOf, readLocal, sameRecord, type GcsBucketOptions } from "./gcs-objects.ts";
import {
  assertByteRange,
  assertSourceCount,
  type Bucket,
  type ByteRange,
  type Checksums,
  type ComposeOptions,
  type GetResult,
  type ObjectInfo,
  type PutResult,
  type SourceObject,
} from "./port.ts";

export { parseGcsUri, type GcsBucketOptions, type GcsRetryOptions } from "./gcs-objects.ts";

export class GcsBucket implements Bucket {
  readonly location: string;
  readonly maxComposeSources = GCS_MAX_COMPOSE_SOURCES;
  readonly bucketName: string;
  readonly prefix: string;
  private readonly o: GcsObjects;

  constructor(uri: string, opts: GcsBucketOptions = {}) {
    this.o = new GcsObjects(uri, opts);
    this.location = this.o.location;
    this.bucketName = this.o.bucketName;
    this.prefix = this.o.prefix;
  }

  async checkWritable(): Promise<void> {
    const name = `${PROBE_PREFIX}${randomBytes(6).toString("hex")}`;
    const file = this.o.file(name);
    const body = Buffer.from("bqx-training-builder write probe\n");
    await this.o.retrying("write a probe object to", name, () =>
      file.save(body, { resumable: false, validation: false, preconditionOpts: { ifGenerationMatch: 0 }, metadata: { crc32c: crc32cBase64(crc32c(body)) } }),
    );
    const probe = await this.stat(name);
    await this.o.retrying("list", name, () => this.o.bucket.getFiles({ prefix: this.prefix + name, maxResults: 1, autoPaginate: false }));
    await this.o.retrying("delete the probe object", name, async () => {
      try {
        await file.delete(probe?.generation ? { ifGenerationMatch: probe.generation } : {});
      } catch (err) {
        if (statusOf(err) !== 404) throw err;
      }
    });
  }

  /**
   * Resumable upload with the CRC32C declared up front and a generation precondition.
   * An earlier good object is never replaced by a bad one: Cloud Storage makes the new object
   * visible only when the session is finalized, and refuses to finalize when the bytes do not
   * match the declared CRC32C (400) or another writer moved the generation (412); a failed or
   * abandoned session leaves the previous generation in place.
   */
  async put(localPath: string, name: string, expected: Checksums, metadata: Record<string, string> = {}, range?: ByteRange): Promise<PutResult> {
    const uri = this.o.uriOf(name);
    const { size: fileSize } = await stat(localPath);
    if (range) {
      assertByteRange(localPath, range.start, range.end);
      if (range.end > fileSize)
        throw new JobError(`range [${range.start}, ${range.end}) of ${localPath} is past its end (${fileSize} bytes)`, { reason: "range-out-of-bounds" });
    }
    const size = range ? range.end - range.start : fileSize;
    const recorded: Record<string, string> = expected.sha256 !== undefined ? { sha256: expected.sha256 } : {};
    const before = await this.stat(name);
    const ifGenerationMatch = before?.generation ?? "0";
    const sameContent = (info: ObjectInfo | undefined): boolean =>
      info !== undefined &&
      info.bytes === size &&
      info.crc32c === expected.crc32c &&
      (expected.sha256 === undefined || info.metadata.sha256 === expected.sha256);
    let sessionUri: string | undefined;
    const started = Date.now();
    const what = range ? `bytes [${range.start}, ${range.end}) of ${localPath}` : localPath;
    this.o.log?.info({ uri, bytes: size, ifGenerationMatch }, `uploading ${what} to ${uri}`);
    await withRetry(
      async (attempt) => {
        if (attempt > 1) {
          // The previous attempt may have finalized with its answer lost: then the object is ours.
          const now = await this.stat(name);
          if (now?.generation !== before?.generation && sameContent(now)) return;
        }
        const resumed = sessionUri;
        try {
          const stream = this.o.file(name).createWriteStream({
            resumable: true,
            chunkSize: this.o.chunkSize,
            // The server checks the declared crc32c before the object exists. The library's own
            // check runs after finalization and "repairs" a mismatch by deleting the object,
            // which would leave no object at all where a good one used to be.
            validation: false,
            ...(resumed ? { uri: resumed } : {}),
            preconditionOpts: { ifGenerationMatch },
            metadata: { contentType: contentTypeOf(name), contentLength: size, crc32c: expected.crc32c, metadata: { ...metadata, ...recorded } },
          });
          stream.on("uri", (u: string) => (sessionUri = u));
          await pipeline(readLocal(localPath, range), stream, ...(this.o.signal ? [{ signal: this.o.signal }] : []));
        } catch (err) {
          const status = statusOf(err);
          if (status === 412) {
            const now = await this.stat(name);
            if (sameContent(now)) return;
          }
          // A session that failed (checksum) or expired cannot continue; the next try starts anew.
          const sessionGone = resumed !== undefined && (status === 404 || status === 410);
          if (sessionGone || status === 400) sessionUri = undefined;
          if (sessionGone) throw new JobError(`the upload session for ${uri} expired`, { reason: "upload-session-expired", retryable: true, cause: err });
          throw this.o.toJobError(err, "upload", name);
        }
      },
      this.o.policy(this.o.uploadAttempts, "upload to", uri),
    );
    const stored = await this.stat(name);
    if (!stored || !sameContent(stored)) {
      // Unreachable against Cloud Storage (it verified the declared crc32c); a server that
      // ignores it must not leave an unverified object behind.
      if (stored?.generation)
        await this.o
          .file(name)
          .delete({ ifGenerationMatch: stored.generation })
          .catch(() => undefined);
      throw new JobError(
        `${uri} does not match what was uploaded: expected ${size} bytes with crc32c ${expected.crc32c}, stored ${stored?.bytes ?? "nothing"} bytes with crc32c ${stored?.crc32c ?? "none"}`,
        { reason: "checksum-mismatch", retryable: true, fix: "run again; if it repeats, check that GCS_ENDPOINT points at Cloud Storage" },
      );
    }
    this.o.log?.info({ uri, bytes: stored.bytes, generation: stored.generation, seconds: (Date.now() - started) / 1000 }, `uploaded ${uri} (crc32c verified)`);
    return { uri, bytes: stored.bytes, checksums: { crc32c: stored.crc32c, sha256: expected.sha256 }, generation: stored.generation };
  }

  /**
   * One compose request, server-side: no bytes pass through this process. The destination is
   * conditioned on `opts.ifGenerationMatch`, else on the generation found there now ("0": none),
   * so a retry can never overwrite what another writer put there meanwhile.
   */
  async compose(sources: readonly SourceObject[], destination: string, opts: ComposeOptions = {}): Promise<ObjectInfo> {
    const uri = this.o.uriOf(destination);
    // More than 32 is left to Cloud Storage to refuse (400), converted to the same reason the
    // local bucket uses; none at all is a caller's mistake caught here.
    assertSourceCount(sources.length, Number.POSITIVE_INFINITY, uri);
    const ifGenerationMatch = opts.ifGenerationMatch ?? (await this.stat(destination))?.generation ?? "0";
    const metadata = opts.metadata ?? {};
    const request = {
      kind: "storage#composeRequest",
      destination: { contentType: opts.contentType ?? contentTypeOf(destination), metadata },
      // Each generation goes as read, the JSON API's int64 string (combine() sends parseInt of it).
      sourceObjects: sources.map((s) => ({ name: this.prefix + s.name, generation: s.generation })),
    };
    const started = Date.now();
    let stored: ObjectInfo | undefined;
    await withRetry(
      async (attempt) => {
        try {
          stored = this.o.infoOf(destination, await this.composeRequest(destination, request, ifGenerationMatch));
        } catch (err) {
          if (statusOf(err) === 412 && attempt > 1) {
            // An earlier attempt may have composed with its answer lost: then the object is ours.
            const now = await this.stat(destination);
            if (now && now.generation !== ifGenerationMatch && (await this.isComposedFrom(now, sources, metadata, opts.expected))) {
              stored = now;
              return;
            }
          }
          throw this.o.toJobError(err, "compose", destination);
        }
      },
      this.o.policy(this.o.uploadAttempts, "compose", uri),
    );
    const result = stored!;
    if (opts.expected && (result.bytes !== opts.expected.bytes || result.crc32c !== opts.expected.crc32c)) {
      // Deleted by its generation, so nothing another writer put there since is touched.
      const removed = await this.o
        .file(destination)
        .delete({ ifGenerationMatch: result.generation })
        .then(
          () => true,
          (err: unknown) => statusOf(err) === 404 || statusOf(err) === 412,
        );
      throw new JobError(
        `composing ${uri} from ${sources.length} sources gave ${result.bytes} bytes with crc32c ${result.crc32c}, expected ${opts.expected.bytes} bytes with crc32c ${opts.expected.crc32c}${removed ? "; the result was deleted" : `; deleting the result (generation ${result.generation}) failed too`}`,
        { reason: "checksum-mismatch", retryable: true, fix: "run again; if it repeats, the parts or their predicted crc32c are wrong: stage them again" },
      );
    }
    this.o.log?.info(
      {
        uri,
        bytes: result.bytes,
        generation: result.generation,
        components: result.componentCount,
        sources: sources.length,
        seconds: (Date.now() - started) / 1000,
      },
      `composed ${uri} from ${sources.length} sources${opts.expected ? " (size and crc32c verified)" : ""}`,
    );
    return result;
  }

  /** A compose of the one pinned source into `destination`, then a DELETE of that source generation. */
  async move(source: SourceObject, destination: string, opts: ComposeOptions = {}): Promise<ObjectInfo> {
    if (source.name === destination) throw new JobError(`cannot move ${this.o.uriOf(destination)} onto itself`, { reason: "bad-object-name" });
    const from = await this.o.statGeneration(source, `move ${this.o.uriOf(source.name)} to ${this.o.uriOf(destination)}`);
    if (opts.expected && (from.bytes !== opts.expected.bytes || from.crc32c !== opts.expected.crc32c)) {
      throw new JobError(
        `cannot move ${this.o.uriOf(source.name)}: it has ${from.bytes} bytes with crc32c ${from.crc32c}, expected ${opts.expected.bytes} bytes with crc32c ${opts.expected.crc32c}`,
        {
          reason: "checksum-mismatch",
          retryable: true,
          fix: "stage the object again",
        },
      );
    }
    const moved = await this.compose([source], destination, {
      ...opts,
      metadata: opts.metadata ?? from.metadata,
      expected: opts.expected ?? { bytes: from.bytes, crc32c: from.crc32c },
    });
    await this.o.retrying("delete the moved source", source.name, async () => {
      try {
        await this.o.file(source.name).delete({ ifGenerationMatch: source.generation });
      } catch (err) {
        const status = statusOf(err);
        // 404: gone already (an earlier try's answer was lost). 412: another writer put a new
        // object under that name meanwhile; the generation we moved is no longer live, and theirs stays.
        if (status === 412)
          this.o.log?.warn(
            { uri: this.o.uriOf(source.name), generation: source.generation },
            `moved ${this.o.uriOf(source.name)}, which another writer replaced meanwhile; their object stays`,
          );
        if ((status === 404 && !bucketMissing(err)) || status === 412) return;
        throw err;
      }
    });
    return moved;
  }

  stat(name: string): Promise<ObjectInfo | undefined> {
    return this.o.stat(name);
  }

  async get(name: string, localPath: string): Promise<GetResult> {
    const uri = this.o.uriOf(name);
    const info = await this.stat(name);
    if (!info)
      throw new JobError(`cannot download ${uri}: no such object`, {
        reason: "object-not-found",
        fix: "check the object name; list the bucket to see what is there",
      });
    await mkdir(path.dirname(path.resolve(localPath)), { recursive: true });
    return this.o.retrying("download", name, async () => {
      const staging = `${localPath}.download-${process.pid}-${randomBytes(4).toString("hex")}`;
      try {
        const sha = createHash("sha256");
        let crc = 0;
        let bytes = 0;
        const hasher = new Transform({
          transform(chunk: Buffer, _enc, cb) {
            crc = crc32c(chunk, crc);
            sha.update(chunk);
            bytes += chunk.length;
            cb(null, chunk);
          },
        });
        // Pinned to the generation whose crc32c we compare against, so a concurrent replace
        // fails the download instead of mixing two objects' bytes.
        const source = this.o.file(name, info.generation).createReadStream({ validation: false });
        await pipeline(source, hasher, createWriteStream(staging), ...(this.o.signal ? [{ signal: this.o.signal }] : []));
        const got = { crc32c: crc32cBase64(crc), sha256: sha.digest("hex") };
        if (bytes !== info.bytes || got.crc32c !== info.crc32c || (info.metadata.sha256 && info.metadata.sha256 !== got.sha256)) {
          throw new JobError(
            `checksum mismatch downloading ${uri}: object has ${info.bytes} bytes with crc32c ${info.crc32c}, received ${bytes} bytes with crc32c ${got.crc32c}`,
            {
              reason: "checksum-mismatch",
              retryable: true,
              fix: "run again; if it repeats, the stored object is damaged: delete it so it is rebuilt",
            },
          );
        }
        await rename(staging, localPath);
        return { uri, path: localPath, bytes, checksums: got, generation: info.generation };
      } finally {
        await rm(staging, { force: true });
      }
    });
  }

  async readRange(name: string, start: number, end: number): Promise<Buffer> {
    const uri = this.o.uriOf(name);
    assertByteRange(uri, start, end);
    if (start === end) return Buffer.alloc(0);
    const buf = await this.o.retrying("read a byte range of", name, async () => {
      const chunks: Buffer[] = [];
      for await (const c of this.o.file(name).createReadStream({ start, end: end - 1, validation: false })) chunks.push(c as Buffer);
      return Buffer.concat(chunks);
    });
    if (buf.length !== end - start) {
      throw new JobError(`range ${start}-${end} of ${uri} is past its end (${start + buf.length} bytes available)`, { reason: "range-out-of-bounds" });
    }
    return buf;
  }

  async list(prefix = ""): Promise<string[]> {
    const names: string[] = [];
    let pageToken: string | undefined;
    do {
      const query = { prefix: this.prefix + prefix, maxResults: this.o.listPageSize, autoPaginate: false, ...(pageToken ? { pageToken } : {}) };
      const [files, next] = await this.o.retrying("list", prefix, () => this.o.bucket.getFiles(query));
      for (const f of files) {
        const rel = f.name.slice(this.prefix.length);
        if (!rel.startsWith(PROBE_PREFIX)) names.push(rel);
      }
      pageToken = (next as { pageToken?: string } | null | undefined)?.pageToken;
    } while (pageToken);
    return names.sort();
  }

  async delete(name: string): Promise<void> {
    await this.o.retrying("delete", name, async () => {
      try {
        await this.o.file(name).delete();
      } catch (err) {
        if (statusOf(err) !== 404 || bucketMissing(err)) throw err;
      }
    });
  }

  /**
   * POST {destination}/compose through the library's own authenticated request path (the call
   * `Bucket.combine()` makes). Not `combine()` itself: it sends only contentType, contentEncoding
   * and contexts in the destination resource, so custom metadata would need a second request,
   * leaving a moment (or, after a crash, for good) where the composite exists without it.
   */
  private composeRequest(destination: string, json: object, ifGenerationMatch: string): Promise<Record<string, unknown>> {
    const file = this.o.file(destination);
    return new Promise((resolve, reject) => {
      file.request({ method: "POST", uri: "/compose", maxRetries: 0, json, qs: { ifGenerationMatch } }, (err, body) =>
        err ? reject(err) : resolve((body ?? {}) as Record<string, unknown>),
      );
    });
  }

  /**
   * Whether `now` is what this compose makes: its metadata, and the expected size and crc32c,
   * or (none expected) the sources' total size and component count, read at their generations.
   */
  private async isComposedFrom(
    now: ObjectInfo,
    sources: readonly SourceObject[],
    metadata: Record<string, string>,
    expected: ComposeOptions["expected"],
  ): Promise<boolean> {
    if (!sameRecord(now.metadata, metadata)) return false;
    if (expected) return now.bytes === expected.bytes && now.crc32c === expected.crc32c;
    let bytes = 0;
    let components = 0;
    for (const source of sources) {
      const info = await this.o.statGeneration(source, "check a compose").catch(() => undefined);
      if (!info) return false;
      bytes += info.bytes;
      components += info.componentCount ?? 1;
    }
    return now.bytes === bytes && now.componentCount === components;
  }
}
