// The agent's version, from its package.json (one place): `shelter --version` and the `program`
// field of every snapshot it writes.
import pkg from '../package.json' with { type: 'json' };

export const VERSION: string = pkg.version;
/** what a snapshot records as the program that wrote it */
export const PROGRAM = `shelter ${VERSION}`;
