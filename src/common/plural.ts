/** "1 partition", "3 partitions": a count and its noun (`nouns` for a noun that takes more than an s: "batches"). */
export function plural(count: number, noun: string, nouns = `${noun}s`): string {
  return `${count} ${count === 1 ? noun : nouns}`;
}
