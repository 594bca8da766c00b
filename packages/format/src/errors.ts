// One error class for everything this package refuses. Callers branch on `code`, never on the
// message: the agent maps codes to exit codes and to `shelter check` reports.
export type FormatErrorCode =
  | 'Corrupt'            // bytes do not have the documented structure (truncated, bad lengths, bad JSON...)
  | 'Authentication'     // AES-GCM tag or a keyed/plain hash did not verify: the object was altered
  | 'WrongKey'           // the object, slot or repository belongs to another master key
  | 'WrongPassphrase'    // a key slot did not open with this passphrase / wrapping key (or the slot is damaged)
  | 'UnsupportedVersion' // a newer (or unknown) major format version: upgrade the reader
  | 'TooLarge'           // a declared or actual size exceeds the limit the caller set
  | 'NeedMoreBytes'      // pack tail: fetch at least `needed` bytes from the end and retry
  | 'Invalid';           // the caller passed an argument outside the format (bad name, bad parameters...)

export class FormatError extends Error {
  readonly code: FormatErrorCode;
  /** For NeedMoreBytes: how many bytes from the end of the pack the reader needs. */
  readonly needed: number | undefined;
  constructor(code: FormatErrorCode, message: string, needed?: number) {
    super(message);
    this.name = 'FormatError';
    this.code = code;
    this.needed = needed;
  }
}

export function isFormatError(e: unknown, code?: FormatErrorCode): e is FormatError {
  return e instanceof FormatError && (code === undefined || e.code === code);
}
