/**
 * Checks of PEM files given by flag, shared by the broker's TLS flags and the CLI's: every
 * certificate a file holds, and a private key that is the key of a chain's first certificate.
 * Each problem is one INVALID_ARGUMENT naming the flag and the file, never OpenSSL's own text
 * (`error:05800074:x509 certificate routines::key values mismatch`) at a later handshake.
 */
import { type KeyObject, X509Certificate, createPrivateKey } from 'node:crypto';
import { ErrorCode, StrataError } from './errors.js';

const invalid = (message: string): StrataError => new StrataError(ErrorCode.INVALID_ARGUMENT, message);

/** Every PEM certificate in a file, in order; at least one. */
export function certificatesIn(flag: string, path: string, pem: Buffer): X509Certificate[] {
  // The block types OpenSSL reads as certificates (TRUSTED: a CA bundle in OpenSSL's own format).
  const blocks = pem.toString('latin1').match(/-----BEGIN ((?:TRUSTED |X509 )?CERTIFICATE)-----[\s\S]*?-----END \1-----/g) ?? [];
  if (blocks.length === 0) throw invalid(`${flag} ${path} holds no PEM certificate`);
  return blocks.map((block, index) => {
    try {
      return new X509Certificate(block);
    } catch (error) {
      throw invalid(`${flag} ${path}: its certificate ${index + 1} of ${blocks.length} cannot be read (${(error as Error).message})`);
    }
  });
}

/** A certificate chain and its private key, each as given by a flag. */
export interface KeyPairFiles {
  certFlag: string;
  certFile: string;
  /** The certificates of `certFile` (`certificatesIn`), its own first. */
  chain: readonly X509Certificate[];
  keyFlag: string;
  keyFile: string;
  keyPem: Buffer;
  /** Who reads the key, for the refusal of one with a passphrase: 'the broker', 'strata'. */
  reader: string;
  /** Who alone should read the unencrypted key: "the broker's user", 'your user'. */
  owner: string;
  /** What the chain's first certificate must be: "the broker's own certificate". */
  own: string;
}

/** Checks that `keyFile` holds the private key of the chain's first certificate. */
export function checkPrivateKeyOfChain(files: KeyPairFiles): void {
  const { certFlag, certFile, chain, keyFlag, keyFile, keyPem } = files;
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (error) {
    const encrypted = /ENCRYPTED/.test(keyPem.toString('latin1'));
    throw invalid(
      encrypted
        ? `${keyFlag} ${keyFile} is encrypted with a passphrase, which ${files.reader} cannot ask for: give it the key unencrypted (openssl pkey -in KEY -out PLAIN), readable by ${files.owner} only`
        : `${keyFlag} ${keyFile} holds no PEM private key (${(error as Error).message})`,
    );
  }
  if (!chain[0]!.checkPrivateKey(key)) {
    const keyFitsAnother = chain.slice(1).some((other) => other.checkPrivateKey(key));
    throw invalid(
      keyFitsAnother
        ? `${certFlag} ${certFile} must start with ${files.own}, the one of ${keyFlag} ${keyFile}, and go on with the CA certificates that signed it`
        : `${keyFlag} ${keyFile} is not the private key of the certificate in ${certFlag} ${certFile}`,
    );
  }
}
