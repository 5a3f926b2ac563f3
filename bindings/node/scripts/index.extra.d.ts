/**
 * What every error hotmod throws is: an `Error` (a `TypeError` for misuse)
 * whose `code` is a `Status`. The native layer throws plain errors, so this
 * class is recognised by shape: `err instanceof HotmodError` is true for any
 * `Error` whose `code` is a number that is a hotmod status, and in
 * TypeScript it narrows a caught `unknown` so that `err.code` is a `Status`:
 *
 * ```ts
 * try { rt.callSync('checksum', 'nope') } catch (err) {
 *   if (err instanceof HotmodError && err.code === Status.MethodNotFound) { ... }
 * }
 * ```
 */
export declare class HotmodError extends Error {
  /** The status: the same number as in C (`hotmod_status`) and Python (`e.code`). */
  readonly code: Status
  private constructor()
}
