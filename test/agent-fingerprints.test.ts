/**
 * The store's hash sets of the names and keys its maps hold
 * (src/agent/fingerprints.ts): "absent" must be exact — a key added and not
 * removed is always found, through growth and removals (which shift entries
 * back) — and "maybe" for an absent key must be rare.
 */
import t from 'tap';
import { Fingerprints, hash32 } from '../src/agent/fingerprints.js';

/** A deterministic pseudo-random sequence (xorshift32), so a failure reproduces. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

t.test('every id added and not removed is found, through growth and churn', async (t) => {
  const f = new Fingerprints();
  const live = new Set<string>();
  const next = rng(16);
  let missed = 0;
  for (let step = 0; step < 200_000; step++) {
    const id = `app:n${Math.floor(next() * 40_000)}`;
    if (live.has(id)) {
      live.delete(id);
      f.remove(id);
    } else {
      live.add(id);
      f.add(id);
    }
    if (step % 20_000 === 0) for (const l of live) if (!f.mayHave(l)) missed++;
  }
  for (const l of live) if (!f.mayHave(l)) missed++;
  t.equal(missed, 0, 'no false "absent"');
  t.equal(f.size, live.size, 'one entry per live id');
  t.ok(live.size > 10_000, `the set grew well past its first table (${live.size} ids)`);
});

t.test('ids sharing a hash are kept apart: removing one leaves the other', async (t) => {
  // Find two distinct ids with one hash (birthday search over a few hundred thousand strings).
  const seen = new Map<number, string>();
  let pair: [string, string] | undefined;
  for (let i = 0; !pair && i < 2_000_000; i++) {
    const id = `delivery:c${i}`;
    const h = hash32(id);
    const other = seen.get(h);
    if (other !== undefined) pair = [other, id];
    else seen.set(h, id);
  }
  if (!pair) throw new Error('no colliding pair found');
  const [a, b] = pair;
  const f = new Fingerprints();
  f.add(a);
  f.add(b);
  f.remove(a);
  t.ok(f.mayHave(b), `${b} is still there after removing ${a} (same hash)`);
  t.equal(f.size, 1);
  f.remove(b);
  t.notOk(f.mayHave(b), 'and gone once both are removed');
});

t.test('ids never added are mostly answered "absent" (no lookup needed)', async (t) => {
  const f = new Fingerprints();
  for (let i = 0; i < 100_000; i++) f.add(`app:m${i}`);
  let maybe = 0;
  for (let i = 0; i < 100_000; i++) if (f.mayHave(`app:other${i}`)) maybe++;
  t.ok(maybe < 20, `${maybe} of 100,000 absent ids answered "maybe" (expected ≈ 2)`);
  f.clear();
  t.equal(f.size, 0);
  t.notOk(f.mayHave('app:m1'), 'cleared');
});
