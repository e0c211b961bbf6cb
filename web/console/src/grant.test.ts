// The browser's grants against the real `uplink access create` (this build's
// binary): byte for byte the same, for several passphrases and API keys.

import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { apiKeyHead, makeGrant, toHex } from "./grant";

const uplink = process.env.ORBIT_UPLINK ?? resolve(__dirname, "../../../target/debug/uplink");

function randomHex(n: number): string {
  return toHex(crypto.getRandomValues(new Uint8Array(n)));
}

/** An API key's text: head, no caveats (a u64 count of 0), tag. */
function apiKey(): string {
  return "orbit1" + randomHex(16) + "0000000000000000" + randomHex(32);
}

function cli(satellite: string, key: string, api: string, passphrase: string): string {
  return execFileSync(
    uplink,
    ["access", "create", "--satellite", satellite, "--satellite-key", key, "--api-key", api, "--passphrase", passphrase],
    { encoding: "utf8" },
  ).trim();
}

describe("access grants made in the browser", () => {
  it("finds this build's uplink (cargo build -p uplink)", () => {
    expect(existsSync(uplink), `${uplink} is missing`).toBe(true);
  });

  for (const passphrase of ["correct horse battery", "ünïcødé pässphrase ✓", "x"]) {
    it(`equal uplink access create's for ${JSON.stringify(passphrase)}`, async () => {
      const [satellite, key, api] = ["https://127.0.0.1:7778", randomHex(32), apiKey()];
      const browser = await makeGrant(satellite, key, api, passphrase);
      expect(browser).toBe(cli(satellite, key, api, passphrase));
    }, 30_000);
  }

  it("differ for another passphrase", async () => {
    const [key, api] = [randomHex(32), apiKey()];
    const a = await makeGrant("https://s:1", key, api, "one passphrase");
    const b = await makeGrant("https://s:1", key, api, "another one");
    expect(a).not.toBe(b);
  }, 30_000);

  it("refuse malformed input with what is wrong", async () => {
    await expect(makeGrant("https://s:1", "zz", apiKey(), "p")).rejects.toThrow("satellite key is not hex");
    await expect(makeGrant("https://s:1", randomHex(31), apiKey(), "p")).rejects.toThrow("32 bytes");
    await expect(makeGrant("https://s:1", randomHex(32), "orbit2abc", "p")).rejects.toThrow("starts with orbit1");
    expect(() => apiKeyHead("orbit1" + randomHex(20))).toThrow("cut short");
    await expect(makeGrant("https://s:1", randomHex(32), apiKey(), "")).rejects.toThrow("empty");
  });
});
