/**
 * Unknown flags, reported as such. yargs checks required options before it
 * checks for unknown ones, so `app add --agnet URL` would be "Missing
 * required argument: agent"; this check runs first (a yargs middleware
 * before validation, in the context of the command that was chosen) and
 * names the flag with the closest known one.
 */
import { UsageError } from './common.js';

/** What the middleware sees of the command's yargs instance. */
export interface OptionsView {
  getOptions(): { key: Record<string, unknown>; alias: Record<string, string[]> };
}

/** Edit distance where swapping two neighbours costs 1 (agnet → agent is one edit). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

/** The known flag closest to `name`, if it is close enough to be a typo. */
export function closest(name: string, known: Iterable<string>): string | undefined {
  let best: { flag: string; distance: number } | undefined;
  for (const k of known) {
    if (k.length < 2) continue; // suggest long flags only
    const distance = editDistance(name, k);
    if (!best || distance < best.distance) best = { flag: k, distance };
  }
  return best && best.distance <= Math.max(2, Math.floor(name.length / 3)) ? best.flag : undefined;
}

/** Flag names the user typed (`--name`, `--name=v`, `--no-name`, `-abc`), up to a `--`. */
export function typedFlags(args: readonly string[]): { name: string; negated: boolean }[] {
  const out: { name: string; negated: boolean }[] = [];
  for (const a of args) {
    if (a === '--') break;
    if (a.startsWith('--')) {
      const name = a.slice(2).split('=')[0]!;
      out.push(name.startsWith('no-') ? { name: name.slice(3), negated: true } : { name, negated: false });
    } else if (/^-[A-Za-z]+$/.test(a)) {
      for (const c of a.slice(1)) out.push({ name: c, negated: false });
    }
  }
  return out;
}

/** Throws a UsageError naming the first unknown flag in `args` (and the known flag it looks like). */
export function checkUnknownFlags(args: readonly string[], command: OptionsView): void {
  const { key, alias } = command.getOptions();
  const known = new Set<string>(['help', 'version']);
  for (const k of Object.keys(key)) known.add(k);
  for (const [k, as] of Object.entries(alias)) {
    known.add(k);
    for (const a of as) known.add(a);
  }
  // yargs takes --dryRun for --dry-run as well.
  for (const k of [...known]) if (k.includes('-')) known.add(k.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()));
  for (const f of typedFlags(args)) {
    // `--no-x` is yargs' negation of a known `x`; a flag literally named no-x is known too.
    if (known.has(f.name) || (f.negated && known.has(`no-${f.name}`))) continue;
    const typed = f.negated ? `no-${f.name}` : f.name;
    const like = closest(typed, known) ?? closest(f.name, known);
    throw new UsageError(`Unknown argument: ${typed}${like ? ` (did you mean --${like}?)` : ''}`);
  }
}
