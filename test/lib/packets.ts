/**
 * A small typed packet builder for fixtures: Ethernet (+ one VLAN tag),
 * IPv4 (options, DF/MF/offset), IPv6, UDP, TCP, ICMP/ICMPv6, with every
 * checksum computed unless the caller overrides it. Built independently of
 * the BPF programs, so expected output bytes are an independent statement
 * of what the program must produce.
 */
import { parseIPv4, parseIPv6, parseMac } from '../../src/model/address.js';

export const ETH_P = { IPV4: 0x0800, IPV6: 0x86dd, VLAN: 0x8100, QINQ: 0x88a8, ARP: 0x0806 } as const;
export const IPPROTO = { ICMP: 1, IPIP: 4, TCP: 6, UDP: 17, IPV6: 41, FRAGMENT: 44, ICMPV6: 58 } as const;

// ------------------------------------------------------------- checksum --

/** One's-complement sum of big-endian 16-bit words (odd byte padded). */
export function sum16(buf: Uint8Array, sum = 0): number {
  for (let i = 0; i + 1 < buf.length; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  if (buf.length % 2) sum += buf[buf.length - 1]! << 8;
  return sum;
}

export function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return ~sum & 0xffff;
}

/** Internet checksum of a region (RFC 1071). */
export function checksum(buf: Uint8Array): number {
  return fold(sum16(buf));
}

/** True if the region, checksum field included, sums to zero. */
export function checksumOk(buf: Uint8Array, pseudo = 0): boolean {
  return fold(sum16(buf, pseudo)) === 0;
}

function pseudo4(src: Buffer, dst: Buffer, proto: number, len: number): number {
  return sum16(src) + sum16(dst) + proto + len;
}

function pseudo6(src: Buffer, dst: Buffer, nh: number, len: number): number {
  return sum16(src) + sum16(dst) + Math.floor(len / 0x10000) + (len & 0xffff) + nh;
}

// ------------------------------------------------------------------- L4 --

/** An L4 segment: bytes, and where its checksum goes (computed by the IP builder). */
export interface L4 {
  proto: number;
  bytes: Buffer;
  /** Offset of the checksum field, or undefined for none. */
  csumAt?: number;
  /** Whether the checksum covers the IP pseudo-header (UDP, TCP, ICMPv6). */
  pseudo?: boolean;
  /** A fixed checksum value instead of the computed one (malformed fixtures). */
  csum?: number;
}

export function udp(sport: number, dport: number, payload: Buffer = Buffer.alloc(0)): L4 {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt16BE(8 + payload.length, 4);
  return { proto: IPPROTO.UDP, bytes: Buffer.concat([h, payload]), csumAt: 6, pseudo: true };
}

export function tcp(sport: number, dport: number, opts: { seq?: number; ack?: number; flags?: number } = {}, payload: Buffer = Buffer.alloc(0)): L4 {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt32BE(opts.seq ?? 1, 4);
  h.writeUInt32BE(opts.ack ?? 0, 8);
  h[12] = 5 << 4;
  h[13] = opts.flags ?? 0x02; // SYN
  h.writeUInt16BE(65535, 14);
  return { proto: IPPROTO.TCP, bytes: Buffer.concat([h, payload]), csumAt: 16, pseudo: true };
}

/** ICMPv4 echo request (type 8) or reply (0). */
export function icmpEcho(id: number, seq: number, payload: Buffer = Buffer.alloc(0), type = 8): L4 {
  const h = Buffer.alloc(8);
  h[0] = type;
  h.writeUInt16BE(id, 4);
  h.writeUInt16BE(seq, 6);
  return { proto: IPPROTO.ICMP, bytes: Buffer.concat([h, payload]), csumAt: 2, pseudo: false };
}

/** Any ICMPv4 message: type, code, the 4 bytes after the checksum, body. */
export function icmp(type: number, code: number, rest: Buffer, body: Buffer): L4 {
  const h = Buffer.alloc(4);
  h[0] = type;
  h[1] = code;
  return { proto: IPPROTO.ICMP, bytes: Buffer.concat([h, rest, body]), csumAt: 2, pseudo: false };
}

/** ICMPv6 echo request (128) or reply (129). */
export function icmp6Echo(id: number, seq: number, payload: Buffer = Buffer.alloc(0), type = 128): L4 {
  const h = Buffer.alloc(8);
  h[0] = type;
  h.writeUInt16BE(id, 4);
  h.writeUInt16BE(seq, 6);
  return { proto: IPPROTO.ICMPV6, bytes: Buffer.concat([h, payload]), csumAt: 2, pseudo: true };
}

export function icmp6(type: number, code: number, rest: Buffer, body: Buffer): L4 {
  const h = Buffer.alloc(4);
  h[0] = type;
  h[1] = code;
  return { proto: IPPROTO.ICMPV6, bytes: Buffer.concat([h, rest, body]), csumAt: 2, pseudo: true };
}

