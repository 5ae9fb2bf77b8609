// Goal: show that a metadata write LMDB could not commit reaches a caller as STORAGE_ERROR naming
// LMDB's own reason (UNAVAILABLE to a client, which may retry), not as an unexplained INTERNAL,
// and that lmdb-js's separate `commitError` rejection is handled, not left to stop the process;
// an error a transaction's own callback throws is passed on unchanged; a full disk is DISK_FULL;
// and the promises of a failed commit that lmdb-js rejects with no caller holding them do not
// end the broker's process (a full disk took it down at a topic create), while any other
// unhandled rejection still does (in a child process running the compiled store). Method: real LMDB in a
// temporary directory; the failed commit is lmdb-js's rejection, made as lmdb-js makes it
// (a full disk cannot be arranged here), passed through `durably` and through a commit of the
// offset store whose batch LMDB refuses.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PACKAGE_ROOT } from '../../src/common/package-root.js';
import { MetadataStore, durably } from '../../src/broker/metadata-store.js';
import { ErrorCode, StrataError } from '../../src/common/errors.js';
import { OffsetStore } from '../../src/groups/offset-store.js';
import { removeDirectory, temporaryDirectory } from '../helpers/test-server.js';
import { rejectedWith } from '../helpers/rejected-with.js';

let directory: string;
let metadata: MetadataStore;

beforeEach(() => {
  directory = temporaryDirectory('strata-metadata-store-');
  metadata = MetadataStore.open(directory);
});

afterEach(async () => {
  await metadata.close();
  removeDirectory(directory);
});

/** A write rejected as lmdb-js rejects the writes of a transaction it could not commit. */
function failedCommit(lmdbError: Promise<never>): Promise<never> {
  return Promise.reject(Object.assign(new Error('Commit failed (see commitError for details)'), { commitError: lmdbError }));
}

const failure = (promise: Promise<unknown>): Promise<StrataError> => rejectedWith(promise, StrataError);

describe('a write LMDB could not commit', () => {
  it("is STORAGE_ERROR naming LMDB's reason", async () => {
    const refused = await failure(durably(metadata.root, failedCommit(Promise.reject(new Error('MDB_PANIC: Update of meta page failed or environment had fatal error')))));
    expect(refused.code).toBe(ErrorCode.STORAGE_ERROR);
    expect(refused.message).toBe("the broker's metadata store (LMDB) could not commit a write (MDB_PANIC: Update of meta page failed or environment had fatal error); nothing of it was stored, retry (the broker log may say more)");
  });

  it('is DISK_FULL (RESOURCE_EXHAUSTED) when LMDB names a full disk', async () => {
    const enospc = Object.assign(new Error('No space left on device: Attempting to write page at position 40960, size 4096'), { code: 28 });
    const refused = await failure(durably(metadata.root, failedCommit(Promise.reject(enospc))));
    expect(refused.code).toBe(ErrorCode.DISK_FULL);
    expect(refused.message).toBe(
      "the broker's metadata store (LMDB) could not commit a write: the disk is full (No space left on device: Attempting to write page at position 40960, size 4096); nothing of it was stored. Free space on the data directory's file system, then retry",
    );
  });

  it('is STORAGE_ERROR, with the rejection it has, when LMDB never names its reason', async () => {
    const refused = await failure(durably(metadata.root, failedCommit(new Promise<never>(() => {}))));
    expect(refused.code).toBe(ErrorCode.STORAGE_ERROR);
    expect(refused.message).toMatch(/^the broker's metadata store \(LMDB\) could not commit a write \(Commit failed \(see commitError for details\)\);/);
  });

  it('answers an offset commit whose transaction LMDB refused as STORAGE_ERROR, the offset committed before it still stored', async () => {
    const offsets = new OffsetStore(metadata.root);
    await offsets.commit('g', [{ topic: 't', partition: 0, offset: 1, metadata: '', commitTimeMs: 1 }]);
    const db = (offsets as unknown as { db: { batch(callback: () => void): Promise<unknown> } }).db;
    db.batch = () => failedCommit(Promise.reject(new Error('MDB_MAP_FULL: Environment mapsize limit reached')));
    const refused = await failure(offsets.commit('g', [{ topic: 't', partition: 0, offset: 2, metadata: '', commitTimeMs: 2 }]));
    expect(refused.code).toBe(ErrorCode.STORAGE_ERROR);
    expect(refused.message).toMatch(/MDB_MAP_FULL/);
    expect(offsets.get('g', 't', 0)?.offset).toBe(1);
  });
});

it('leaves a process that opened the store running when lmdb-js rejects, unhandled, a promise of a failed commit no caller holds; any other unhandled rejection still ends it', () => {
  // In a process of its own: the store's handler is the process's, and so is what ends it.
  const script = (rejected: string): string =>
    [
      `import { MetadataStore } from ${JSON.stringify(pathToFileURL(join(PACKAGE_ROOT, 'dist', 'src', 'broker', 'metadata-store.js')).href)};`,
      `const store = MetadataStore.open(${JSON.stringify(directory + '-child')});`,
      `Promise.reject(${rejected});`,
      'setTimeout(async () => { await store.close(); console.log("running"); }, 200);',
    ].join('\n');
  const run = (rejected: string) => spawnSync(process.execPath, ['--input-type=module', '-e', script(rejected)], { encoding: 'utf8' });
  try {
    // As lmdb-js does: the writes are rejected at once, `commitError` once its write thread has named the cause.
    const lmdbs = run(
      `Object.assign(new Error(${JSON.stringify('Commit failed (see commitError for details)')}), { commitError: new Promise((_, reject) => setTimeout(() => reject(new Error('No space left on device')), 50)) })`,
    );
    expect({ status: lmdbs.status, stdout: lmdbs.stdout }).toEqual({ status: 0, stdout: 'running\n' });
    const other = run("new Error('a bug')");
    expect(other.status).toBe(1);
    expect(other.stdout).toBe('');
    expect(other.stderr).toMatch(/Error: a bug/);
  } finally {
    removeDirectory(directory + '-child');
  }
});

it("passes on unchanged what a transaction's own callback throws", async () => {
  const topics = metadata.root.openDB<string, string>({ name: 'callback-errors' });
  const own = new StrataError(ErrorCode.ALREADY_EXISTS, 'taken');
  await expect(durably(metadata.root, topics.transaction(() => { throw own; }))).rejects.toBe(own);
  const bug = new TypeError('a bug');
  await expect(durably(metadata.root, topics.transaction(() => { throw bug; }))).rejects.toBe(bug);
});
