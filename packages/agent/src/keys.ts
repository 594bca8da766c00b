// Where the agent gets the master key (G4: it never leaves the server unwrapped, except in the
// key file or recovery kit the user keeps). In order: SHELTER_KEY (hex), a key file, a key slot
// opened by a command's wrapping key (KMS, vault) or by a passphrase.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { openKeySlot, parseKeyFile, parseKeySlot, encodeKeyFile } from '@shelter/format';
import type { KeySource } from './config.ts';

export class KeyError extends Error {}

function runKeyCommand(command: string): Buffer {
  let out: string;
  try { out = execFileSync('/bin/sh', ['-c', command], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 60_000 }); }
  catch (e) { throw new KeyError(`the key command failed: ${(e as Error).message}`); }
  const hex = out.trim();
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new KeyError('the key command must print 64 hex digits (a 32-byte key)');
  return Buffer.from(hex, 'hex');
}

export function loadMasterKey(src: KeySource, env = process.env): Buffer {
  try {
    if (env.SHELTER_KEY) return parseKeyFile(env.SHELTER_KEY);
    if (src.file) {
      if (!existsSync(src.file)) throw new KeyError(`key file ${src.file} does not exist`);
      return parseKeyFile(readFileSync(src.file));
    }
    if (src.slot) {
      const slot = parseKeySlot(readFileSync(src.slot));
      if (slot.kdf === 'none') {
        if (!src.command) throw new KeyError('this key slot opens with a wrapping key: configure key.command (or SHELTER_KEY_COMMAND)');
        return openKeySlot(slot, { wrappingKey: runKeyCommand(src.command) });
      }
      const pass = env.SHELTER_PASSPHRASE;
      if (!pass) throw new KeyError('this key slot opens with a passphrase: set SHELTER_PASSPHRASE');
      return openKeySlot(slot, { passphrase: pass });
    }
  } catch (e) {
    if (e instanceof KeyError) throw e;
    throw new KeyError(`cannot load the master key: ${(e as Error).message}`);
  }
  throw new KeyError('no key configured: set SHELTER_KEY, or key.file / key.slot in the configuration (see `shelter init --help`)');
}

/** Writes a new key file (0600), refusing to replace an existing one. */
export function writeKeyFile(path: string, master: Buffer): void {
  writeFileSync(path, '# shelter master key: keep it secret and keep a copy off this server\n' + encodeKeyFile(master), { mode: 0o600, flag: 'wx' });
}

export { runKeyCommand };
