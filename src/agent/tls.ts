/**
 * The agent's TLS material: --tls-cert/--tls-key, and --client-ca for mTLS.
 * Read and checked before the agent takes any lock or touches the data
 * plane, so a wrong file fails start-up in one line and leaves nothing behind.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  /** Require client certificates signed by this CA. */
  clientCaFile?: string;
}

export interface ServerTls {
  cert: Buffer;
  key: Buffer;
  clientCa?: Buffer;
}

function read(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`cannot read ${flag} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** Every certificate of a PEM bundle parses, and there is at least one (node would silently trust none). */
function checkCertificates(pem: Buffer, path: string, flag: string): void {
  const blocks = pem.toString('utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (!blocks.length) throw new Error(`${flag} ${path} holds no PEM certificate`);
  for (const b of blocks) {
    try {
      new X509Certificate(b);
    } catch (err) {
      throw new Error(`${flag} ${path}: a certificate does not parse: ${(err as Error).message}`);
    }
  }
}

export function loadServerTls(files: TlsFiles): ServerTls {
  const cert = read(files.certFile, '--tls-cert');
  const key = read(files.keyFile, '--tls-key');
  checkCertificates(cert, files.certFile, '--tls-cert');
  const clientCa = files.clientCaFile ? read(files.clientCaFile, '--client-ca') : undefined;
  if (clientCa && files.clientCaFile) checkCertificates(clientCa, files.clientCaFile, '--client-ca');
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new Error(`--tls-key ${files.keyFile} is not the private key of --tls-cert ${files.certFile} (or not a PEM key): ${(err as Error).message}`);
  }
  return { cert, key, ...(clientCa ? { clientCa } : {}) };
}
