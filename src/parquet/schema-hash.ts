// A fingerprint of a parquet file's schema, recorded on the uploaded object (`schema_sha256`) so
// a consumer can tell whether two training files have the same columns with the same types
// without downloading either.
//
// Definition (reproducible with any parquet reader): SHA-256 (hex) of the UTF-8 text made of one
// line per leaf column, in file order, each `<column path>\t<physical type>\t<logical type>\n`,
// where the path joins nested names with ".", the physical type is the parquet name (INT64,
// DOUBLE, BYTE_ARRAY, FIXED_LEN_BYTE_ARRAY(16), ...) and the logical type is the annotation
// (STRING, TIMESTAMP(MICROS,UTC), TIMESTAMP(MICROS,LOCAL), INT(8,signed), DECIMAL(18,2), DATE,
// ...; "-" when there is none). Writers differ in how they annotate the same type, so:
// - a legacy converted type alone is read as its logical type (UTF8 -> STRING, INT_16 ->
//   INT(16,signed), TIMESTAMP_MICROS -> TIMESTAMP(MICROS,UTC), DECIMAL -> DECIMAL(p,s), ...);
// - INT(32,signed) on INT32 and INT(64,signed) on INT64 restate the physical type: "-".
// Repetition (nullability) is left out: it is a property of the writer, not of the data.
import { createHash } from "node:crypto";
import { readRawFooter } from "./footer.ts";
import { Reader, T_STRUCT, readStruct } from "./thrift.ts";

const PHYSICAL = ["BOOLEAN", "INT32", "INT64", "INT96", "FLOAT", "DOUBLE", "BYTE_ARRAY", "FIXED_LEN_BYTE_ARRAY"];
/** Legacy ConvertedType ids, as the logical type each stands for (DECIMAL is completed from scale/precision). */
const CONVERTED = [
  "STRING",
  "MAP",
  "MAP",
  "LIST",
  "ENUM",
  "DECIMAL",
  "DATE",
  "TIME(MILLIS,UTC)",
  "TIME(MICROS,UTC)",
  "TIMESTAMP(MILLIS,UTC)",
  "TIMESTAMP(MICROS,UTC)",
  "INT(8,unsigned)",
  "INT(16,unsigned)",
  "INT(32,unsigned)",
  "INT(64,unsigned)",
  "INT(8,signed)",
  "INT(16,signed)",
  "INT(32,signed)",
  "INT(64,signed)",
  "JSON",
  "BSON",
  "INTERVAL",
];
/** Annotations that say no more than the physical type. */
const RESTATED = new Set(["INT32\tINT(32,signed)", "INT64\tINT(64,signed)"]);
const SIMPLE_LOGICAL: Record<number, string> = {
  1: "STRING",
  2: "MAP",
  3: "LIST",
  4: "ENUM",
  6: "DATE",
  11: "UNKNOWN",
  12: "JSON",
  13: "BSON",
  14: "UUID",
  15: "FLOAT16",
  16: "VARIANT",
  17: "GEOMETRY",
  18: "GEOGRAPHY",
};
const TIME_UNITS: Record<number, string> = { 1: "MILLIS", 2: "MICROS", 3: "NANOS" };

interface SchemaElement {
  name: string;
  children: number;
  physical: string | undefined;
  logical: string | undefined;
  converted: string | undefined;
}

/** A TimeUnit union: the id of its one field. */
function timeUnit(r: Reader): string {
  let unit = "?";
  readStruct(r, (fid) => {
    unit = TIME_UNITS[fid] ?? `UNIT${fid}`;
  });
  return unit;
}

