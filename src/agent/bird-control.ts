/**
 * A client of BIRD's control socket (the protocol `birdc` speaks), so the
 * agent needs no `birdc` binary and gets BIRD's reply codes instead of
 * screen text.
 *
 * The protocol: a Unix stream socket; BIRD greets with `0001 BIRD x.y
 * ready.`; each command is one line; the reply is lines `DDDD-text` (more
 * follows), ` text` (more of the previous code) and ends with one `DDDD
 * text`. Codes 0xxx say done, 1xxx/2xxx carry table data, 8xxx are run-time
 * errors (8001 "not found", 8002 a configuration file error…), 9xxx parse
 * errors. One connection per command: BIRD serves many clients, and a
 * command never depends on the last one's connection.
 */
import { createConnection } from 'node:net';

export const DEFAULT_BIRD_SOCKET = '/run/bird/bird.ctl';

export interface BirdLine {
  code: number;
  text: string;
}

export interface BirdReply {
  /** The code of the last line: what the command came to. */
  code: number;
  lines: BirdLine[];
}

/** BIRD could not be reached, did not answer, or answered with an error code (≥ 8000). */
export class BirdError extends Error {
  override readonly name = 'BirdError';
  constructor(
    message: string,
    /** BIRD's reply code when it answered with one. */
    readonly code?: number,
  ) {
    super(message);
  }
}

/** The reply stream → lines, and whether the reply ended. */
class ReplyParser {
  readonly lines: BirdLine[] = [];
  #rest = '';
  #lastCode = 0;
  done = false;

  push(chunk: string): void {
    this.#rest += chunk;
    let nl: number;
    while (!this.done && (nl = this.#rest.indexOf('\n')) >= 0) {
      const line = this.#rest.slice(0, nl);
      this.#rest = this.#rest.slice(nl + 1);
      const m = /^(\d{4})([ -])(.*)$/.exec(line);
      if (m) {
        this.#lastCode = Number(m[1]);
        this.lines.push({ code: this.#lastCode, text: m[3] ?? '' });
        if (m[2] === ' ') this.done = true;
      } else if (line.startsWith(' ')) {
        this.lines.push({ code: this.#lastCode, text: line.slice(1) });
      } else {
        throw new BirdError(`unexpected line from BIRD: ${JSON.stringify(line.slice(0, 200))}`);
      }
    }
  }

  /** The lines after the greeting, for the next reply. */
  next(): void {
    this.lines.length = 0;
    this.done = false;
    this.push('');
  }
}

export class BirdControl {
  constructor(
    readonly socketPath: string,
    readonly timeoutMs = 10_000,
  ) {}

  /**
   * Run one command; resolves with BIRD's reply when its code is below 8000,
   * throws BirdError otherwise (with BIRD's own text) and when BIRD cannot
   * be reached (naming the socket and what to do).
   */
  async command(cmd: string): Promise<BirdReply> {
    if (!/^[\x20-\x7e]{1,1000}$/.test(cmd)) throw new BirdError(`invalid BIRD command ${JSON.stringify(cmd.slice(0, 80))}: one line of printable ASCII`);
    const reply = await this.#exchange(cmd);
    if (reply.code >= 8000) {
      const text = reply.lines.map((l) => l.text).join(' | ');
      throw new BirdError(`BIRD (${this.socketPath}) refused \`${cmd}\`: ${reply.code} ${text}`, reply.code);
    }
    return reply;
  }

  #exchange(cmd: string): Promise<BirdReply> {
    return new Promise((resolve, reject) => {
      const parser = new ReplyParser();
      let greeted = false;
      let settled = false;
      const sock = createConnection({ path: this.socketPath });
      const finish = (err: Error | undefined, reply?: BirdReply): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        sock.destroy();
        if (err) reject(err);
        else resolve(reply as BirdReply);
      };
      const timer = setTimeout(
        () => finish(new BirdError(`BIRD control socket ${this.socketPath}: no answer to \`${cmd}\` within ${this.timeoutMs} ms (is BIRD hung?)`)),
        this.timeoutMs,
      );
      sock.setEncoding('utf8');
      sock.on('error', (err: NodeJS.ErrnoException) => finish(new BirdError(describeSocketError(this.socketPath, err))));
      sock.on('close', () => finish(new BirdError(`BIRD control socket ${this.socketPath}: BIRD closed the connection before answering \`${cmd}\``)));
      sock.on('data', (chunk: string) => {
        try {
          parser.push(chunk);
          if (!parser.done) return;
          if (!greeted) {
            greeted = true;
            const hello = parser.lines.at(-1);
            if (hello?.code !== 1) throw new BirdError(`${this.socketPath} is not a BIRD control socket (it greeted with ${JSON.stringify(hello?.text ?? '')})`);
            parser.next();
            sock.write(`${cmd}\n`);
            return;
          }
          finish(undefined, { code: parser.lines.at(-1)?.code ?? 0, lines: [...parser.lines] });
        } catch (err) {
          finish(err as Error);
        }
      });
    });
  }
}

/** What a failed connect means for an operator: which socket, and what to run. */
function describeSocketError(path: string, err: NodeJS.ErrnoException): string {
  const hint = `start BIRD (\`systemctl start bird\`, or \`bird -s ${path}\`), or point the agent at its socket with --bird-socket PATH`;
  switch (err.code) {
    case 'ENOENT':
      return `BIRD control socket ${path} does not exist: is BIRD running? ${hint}`;
    case 'ECONNREFUSED':
      return `BIRD control socket ${path}: nothing listens on it (BIRD exited?); ${hint}`;
    case 'EACCES':
    case 'EPERM':
      return `BIRD control socket ${path}: permission denied (run the agent as root or in BIRD's group)`;
    case 'ENOTSOCK':
      return `${path} is not a socket: give the agent BIRD's control socket with --bird-socket PATH`;
    default:
      return `BIRD control socket ${path}: ${err.code ?? err.message}`;
  }
}
