// Stage 5: remove the working files and the staged checkpoints, only once the upload has been verified.
import { rm } from "node:fs/promises";
import { CheckpointStore } from "../src/checkpoint-store.ts";
import { JobError, describeError } from "../src/errors.ts";
import type { Stage } from "./types.ts";

export const cleanupStage: Stage = {
  name: "cleanup",
  async run(ctx) {
    const { config, state, layout, log } = ctx;
    if (!state.uploaded) throw new JobError("refusing to clean up: the upload was not verified", { reason: "not-uploaded" });
    await rm(layout.mergeParts, { recursive: true, force: true });
    await rm(layout.output, { force: true });
    if (config.keepCheckpoints) {
      const staged = ctx.checkpointStore ? ` and in ${new CheckpointStore(ctx.checkpointStore, config.pair).location}` : "";
      log.info({ dir: layout.checkpoints }, `KEEP_CHECKPOINTS=true: keeping checkpoints in ${layout.checkpoints}${staged}`);
      return { checkpointsRemoved: false };
    }
    let stagedRemoved: number | undefined;
    if (ctx.checkpointStore) {
      const store = new CheckpointStore(ctx.checkpointStore, config.pair, { log });
      const { removed, left, error } = await store.removeAll();
      stagedRemoved = removed;
      log.info({ removed, store: store.location }, `removed ${removed} staged checkpoints from ${store.location}`);
      // The training file is in place and verified: leftovers cost storage, not correctness (a
      // later run restores or replaces them), so they do not turn a good run into a failed one.
      if (left.length > 0) {
        log.warn(
          { left: left.length, first: left[0], error: describeError(error), fix: `delete ${store.location} (gcloud storage rm -r), or give the bucket a lifecycle rule that deletes old objects` },
          `could not remove ${left.length} staged checkpoints from ${store.location}: ${describeError(error)}`,
        );
      }
    }
    await rm(layout.checkpoints, { recursive: true, force: true });
    await rm(layout.root, { recursive: true, force: true });
    return { checkpointsRemoved: true, ...(stagedRemoved !== undefined ? { stagedRemoved } : {}) };
  },
};
