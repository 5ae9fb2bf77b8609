/**
 * The option a misspelt name most likely meant, for the one place each kind of input is refused
 * with a suggestion: a key of serve's config file (config-file.ts) and an unknown option on the
 * command line (cli-errors.ts), so that `retention_ms` in a file and `--retnetion-ms` on the
 * command line are answered alike.
 */

/**
 * The name in `options` that `name` most likely meant: the same name written with underscores,
 * dots, spaces, capitals or in camelCase (`retention_ms`, `retentionMS`), else the nearest one a
 * typo or two away (`retnetion-ms`: a swapped, missing, extra or wrong letter each count one);
 * undefined when none is that near, so that a name meant for something else gets no guess.
 */
export function meantOption(name: string, options: readonly string[]): string | undefined {
  const dashed = name
    .replace(/([a-z0-9])([A-Z])/g, '$1-$2')
    .toLowerCase()
    .replace(/[_.\s]+/g, '-');
  if (options.includes(dashed)) return dashed;
  // Under six letters two edits leave too little of the name to go by; under three, even one.
  const reach = Math.min(2, Math.floor(dashed.length / 3));
  let meant: string | undefined;
  let nearest = reach + 1;
  for (const option of options) {
    const distance = editDistance(dashed, option);
    if (distance < nearest) {
      meant = option;
      nearest = distance;
    }
  }
  return meant;
}

/** Edits (insert, delete, replace a letter, swap two adjacent ones) that turn `a` into `b`. */
function editDistance(a: string, b: string): number {
  // rows[i][j]: the edits from a's first i letters to b's first j.
  const rows = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const replace = rows[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1);
      let edits = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, replace);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) edits = Math.min(edits, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = edits;
    }
  }
  return rows[a.length]![b.length]!;
}
