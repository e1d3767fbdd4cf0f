// The CRC32C of a concatenation, from the CRC32Cs and lengths of its pieces, without their bytes.
// Cloud Storage reports a composite object's CRC32C (and no MD5); predicting it from the parts'
// CRC32Cs lets the job check the assembled file end to end without reading 15 GiB back.
//
// The method is zlib's crc32_combine (madler, zlib 1.2.12+: multmodp/x2nmodp), with the
// Castagnoli polynomial: CRC(A || B) = CRC(A) * x^(8 * len(B)) mod P  xor  CRC(B), in GF(2), on
// the finalized CRC values (the pre- and post-conditioning cancel out). No npm package offers it
// for CRC32C; @node-rs/crc32 computes CRC32C over bytes and is what the tests check this against.

/** The Castagnoli polynomial, bit-reversed (the form CRC32C tables use). */
const POLY = 0x82f63b78;

/** a * b modulo P, both as reflected 32-bit polynomials. */
function multModP(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if ((a & m) !== 0) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = b & 1 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p >>> 0;
}

/**
 * X2N[k] = x^(2^k) mod P, for every k a safe-integer length can reach (3 + 53). zlib keeps 32
 * entries and wraps k at 32, which holds for CRC-32's polynomial but not for Castagnoli's:
 * wrapped, lengths of 4 GiB and more combine wrongly (the tests cover it).
 */
const X2N: number[] = (() => {
  const table: number[] = [];
  let p = 0x40000000; // x^1
  table.push(p);
  for (let k = 1; k < 64; k += 1) {
    p = multModP(p, p);
    table.push(p);
  }
  return table;
})();

/** x^(n * 2^k) mod P; n may exceed 2^32 (any safe integer). */
function x2nModP(n: number, k: number): number {
  let p = 0x80000000; // x^0
  while (n > 0) {
    if (n % 2 === 1) p = multModP(X2N[k]!, p);
    n = Math.floor(n / 2);
    k += 1;
  }
  return p;
}

/** CRC32C of A || B from CRC32C(A), CRC32C(B) and the length of B in bytes. */
export function crc32cCombine(crcA: number, crcB: number, lengthB: number): number {
  if (!Number.isSafeInteger(lengthB) || lengthB < 0) throw new RangeError(`crc32cCombine: length ${lengthB} is not a byte count`);
  return (multModP(x2nModP(lengthB, 3), crcA >>> 0) ^ (crcB >>> 0)) >>> 0;
}

/** CRC32C of the pieces concatenated in order (the CRC32C of nothing is 0). */
export function crc32cOfConcatenation(pieces: Iterable<{ crc32c: number; bytes: number }>): number {
  let crc = 0;
  for (const piece of pieces) crc = crc32cCombine(crc, piece.crc32c, piece.bytes);
  return crc;
}

/** The inverse of crc32cBase64 (src/checksum.ts); throws on anything that is not 4 bytes of base64. */
export function crc32cFromBase64(text: string): number {
  const buf = Buffer.from(text, "base64");
  if (buf.length !== 4 || buf.toString("base64") !== text) throw new RangeError(`not a base64 CRC32C: ${JSON.stringify(text)}`);
  return buf.readUInt32BE(0);
}
