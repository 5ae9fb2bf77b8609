/** "1 partition", "3 partitions": a count and its noun (one that takes an s). */
export function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}
