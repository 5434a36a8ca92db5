/** Progress lines of `migrate` and `drain`, from the machine's events. */
import type { MigrationEvent, MigrationObserver } from '../controller/machine.js';

/**
 * Progress for humans. On a terminal, the running phase is one live line
 * that becomes its final line (with its time) when the phase ends; on a
 * pipe or file, one line per finished phase. With many apps (drain), a
 * phase's line counts apps instead of naming one.
 */
export class ProgressPrinter {
  private current: { step: string; started: number; done: number; entered: Set<string> } | undefined;
  private readonly tty: boolean;

  constructor(
    private readonly out: NodeJS.WriteStream = process.stdout,
    private readonly total = 1,
  ) {
    this.tty = Boolean(out.isTTY);
  }

  readonly observer: MigrationObserver = (e) => this.on(e);

  private write(s: string): void {
    this.out.write(s);
  }

  private live(text: string): void {
    if (this.tty) this.write(`\r\x1b[K${text}`);
  }

  private finishLine(text: string): void {
    this.write(this.tty ? `\r\x1b[K${text}\n` : `${text}\n`);
  }

  private label(): string {
    const c = this.current;
    if (!c) return '';
    return this.total > 1 ? `${c.step.padEnd(8)} ${c.done}/${c.entered.size}` : c.step.padEnd(8);
  }

  private closePhase(): void {
    const c = this.current;
    if (!c) return;
    this.finishLine(`  ✓ ${this.label()}  ${fmtMs(performance.now() - c.started)}`);
    this.current = undefined;
  }

  private on(e: MigrationEvent): void {
    switch (e.type) {
      case 'enter':
        if (this.current?.step !== e.state) {
          this.closePhase();
          this.current = { step: e.state, started: performance.now(), done: 0, entered: new Set() };
        }
        this.current.entered.add(e.app);
        this.live(`  … ${this.label()}`);
        break;
      case 'done':
        if (this.current?.step === e.state) {
          this.current.done++;
          if (this.total <= 1) {
            this.current = undefined;
            this.finishLine(`  ✓ ${e.state.padEnd(8)}  ${fmtMs(e.ms)}`);
          } else this.live(`  … ${this.label()}`);
        }
        break;
      case 'retry':
        this.finishLine(`  ↻ ${e.state} of ${e.app} failed (attempt ${e.attempt}): ${e.error}; retrying`);
        break;
      case 'rollback':
        if (this.current) this.current = undefined;
        this.finishLine(`  ✗ ${e.app}: ${e.error} — rolling back`);
        break;
      case 'undo':
        this.live(`  ↶ undo ${e.state} (${e.app})`);
        break;
      case 'undone':
        this.finishLine(`  ↶ undone ${e.state.padEnd(8)} ${this.total > 1 ? `(${e.app}) ` : ''}${fmtMs(e.ms)}`);
        break;
      case 'note':
        if (this.tty) this.write('\r\x1b[K');
        this.write(`    · ${this.total > 1 ? `${e.app}: ` : ''}${e.message}\n`);
        if (this.current) this.live(`  … ${this.label()}`);
        break;
      case 'flows': {
        // DRAIN_FLOWS: the old connections still open on the source, as they fall
        const text = `  … ${this.label()} ${this.total > 1 ? `${e.app}: ` : ''}${e.active} old flow${e.active === 1 ? '' : 's'} open (${fmtMs(e.elapsedMs)})`;
        if (this.tty) this.live(text);
        else this.write(`${text}\n`);
        break;
      }
      case 'end':
        // A failed single migration leaves no phase to close: its last line was the failure.
        if (e.outcome !== 'done' && this.total <= 1) this.current = undefined;
        break;
    }
  }

  /** Close the last live line (call before printing the summary). */
  flush(): void {
    this.closePhase();
  }
}

export function fmtMs(ms: number): string {
  if (ms < 1) return `${(ms * 1000).toFixed(0)} µs`;
  if (ms < 1000) return `${ms.toFixed(ms < 10 ? 2 : 0)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}
