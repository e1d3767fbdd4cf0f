// The thrift compact protocol, low level: a reader over a footer's bytes and a growing sink to
// write one, shared by the footer reader (footer.ts), the part plans (part-plan.ts) and the
// merged footer's writer (merged-footer.ts).
export const T_STOP = 0;
export const T_TRUE = 1;
export const T_FALSE = 2;
export const T_BYTE = 3;
export const T_I16 = 4;
export const T_I32 = 5;
export const T_I64 = 6;
export const T_DOUBLE = 7;
export const T_BINARY = 8;
export const T_LIST = 9;
export const T_SET = 10;
export const T_MAP = 11;
export const T_STRUCT = 12;
export const T_UUID = 13;

export class Reader {
  b: Uint8Array;
  p: number;
  constructor(b: Uint8Array, p = 0) {
    this.b = b;
    this.p = p;
  }
  u8(): number {
    const v = this.b[this.p++];
    if (v === undefined) throw new Error("thrift: unexpected end of footer");
    return v;
  }
  /** Unsigned varint: a number below 2^49, else a bigint. */
  rawVarint(): number | bigint {
    const start = this.p;
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 7; i++) {
      const byte = this.u8();
      result += (byte & 0x7f) * mul;
      if (byte < 0x80) return result;
      mul *= 128;
    }
    this.p = start;
    let big = 0n;
    let shift = 0n;
    for (;;) {
      const byte = this.u8();
      big |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return big;
      shift += 7n;
      if (shift > 63n) throw new Error("thrift: varint too long");
    }
  }
  /** Unsigned varint as a number; throws beyond 2^53. */
  varint(): number {
    const v = this.rawVarint();
    if (typeof v === "number") return v;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`thrift: integer ${v} exceeds 2^53`);
    return Number(v);
  }
  /** Zigzag varint (i16/i32/i64) as a number; throws beyond +-2^53. */
  zigzag(): number {
    const v = this.rawVarint();
    if (typeof v === "number") return v % 2 === 0 ? v / 2 : -(v + 1) / 2;
    const d = (v >> 1n) ^ -(v & 1n);
    if (d > BigInt(Number.MAX_SAFE_INTEGER) || d < -BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new Error(`thrift: integer ${d} exceeds 2^53`);
    }
    return Number(d);
  }
  skipVarint(): void {
    while (this.u8() >= 0x80);
  }
  /** Reads a list/set header: [elementType, size]. */
  listHeader(): [number, number] {
    const h = this.u8();
    let size = h >> 4;
    if (size === 15) size = this.varint();
    return [h & 0x0f, size];
  }
  skip(type: number, inList = false): void {
    switch (type) {
      case T_TRUE:
      case T_FALSE:
        if (inList) this.p++;
        return;
      case T_BYTE:
        this.p++;
        return;
      case T_I16:
      case T_I32:
      case T_I64:
        this.skipVarint();
        return;
      case T_DOUBLE:
        this.p += 8;
        return;
      case T_UUID:
        this.p += 16;
        return;
      case T_BINARY: {
        const n = this.varint();
        this.p += n;
        return;
      }
      case T_LIST:
      case T_SET: {
        const [et, n] = this.listHeader();
        for (let i = 0; i < n; i++) this.skip(et, true);
        return;
      }
      case T_MAP: {
        const n = this.varint();
        if (n === 0) return;
        const kv = this.u8();
        for (let i = 0; i < n; i++) {
          this.skip(kv >> 4, true);
          this.skip(kv & 0x0f, true);
        }
        return;
      }
      case T_STRUCT: {
        let fid = 0;
        for (;;) {
          const h = this.u8();
          const t = h & 0x0f;
          if (t === T_STOP) return;
          fid = h >> 4 ? fid + (h >> 4) : this.zigzag();
          this.skip(t);
        }
      }
      default:
        throw new Error(`thrift: unknown compact type ${type} at byte ${this.p}`);
    }
  }
}

/** Iterates the fields of a struct: calls `field(fid, type)` positioned at each value. */
export function readStruct(r: Reader, field: (fid: number, type: number) => void): void {
  let fid = 0;
  for (;;) {
    const h = r.u8();
    const type = h & 0x0f;
    if (type === T_STOP) return;
    fid = h >> 4 ? fid + (h >> 4) : r.zigzag();
    const before = r.p;
    field(fid, type);
    if (r.p === before && !(type === T_TRUE || type === T_FALSE)) r.skip(type);
  }
}

export class Sink {
  buf: Uint8Array;
  len = 0;
  constructor(initial = 1 << 16) {
    this.buf = new Uint8Array(initial);
  }
  ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }
  u8(v: number): void {
    this.ensure(1);
    this.buf[this.len++] = v;
  }
  varint(v: number): void {
    this.ensure(10);
    while (v >= 0x80) {
      this.buf[this.len++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    this.buf[this.len++] = v;
  }
  zigzag(v: number): void {
    if (!Number.isSafeInteger(v)) throw new Error(`thrift: cannot encode ${v}`);
    if (Math.abs(v) < 2 ** 50) {
      this.varint(v >= 0 ? v * 2 : -v * 2 - 1);
      return;
    }
    const b = BigInt(v);
    let z = b >= 0n ? b * 2n : -b * 2n - 1n;
    this.ensure(10);
    while (z >= 0x80n) {
      this.buf[this.len++] = Number(z & 0x7fn) | 0x80;
      z >>= 7n;
    }
    this.buf[this.len++] = Number(z);
  }
  bytes(src: Uint8Array, start: number, end: number): void {
    const n = end - start;
    this.ensure(n);
    this.buf.set(src.subarray(start, end), this.len);
    this.len += n;
  }
  /** Writes a field header; returns the field id to use as the next `lastFid`. */
  field(type: number, fid: number, lastFid: number): number {
    const delta = fid - lastFid;
    if (delta <= 0) throw new Error(`thrift: non-monotonic field id ${fid} after ${lastFid}`);
    if (delta <= 15) this.u8((delta << 4) | type);
    else {
      this.u8(type);
      this.zigzag(fid);
    }
    return fid;
  }
  listHeader(elemType: number, size: number): void {
    if (size < 15) this.u8((size << 4) | elemType);
    else {
      this.u8(0xf0 | elemType);
      this.varint(size);
    }
  }
  string(s: string): void {
    const b = Buffer.from(s, "utf8");
    this.varint(b.length);
    this.bytes(b, 0, b.length);
  }
  take(): Uint8Array {
    const out = this.buf.subarray(0, this.len);
    this.len = 0;
    return out;
  }
}
