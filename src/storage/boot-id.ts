/** The id of the running kernel's boot: Linux's `boot_id`, new at every start of the machine. */
import { readFileSync } from 'node:fs';

let bootId: string | null | undefined;

/** This boot's id, read once; null where the platform has none. */
export function currentBootId(): string | null {
  if (bootId === undefined) {
    try {
      bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
    } catch {
      bootId = null;
    }
  }
  return bootId;
}
