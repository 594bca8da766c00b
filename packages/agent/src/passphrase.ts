// A new passphrase for `shelter key add`: one line of standard input (--passphrase-stdin, for
// scripts), or asked twice on the terminal without echo.
import { readFileSync } from 'node:fs';
import { ConfigError } from './config.ts';

const MIN_CHARS = 8;
const MAX_BYTES = 4096;

/**
 * A slot lives in the bucket, where whoever can read it may try passphrases offline (at scrypt's
 * cost per try): a short one is refused.
 */
export function checkNewPassphrase(p: string): string {
  if ([...p].length < MIN_CHARS) throw new ConfigError(`a passphrase needs at least ${MIN_CHARS} characters (the key slot is stored in the bucket, where it can be attacked offline)`);
  if (Buffer.byteLength(p) > MAX_BYTES) throw new ConfigError(`a passphrase is at most ${MAX_BYTES} bytes`);
  return p;
}

export function passphraseFromStdin(): string {
  let text: string;
  try { text = readFileSync(0, 'utf8'); }
  catch (e) { throw new ConfigError(`cannot read the passphrase from standard input: ${(e as Error).message}`); }
  const p = text.replace(/\r?\n$/, '');
  if (/[\r\n]/.test(p)) throw new ConfigError('--passphrase-stdin reads one line, and standard input holds several');
  return checkNewPassphrase(p);
}

/** reads a line from the terminal in raw mode, echoing nothing */
function askHidden(question: string): Promise<string> {
  const input = process.stdin;
  return new Promise((res, rej) => {
    let text = '';
    const finish = (err?: Error) => {
      input.off('data', onData);
      input.setRawMode(false);
      input.pause();
      process.stderr.write('\n');
      if (err) rej(err); else res(text);
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') { finish(); return; }
        if (ch === '\u0003') { finish(new ConfigError('interrupted')); return; }
        if (ch === '\u007f' || ch === '\b') text = [...text].slice(0, -1).join('');
        else if (ch >= ' ') text += ch;
      }
    };
    // raw mode (no echo) before the question: what is typed after seeing it is never shown
    input.setEncoding('utf8');
    input.setRawMode(true);
    input.on('data', onData);
    input.resume();
    process.stderr.write(question);
  });
}

export async function promptNewPassphrase(): Promise<string> {
  if (!process.stdin.isTTY) throw new ConfigError('no terminal to ask for a passphrase: give --passphrase-stdin, --key-file FILE or --key-command CMD');
  const first = checkNewPassphrase(await askHidden('new passphrase: '));
  if (await askHidden('repeat it: ') !== first) throw new ConfigError('the two passphrases differ');
  return first;
}
