// Which hosts are this machine. An http:// endpoint (no TLS) is accepted only for these: a local
// protocol stand-in. Anything else carries bearer tokens and table data, so it must be https://.
// Kept apart from gcp/auth.ts so config parsing does not load google-auth-library.
import { isIPv4 } from "node:net";

/** 127.0.0.0/8, ::1 and localhost; `hostname` as URL gives it (IPv6 in brackets, lower case). */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  if (host === "localhost" || host === "::1" || host === "0:0:0:0:0:0:0:1") return true;
  return isIPv4(host) && host.startsWith("127.");
}