/** Raw payload of a protocol, no checksum (e.g. an inner IP packet for IPIP). */
export function raw(proto: number, bytes: Buffer): L4 {
  return { proto, bytes };
}

function fillL4(l4: L4, pseudo: number): Buffer {
  const b = Buffer.from(l4.bytes);
  if (l4.csumAt !== undefined && l4.csumAt + 2 <= b.length) {
    b.writeUInt16BE(0, l4.csumAt);
    let c = l4.csum ?? fold(sum16(b, l4.pseudo ? pseudo : 0));
    if (l4.csum === undefined && l4.proto === IPPROTO.UDP && c === 0) c = 0xffff;
    b.writeUInt16BE(c, l4.csumAt);
  }
  return b;
}

// ------------------------------------------------------------------- L3 --

export interface Ipv4Header {
  src: string;
  dst: string;
  ttl?: number;
  tos?: number;
  id?: number;
  /** Don't fragment; default true (as Linux sends with PMTU discovery). */
  df?: boolean;
  mf?: boolean;
  /** Fragment offset in 8-byte units. */
  fragOffset?: number;
  /** IP options, padded to a multiple of 4 bytes by the caller. */
  options?: Buffer;
  /** Override fields for malformed fixtures. */
  version?: number;
  ihl?: number;
  totLen?: number;
  check?: number;
  proto?: number;
}

export function ipv4(h: Ipv4Header, l4: L4): Buffer {
  const opts = h.options ?? Buffer.alloc(0);
  if (opts.length % 4) throw new RangeError('IPv4 options must be a multiple of 4 bytes');
  const hlen = 20 + opts.length;
  const src = parseIPv4(h.src);
  const dst = parseIPv4(h.dst);
  const proto = h.proto ?? l4.proto;
  const body = fillL4(l4, pseudo4(src, dst, proto, l4.bytes.length));
  const ip = Buffer.alloc(hlen);
  ip[0] = ((h.version ?? 4) << 4) | (h.ihl ?? hlen / 4);
  ip[1] = h.tos ?? 0;
  ip.writeUInt16BE(h.totLen ?? hlen + body.length, 2);
  ip.writeUInt16BE(h.id ?? 0, 4);
  ip.writeUInt16BE(((h.df ?? true) ? 0x4000 : 0) | (h.mf ? 0x2000 : 0) | (h.fragOffset ?? 0), 6);
  ip[8] = h.ttl ?? 64;
  ip[9] = proto;
  src.copy(ip, 12);
  dst.copy(ip, 16);
  opts.copy(ip, 20);
  ip.writeUInt16BE(h.check ?? checksum(ip), 10);
  return Buffer.concat([ip, body]);
}

export interface Ipv6Header {
  src: string;
  dst: string;
  hopLimit?: number;
  tclass?: number;
  flow?: number;
  /** Override the next header (e.g. 44 with a fragment header in the body). */
  nextHeader?: number;
  payloadLen?: number;
  version?: number;
}

export function ipv6(h: Ipv6Header, l4: L4): Buffer {
  const src = parseIPv6(h.src);
  const dst = parseIPv6(h.dst);
  const nh = h.nextHeader ?? l4.proto;
  const body = fillL4(l4, pseudo6(src, dst, l4.proto, l4.bytes.length));
  const ip = Buffer.alloc(40);
  ip.writeUInt32BE((((h.version ?? 6) << 28) | ((h.tclass ?? 0) << 20) | ((h.flow ?? 0) & 0xfffff)) >>> 0, 0);
  ip.writeUInt16BE(h.payloadLen ?? body.length, 4);
  ip[6] = nh;
  ip[7] = h.hopLimit ?? 64;
  src.copy(ip, 8);
  dst.copy(ip, 24);
  return Buffer.concat([ip, body]);
}

// ------------------------------------------------------------------- L2 --

export interface EthHeader {
  dst: string;
  src: string;
  /** Ethertype; default from the payload's IP version. */
  type?: number;
  /** One 802.1Q tag with this VLAN id. */
  vlan?: number;
}

/** An Ethernet frame around an IP packet (ethertype from its version nibble). */
export function eth(h: EthHeader, payload: Buffer): Buffer {
  const type = h.type ?? (payload.length && payload[0]! >> 4 === 6 ? ETH_P.IPV6 : ETH_P.IPV4);
  const parts = [parseMac(h.dst), parseMac(h.src)];
  if (h.vlan !== undefined) {
    const tag = Buffer.alloc(4);
    tag.writeUInt16BE(ETH_P.VLAN, 0);
    tag.writeUInt16BE(h.vlan & 0xfff, 2);
    parts.push(tag);
  }
  const t = Buffer.alloc(2);
  t.writeUInt16BE(type, 0);
  parts.push(t, payload);
  return Buffer.concat(parts);
}

