/**
 * Real certificates for TLS tests, made by openssl in a temp directory: a
 * fleet CA, a server certificate for 127.0.0.1, client certificates (good,
 * expired, signed by another CA), and that other CA. Keys are mode 0600.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

export interface Pair {
  cert: string;
  key: string;
}

export interface TestCerts {
  ca: string;
  /** A CA the agents know nothing of. */
  otherCa: string;
  /** For 127.0.0.1 (IP SAN), signed by `ca`. */
  server: Pair;
  /** Signed by `otherCa`, for 127.0.0.1: what an impostor agent would present. */
  otherServer: Pair;
  client: Pair;
  expiredClient: Pair;
  /** A client certificate signed by `otherCa`. */
  strangerClient: Pair;
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function newKey(dir: string, name: string): string {
  const key = join(dir, `${name}.key`);
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key]);
  chmodSync(key, 0o600);
  return key;
}

function ca(dir: string, name: string): Pair {
  const key = newKey(dir, name);
  const cert = join(dir, `${name}.pem`);
  openssl(['req', '-x509', '-new', '-key', key, '-out', cert, '-subj', `/CN=${name}`, '-days', '2']);
  return { cert, key };
}

/** A leaf signed by `issuer`; `days` -1 gives a certificate that expired at once. */
function leaf(dir: string, name: string, issuer: Pair, usage: 'serverAuth' | 'clientAuth', days = 2): Pair {
  const key = newKey(dir, name);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.pem`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, `basicConstraints=CA:FALSE\nextendedKeyUsage=${usage}\n${usage === 'serverAuth' ? 'subjectAltName=IP:127.0.0.1\n' : ''}`);
  openssl(['req', '-new', '-key', key, '-out', csr, '-subj', `/CN=${usage === 'serverAuth' ? '127.0.0.1' : name}`]);
  openssl([
    'x509', '-req', '-in', csr, '-CA', issuer.cert, '-CAkey', issuer.key, '-out', cert,
    '-days', String(days), '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-extfile', ext,
  ]);
  return { cert, key };
}

export function makeCerts(dir: string): TestCerts {
  const fleet = ca(dir, 'fleet-ca');
  const other = ca(dir, 'other-ca');
  return {
    ca: fleet.cert,
    otherCa: other.cert,
    server: leaf(dir, 'agent', fleet, 'serverAuth'),
    otherServer: leaf(dir, 'impostor', other, 'serverAuth'),
    client: leaf(dir, 'controller', fleet, 'clientAuth'),
    expiredClient: leaf(dir, 'expired', fleet, 'clientAuth', -1),
    strangerClient: leaf(dir, 'stranger', other, 'clientAuth'),
  };
}
