/**
 * Names of entries, kept in a pinned map beside the data plane's maps so
 * the agent's whole state lives in bpffs: a restarted agent finds every
 * name, key and device there, and nothing can disagree with a state file.
 * User space only (no BPF program reads it), so it is not in routeshift.h.
 */
import type { Codec } from '../bpf/codec.js';
import { formatMac, parseMac } from '../model/address.js';
import { MAX_NAME_BYTES, type AppKey, type MacSource } from '../model/entry.js';
import { appKeyCodec } from './structs.js';

export type EntryKind = 'app' | 'delivery';

export interface MetaValue {
  kind: EntryKind;
  key: AppKey;
  name: string;
  /** The entry's interface on this host, by name (ifindex is in the entry). */
  dev: string;
  /** The application's MAC on `dev`, if known (so LOCAL can be restored after FORWARD). */
  mac: string | null;
  /** Given in the request, or resolved by the agent from the neighbour table (resolved again when the device changes). */
  macSource: MacSource;
  /**
   * The agent's write counter at the entry's last write (conditional writes
   * name it). 32 bits kept in bytes an older agent left zero — pad[3] the
   * low 24, `reserved` the high 8 — so the value keeps its size and maps
   * pinned by an older agent are adopted as they are: their entries read as
   * generation 0 until written (and an older agent's write zeroes it again).
   */
  generation: number;
}

const KIND_CODE: Record<EntryKind, number> = { app: 1, delivery: 2 };
const NAME_BYTES = MAX_NAME_BYTES;
const DEV_BYTES = 16;
// kind u8, generation_lo[3], rs_app_key (20), name[48], dev[16], mac[6], mac_resolved u8, generation_hi u8
const OFF_KEY = 4;
const OFF_NAME = OFF_KEY + appKeyCodec.size;
const OFF_DEV = OFF_NAME + NAME_BYTES;
const OFF_MAC = OFF_DEV + DEV_BYTES;
export const META_VALUE_SIZE = OFF_MAC + 8;
const OFF_GEN_LO = 1;
const OFF_GEN_HI = OFF_MAC + 7;

function writeString(into: Buffer, offset: number, max: number, s: string, what: string): void {
  // Measured, then written in place: no Buffer per string (a batch encodes two per entry).
  if (Buffer.byteLength(s, 'utf8') > max) throw new RangeError(`${what} ${JSON.stringify(s)} is longer than ${max} bytes`);
  into.write(s, offset, max, 'utf8');
}

function readString(from: Buffer, offset: number, max: number): string {
  const raw = from.subarray(offset, offset + max);
  const end = raw.indexOf(0);
  return raw.subarray(0, end < 0 ? max : end).toString('utf8');
}

export const metaValueCodec: Codec<MetaValue> = {
  size: META_VALUE_SIZE,
  encode(value, into, offset) {
    into.fill(0, offset, offset + META_VALUE_SIZE);
    into.writeUInt8(KIND_CODE[value.kind], offset);
    appKeyCodec.encode(value.key, into, offset + OFF_KEY);
    writeString(into, offset + OFF_NAME, NAME_BYTES, value.name, 'name');
    writeString(into, offset + OFF_DEV, DEV_BYTES, value.dev, 'device name');
    if (value.mac !== null) parseMac(value.mac).copy(into, offset + OFF_MAC);
    into.writeUInt8(value.macSource === 'resolved' ? 1 : 0, offset + OFF_MAC + 6);
    into.writeUIntLE(value.generation & 0xffffff, offset + OFF_GEN_LO, 3);
    into.writeUInt8((value.generation >>> 24) & 0xff, offset + OFF_GEN_HI);
  },
  decode(from, offset) {
    const code = from.readUInt8(offset);
    const mac = from.subarray(offset + OFF_MAC, offset + OFF_MAC + 6);
    const kind: EntryKind = code === KIND_CODE.delivery ? 'delivery' : 'app';
    return {
      kind,
      key: appKeyCodec.decode(from, offset + OFF_KEY),
      name: readString(from, offset + OFF_NAME, NAME_BYTES),
      dev: readString(from, offset + OFF_DEV, DEV_BYTES),
      mac: mac.every((b) => b === 0) ? null : formatMac(mac),
      macSource: from.readUInt8(offset + OFF_MAC + 6) === 1 ? 'resolved' : 'given',
      generation: from.readUIntLE(offset + OFF_GEN_LO, 3) + from.readUInt8(offset + OFF_GEN_HI) * 0x1000000,
    };
  },
};


/** Key of the pinned name index (rs_app_names): one name per kind. */
export interface NameKey {
  kind: EntryKind;
  name: string;
}

// kind u8, name[48], pad[3]
export const nameKeyCodec: Codec<NameKey> = {
  size: 1 + NAME_BYTES + 3,
  encode(value, into, offset) {
    into.fill(0, offset, offset + this.size);
    into.writeUInt8(KIND_CODE[value.kind], offset);
    writeString(into, offset + 1, NAME_BYTES, value.name, 'name');
  },
  decode(from, offset) {
    return {
      kind: from.readUInt8(offset) === KIND_CODE.delivery ? 'delivery' : 'app',
      name: readString(from, offset + 1, NAME_BYTES),
    };
  },
};

/**
 * Whose data plane the pinned maps are (rs_owner, one entry): the uplink
 * they were made for, by network namespace and index. Two agents in two
 * namespaces can share one bpffs; this keeps one from adopting the other's
 * maps through a pin directory that happens to have the same name.
 */
export interface Owner {
  /** Inode of the network namespace (/proc/self/ns/net). */
  netns: bigint;
  ifindex: number;
  uplink: string;
  /** The pin directory the agent that made the data plane used. */
  pinDir: string;
}

const PIN_DIR_BYTES = 256;

// netns u64, ifindex u32, pad u32, uplink[16], pin_dir[256]
export const ownerCodec: Codec<Owner> = {
  size: 8 + 4 + 4 + DEV_BYTES + PIN_DIR_BYTES,
  encode(value, into, offset) {
    into.fill(0, offset, offset + this.size);
    into.writeBigUInt64LE(value.netns, offset);
    into.writeUInt32LE(value.ifindex, offset + 8);
    writeString(into, offset + 16, DEV_BYTES, value.uplink, 'uplink name');
    writeString(into, offset + 16 + DEV_BYTES, PIN_DIR_BYTES, value.pinDir, 'pin directory');
  },
  decode(from, offset) {
    return {
      netns: from.readBigUInt64LE(offset),
      ifindex: from.readUInt32LE(offset + 8),
      uplink: readString(from, offset + 16, DEV_BYTES),
      pinDir: readString(from, offset + 16 + DEV_BYTES, PIN_DIR_BYTES),
    };
  },
};
