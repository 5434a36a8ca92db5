/**
 * Addresses as the data plane stores them: IPv4 and IPv6 in one 16-byte form
 * (IPv4 mapped as ::ffff:a.b.c.d, see bpf/routeshift.h), and MAC addresses as
 * 6 bytes. Parsing is strict and errors say what was expected.
 */

export type Family = 4 | 6;

/** A value as an error message shows it: JSON, cut to 64 characters (a request may send megabytes). */
export function quote(value: unknown): string {
  const s = JSON.stringify(value) ?? String(value);
  return s.length <= 64 ? s : `${s.slice(0, 60)}…" (${s.length} characters)`;
}

export interface ParsedAddress {
  family: Family;
  /** 16 bytes, network order; IPv4 as ::ffff:a.b.c.d. */
  bytes: Buffer;
}

const V4_MAPPED_PREFIX = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);

/**
 * A dotted quad as a 32-bit number, or -1 when `text` is not one: four
 * decimal parts 0-255 without leading zeros (they read as octal
 * elsewhere). Character by character: a drain validates and encodes
 * hundreds of thousands of addresses, and this allocates nothing.
 */
export function ipv4Number(text: string): number {
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 46 /* . */) {
      if (digits === 0 || dots === 3) return -1;
      value = value * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && part === 0) return -1; // a leading zero
      part = part * 10 + (c - 48);
      digits++;
      if (part > 255) return -1;
    } else {
      return -1;
    }
  }
  return dots === 3 && digits > 0 ? value * 256 + part : -1;
}

