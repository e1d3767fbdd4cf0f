// Stage 6: remove what the run staged, once the file is published: the pair's whole staging prefix
// (parts of this run and of older fingerprints, the assembly's objects) and its work directory.
import { rm } from "node:fs/promises";
import { describeError, JobError } from "../src/errors.ts";
import { PartStore, stagingPrefix } from "../src/parts/store.ts";
import type { Stage } from "./types.ts";

export const cleanupStage: Stage = {
  name: "cleanup",
  async run(ctx) {
    const { config, state, layout, log, bucket } = ctx;
    if (!state.uploaded) throw new JobError("refusing to clean up: the file was not published", { reason: "not-uploaded" });
    const where = `${bucket.location.replace(/\/+$/, "")}/${stagingPrefix(config.pair)}`;
    const { removed, left, error } = await new PartStore(bucket, config.pair).removeAll();
    log.info({ removed, staging: where }, `removed ${removed} staged objects from ${where}`);
    // The file is published and verified: leftovers cost storage, not correctness (a later run
    // replaces them, and the bucket's lifecycle rule deletes them), so they do not fail the run.
    if (left.length > 0) {
      log.warn(
        {
          left: left.length,
          first: left[0],
          error: describeError(error),
          fix: `delete ${where} (gcloud storage rm -r), or give the bucket a lifecycle rule for the _staging/ prefix (README)`,
        },
        `could not remove ${left.length} staged objects from ${where}: ${describeError(error)}`,
      );
    }
    await rm(layout.root, { recursive: true, force: true });
    return { stagedRemoved: removed, stagedLeft: left.length };
  },
};
