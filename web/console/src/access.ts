// What a grant held in the page can do without the satellite: restrict its API key
// (macaroon caveats chained with BLAKE3, as crates/protocol/src/apikey.rs), encrypt a
// path prefix for a prefix caveat, and decrypt the object keys and metadata a listing
// returns (as crates/uplink/src/crypt.rs). AES-256-GCM is WebCrypto's.

import { blake3 } from "@noble/hashes/blake3.js";
import { fromHex, toHex } from "./grant";

const KEY_PREFIX = "orbit1";
const GRANT_PREFIX = "orbit-access1";
const enc = new TextEncoder();

/** A restriction on an API key, as the satellite checks it. */
export type Caveat =
  | { kind: "read-only" }
  | { kind: "prefix"; bucket: string; prefix: string }
  | { kind: "not-after"; unix: number };

/** A grant's parts. */
export interface Grant {
  satellite: string;
  satelliteKey: Uint8Array;
  apiKey: string;
  root: Uint8Array;
}

function u64(n: number | bigint): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n), true);
  return out;
}

function u32(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n, true);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function str(s: string): Uint8Array {
  const b = enc.encode(s);
  return concat([u64(b.length), b]);
}

/** bincode 1 of a caveat: the variant's index (u32), then its fields. */
export function caveatBytes(c: Caveat): Uint8Array {
  switch (c.kind) {
    case "read-only":
      return u32(0);
    case "prefix":
      return concat([u32(1), str(c.bucket), str(c.prefix)]);
    case "not-after":
      return concat([u32(2), u64(c.unix)]);
  }
}

/** The API key `apiKey` with `caveat` added: anyone holding a key can narrow it. */
export function restrictKey(apiKey: string, caveat: Caveat): string {
  const k = apiKey.trim();
  if (!k.startsWith(KEY_PREFIX)) throw new Error(`an API key starts with ${KEY_PREFIX}`);
  const body = fromHex(k.slice(KEY_PREFIX.length), "the API key");
  if (body.length < 56) throw new Error("the API key is cut short");
  const view = new DataView(body.buffer, body.byteOffset);
  const count = view.getBigUint64(16, true);
  const tag = body.slice(body.length - 32);
  const c = caveatBytes(caveat);
  const next = blake3(c, { key: tag });
  return (
    KEY_PREFIX +
    toHex(concat([body.slice(0, 16), u64(count + 1n), body.slice(24, body.length - 32), c, next]))
  );
}

class Reader {
  at = 0;
  constructor(private b: Uint8Array) {}
  take(n: number): Uint8Array {
    if (this.at + n > this.b.length) throw new Error("the access grant is cut short");
    const out = this.b.slice(this.at, this.at + n);
    this.at += n;
    return out;
  }
  u64(): number {
    const v = new DataView(this.take(8).buffer).getBigUint64(0, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error("the access grant is malformed");
    return Number(v);
  }
  str(): string {
    return new TextDecoder("utf-8", { fatal: true }).decode(this.take(this.u64()));
  }
  done(): boolean {
    return this.at === this.b.length;
  }
}

/** Parses an access grant (`orbit-access1…`). */
export function parseGrant(text: string): Grant {
  const t = text.trim();
  if (!t.startsWith(GRANT_PREFIX)) throw new Error(`an access grant starts with ${GRANT_PREFIX}`);
  const r = new Reader(fromHex(t.slice(GRANT_PREFIX.length), "the access grant"));
  const g = { satellite: r.str(), satelliteKey: r.take(32), apiKey: r.str(), root: r.take(32) };
  if (!r.done()) throw new Error("the access grant has bytes after its end");
  return g;
}

/** The text form of a grant. */
export function serializeGrant(g: Grant): string {
  return GRANT_PREFIX + toHex(concat([str(g.satellite), g.satelliteKey, str(g.apiKey), g.root]));
}

function pathKey(root: Uint8Array, bucket: string): Uint8Array {
  return blake3(concat([root, enc.encode(bucket)]), {
    context: enc.encode("orbit path key v1"),
    dkLen: 32,
  });
}

async function aes(key: Uint8Array): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", key as BufferSource, "AES-GCM", false, [
    "encrypt",
    "decrypt",
  ]);
}

/** An object key encrypted as the uplink does: each `/`-separated part on its own. */
export async function encryptPath(root: Uint8Array, bucket: string, path: string): Promise<string> {
  const key = pathKey(root, bucket);
  const c = await aes(key);
  const parts = await Promise.all(
    path.split("/").map(async (part) => {
      if (part === "") return "";
      const plain = enc.encode(part);
      const nonce = blake3(plain, { key }).slice(0, 12);
      const sealed = new Uint8Array(
        await crypto.subtle.encrypt({ name: "AES-GCM", iv: nonce }, c, plain),
      );
      return toHex(concat([nonce, sealed]));
    }),
  );
  return parts.join("/");
}

/** An encrypted object key decrypted; fails on a wrong key or altered data. */
export async function decryptPath(root: Uint8Array, bucket: string, encrypted: string): Promise<string> {
  const c = await aes(pathKey(root, bucket));
  const parts = await Promise.all(
    encrypted.split("/").map(async (part) => {
      if (part === "") return "";
      const b = fromHex(part, "an object key");
      if (b.length < 28) throw new Error("cannot decrypt an object key");
      const plain = await crypto.subtle
        .decrypt({ name: "AES-GCM", iv: b.slice(0, 12) }, c, b.slice(12))
        .catch(() => {
          throw new Error("cannot decrypt an object key: wrong passphrase, or altered");
        });
      return new TextDecoder("utf-8", { fatal: true }).decode(plain);
    }),
  );
  return parts.join("/");
}

/** What an object's sealed metadata tells: its size. */
export interface ObjectMeta {
  size: number;
  segmentSize: number;
}

/** Opens an object's metadata (bound to its bucket and encrypted key). */
export async function openMeta(
  root: Uint8Array,
  bucket: string,
  encryptedKey: string,
  sealed: Uint8Array,
): Promise<ObjectMeta> {
  if (sealed.length < 28) throw new Error("cannot decrypt object metadata");
  const key = blake3(concat([root, enc.encode(bucket), new Uint8Array([0]), enc.encode(encryptedKey)]), {
    context: enc.encode("orbit object metadata key v1"),
    dkLen: 32,
  });
  const body = new Uint8Array(
    await crypto.subtle
      .decrypt({ name: "AES-GCM", iv: sealed.slice(0, 12) }, await aes(key), sealed.slice(12))
      .catch(() => {
        throw new Error("cannot decrypt object metadata: wrong passphrase, or altered");
      }),
  );
  // bincode: version u32, content key [32], size u64, segment size u64.
  if (body.length !== 52) throw new Error("object metadata of an unknown format");
  const v = new DataView(body.buffer);
  if (v.getUint32(0, true) !== 1) throw new Error(`object metadata version ${v.getUint32(0, true)} is unknown`);
  return {
    size: Number(v.getBigUint64(36, true)),
    segmentSize: Number(v.getBigUint64(44, true)),
  };
}

/** A grant narrowed by `caveats`; a prefix caveat's path is encrypted here first. */
export async function restrictGrant(g: Grant, caveats: Caveat[]): Promise<Grant> {
  let apiKey = g.apiKey;
  for (const c of caveats) {
    const sealed =
      c.kind === "prefix" ? { ...c, prefix: await encryptPath(g.root, c.bucket, c.prefix) } : c;
    apiKey = restrictKey(apiKey, sealed);
  }
  return { ...g, apiKey };
}
