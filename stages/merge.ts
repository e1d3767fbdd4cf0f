// Stage 2: lay the file out from the staged parts: the target's part, then every feature table's,
// each placed after the one before it, and the merged footer computed from their footers. No
// bytes of the file are touched here; the upload stage composes them in the bucket.
import { layOut } from "../src/parts/assemble.ts";
import { formatBytes } from "../src/units.ts";
import type { Stage } from "./types.ts";

export const mergeStage: Stage = {
  name: "merge",
  async run(ctx) {
    const { log, state } = ctx;
    const extraction = state.extraction;
    if (!extraction) throw new Error("merge needs the extract stage's parts");
    const layout = layOut(extraction.parts, extraction.rowGroupRows);
    state.assembly = { layout, footerBytesEstimate: extraction.plan.footerEstimateBytes };
    const footerBytes = layout.footer.body.length;
    log.info(
      {
        parts: layout.parts.length,
        rows: layout.footer.rows,
        columns: layout.footer.columns,
        rowGroups: layout.footer.rowGroups,
        dataBytes: layout.dataEnd,
        footerBodyBytes: footerBytes,
        footerEstimateBytes: extraction.plan.footerEstimateBytes,
      },
      `laid out ${layout.footer.rows} rows x ${layout.footer.columns} columns in ${layout.footer.rowGroups} row groups from ${layout.parts.length} parts: ${formatBytes(layout.dataEnd)} of column chunks, a ${formatBytes(footerBytes)} footer`,
    );
    return {
      parts: layout.parts.length,
      rows: layout.footer.rows,
      columns: layout.footer.columns,
      rowGroups: layout.footer.rowGroups,
      dataBytes: layout.dataEnd,
      footerBytes,
    };
  },
};