function parseIPv4Parts(text: string): number[] | null {
  const n = ipv4Number(text);
  return n < 0 ? null : [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
}

/** Parse dotted-quad IPv4 into 4 bytes. */
export function parseIPv4(text: string): Buffer {
  const parts = parseIPv4Parts(text);
  if (!parts) throw new TypeError(`invalid IPv4 address ${quote(text)}: expected a.b.c.d`);
  return Buffer.from(parts);
}

/** Parse an IPv6 address (RFC 4291 text forms, embedded IPv4 allowed) into 16 bytes. */
export function parseIPv6(text: string): Buffer {
  const bad = (why: string): TypeError =>
    new TypeError(`invalid IPv6 address ${quote(text)}: ${why}`);
  if (text.includes('%')) throw bad('zone indexes are not supported');
  const halves = text.split('::');
  if (halves.length > 2) throw bad("'::' may appear once");

  const groups = (s: string): number[] => {
    if (s === '') return [];
    const out: number[] = [];
    const items = s.split(':');
    items.forEach((item, i) => {
      if (i === items.length - 1 && item.includes('.')) {
        const v4 = parseIPv4Parts(item);
        if (!v4) throw bad(`bad embedded IPv4 ${quote(item)}`);
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
        return;
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(item)) throw bad(`bad group ${quote(item)}`);
      out.push(parseInt(item, 16));
    });
    return out;
  };

  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  let all: number[];
  if (halves.length === 2) {
    const missing = 8 - head.length - tail.length;
    if (missing < 1) throw bad("'::' must stand for at least one group");
    all = [...head, ...new Array<number>(missing).fill(0), ...tail];
  } else {
    all = head;
  }
  if (all.length !== 8) throw bad(`expected 8 groups, got ${all.length}`);
  const buf = Buffer.alloc(16);
  all.forEach((g, i) => buf.writeUInt16BE(g, i * 2));
  return buf;
}

/**
 * Parse an IPv4 or IPv6 address into the data plane's 16-byte form. An IPv6
 * text of the form ::ffff:a.b.c.d is an IPv4 address (family 4): the data
 * plane cannot tell them apart either.
 */
export function parseAddress(text: string): ParsedAddress {
  if (typeof text !== 'string' || text.length === 0) {
    throw new TypeError(`invalid IP address ${quote(text)}: expected IPv4 or IPv6 text`);
  }
  if (!text.includes(':')) {
    return { family: 4, bytes: Buffer.concat([V4_MAPPED_PREFIX, parseIPv4(text)]) };
  }
  const bytes = parseIPv6(text);
  return { family: isV4Mapped(bytes) ? 4 : 6, bytes };
}

/** Groups of the IPv6 text being parsed by writeIPv6Plain (one parse at a time: synchronous). */
const v6Groups = new Uint16Array(8);

/**
 * The common IPv6 text forms — hex groups, at most one '::' — written as 16
 * bytes at `offset`, character by character; returns the family (4 for
 * ::ffff:0:0/96, as parseAddress), or 0 without a word about why for
 * anything else (embedded IPv4, a zone, any error: parseAddress reads
 * those and says what is wrong). Codecs write IPv6 entries by the thousand.
 */
function writeIPv6Plain(text: string, into: Buffer, offset: number): 0 | Family {
  const n = text.length;
  if (n < 2 || n > 39) return 0;
  let count = 0;
  let gap = -1; // index in v6Groups where '::' stands
  let i = 0;
  if (text.charCodeAt(0) === 58 /* : */) {
    if (text.charCodeAt(1) !== 58) return 0;
    gap = 0;
    i = 2;
  }
  while (i < n) {
    let v = 0;
    let digits = 0;
    for (; i < n && digits <= 4; i++) {
      const h = hexDigit(text.charCodeAt(i));
      if (h < 0) break;
      v = v * 16 + h;
      digits++;
    }
    if (digits === 0 || digits > 4 || count === 8) return 0;
    v6Groups[count++] = v;
    if (i === n) break;
    if (text.charCodeAt(i) !== 58) return 0; // '.', '%' or anything else: the general parser
    i++;
    if (i < n && text.charCodeAt(i) === 58) {
      if (gap >= 0) return 0;
      gap = count;
      i++;
    } else if (i === n) {
      return 0; // a single trailing ':'
    }
  }
  if (gap < 0 ? count !== 8 : count > 7) return 0;
  const tail = gap < 0 ? 0 : count - gap;
  const head = count - tail;
  for (let g = 0; g < 8; g++) {
    const v = g < head ? v6Groups[g]! : g >= 8 - tail ? v6Groups[g - (8 - count)]! : 0;
    into[offset + 2 * g] = v >>> 8;
    into[offset + 2 * g + 1] = v & 255;
  }
  for (let b = 0; b < 10; b++) if (into[offset + b] !== 0) return 6;
  return into[offset + 10] === 0xff && into[offset + 11] === 0xff ? 4 : 6;
}

/**
 * Write an address in the data plane's 16-byte form at `offset` and return
 * its family (parseAddress without allocating, for IPv4 and plain IPv6).
 */
export function writeAddress(text: string, into: Buffer, offset: number): Family {
  if (!(offset >= 0 && offset + 16 <= into.length)) {
    throw new RangeError(`an address needs 16 bytes at offset ${offset} of a ${into.length}-byte buffer`);
  }
  const v4 = typeof text === 'string' ? ipv4Number(text) : -1;
  if (v4 < 0) {
    const plain = typeof text === 'string' ? writeIPv6Plain(text, into, offset) : 0;
    if (plain !== 0) return plain;
    const { family, bytes } = parseAddress(text);
    bytes.copy(into, offset);
    return family;
  }
  // byte stores: Buffer#fill and #writeUInt32BE validate their arguments
  // each time, which costs more than the stores (codecs run per entry)
  for (let i = 0; i < 10; i++) into[offset + i] = 0;
  into[offset + 10] = 0xff;
  into[offset + 11] = 0xff;
  into[offset + 12] = v4 >>> 24;
  into[offset + 13] = (v4 >>> 16) & 255;
  into[offset + 14] = (v4 >>> 8) & 255;
  into[offset + 15] = v4 & 255;
  return 4;
}

/** True if 16 bytes are an IPv4-mapped address. */
export function isV4Mapped(bytes: Uint8Array): boolean {
  if (bytes.length !== 16) return false;
  for (let i = 0; i < 12; i++) if (bytes[i] !== V4_MAPPED_PREFIX[i]) return false;
  return true;
}

/** Format 4 bytes as dotted quad. */
export function formatIPv4(bytes: Uint8Array): string {
  if (bytes.length !== 4) throw new RangeError(`IPv4 address needs 4 bytes, got ${bytes.length}`);
  return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
}

/** Format 16 bytes as IPv6 in RFC 5952 canonical form. */
export function formatIPv6(bytes: Uint8Array): string {
  if (bytes.length !== 16) throw new RangeError(`IPv6 address needs 16 bytes, got ${bytes.length}`);
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  // longest run of two or more zero groups, first one on ties
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (gs: number[]): string => gs.map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}

/** Format the data plane's 16-byte form: IPv4-mapped as dotted quad, else IPv6. */
export function formatAddress(bytes: Uint8Array): string {
  if (bytes.length !== 16) throw new RangeError(`address needs 16 bytes, got ${bytes.length}`);
  return isV4Mapped(bytes) ? formatIPv4(bytes.subarray(12)) : formatIPv6(bytes);
}

/** Canonical text of an address (e.g. 'FD00:0::1' -> 'fd00::1'). */
export function canonicalAddress(text: string): string {
  if (typeof text === 'string' && ipv4Number(text) >= 0) return text; // a strict dotted quad is its own canonical form
  return formatAddress(parseAddress(text).bytes);
}

/**
 * Why an address cannot be an application's or a tunnel endpoint, or
 * undefined when it can: packets to these are never unicast to one host
 * (unspecified, loopback, multicast, broadcast, "this network").
 */
export function addressProblem(text: string): string | undefined {
  const { family, bytes } = parseAddress(text);
  if (family === 4) {
    const [a, b, c, d] = [bytes[12]!, bytes[13]!, bytes[14]!, bytes[15]!];
    if (a === 0) return 'is in 0.0.0.0/8 ("this network"), never a destination';
    if (a === 127) return 'is a loopback address';
    if (a >= 224 && a <= 239) return 'is a multicast address';
    if (a === 255 && b === 255 && c === 255 && d === 255) return 'is the broadcast address';
    if (a >= 240) return 'is in 240.0.0.0/4 (reserved)';
    return undefined;
  }
  if (bytes.every((x) => x === 0)) return 'is the unspecified address ::';
  if (bytes.subarray(0, 15).every((x) => x === 0) && bytes[15] === 1) return 'is the loopback address ::1';
  if (bytes[0] === 0xff) return 'is a multicast address';
  return undefined;
}

/** Why a MAC cannot be a unicast destination or source, or undefined when it can. */
export function macProblem(bytes: Uint8Array): string | undefined {
  if (bytes.every((x) => x === 0)) return 'is all zeros';
  if (bytes.every((x) => x === 0xff)) return 'is the broadcast address';
  if ((bytes[0]! & 1) !== 0) return 'is a multicast address (the first octet is odd)';
  return undefined;
}

/** A hex digit's value, or -1. */
function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const l = c | 0x20; // ASCII lower case
  return l >= 97 && l <= 102 ? l - 87 : -1;
}

