// Grants narrowed in the browser against the real `uplink access restrict` (this
// build's binary), byte for byte; object keys encrypted here decrypt here, and not
// with another passphrase.

import { execFileSync } from "node:child_process";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { decryptPath, encryptPath, parseGrant, restrictGrant, restrictKey, serializeGrant, type Caveat } from "./access";
import { makeGrant, toHex } from "./grant";

const uplink = process.env.ORBIT_UPLINK ?? resolve(__dirname, "../../../target/debug/uplink");

function randomHex(n: number): string {
  return toHex(crypto.getRandomValues(new Uint8Array(n)));
}

async function grant(passphrase = "correct horse battery"): Promise<string> {
  const api = "orbit1" + randomHex(16) + "0000000000000000" + randomHex(32);
  return makeGrant("https://127.0.0.1:7778", randomHex(32), api, passphrase);
}

function cli(access: string, args: string[]): string {
  return execFileSync(uplink, ["access", "restrict", "--access", access, ...args], { encoding: "utf8" }).trim();
}

describe("grants narrowed in the browser", () => {
  const cases: [string, Caveat[], string[]][] = [
    ["read-only", [{ kind: "read-only" }], ["--read-only"]],
    ["a bucket", [{ kind: "prefix", bucket: "photos", prefix: "" }], ["--bucket", "photos"]],
    [
      "a bucket and a prefix",
      [{ kind: "prefix", bucket: "photos", prefix: "2026/summer/" }],
      ["--bucket", "photos", "--prefix", "2026/summer/"],
    ],
    ["an expiry", [{ kind: "not-after", unix: 1_900_000_000 }], ["--not-after", "1900000000"]],
    [
      "all three",
      [
        { kind: "read-only" },
        { kind: "prefix", bucket: "b", prefix: "ünï/cødé" },
        { kind: "not-after", unix: 1_800_000_000 },
      ],
      ["--read-only", "--bucket", "b", "--prefix", "ünï/cødé", "--not-after", "1800000000"],
    ],
  ];
  for (const [what, caveats, args] of cases) {
    it(`equal uplink access restrict's for ${what}`, async () => {
      const g = await grant();
      const browser = serializeGrant(await restrictGrant(parseGrant(g), caveats));
      expect(browser).toBe(cli(g, args));
    }, 30_000);
  }

  it("narrow a narrowed grant again, as the CLI does", async () => {
    const g = await grant();
    const once = cli(g, ["--read-only"]);
    const twice = serializeGrant(await restrictGrant(parseGrant(once), [{ kind: "not-after", unix: 7 }]));
    expect(twice).toBe(cli(once, ["--not-after", "7"]));
  }, 30_000);

  it("keep the grant's satellite and root key", async () => {
    const g = parseGrant(await grant());
    const r = await restrictGrant(g, [{ kind: "read-only" }]);
    expect(r.satellite).toBe(g.satellite);
    expect(toHex(r.root)).toBe(toHex(g.root));
    expect(toHex(r.satelliteKey)).toBe(toHex(g.satelliteKey));
    expect(r.apiKey).not.toBe(g.apiKey);
  }, 30_000);

  it("refuse malformed grants and keys", async () => {
    expect(() => parseGrant("orbit-access2ab")).toThrow("starts with orbit-access1");
    expect(() => parseGrant("orbit-access1" + "00".repeat(9))).toThrow("cut short");
    const whole = await grant();
    expect(() => parseGrant(whole + "00")).toThrow("after its end");
    expect(() => restrictKey("orbit1abcd", { kind: "read-only" })).toThrow("cut short");
  }, 30_000);
});

describe("object keys encrypted in the browser", () => {
  it("round-trip component by component and keep prefixes", async () => {
    const root = parseGrant(await grant()).root;
    const e = await encryptPath(root, "b", "a/bc/d.txt");
    expect(e.split("/")).toHaveLength(3);
    expect(e.startsWith(await encryptPath(root, "b", "a/bc/"))).toBe(true);
    expect(await decryptPath(root, "b", e)).toBe("a/bc/d.txt");
    expect(await encryptPath(root, "other", "a/bc/d.txt")).not.toBe(e);
  }, 30_000);

  it("do not decrypt with another passphrase or when altered", async () => {
    const root = parseGrant(await grant("one")).root;
    const other = parseGrant(await grant("two")).root;
    const e = await encryptPath(root, "b", "secret.txt");
    await expect(decryptPath(other, "b", e)).rejects.toThrow("wrong passphrase");
    const flipped = e.slice(0, -1) + (e.endsWith("0") ? "1" : "0");
    await expect(decryptPath(root, "b", flipped)).rejects.toThrow("cannot decrypt");
  }, 30_000);
});
