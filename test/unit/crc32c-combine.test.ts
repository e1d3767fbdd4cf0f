import { randomBytes } from "node:crypto";
import { crc32c } from "@node-rs/crc32";
import { describe, expect, it } from "vitest";
import { crc32cBase64 } from "../../src/checksum.ts";
import { crc32cCombine, crc32cFromBase64, crc32cOfConcatenation } from "../../src/crc32c-combine.ts";
import { rng } from "../../standins/rng.ts";

describe("crc32cCombine", () => {
  it("gives @node-rs/crc32's CRC32C of the whole for random splits of random data", () => {
    const random = rng(7);
    for (let trial = 0; trial < 200; trial += 1) {
      const data = randomBytes(Math.floor(random() * 5000));
      const cut = Math.floor(random() * (data.length + 1));
      const a = data.subarray(0, cut);
      const b = data.subarray(cut);
      expect(crc32cCombine(crc32c(a), crc32c(b), b.length)).toBe(crc32c(data));
    }
  });

  it("treats empty pieces as nothing, on either side", () => {
    const data = randomBytes(1234);
    const whole = crc32c(data);
    expect(crc32cCombine(whole, crc32c(Buffer.alloc(0)), 0)).toBe(whole);
    expect(crc32cCombine(0, whole, data.length)).toBe(whole);
    expect(crc32cOfConcatenation([])).toBe(0);
    expect(
      crc32cOfConcatenation([
        { crc32c: 0, bytes: 0 },
        { crc32c: whole, bytes: data.length },
        { crc32c: 0, bytes: 0 },
      ]),
    ).toBe(whole);
  });

  it("combines many pieces of uneven sizes in order, and order matters", () => {
    const random = rng(11);
    const pieces = Array.from({ length: 40 }, () => randomBytes(Math.floor(random() * 300)));
    const whole = crc32c(Buffer.concat(pieces));
    expect(crc32cOfConcatenation(pieces.map((p) => ({ crc32c: crc32c(p), bytes: p.length })))).toBe(whole);
    const swapped = [pieces[1]!, pieces[0]!, ...pieces.slice(2)];
    expect(crc32cOfConcatenation(swapped.map((p) => ({ crc32c: crc32c(p), bytes: p.length })))).not.toBe(whole);
  });

  it("holds for totals and single pieces beyond 4 GiB", () => {
    // 66 copies of a 64 MiB block: 4.125 GiB, checksummed incrementally by @node-rs/crc32.
    const block = randomBytes(64 * 1024 ** 2);
    const blockCrc = crc32c(block);
    const copies = 66;
    let streamed = 0;
    for (let i = 0; i < copies; i += 1) streamed = crc32c(block, streamed);
    // As one piece per block, and as two pieces where the second alone is over 4 GiB.
    expect(crc32cOfConcatenation(Array.from({ length: copies }, () => ({ crc32c: blockCrc, bytes: block.length })))).toBe(streamed);
    let tail = 0;
    for (let i = 1; i < copies; i += 1) tail = crc32c(block, tail);
    const tailBytes = (copies - 1) * block.length;
    expect(tailBytes).toBeGreaterThan(2 ** 32);
    expect(crc32cCombine(blockCrc, tail, tailBytes)).toBe(streamed);
  });

  it("refuses a length that is not a byte count", () => {
    expect(() => crc32cCombine(1, 2, -1)).toThrow(/not a byte count/);
    expect(() => crc32cCombine(1, 2, 1.5)).toThrow(/not a byte count/);
  });
});

describe("crc32cFromBase64", () => {
  it("reads back what Cloud Storage's base64 form holds and refuses anything else", () => {
    for (const value of [0, 1, 0x7fffffff, 0x80000000, 0xffffffff]) expect(crc32cFromBase64(crc32cBase64(value))).toBe(value);
    expect(() => crc32cFromBase64("AAAA")).toThrow(/not a base64 CRC32C/);
    expect(() => crc32cFromBase64("not base64!")).toThrow(/not a base64 CRC32C/);
  });
});
