// The one place a pool worker's SourceSettings become a warehouse adapter. Each adapter is
// imported only when asked for, so a BACKEND=gcp worker never loads DuckDB's native library and a
// local one never loads the Google clients.
import type { SourceSettings } from "../extract/task.ts";
import type { WarehouseExtraction } from "./port.ts";

/** The extraction for a task's source. Cheap to call per task: the adapters keep their connections per thread. */
export async function openExtraction(source: SourceSettings): Promise<WarehouseExtraction> {
  switch (source.backend) {
    case "local": {
      const { DuckDBExtraction } = await import("./duckdb-read.ts");
      return new DuckDBExtraction(source.warehouse, source.duckdb);
    }
    case "gcp": {
      const { BigQueryExtraction } = await import("./bigquery-extract.ts");
      return new BigQueryExtraction(source.gcp);
    }
  }
}