/**
 * Whether `text` is six two-digit hex groups joined by one separator, ':'
 * or '-' throughout (character by character: codecs parse MACs per entry).
 */
function isMac(text: string): boolean {
  if (typeof text !== 'string' || text.length !== 17) return false;
  const sep = text.charCodeAt(2);
  if (sep !== 58 /* : */ && sep !== 45 /* - */) return false;
  for (let i = 0; i < 17; i += 3) {
    if (hexDigit(text.charCodeAt(i)) < 0 || hexDigit(text.charCodeAt(i + 1)) < 0) return false;
    if (i < 15 && text.charCodeAt(i + 2) !== sep) return false;
  }
  return true;
}

/**
 * A MAC address 'aa:bb:cc:dd:ee:ff' (or with '-') as a 48-bit number (first
 * octet most significant); throws on anything else. For codecs that store
 * it with two multi-byte writes.
 */
export function macNumber(text: string): number {
  if (!isMac(text)) {
    throw new TypeError(`invalid MAC address ${quote(text)}: expected aa:bb:cc:dd:ee:ff`);
  }
  let n = 0;
  for (let i = 0; i < 17; i += 3) n = n * 256 + ((hexDigit(text.charCodeAt(i)) << 4) | hexDigit(text.charCodeAt(i + 1)));
  return n;
}

/** Write a MAC address 'aa:bb:cc:dd:ee:ff' (or with '-') as 6 bytes at `offset` (parseMac without allocating). */
export function writeMac(text: string, into: Buffer, offset: number): void {
  const n = macNumber(text);
  if (!(offset >= 0 && offset + 6 <= into.length)) {
    throw new RangeError(`a MAC address needs 6 bytes at offset ${offset} of a ${into.length}-byte buffer`);
  }
  into.writeUIntBE(n, offset, 6);
}

/** Parse a MAC address 'aa:bb:cc:dd:ee:ff' (or with '-') into 6 bytes. */
export function parseMac(text: string): Buffer {
  const out = Buffer.alloc(6);
  writeMac(text, out, 0);
  return out;
}

/** Format 6 bytes as 'aa:bb:cc:dd:ee:ff'. */
export function formatMac(bytes: Uint8Array): string {
  if (bytes.length !== 6) throw new RangeError(`MAC address needs 6 bytes, got ${bytes.length}`);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(':');
}