// --------------------------------------------------------------- rewrites --

/** A copy of an IPv4 packet with TTL - 1 and the header checksum recomputed. */
export function decTtl4(ip: Buffer): Buffer {
  const out = Buffer.from(ip);
  const hlen = (out[0]! & 0xf) * 4;
  out[8] = out[8]! - 1;
  out.writeUInt16BE(0, 10);
  out.writeUInt16BE(checksum(out.subarray(0, hlen)), 10);
  return out;
}

/** A copy of an IPv6 packet with hop limit - 1. */
export function decHop6(ip: Buffer): Buffer {
  const out = Buffer.from(ip);
  out[7] = out[7]! - 1;
  return out;
}

// -------------------------------------------------------------- flow hash --

const mul = (a: number, b: number): number => Math.imul(a, b) >>> 0;
function mix(h: number, v: number): number {
  h = (h ^ v) >>> 0;
  h = mul(h, 0x9e3779b1);
  return (h ^ (h >>> 15)) >>> 0;
}

/**
 * The data plane's inner-flow hash (bpf/encap.h rs_flow_hash), which becomes
 * the outer IPv4 ID (low 16 bits) or IPv6 flow label (low 20 bits). Addresses
 * are 16-byte (IPv4: mapped) forms, of which an IPv4 packet mixes the last 4; words are loaded little-endian as on x86-64, and
 * ports are the network-order values as the program holds them.
 */
export function flowHash(family: 4 | 6, proto: number, saddr16: Buffer, daddr16: Buffer, sport: number, dport: number): number {
  let h = (0x72730000 | proto) >>> 0;
  // an IPv4 packet (mapped ::ffff:a.b.c.d) mixes only its 4-byte addresses
  const v6 = family === 6;
  for (let i = v6 ? 0 : 12; i < 16; i += 4) {
    h = mix(h, saddr16.readUInt32LE(i));
    h = mix(h, daddr16.readUInt32LE(i));
  }
  const swap = (p: number): number => ((p & 0xff) << 8) | (p >> 8);
  h = mix(h, ((swap(sport) << 16) | swap(dport)) >>> 0);
  h = (h ^ (h >>> 16)) >>> 0;
  h = mul(h, 0x85ebca6b);
  return (h ^ (h >>> 13)) >>> 0;
}

/** Flow hash of an IP packet as the program parses it (ports 0 for fragments and non-TCP/UDP). */
export function flowHashOf(ip: Buffer): number {
  const v = ip[0]! >> 4;
  const mapped = (a: Buffer): Buffer => Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]), a]);
  let proto: number, s: Buffer, d: Buffer, l4: number, frag: boolean;
  if (v === 4) {
    proto = ip[9]!;
    s = mapped(ip.subarray(12, 16));
    d = mapped(ip.subarray(16, 20));
    l4 = (ip[0]! & 0xf) * 4;
    frag = (ip.readUInt16BE(6) & 0x3fff) !== 0;
  } else {
    proto = ip[6]!;
    s = ip.subarray(8, 24);
    d = ip.subarray(24, 40);
    l4 = 40;
    frag = proto === IPPROTO.FRAGMENT;
  }
  const ported = !frag && (proto === IPPROTO.TCP || proto === IPPROTO.UDP);
  return flowHash(v === 4 ? 4 : 6, proto, s, d, ported ? ip.readUInt16BE(l4) : 0, ported ? ip.readUInt16BE(l4 + 2) : 0);
}

/** The outer headers the data plane puts in front of an inner packet. */
export function encap4(h: { src: string; dst: string }, inner: Buffer): Buffer {
  const innerV = inner[0]! >> 4;
  return ipv4(
    {
      src: h.src,
      dst: h.dst,
      ttl: 64,
      tos: innerV === 4 ? inner[1]! : ((inner.readUInt16BE(0) >> 4) & 0xff),
      id: flowHashOf(inner) & 0xffff,
      df: true,
    },
    raw(innerV === 4 ? IPPROTO.IPIP : IPPROTO.IPV6, inner),
  );
}

export function encap6(h: { src: string; dst: string }, inner: Buffer): Buffer {
  const innerV = inner[0]! >> 4;
  return ipv6(
    {
      src: h.src,
      dst: h.dst,
      hopLimit: 64,
      tclass: innerV === 4 ? inner[1]! : ((inner.readUInt16BE(0) >> 4) & 0xff),
      flow: flowHashOf(inner) & 0xfffff,
    },
    raw(innerV === 4 ? IPPROTO.IPIP : IPPROTO.IPV6, inner),
  );
}

/** Bytes of a counted length, for payloads. */
export function pattern(n: number, seed = 0): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed) & 0xff;
  return b;
}
