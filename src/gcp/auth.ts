// Credentials for the Google client libraries. In production nothing is passed and the
// libraries use Application Default Credentials (the Cloud Run service account). When an
// endpoint points at this machine (a protocol stand-in in tests or `npm run standins`), the
// libraries still insist on an auth client before sending anything, so they get one holding a
// fixed placeholder token: no real credential is looked up, held, or logged on that path.
// Shared by the Storage and BigQuery adapters, so it knows nothing about either.
import { OAuth2Client } from "google-auth-library";
import { isLoopbackHost } from "../loopback.ts";

/** The bearer token sent to local stand-ins. Not a secret; stand-ins may check for it. */
export const STANDIN_ACCESS_TOKEN = "bqx-standin-token";

/** True for `http://127.x.y.z:PORT`, `http://localhost:PORT`, `http://[::1]:PORT` (any path). */
export function isLoopbackEndpoint(endpoint: string | undefined): boolean {
  if (!endpoint) return false;
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    return false;
  }
  // Plain http only: anything on https is a real service behind a certificate and must get
  // real credentials, even when it is reached through a local tunnel.
  return url.protocol === "http:" && isLoopbackHost(url.hostname);
}

/**
 * What a client library should authenticate with for `endpoint`: a placeholder-token client
 * for a loopback stand-in, otherwise `undefined` so the library falls back to Application
 * Default Credentials at run time.
 */
export function authClientForEndpoint(endpoint: string | undefined): OAuth2Client | undefined {
  if (!isLoopbackEndpoint(endpoint)) return undefined;
  const client = new OAuth2Client();
  // No expiry and no refresh token: the library never tries to refresh, so it never reaches
  // for a token endpoint that does not exist offline.
  client.setCredentials({ access_token: STANDIN_ACCESS_TOKEN, token_type: "Bearer" });
  return client;
}
