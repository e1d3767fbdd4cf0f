// What the rest of the project may call in src/parquet: reading a footer without reading the file,
// its null counts per row group (the run report), and building the training file's footer from its
// parts' footers. The thrift primitives and field ids (footer.ts, fields.ts) are this folder's own business.
export { ParquetErrors, readFooterSummary, readRawFooter, summarizeFooter, type FooterSummary, type RawFooter, type RowGroupSummary } from "./footer.ts";
export { mergeFooters, parquetTrailer, type MergedFooter, type PlacedPart } from "./merged-footer.ts";
export { planPart, type PartPlan } from "./part-plan.ts";
export { schemaSha256, schemaSha256OfFooter, schemaText } from "./schema-hash.ts";
export { rowGroupStats, type FooterRowGroupStats, type RowGroupStats } from "./row-group-stats.ts";
