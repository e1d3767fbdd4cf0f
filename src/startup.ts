// Cold-start visibility: how long after the process started the job first asked the warehouse
// for something. Everything before that (loading modules, parsing the configuration, opening the
// backends) is start-up cost paid again by every Cloud Run task, so it is logged as a figure
// (`startupMs`) that Cloud Logging can chart and `npm run cold-start` measures.
import { performance } from "node:perf_hooks";
import type { Logger } from "./log.ts";

/** Methods that are not requests to the warehouse. */
const NOT_REQUESTS = new Set<PropertyKey>(["close", "constructor", "then"]);

/**
 * The same warehouse, logging once, at its first method call, the milliseconds since the process
 * started (`performance.now()` counts from the process's time origin).
 */
export function logFirstWarehouseRequest<W extends object>(warehouse: W, log: Pick<Logger, "info">, now: () => number = () => performance.now()): W {
  let logged = false;
  return new Proxy(warehouse, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== "function" || NOT_REQUESTS.has(property)) return value;
      return (...args: unknown[]) => {
        if (!logged) {
          logged = true;
          const startupMs = Math.round(now());
          log.info({ startupMs, firstRequest: String(property) }, `first warehouse request (${String(property)}) ${startupMs} ms after the process started`);
        }
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}
