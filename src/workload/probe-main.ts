/**
 * Entry point of a probe run inside a namespace (see probeInNetns):
 * `node probe-main.js udp|tcp ADDRESS PORT TIMEOUT_MS`; exit 0 = answered.
 */
import { probe } from './probe.js';

const [proto, address, port, timeout] = process.argv.slice(2);
if ((proto !== 'udp' && proto !== 'tcp') || !address || !port) {
  process.stderr.write('usage: probe-main udp|tcp ADDRESS PORT [TIMEOUT_MS]\n');
  process.exit(2);
}
const ok = await probe(proto, address, Number(port), Number(timeout ?? 300));
process.exit(ok ? 0 : 1);
