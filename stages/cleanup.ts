// Stage 5: remove the working files, only once the upload has been verified.
import { rm } from "node:fs/promises";
import { JobError } from "../src/errors.ts";
import type { Stage } from "./types.ts";

export const cleanupStage: Stage = {
  name: "cleanup",
  async run(ctx) {
    const { config, state, layout, log } = ctx;
    if (!state.uploaded) throw new JobError("refusing to clean up: the upload was not verified", { reason: "not-uploaded" });
    await rm(layout.mergeParts, { recursive: true, force: true });
    await rm(layout.output, { force: true });
    if (config.keepCheckpoints) {
      log.info({ dir: layout.checkpoints }, `KEEP_CHECKPOINTS=true: keeping checkpoints in ${layout.checkpoints}`);
      return { checkpointsRemoved: false };
    }
    await rm(layout.checkpoints, { recursive: true, force: true });
    await rm(layout.root, { recursive: true, force: true });
    return { checkpointsRemoved: true };
  },
};
