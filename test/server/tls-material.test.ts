// Goal: the broker's TLS flags are checked when serve starts (and on SIGHUP), each mistake one
// message naming the flag (a missing half, an unreadable file, no PEM, a certificate of a chain
// that cannot be read or comes before the broker's own, a key of another certificate, an
// expired certificate), a chain ends with its first certificate to end, and material a TLS
// context cannot be made of is refused before it is served; method: loadTlsMaterial and
// ServerTls on the test fixtures and on files made wrong.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PACKAGE_ROOT } from '../../src/common/package-root.js';
import { ServerTls, loadTlsMaterial } from '../../src/server/tls-material.js';

const FIXTURES = join(PACKAGE_ROOT, 'test', 'fixtures', 'tls');
const fixture = (name: string): string => join(FIXTURES, name);
const NOW = Date.parse('2027-01-01T00:00:00Z'); // within the fixtures' validity (2000 to 2126)
const directory = mkdtempSync(join(tmpdir(), 'strata-tls-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

const problem = (files: { certFile?: string; keyFile?: string; clientCaFile?: string }, nowMs = NOW): string => {
  try {
    loadTlsMaterial({ certFile: '', keyFile: '', clientCaFile: '', ...files }, nowMs);
  } catch (error) {
    return (error as Error).message;
  }
  return 'taken';
};

describe('loadTlsMaterial', () => {
  it('is null without TLS flags, and the checked material with them', () => {
    expect(loadTlsMaterial({ certFile: '', keyFile: '', clientCaFile: '' }, NOW)).toBeNull();
    const material = loadTlsMaterial({ certFile: fixture('server.pem'), keyFile: fixture('server-key.pem'), clientCaFile: fixture('ca.pem') }, NOW)!;
    expect(material.clientCa).not.toBeNull();
    expect(material.certChain.toString()).toMatch(/^-----BEGIN CERTIFICATE-----/);
    expect(Date.parse(material.validTo)).toBeGreaterThan(NOW);
  });

  it('refuses each mistake with one message naming the flag', () => {
    const notPem = join(directory, 'not.pem');
    writeFileSync(notPem, 'hello');
    expect(problem({ certFile: fixture('server.pem') })).toBe("give both --tls-cert-file and --tls-key-file (the broker's certificate and its private key), or neither");
    expect(problem({ clientCaFile: fixture('ca.pem') })).toBe('--tls-client-ca-file needs --tls-cert-file and --tls-key-file: client certificates are asked for only over TLS');
    expect(problem({ certFile: join(directory, 'absent.pem'), keyFile: fixture('server-key.pem') })).toBe(`--tls-cert-file ${join(directory, 'absent.pem')} cannot be read: ENOENT (no such file or directory)`);
    expect(problem({ certFile: notPem, keyFile: fixture('server-key.pem') })).toBe(`--tls-cert-file ${notPem} holds no PEM certificate`);
    expect(problem({ certFile: fixture('server.pem'), keyFile: notPem })).toMatch(new RegExp(`^--tls-key-file ${notPem} holds no PEM private key \\(`));
    expect(problem({ certFile: fixture('server.pem'), keyFile: fixture('client-key.pem') })).toBe(`--tls-key-file ${fixture('client-key.pem')} is not the private key of the certificate in --tls-cert-file ${fixture('server.pem')}`);
    expect(problem({ certFile: fixture('server.pem'), keyFile: fixture('server-key.pem'), clientCaFile: notPem })).toMatch(/^--tls-client-ca-file .* holds no PEM certificate/);
    expect(problem({ certFile: fixture('server.pem'), keyFile: fixture('server-key.pem') }, Date.parse('2200-01-01T00:00:00Z'))).toMatch(/^the certificate in --tls-cert-file .*server\.pem expired on .*2126 GMT; renew it$/);
    expect(problem({ certFile: fixture('server.pem'), keyFile: fixture('server-key.pem') }, Date.parse('1999-01-01T00:00:00Z'))).toMatch(/^the certificate in --tls-cert-file .*server\.pem is valid only from .*: clients would refuse it until then \(is this machine's clock right\?\)$/);
    const encrypted = join(directory, 'encrypted-key.pem');
    writeFileSync(encrypted, '-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAj0\n-----END ENCRYPTED PRIVATE KEY-----\n');
    expect(problem({ certFile: fixture('server.pem'), keyFile: encrypted })).toBe(`--tls-key-file ${encrypted} is encrypted with a passphrase, which the broker cannot ask for: give it the key unencrypted (openssl pkey -in KEY -out PLAIN), readable by the broker's user only`);
  });

  it('reads every certificate of a chain: one that cannot be read is refused, and the chain ends with its first certificate to end', () => {
    const corrupt = join(directory, 'corrupt-chain.pem');
    writeFileSync(corrupt, `${readFileSync(fixture('server.pem'), 'utf8')}-----BEGIN CERTIFICATE-----\nMIIBbad\n-----END CERTIFICATE-----\n`);
    expect(problem({ certFile: corrupt, keyFile: fixture('server-key.pem') })).toMatch(new RegExp(`^--tls-cert-file ${corrupt}: its certificate 2 of 2 cannot be read \\(`));
    // A chain whose second certificate (an intermediate, say) ends in 2125, before the broker's own.
    const chain = join(directory, 'chain.pem');
    writeFileSync(chain, readFileSync(fixture('server.pem'), 'utf8') + readFileSync(fixture('server-renewed.pem'), 'utf8'));
    expect(loadTlsMaterial({ certFile: chain, keyFile: fixture('server-key.pem'), clientCaFile: '' }, NOW)!.validTo).toBe('Jan  1 00:00:00 2125 GMT');
    // Once it has ended it is left out, as clients skip an expired cross-signed root.
    expect(loadTlsMaterial({ certFile: chain, keyFile: fixture('server-key.pem'), clientCaFile: '' }, Date.parse('2125-06-01T00:00:00Z'))!.validTo).toBe('Jan  1 00:00:00 2126 GMT');
    // The broker's own certificate must come first.
    const reversed = join(directory, 'reversed.pem');
    writeFileSync(reversed, readFileSync(fixture('ca.pem'), 'utf8') + readFileSync(fixture('server.pem'), 'utf8'));
    expect(problem({ certFile: reversed, keyFile: fixture('server-key.pem') })).toBe(
      `--tls-cert-file ${reversed} must start with the broker's own certificate, the one of --tls-key-file ${fixture('server-key.pem')}, and go on with the CA certificates that signed it`,
    );
    // A CA bundle in OpenSSL's TRUSTED CERTIFICATE form is read as well.
    expect(loadTlsMaterial({ certFile: fixture('server.pem'), keyFile: fixture('server-key.pem'), clientCaFile: fixture('ca-trusted.pem') }, NOW)!.clientCa).not.toBeNull();
  });
});

describe('ServerTls', () => {
  it('refuses material a TLS context cannot be made of, and keeps serving what it served', () => {
    const files = { certFile: fixture('server.pem'), keyFile: fixture('server-key.pem'), clientCaFile: '' };
    const tls = ServerTls.fromFiles(files, NOW)!;
    const served = tls.credentials._getSecureContextOptions();
    // Past loadTlsMaterial's checks (which would refuse it): a key of another certificate.
    const mismatched = { ...tls.material, privateKey: readFileSync(fixture('client-key.pem')) };
    expect(() => tls.credentials.serve(mismatched)).toThrow(/^the TLS files .*server\.pem, .*server-key\.pem cannot be served: /);
    expect(tls.credentials._getSecureContextOptions()).toBe(served);
  });
});