/** The LogicalType union as text, e.g. TIMESTAMP(MICROS,UTC). */
function logicalType(r: Reader): string {
  let text = "?";
  readStruct(r, (fid, type) => {
    if (type !== T_STRUCT) return;
    if (fid === 5) {
      let scale = 0;
      let precision = 0;
      readStruct(r, (f) => {
        if (f === 1) scale = r.zigzag();
        else if (f === 2) precision = r.zigzag();
      });
      text = `DECIMAL(${precision},${scale})`;
    } else if (fid === 7 || fid === 8) {
      let utc = false;
      let unit = "?";
      readStruct(r, (f, t) => {
        if (f === 1)
          utc = t === 1; // compact protocol: booleans live in the field header
        else if (f === 2) unit = timeUnit(r);
      });
      text = `${fid === 7 ? "TIME" : "TIMESTAMP"}(${unit},${utc ? "UTC" : "LOCAL"})`;
    } else if (fid === 10) {
      let bits = 0;
      let signed = false;
      readStruct(r, (f, t) => {
        if (f === 1) bits = (r.u8() << 24) >> 24;
        else if (f === 2) signed = t === 1;
      });
      text = `INT(${bits},${signed ? "signed" : "unsigned"})`;
    } else {
      text = SIMPLE_LOGICAL[fid] ?? `LOGICAL${fid}`;
      r.skip(type);
    }
  });
  return text;
}

function schemaElements(thrift: Uint8Array): SchemaElement[] {
  const r = new Reader(thrift);
  const elements: SchemaElement[] = [];
  readStruct(r, (fid) => {
    if (fid !== 2) return;
    const [, n] = r.listHeader();
    for (let i = 0; i < n; i++) {
      const el: SchemaElement = { name: "", children: 0, physical: undefined, logical: undefined, converted: undefined };
      let typeLength: number | undefined;
      let scale = 0;
      let precision = 0;
      readStruct(r, (f) => {
        if (f === 1) {
          const t = r.zigzag();
          el.physical = PHYSICAL[t] ?? `TYPE${t}`;
        } else if (f === 2) typeLength = r.zigzag();
        else if (f === 4) el.name = new TextDecoder().decode(readBytes(r));
        else if (f === 5) el.children = r.zigzag();
        else if (f === 6) {
          const c = r.zigzag();
          el.converted = CONVERTED[c] ?? `CONVERTED${c}`;
        } else if (f === 7) scale = r.zigzag();
        else if (f === 8) precision = r.zigzag();
        else if (f === 10) el.logical = logicalType(r);
      });
      if (el.converted === "DECIMAL") el.converted = `DECIMAL(${precision},${scale})`;
      if (el.physical === "FIXED_LEN_BYTE_ARRAY" && typeLength !== undefined) el.physical = `FIXED_LEN_BYTE_ARRAY(${typeLength})`;
      elements.push(el);
    }
  });
  return elements;
}

function readBytes(r: Reader): Uint8Array {
  const n = r.varint();
  const bytes = r.b.subarray(r.p, r.p + n);
  r.p += n;
  return bytes;
}

/** The schema text the hash is computed over (exported for tests and for people comparing files). */
export function schemaText(thrift: Uint8Array): string {
  const elements = schemaElements(thrift);
  const lines: string[] = [];
  let i = 1;
  const walk = (prefix: string[]): void => {
    const el = elements[i++];
    if (!el) throw new Error("parquet schema is truncated");
    const path = [...prefix, el.name];
    if (el.children === 0) {
      const type = `${el.physical ?? "-"}\t${el.logical ?? el.converted ?? "-"}`;
      lines.push(`${path.join(".")}\t${RESTATED.has(type) ? `${el.physical}\t-` : type}\n`);
    }
    for (let c = 0; c < el.children; c++) walk(path);
  };
  for (let c = 0; c < (elements[0]?.children ?? 0); c++) walk([]);
  return lines.join("");
}

/** SHA-256 (hex) of `schemaText` of a footer's thrift bytes. */
export function schemaSha256OfFooter(thrift: Uint8Array): string {
  return createHash("sha256").update(schemaText(thrift)).digest("hex");
}

/** SHA-256 (hex) of `schemaText` of the file's footer; reads only the footer. */
export async function schemaSha256(file: string): Promise<string> {
  return schemaSha256OfFooter((await readRawFooter(file)).thrift);
}
