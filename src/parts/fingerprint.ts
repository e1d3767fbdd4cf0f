// What makes a staged part reusable by a later attempt: the same query on the same version of the
// table, over the same target keys, cut by the same row-group plan into the same slice, written
// the same way. Any change to one of
// these gives another fingerprint, so an old part is never taken for a new one.
import { createHash } from "node:crypto";
import type { PartWriting } from "../extract/task.ts";
import type { TableQuery } from "../warehouse/port.ts";

/** Bumped whenever the bytes a part is written with change (writer, codec, statistics). */
export const PART_FORMAT_VERSION = 1;

export interface PartIdentity {
  query: TableQuery;
  /** The table's version (Warehouse.tableVersions): a table rebuilt under the same name is another part. */
  tableVersion: string | undefined;
  keysSha256: string;
  rowsPerGroup: number;
  rows: number;
  firstRowGroup: number;
  endRowGroup: number;
  writing: PartWriting;
}

export function partFingerprint(p: PartIdentity): string {
  const identity = JSON.stringify({
    v: PART_FORMAT_VERSION,
    dataset: p.query.dataset,
    table: p.query.table,
    version: p.tableVersion ?? null,
    columns: p.query.columns.map((c) => [c.source, c.target, c.type]),
    dateFrom: p.query.dateFrom,
    dateTo: p.query.dateTo,
    rowLimit: p.query.rowLimit ?? null,
    notNullColumn: p.query.notNullColumn ?? null,
    keys: p.keysSha256,
    rows: p.rows,
    rowsPerGroup: p.rowsPerGroup,
    groups: [p.firstRowGroup, p.endRowGroup],
    writing: p.writing,
  });
  return createHash("sha256").update(identity).digest("hex");
}
