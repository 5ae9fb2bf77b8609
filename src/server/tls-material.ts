/**
 * The broker's TLS material (`--tls-cert-file`, `--tls-key-file`, `--tls-client-ca-file`), read
 * and checked when `strata serve` starts, before the data directory is opened: a file that
 * cannot be read, holds no PEM certificate or key, a key that is not the certificate's, or a
 * certificate past its end is one line naming the flag, not a failed handshake on every
 * client later.
 *
 * The files are read again on SIGHUP (`ServerTls.reload`), so a renewed certificate is served
 * without a restart: connections made from then on get it, open ones keep theirs. Renewed
 * files are checked as at the start, and files with a problem leave the material before in use.
 */
import { type SecureContextOptions, createSecureContext } from 'node:tls';
import { ServerCredentials } from '@grpc/grpc-js';
import { readFlagFile } from '../common/errors.js';
import { certificatesIn, checkPrivateKeyOfChain } from '../common/pem-files.js';
import { invalidArgument as invalid } from './status.js';

export interface TlsMaterial {
  /** The broker's certificate chain (PEM), its own certificate first. */
  certChain: Buffer;
  /** Its private key (PEM). */
  privateKey: Buffer;
  /** CA certificates (PEM) that client certificates must chain to; null: no client certificate is asked for. */
  clientCa: Buffer | null;
  /** When the broker's certificate chain ends: its certificate's end, or that of a CA certificate in it (not yet ended) that ends first. */
  validTo: string;
  /** The files it was read from (for the start-up log line). */
  files: TlsFiles;
}

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  /** '' for none. */
  clientCaFile: string;
}

/** Null when no TLS flag is given; the checked material otherwise. `nowMs` dates the expiry check. */
export function loadTlsMaterial(files: TlsFiles, nowMs: number): TlsMaterial | null {
  const { certFile, keyFile, clientCaFile } = files;
  if (certFile === '' && keyFile === '') {
    if (clientCaFile !== '') throw invalid('--tls-client-ca-file needs --tls-cert-file and --tls-key-file: client certificates are asked for only over TLS');
    return null;
  }
  if (certFile === '' || keyFile === '') throw invalid('give both --tls-cert-file and --tls-key-file (the broker\'s certificate and its private key), or neither');
  const certChain = readFlagFile('--tls-cert-file', certFile);
  const privateKey = readFlagFile('--tls-key-file', keyFile);
  const chain = certificatesIn('--tls-cert-file', certFile, certChain);
  const certificate = chain[0]!;
  checkPrivateKeyOfChain({ certFlag: '--tls-cert-file', certFile, chain, keyFlag: '--tls-key-file', keyFile, keyPem: privateKey, reader: 'the broker', owner: "the broker's user", own: "the broker's own certificate" });
  if (Date.parse(certificate.validTo) < nowMs) throw invalid(`the certificate in --tls-cert-file ${certFile} expired on ${certificate.validTo}; renew it`);
  if (Date.parse(certificate.validFrom) > nowMs) throw invalid(`the certificate in --tls-cert-file ${certFile} is valid only from ${certificate.validFrom}: clients would refuse it until then (is this machine's clock right?)`);
  // An intermediate CA certificate that ends first ends the chain's use too. One already past
  // its end is left out: a chain may carry an expired cross-signed root that clients skip.
  const firstToEnd = chain.filter((member) => Date.parse(member.validTo) >= nowMs).reduce((first, next) => (Date.parse(next.validTo) < Date.parse(first.validTo) ? next : first));
  let clientCa: Buffer | null = null;
  if (clientCaFile !== '') {
    clientCa = readFlagFile('--tls-client-ca-file', clientCaFile);
    certificatesIn('--tls-client-ca-file', clientCaFile, clientCa);
  }
  return { certChain, privateKey, clientCa, validTo: firstToEnd.validTo, files };
}

/** The listener's TLS: the material in use, and the grpc-js credentials that serve it. */
export class ServerTls {
  readonly credentials: ReloadableServerCredentials;

  constructor(private current: TlsMaterial) {
    this.credentials = new ReloadableServerCredentials(current);
  }

  /** Null when no TLS flag is given (see `loadTlsMaterial`). */
  static fromFiles(files: TlsFiles, nowMs: number): ServerTls | null {
    const material = loadTlsMaterial(files, nowMs);
    return material === null ? null : new ServerTls(material);
  }

  get material(): TlsMaterial {
    return this.current;
  }

  /**
   * Reads and checks the same files again and serves what they hold to connections made from
   * now on. Files with a problem throw (INVALID_ARGUMENT, naming the flag) and change nothing.
   */
  reload(nowMs: number): TlsMaterial {
    const material = loadTlsMaterial(this.current.files, nowMs)!;
    this.credentials.serve(material);
    this.current = material;
    return material;
  }
}

/**
 * grpc-js credentials whose certificate, key and client CA can be replaced while the server
 * runs: grpc-js hands each replacement to its TLS listeners' `setSecureContext`. The options
 * are those `ServerCredentials.createSsl` gives, but for the CA certificates when no client
 * certificate is asked for (createSsl then sets the default roots, which nothing reads).
 */
class ReloadableServerCredentials extends ServerCredentials {
  constructor(material: TlsMaterial) {
    super(
      { requestCert: material.clientCa !== null, ciphers: process.env.GRPC_SSL_CIPHER_SUITES },
      contextOptions(material),
    );
  }

  serve(material: TlsMaterial): void {
    const options = contextOptions(material);
    // grpc-js stops accepting connections on a listener whose new context fails: build it here
    // first, so that such material is refused and the context before stays.
    try {
      createSecureContext(options);
    } catch (error) {
      const { certFile, keyFile, clientCaFile } = material.files;
      throw invalid(`the TLS files ${[certFile, keyFile, clientCaFile].filter((file) => file !== '').join(', ')} cannot be served: ${(error as Error).message}`);
    }
    this.updateSecureContextOptions(options);
  }

  _equals(other: ServerCredentials): boolean {
    return other === this;
  }
}

function contextOptions(material: TlsMaterial): SecureContextOptions {
  return {
    cert: material.certChain,
    key: material.privateKey,
    ...(material.clientCa !== null ? { ca: material.clientCa } : {}),
    ...(process.env.GRPC_SSL_CIPHER_SUITES !== undefined ? { ciphers: process.env.GRPC_SSL_CIPHER_SUITES } : {}),
  };
}

/** The grpc-js credentials of a listener: TLS with `tls`, or plaintext when null. */
export function serverCredentials(tls: ServerTls | null): ServerCredentials {
  return tls === null ? ServerCredentials.createInsecure() : tls.credentials;
}
