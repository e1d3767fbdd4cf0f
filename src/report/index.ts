// The run report and the index across pairs: pure functions from plain data to one
// self-contained HTML page each (stages/report.ts writes them to the bucket).
export { buildReportData, nullShare, type ReportData, type ReportInput, type TableTiming } from "./model.ts";
export { renderReport } from "./page.ts";
export { indexEntry, pairOfManifest, renderIndex, type IndexEntry } from "./index-page.ts";
