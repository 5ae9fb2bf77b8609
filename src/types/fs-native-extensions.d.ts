/** The part of fs-native-extensions Strata uses (the package ships no types). */
declare module 'fs-native-extensions' {
  /**
   * An advisory lock on the open file `fd` (on Linux an open-file-description lock, so two
   * descriptors conflict even within one process); false when another holds it. Released when
   * the descriptor is closed.
   */
  export function tryLock(fd: number, offset?: number, length?: number, options?: { shared?: boolean }): boolean;
}
