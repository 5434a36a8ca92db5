/**
 * The journal's line format, and decoding a journal's bytes with every
 * problem named by line.
 *
 * A line is `<sum> <json>\n`: `sum` is the first 16 hex digits of the
 * SHA-256 of the JSON text exactly as written, so a line changed after it
 * was written (by hand, by a disk) no longer matches. The writer emits each
 * batch of lines with one write(2) and only acknowledges it after fsync, so
 * a controller that dies mid-write leaves at most one incomplete line, and
 * only at the end, without its newline: a torn TAIL. That record was never
 * acknowledged, so its step was never applied; it is reported and dropped.
 * Anything else that is wrong is damage: a complete line whose sum does
 * not match, that is not JSON, that breaks the schema (journal-schema.ts),
 * a gap or repeat in `seq` (a record removed or duplicated), records out of
 * the order the writer keeps (`open` first, an app's `plan` before its
 * steps). A journal with damage is not acted on.
 *
 * Journals of the previous format (lines of bare JSON, no sum) are read as
 * legacy: schema and order are checked, edits cannot be detected. The first
 * line decides: in a journal that starts with a summed line, a line without
 * one is damage.
 */
import { createHash } from 'node:crypto';
import { recordProblem } from './journal-schema.js';
import type { Stored } from './journal.js';

const SUM_HEX = 16;
const SUMMED_LINE = /^([0-9a-f]{16}) (.*)$/s;
/** Enough to say what is wrong; a journal of garbage need not be listed line by line. */
const MAX_PROBLEMS = 20;

export function lineSum(json: string): string {
  return createHash('sha256').update(json, 'utf8').digest('hex').slice(0, SUM_HEX);
}

/** One record as the writer puts it on disk, newline included. */
export function encodeLine(record: Stored): string {
  const json = JSON.stringify(record);
  return `${lineSum(json)} ${json}\n`;
}

export interface JournalProblem {
  /** 1-based line number; 0 for the file as a whole. */
  line: number;
  reason: string;
}

export interface DecodedJournal {
  /** The valid records in file order (when `problems` is not empty, for reporting only). */
  records: Stored[];
  /** The line number of each of `records`. */
  lines: number[];
  /** Damage; empty when the journal can be acted on. */
  problems: JournalProblem[];
  /** More problems than `problems` lists. */
  moreProblems: number;
  /** An incomplete last line (the controller died writing it): its line number and length. */
  torn?: { line: number; bytes: number };
  /** Bytes of complete lines: where a resumed journal continues (a torn tail is cut off there). */
  keepBytes: number;
  /** Written by the previous format (no sums). */
  legacy: boolean;
}

/**
 * Decode a journal's bytes. `id` is the journal id its file name gives: the
 * `open` record must name the same one (a file copied under another name
 * would make resume act for another run).
 */
export function decodeJournal(bytes: Uint8Array, id?: string): DecodedJournal {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const keepBytes = buf.lastIndexOf(0x0a) + 1;
  const lines = keepBytes ? buf.subarray(0, keepBytes - 1).toString('utf8').split('\n') : [];
  const out: DecodedJournal = { records: [], lines: [], problems: [], moreProblems: 0, keepBytes, legacy: false };
  if (keepBytes < buf.length) out.torn = { line: lines.length + 1, bytes: buf.length - keepBytes };
  const problem = (line: number, reason: string): void => {
    if (out.problems.length < MAX_PROBLEMS) out.problems.push({ line, reason });
    else out.moreProblems++;
  };

  out.legacy = lines.length > 0 && (lines[0] ?? '').startsWith('{');
  const planned = new Set<string>();
  let expectSeq: number | undefined = 0;
  for (let i = 0; i < lines.length; i++) {
    const n = i + 1;
    const rec = decodeLine(lines[i] ?? '', out.legacy);
    if (typeof rec === 'string') {
      problem(n, rec);
      expectSeq = undefined; // resynchronise on the next good line
      continue;
    }
    if (expectSeq !== undefined && rec.seq !== expectSeq) {
      problem(n, `seq ${rec.seq} where ${expectSeq} was expected: a record is missing, repeated or out of order`);
    }
    expectSeq = rec.seq + 1;
    if (rec.type === 'open') {
      if (i !== 0) problem(n, 'an open record after the first line');
      else if (id !== undefined && rec.journal !== id) problem(n, `the open record names journal ${rec.journal}, but the file is ${id}.jsonl`);
    } else if (i === 0) {
      problem(n, `the first record is ${rec.type}, not open`);
    }
    if (rec.type === 'plan') {
      if (planned.has(rec.app)) problem(n, `a second plan for ${rec.app}`);
      planned.add(rec.app);
    } else if (rec.type !== 'open' && !planned.has(rec.app)) {
      problem(n, `a ${rec.type} record for ${rec.app}, which has no plan before it`);
    }
    out.records.push(rec);
    out.lines.push(n);
  }
  return out;
}

/** One complete line: its record, or what is wrong with it. */
function decodeLine(line: string, legacy: boolean): Stored | string {
  if (!line) return 'an empty line';
  let json: string;
  const m = SUMMED_LINE.exec(line);
  if (m) {
    json = m[2] as string;
    if (lineSum(json) !== m[1]) return 'checksum mismatch: the line was changed after it was written';
  } else if (line.startsWith('{')) {
    if (!legacy) return 'no checksum (a bare JSON line in a checksummed journal)';
    json = line;
  } else {
    return 'not a journal line (neither "<checksum> <json>" nor JSON)';
  }
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return 'not valid JSON';
  }
  const bad = recordProblem(value);
  return bad ?? (value as Stored);
}

/** "line 4: checksum mismatch…; line 9: …" */
export function describeProblems(d: Pick<DecodedJournal, 'problems' | 'moreProblems'>): string {
  const list = d.problems.map((p) => (p.line ? `line ${p.line}: ${p.reason}` : p.reason)).join('; ');
  return d.moreProblems ? `${list}; and ${d.moreProblems} more` : list;
}
