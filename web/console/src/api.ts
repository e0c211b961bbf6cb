// The console's JSON API (crates/console) from the page: the session is the HttpOnly
// cookie the browser sends; state changes carry the session's CSRF token.

/** An answer that was not 2xx: its status and the server's `error` text. */
export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
  ) {
    super(message);
  }
}

let csrf = "";
let onSessionEnd: () => void = () => {};

/** Sets the CSRF token state changes carry (from login or `/me`). */
export function setCsrf(token: string): void {
  csrf = token;
}

/** Called when the server says the session is gone (expired, ended elsewhere). */
export function whenSessionEnds(f: () => void): void {
  onSessionEnd = f;
}

/** Calls `method path` with `body` as JSON; resolves to the JSON answer (or null). */
export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  let r: Response;
  try {
    r = await fetch(`/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch {
    throw new ApiError(0, "the console is unreachable; check your connection and try again");
  }
  const text = await r.text();
  let json: unknown = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON (a proxy's page, say): the status says enough.
  }
  if (!r.ok) {
    const message =
      (json as { error?: string } | null)?.error ?? `the console answered ${r.status} ${r.statusText}`;
    // Logging in with a wrong password is a 401 too, but not the end of a session.
    if (r.status === 401 && path !== "/login") onSessionEnd();
    throw new ApiError(r.status, message);
  }
  return json as T;
}

/** A caveat as the console lists it (serde's form of orbit_protocol's Caveat). */
export type ServerCaveat = "ReadOnly" | { Prefix: { bucket: string; prefix: string } } | { NotAfter: number };

export interface Me {
  email: string;
  csrf: string;
  expires: number;
}

export interface Project {
  id: string;
  name: string;
  created: number;
}

export interface KeyEntry {
  head: string;
  name: string;
  created: number;
  caveats: ServerCaveat[];
  revoked: number | null;
}

export interface Limits {
  storage: number | null;
  egress: number | null;
  segments: number | null;
}

export interface Day {
  day: string;
  bytes: number;
  segments: number;
  objects: number;
  byte_hours: number;
  egress: number;
}

export interface Invoice {
  byte_hours: number;
  segment_hours: number;
  bandwidth: { get: number; put: number; get_audit: number; get_repair: number; put_repair: number };
  storage: number;
  egress: number;
  segments: number;
  total: number;
  paid: number;
  payments: number;
  due: number;
}

export interface Usage {
  project: string;
  month: string;
  limits: Limits;
  stored: { bytes: number; segments: number };
  days: Day[];
  /** The day of `days` that is today, so far (not yet rolled up). */
  partial: string | null;
  invoice: Invoice;
}

export interface Channel {
  id: number;
  recipient: string;
  value: number;
  nonce: number;
  expiration: number;
  authorized: number;
}

export interface Billing {
  payments: boolean;
  wallet?: string | null;
  balance?: number;
  channels?: Channel[];
}

export interface SatelliteInfo {
  url: string;
  key: string;
  max_projects: number;
}

export interface ListedObject {
  key: string;
  metadata: string;
  created: number;
}
