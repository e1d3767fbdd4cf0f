// What a pair's reads will cost, from the bytes they scan: pure arithmetic over published list
// prices (on-demand, US multi-region, before any free tier or discount). Prices change; each
// constant says where it was read and when.
import { formatBytes } from "../units.ts";

export const TIB = 1024 ** 4;

/**
 * BigQuery Storage Read API, on-demand, per TiB read (the `table` route: a read session on each
 * table, billed on the bytes its streams scan). NOT CONFIRMED: the stored copies of
 * cloud.google.com/bigquery/pricing searched on 2026-12-03 did not show this row; 1.1 is the
 * figure widely quoted for it since 2023. Check the pricing page before relying on it.
 */
export const STORAGE_READ_USD_PER_TIB = 1.1;

/**
 * BigQuery on-demand query pricing, per TiB processed (the `query` route: ROW_LIMIT or
 * BQ_READ_ROUTE=query). cloud.google.com/bigquery/pricing ("On-demand pricing (per TiB)"), the
 * figure $6.25 as quoted from it by a 2026 note (adriennevermorel.com, "BigQuery On-Demand Billing
 * Mechanics"); searched 2026-12-03, the stored copy of Google's page cut before the number.
 */
export const QUERY_ON_DEMAND_USD_PER_TIB = 6.25;

/** On-demand queries are billed at least 10 MB per table referenced (and per query). */
export const QUERY_MIN_BILLED_BYTES = 10 * 1024 ** 2;

export type ReadRoute = "table" | "query" | "local";

export interface CostEstimate {
  usd: number;
  /** The bytes billed: the bytes scanned, with the query route's 10 MB minimum per read. */
  billedBytes: number;
  usdPerTiB: number;
  /** Which price applies, for a person. */
  price: string;
}

/** Bytes a read route bills for reads scanning `bytes` each. */
export function billedBytes(route: ReadRoute, bytes: readonly number[]): number {
  if (route === "local") return 0;
  return bytes.reduce((n, b) => n + (route === "query" ? Math.max(b, QUERY_MIN_BILLED_BYTES) : b), 0);
}

/** The list price of reads scanning `bytes` each, by the route the run takes. */
export function estimateCost(route: ReadRoute, bytes: readonly number[]): CostEstimate {
  const billed = billedBytes(route, bytes);
  if (route === "local") return { usd: 0, billedBytes: 0, usdPerTiB: 0, price: "local DuckDB file: no charge" };
  const usdPerTiB = route === "table" ? STORAGE_READ_USD_PER_TIB : QUERY_ON_DEMAND_USD_PER_TIB;
  const price =
    route === "table"
      ? `Storage Read API on-demand, $${STORAGE_READ_USD_PER_TIB}/TiB read (unconfirmed list price)`
      : `on-demand queries, $${QUERY_ON_DEMAND_USD_PER_TIB}/TiB processed, 10 MB minimum per read`;
  return { usd: (billed / TIB) * usdPerTiB, billedBytes: billed, usdPerTiB, price };
}

/** Dollars for a person: cents below $100, whole dollars above, "<$0.01" for a sliver, "$0" for nothing. */
export function formatUsd(usd: number): string {
  if (usd === 0) return "$0";
  if (usd < 0.01) return "<$0.01";
  return usd < 100 ? `$${usd.toFixed(2)}` : `$${Math.round(usd).toLocaleString("en-US")}`;
}

/** "1.2 GiB" or "-" when unknown. */
export function formatMaybeBytes(bytes: number | null | undefined): string {
  return bytes === null || bytes === undefined ? "-" : formatBytes(bytes);
}
