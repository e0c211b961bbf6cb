// Access grants made in the browser, byte for byte as `uplink access create` makes
// them (crates/uplink/src/project.rs, Access::new and serialize): the passphrase
// and the root key it derives never leave the page.
//
// grant = "orbit-access1" + hex(bincode(Access { satellite, satellite_key, api_key, root }))
// root  = Argon2id(passphrase, salt = BLAKE3-derive-key("orbit access salt v1", head),
//         m = 19456 KiB, t = 2, p = 1, 32 bytes) — the argon2 crate's defaults
// head  = the first 16 bytes of the API key's bincode body.

import { argon2idAsync } from "@noble/hashes/argon2.js";
import { blake3 } from "@noble/hashes/blake3.js";

const GRANT_PREFIX = "orbit-access1";
const KEY_PREFIX = "orbit1";
const SALT_CONTEXT = "orbit access salt v1";

/** Lowercase hex of `b`. */
export function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** The bytes of even-length hex `s`, or an error naming what is wrong. */
export function fromHex(s: string, what: string): Uint8Array {
  if (s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) {
    throw new Error(`${what} is not hex`);
  }
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** The 16-byte head of an API key (`orbit1…`): what the root key's salt comes from. */
export function apiKeyHead(apiKey: string): Uint8Array {
  const k = apiKey.trim();
  if (!k.startsWith(KEY_PREFIX)) throw new Error(`an API key starts with ${KEY_PREFIX}`);
  const body = fromHex(k.slice(KEY_PREFIX.length), "the API key");
  // head (16) + caveat count (u64) + tag (32), at least.
  if (body.length < 56) throw new Error("the API key is cut short");
  return body.slice(0, 16);
}

/** The root encryption key of `passphrase` for the API key with `head`. */
export async function rootKey(passphrase: string, head: Uint8Array): Promise<Uint8Array> {
  const context = new TextEncoder().encode(SALT_CONTEXT);
  const salt = blake3(head, { context, dkLen: 32 });
  return argon2idAsync(new TextEncoder().encode(passphrase), salt, {
    m: 19456,
    t: 2,
    p: 1,
    dkLen: 32,
    version: 0x13,
  });
}

/** bincode 1's encoding of a string: its UTF-8 length as a little-endian u64, then it. */
function bincodeString(s: string): Uint8Array {
  const bytes = new TextEncoder().encode(s);
  const out = new Uint8Array(8 + bytes.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(bytes.length), true);
  out.set(bytes, 8);
  return out;
}

/** An access grant for the satellite at `satellite` holding `satelliteKey` (hex). */
export async function makeGrant(
  satellite: string,
  satelliteKey: string,
  apiKey: string,
  passphrase: string,
): Promise<string> {
  const key = fromHex(satelliteKey.trim(), "the satellite key");
  if (key.length !== 32) throw new Error("the satellite key is 32 bytes (64 hex digits)");
  if (passphrase.length === 0) throw new Error("the passphrase is empty");
  const root = await rootKey(passphrase, apiKeyHead(apiKey));
  const parts = [bincodeString(satellite), key, bincodeString(apiKey.trim()), root];
  const body = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    body.set(p, at);
    at += p.length;
  }
  return GRANT_PREFIX + toHex(body);
}
