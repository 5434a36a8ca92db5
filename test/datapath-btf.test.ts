/**
 * The TypeScript mirror of bpf/routeshift.h (src/datapath/structs.ts) matches
 * the compiled objects (bpf/uplink.o, and bpf/watch.o, which shares its
 * counter maps): every shared struct has the same size and the same fields
 * at the same offsets with the same sizes, every shared enum has the same
 * constants, and every map has the key/value types and max_entries the
 * TypeScript side expects. Reads the objects' BTF with bpftool.
 */
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ENUMS, LAYOUT, MAPS, WATCH_MAPS, WATCH_SHARED_MAPS, type MapSpec } from '../src/datapath/structs.js';

interface BtfMember {
  name: string;
  type_id: number;
  bits_offset: number;
  bitfield_size?: number;
}
interface BtfType {
  id: number;
  kind: string;
  name?: string;
  size?: number;
  type_id?: number;
  nr_elems?: number;
  members?: BtfMember[];
  values?: { name: string; val: number }[];
}

const object = join(process.cwd(), 'bpf', 'uplink.o');
const watchObject = join(process.cwd(), 'bpf', 'watch.o');

function loadBtf(object: string): Map<number, BtfType> {
  const out = execFileSync('bpftool', ['-j', 'btf', 'dump', 'file', object, 'format', 'raw'], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  const parsed = JSON.parse(out) as { types: BtfType[] };
  return new Map(parsed.types.map((ty) => [ty.id, ty]));
}

function resolve(btf: Map<number, BtfType>, id: number): BtfType {
  let ty = btf.get(id);
  while (ty && ['TYPEDEF', 'CONST', 'VOLATILE', 'RESTRICT', 'TYPE_TAG'].includes(ty.kind)) {
    ty = btf.get(ty.type_id ?? 0);
  }
  if (!ty) throw new Error(`BTF type ${id} not found`);
  return ty;
}

function sizeOf(btf: Map<number, BtfType>, id: number): number {
  const ty = resolve(btf, id);
  if (ty.kind === 'ARRAY') return (ty.nr_elems ?? 0) * sizeOf(btf, ty.type_id ?? 0);
  if (ty.kind === 'PTR') return 8;
  if (ty.size === undefined) throw new Error(`BTF type ${id} (${ty.kind}) has no size`);
  return ty.size;
}

function named(btf: Map<number, BtfType>, kind: string, name: string): BtfType | undefined {
  for (const ty of btf.values()) if (ty.kind === kind && ty.name === name) return ty;
  return undefined;
}

if (!existsSync(object) || !existsSync(watchObject)) {
  t.fail(`${object} or ${watchObject} is missing: run 'make -C bpf' first`);
} else {
  const btf = loadBtf(object);
  const watchBtf = loadBtf(watchObject);

  t.test('every shared struct has the size and field offsets of the TypeScript LAYOUT', async (t) => {
    for (const [name, layout] of Object.entries(LAYOUT)) {
      // structs only the watcher uses are in its object's BTF
      const inUplink = named(btf, 'STRUCT', name);
      const st = inUplink ?? named(watchBtf, 'STRUCT', name);
      if (!st) {
        t.fail(`struct ${name} is in the BTF of neither ${object} nor ${watchObject}`);
        continue;
      }
      const types = inUplink ? btf : watchBtf;
      t.equal(st.size, layout.size, `sizeof(struct ${name})`);
      const members = st.members ?? [];
      const fields = layout.fields as Record<string, { offset: number; size: number }>;
      t.same(
        members.map((m) => m.name),
        Object.keys(fields),
        `struct ${name} has exactly the fields LAYOUT names, in order`,
      );
      for (const m of members) {
        const want = fields[m.name];
        if (!want) continue;
        t.notOk(m.bitfield_size, `${name}.${m.name} is not a bitfield`);
        t.equal(m.bits_offset / 8, want.offset, `offsetof(${name}, ${m.name})`);
        t.equal(sizeOf(types, m.type_id), want.size, `sizeof(${name}.${m.name})`);
      }
    }
  });

  t.test('every shared enum has the constants the TypeScript side uses', async (t) => {
    for (const [name, want] of Object.entries(ENUMS)) {
      const en = named(btf, 'ENUM', name);
      if (!en) {
        t.fail(`enum ${name} is not in the BTF of ${object}`);
        continue;
      }
      const got = Object.fromEntries((en.values ?? []).map((v) => [v.name, v.val]));
      t.same(got, want, `enum ${name}`);
    }
  });

  // A BTF-defined map is a VAR whose struct has members 'type', 'key',
  // 'value', 'max_entries': __uint(x, N) is 'int (*x)[N]', __type(x, T) is 'T *x'.
  const mapTypes: Record<string, number> = { hash: 1, array: 2, percpu_array: 6, lru_hash: 9 };
  const checkMaps = (t: Test, types: Map<number, BtfType>, file: string, maps: Record<string, MapSpec>): void => {
    for (const [name, spec] of Object.entries(maps)) {
      const v = named(types, 'VAR', name);
      if (!v) {
        t.fail(`map ${name} is not in the BTF of ${file}`);
        continue;
      }
      const def = resolve(types, v.type_id ?? 0);
      const member = (m: string): BtfType => {
        const found = def.members?.find((x) => x.name === m);
        if (!found) throw new Error(`map ${name} has no '${m}'`);
        return resolve(types, resolve(types, found.type_id).type_id ?? 0); // through the pointer
      };
      t.equal(member('type').nr_elems, mapTypes[spec.type], `${name} map type ${spec.type}`);
      t.equal(member('max_entries').nr_elems, spec.maxEntries, `${name} max_entries`);
      const key = member('key');
      if (spec.key === 'u32') {
        t.ok(key.kind === 'INT' && key.size === 4, `${name} key is a 32-bit integer`);
      } else {
        t.equal(key.name, spec.key, `${name} key type`);
      }
      t.equal(member('value').name, spec.value, `${name} value type`);
    }
  };

  t.test('every map has the key, value and max_entries the TypeScript side expects', async (t) => {
    checkMaps(t, btf, object, MAPS);
  });

  t.test("the watcher's own maps, and the counter maps it shares with rs_uplink, as declared", async (t) => {
    checkMaps(t, watchBtf, watchObject, WATCH_MAPS);
    checkMaps(t, watchBtf, watchObject, Object.fromEntries(WATCH_SHARED_MAPS.map((n) => [n, MAPS[n]])));
  });
}
