// Before the upload stage publishes: the file about to replace training_<pair>.parquet is compared
// with the manifest of the one there (src/schema-change.ts), and SCHEMA_CHANGE decides: allow
// (info), warn (one warning line) or fail (nothing is composed or moved; the previous file, its
// metadata and manifest stay as they were, the staged parts stay for the next run; exit 1).
import { mkdir, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { JobError, describeError } from "../src/errors.ts";
import { manifestObjectName, trainingObjectName } from "../src/layout.ts";
import { compareSchemas, describeSchemaChange, hasDrift, type FileSchema, type PreviousManifest, type SchemaChange } from "../src/schema-change.ts";
import type { StageContext } from "./types.ts";

/** The published manifest, parsed; undefined when there is none, a reason when it cannot be read. */
async function previousManifest(ctx: StageContext): Promise<PreviousManifest | undefined | { unreadable: string }> {
  const name = manifestObjectName(ctx.config.pair);
  if (!(await ctx.bucket.stat(name))) return undefined;
  await mkdir(ctx.layout.root, { recursive: true });
  const file = path.join(ctx.layout.root, `previous-${name}`);
  try {
    await ctx.bucket.get(name, file);
    const parsed: unknown = JSON.parse(await readFile(file, "utf8"));
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed) ? parsed : { unreadable: "it is not a JSON object" };
  } catch (err) {
    if (err instanceof JobError && err.retryable) throw err;
    return { unreadable: describeError(err) };
  } finally {
    await rm(file, { force: true });
  }
}

/** Compares, logs, and throws a "schema-change" JobError when SCHEMA_CHANGE=fail and the columns or tables differ. */
export async function checkSchemaChange(ctx: StageContext, current: { rows: number; schema: FileSchema }): Promise<SchemaChange> {
  const { config, bucket, log } = ctx;
  const policy = config.schemaChange;
  const uri = `${bucket.location.replace(/\/+$/, "")}/${trainingObjectName(config.pair)}`;
  const published = await bucket.stat(trainingObjectName(config.pair));
  const previous = await previousManifest(ctx);
  let change: SchemaChange;
  if (previous && "unreadable" in previous) {
    change = { ...compareSchemas(policy, current, undefined), notCompared: `the previous manifest cannot be read (${previous.unreadable}): nothing compared` };
  } else {
    change = compareSchemas(policy, current, previous);
    if (!previous && published) change.notCompared = "the file in the bucket has no manifest: nothing compared";
    const described = change.previous?.generation;
    if (published?.generation && described && described !== published.generation) {
      change.staleManifest = `the manifest describes generation ${described}, the file in the bucket is generation ${published.generation} (a run published it but not its manifest): compared with that manifest`;
    }
  }
  const summary = describeSchemaChange(change);
  const fields = {
    schemaChange: policy,
    added: change.added.length,
    removed: change.removed.length,
    retyped: change.retyped.length,
    tablesAdded: change.tablesAdded.length,
    tablesRemoved: change.tablesRemoved.length,
    rowsChange: change.rowsChange,
    previousGeneration: published?.generation ?? null,
  };
  if (!hasDrift(change)) {
    const what = !change.previous
      ? "schema not compared"
      : change.notCompared
        ? `schema compared in part with the published ${uri}`
        : `schema unchanged since the published ${uri}`;
    log.info(fields, `${what}: ${summary}`);
    return change;
  }
  if (policy === "fail") {
    throw new JobError(
      `schema changed since the published ${uri}${published?.generation ? ` (generation ${published.generation})` : ""}: ${summary}; SCHEMA_CHANGE=fail, so it is kept with its manifest and nothing was published`,
      {
        reason: "schema-change",
        fix: "if the warehouse change is intended, run again with SCHEMA_CHANGE=warn or SCHEMA_CHANGE=allow (the staged parts are reused); otherwise restore the tables in the warehouse",
      },
    );
  }
  const message = `schema changed since the published ${uri}: ${summary}; publishing (SCHEMA_CHANGE=${policy})`;
  if (policy === "warn") log.warn(fields, message);
  else log.info(fields, message);
  return change;
}
