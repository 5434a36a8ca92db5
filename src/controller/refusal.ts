/**
 * What `--resume` says when it will not act: which journal is damaged and
 * how (by line), that nothing was changed, and the safe ways on — look,
 * move the file aside to resume from the journal before it, or finish by
 * hand with the commands that would do it.
 */
import { isIP } from 'node:net';
import type { Facts, PlanRecord, Stored } from './journal.js';
import { describeProblems } from './journal-format.js';
import { plannedApps, type JournalFile, type JournalSearch } from './journal-files.js';

/** `--resume` will not act on what the journals say; nothing was changed. An operator decides (exit 3). */
export class ResumeRefusedError extends Error {
  override readonly name = 'ResumeRefusedError';
}

function planOf(records: readonly Stored[], app: string): PlanRecord | undefined {
  const p = records.find((r) => r.type === 'plan' && r.app === app);
  return p?.type === 'plan' ? p : undefined;
}

function originalOf(records: readonly Stored[], app: string): Facts['original'] {
  for (const r of records) if (r.type === 'done' && r.app === app && r.facts?.original) return r.facts.original;
  return undefined;
}

/** "line 9: done SWITCH" for the app's last valid record. */
function lastRecord(f: JournalFile, app: string): string | undefined {
  const { records, lines } = f.decoded;
  for (let i = records.length - 1; i >= 0; i--) {
    const r = records[i];
    if (!r || r.type === 'open' || r.app !== app) continue;
    const what = r.type === 'end' ? `end ${r.outcome}` : r.type === 'rollback' ? `rollback from ${r.from}` : 'state' in r ? `${r.type} ${r.state}` : r.type;
    return `line ${lines[i] ?? '?'}: ${what}`;
  }
  return undefined;
}

function addrArg(o: NonNullable<Facts['original']>): string {
  const ip = isIP(o.address) === 6 ? `[${o.address}]` : o.address;
  if (o.proto === 'any') return ip;
  return `${ip}:${String(o.proto)}${o.port ? `/${o.port}` : ''}`;
}

export function refusalText(app: string, stateDir: string, search: JournalSearch): string {
  const damaged = search.damagedNewer;
  const newest = damaged[0];
  if (!newest) throw new Error('refusalText needs a damaged journal');
  const out: string[] = [];
  out.push(`cannot resume ${app}: ${damaged.map((f) => `journal ${f.path} is damaged: ${describeProblems(f.decoded)}`).join('; ')}`);
  const holdsApp = damaged.some((f) => plannedApps(f).includes(app));
  out.push(
    `${holdsApp ? `It holds ${app}'s last migration` : `${damaged.length > 1 ? 'They are' : 'It is'} newer than every readable journal of ${app} and may hold its last migration`}, ` +
      `so --resume acts neither on it nor on an older journal. Nothing was changed.`,
  );
  const records = [...damaged.flatMap((f) => f.decoded.records), ...(search.found?.decoded.records ?? [])];
  const plan = planOf(records, app);
  const said = damaged.map((f) => {
    const apps = plannedApps(f);
    const last = lastRecord(f, app);
    return `${f.id}: ${apps.length ? `plans ${apps.join(', ')}` : 'no readable plan'}${last ? `; ${app}'s last readable record is ${last}` : ''}`;
  });
  out.push(`What the readable lines say — ${said.join('; ')}.`);

  const from = plan?.from ?? '<source-agent>';
  const to = plan?.to ?? '<destination-agent>';
  const o = originalOf(records, app);
  const addr = o ? addrArg(o) : '<address>';
  const resumeAgain = `routeshift migrate ${app} --resume --state-dir ${stateDir}`;
  const olderEnd = [...(search.found?.decoded.records ?? [])].reverse().find((r) => r.type === 'end' && r.app === app);
  const older = search.found
    ? `it then resumes from ${search.found.path}${olderEnd?.type === 'end' ? `, where ${app} ended ${olderEnd.outcome}` : ', an unfinished run'}`
    : `it then finds no journal of ${app} and does nothing`;
  out.push('Safe choices:');
  out.push(`  1. look: routeshift status ${plan ? `${from} ${to} ` : '<agents> '}--state-dir ${stateDir} — lists damaged journals with their reasons and shows where ${app}'s entries are now.`);
  out.push(
    `  2. if ${damaged.length > 1 ? 'they are' : 'it is'} not ${app}'s migration, or ${app} was finished by hand: move ${damaged.length > 1 ? 'them' : 'it'} aside (${damaged.map((f) => `mv ${f.path} ${f.path}.damaged`).join('; ')}) and run ${resumeAgain} again; ${older}.`,
  );
  out.push(`  3. finish by hand, by what the source agent shows for ${app}:`);
  out.push(
    `     still LOCAL (SWITCH not applied) → roll back: stop ${app} on ${to} if it started there, and remove its delivery entry there (DELETE /v1/deliveries/${app} on ${to}); routeshift app add ${app} --agent ${from} --addr ${addr} --dev ${o?.dev ?? '<dev>'}${o?.mac ? ` --mac ${o.mac}` : ''} keeps it LOCAL.`,
  );
  out.push(
    `     FORWARD to ${to} (SWITCH applied) → roll forward: routeshift app add ${app} --agent ${to} --addr ${addr} --dev ${plan?.destDev ?? '<dest-dev>'}${plan?.destMac ? ` --mac ${plan.destMac}` : ''}; stop ${app} on ${from}; move the network's route to ${to}; then routeshift app rm ${app} --agent ${from}, and remove the delivery entry on ${to}.`,
  );
  return out.join('\n');
}
