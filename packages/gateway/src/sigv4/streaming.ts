// aws-chunked decoding (Content-Encoding: aws-chunked), as an incremental parser fed with the raw
// body buffers as they arrive:
//
//   signed:    <hex-size>;chunk-signature=<sig>\r\n<data>\r\n ... 0;chunk-signature=<sig>\r\n
//   unsigned:  <hex-size>\r\n<data>\r\n ... 0\r\n
//   then:      [<trailer-name>:<value>\r\n ...] [x-amz-trailer-signature:<sig>\r\n] \r\n
//
// Data bytes are handed out as sub-slices of the input buffers (never copied or concatenated);
// only the short framing lines are buffered, in a fixed buffer of MAX_LINE bytes. Every chunk
// signature is checked in constant time as soon as its data is complete, chained from the seed
// signature, and the trailer signature chained from the final chunk's.
import { createHash, createSecretKey, type Hash, type KeyObject } from 'node:crypto';
import { EMPTY_SHA256, sha256Hex, signaturesEqual, signHex } from './canonical.ts';
import { SigV4Error } from './errors.ts';

/** Largest chunk accepted; bounds the work between two signature checks. */
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024;
/** Longest framing line (chunk header or trailer line), CRLF included. */
export const MAX_LINE = 4096;
/** Most trailer lines accepted (signature line included). */
export const MAX_TRAILER_LINES = 16;

export interface ChunkSigning {
  seedSignature: string;
  signingKey: Buffer;
  amzDate: string;
  scope: string;
}

export interface ChunkedOptions {
  /** present for STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]: every chunk carries a signature */
  signing: ChunkSigning | null;
  /** the trailer section is signed (x-amz-trailer-signature) */
  signedTrailer: boolean;
  /** lower-case names declared in x-amz-trailer: exactly these trailers must arrive */
  trailerNames: readonly string[];
  /** called with each chunk size before its data is read, to refuse oversize bodies early */
  onChunkHeader?: (size: number) => void;
}

const St = { SIZE: 0, DATA: 1, DATA_CR: 2, DATA_LF: 3, TRAILER: 4, DONE: 5 } as const;
type State = typeof St[keyof typeof St];

const SIGNED_LINE = /^([0-9a-fA-F]{1,16});chunk-signature=([0-9a-fA-F]{64})$/;
const UNSIGNED_LINE = /^([0-9a-fA-F]{1,16})$/;
const SIGNATURE = /^[0-9a-fA-F]{64}$/;

const malformed = (what: string): SigV4Error => new SigV4Error('InvalidRequest', `Malformed aws-chunked body: ${what}.`);

export class AwsChunkedDecoder {
  private readonly opts: ChunkedOptions;
  private state: State = St.SIZE;
  private readonly line = Buffer.allocUnsafe(MAX_LINE);
  private lineLen = 0;
  private remaining = 0;
  private chunkHash: Hash | null = null;
  private chunkSignature = '';
  private previousSignature: string;
  // One KeyObject for the whole stream: createHmac with a raw Buffer re-imports the key each call.
  private readonly key: KeyObject | null;
  private trailerLines = 0;
  private skippedEmptyLine = false;
  private trailerCanonical = '';
  private trailerSignature: string | undefined;
  /** trailer values received, by lower-case name */
  readonly trailers = new Map<string, string>();

  constructor(opts: ChunkedOptions) {
    this.opts = opts;
    this.previousSignature = opts.signing?.seedSignature ?? '';
    this.key = opts.signing === null ? null : createSecretKey(opts.signing.signingKey);
  }

  /** Feeds raw body bytes; decoded data slices go to `emit`. Throws SigV4Error on any violation. */
  write(buf: Buffer, emit: (data: Buffer) => void): void {
    let pos = 0;
    const len = buf.length;
    while (pos < len) {
      switch (this.state) {
        case St.DATA: {
          const n = Math.min(this.remaining, len - pos);
          const slice = buf.subarray(pos, pos + n);
          pos += n;
          this.remaining -= n;
          this.chunkHash?.update(slice);
          emit(slice);
          if (this.remaining === 0) {
            if (this.chunkHash !== null) this.verifyChunk(this.chunkHash.digest('hex'));
            this.state = St.DATA_CR;
          }
          break;
        }
        case St.DATA_CR:
          if (buf[pos++] !== 13) throw malformed('chunk data is not followed by CRLF');
          this.state = St.DATA_LF;
          break;
        case St.DATA_LF:
          if (buf[pos++] !== 10) throw malformed('chunk data is not followed by CRLF');
          this.state = St.SIZE;
          break;
        case St.SIZE:
        case St.TRAILER: {
          const [next, text] = this.readLine(buf, pos);
          pos = next;
          if (text === null) break;
          if (this.state === St.SIZE) this.onSizeLine(text);
          else this.onTrailerLine(text);
          break;
        }
        case St.DONE:
          throw malformed('unexpected data after the end of the payload');
      }
    }
  }

  /** Input ended: throws unless the encoding was complete. */
  end(): void {
    if (this.state === St.DONE) return;
    // The AWS SDK for JavaScript, sending an unsigned stream without checksum, stops right after
    // the final "0\r\n". Nothing is missing then (no trailer was declared), so that one form is
    // accepted; signed streams must carry their final CRLF as the specification writes it.
    if (this.state === St.TRAILER && this.opts.signing === null && this.lineLen === 0 && this.trailerLines === 0 && this.opts.trailerNames.length === 0) {
      this.state = St.DONE;
      return;
    }
    throw new SigV4Error('IncompleteBody', 'The request body terminated unexpectedly (incomplete aws-chunked encoding).');
  }

  /** Accumulates one CRLF-terminated line; returns [next position, line without CRLF or null]. */
  private readLine(buf: Buffer, pos: number): [number, string | null] {
    const nl = buf.indexOf(10, pos);
    const end = nl < 0 ? buf.length : nl + 1;
    if (this.lineLen + (end - pos) > MAX_LINE) throw malformed('framing line too long');
    buf.copy(this.line, this.lineLen, pos, end);
    this.lineLen += end - pos;
    if (nl < 0) return [end, null];
    const total = this.lineLen;
    this.lineLen = 0;
    if (total < 2 || this.line[total - 2] !== 13) throw malformed('line not terminated by CRLF');
    return [end, this.line.toString('latin1', 0, total - 2)];
  }

  private onSizeLine(text: string): void {
    const signing = this.opts.signing;
    const m = (signing !== null ? SIGNED_LINE : UNSIGNED_LINE).exec(text);
    if (m === null) throw malformed(signing !== null ? 'bad chunk header (expected <hex-size>;chunk-signature=<signature>)' : 'bad chunk header (expected <hex-size>)');
    const size = parseInt(m[1]!, 16);
    if (size > MAX_CHUNK_SIZE) throw malformed(`chunk of ${size} bytes exceeds the ${MAX_CHUNK_SIZE}-byte limit`);
    this.opts.onChunkHeader?.(size);
    if (signing !== null) {
      this.chunkSignature = m[2]!.toLowerCase();
      this.chunkHash = createHash('sha256');
    }
    if (size === 0) {
      if (signing !== null) this.verifyChunk(EMPTY_SHA256);
      this.state = St.TRAILER;
    } else {
      this.remaining = size;
      this.state = St.DATA;
    }
  }

  private verifyChunk(dataSha256: string): void {
    const s = this.opts.signing!;
    const toSign = `AWS4-HMAC-SHA256-PAYLOAD\n${s.amzDate}\n${s.scope}\n${this.previousSignature}\n${EMPTY_SHA256}\n${dataSha256}`;
    const expected = signHex(this.key!, toSign);
    if (!signaturesEqual(expected, this.chunkSignature)) {
      throw new SigV4Error('SignatureDoesNotMatch', 'The chunk signature we calculated does not match the chunk-signature you provided.');
    }
    this.previousSignature = expected;
    this.chunkHash = null;
  }

  private onTrailerLine(text: string): void {
    const names = this.opts.trailerNames;
    if (text === '') {
      // Tolerate the empty chunk's own CRLF ("0\r\n\r\n") before the trailers, as some clients send it.
      if (this.trailerLines === 0 && !this.skippedEmptyLine && names.length > 0) {
        this.skippedEmptyLine = true;
        return;
      }
      this.completeTrailers();
      this.state = St.DONE;
      return;
    }
    if (++this.trailerLines > MAX_TRAILER_LINES) throw malformed('too many trailer lines');
    if (this.trailerSignature !== undefined) throw malformed('trailer line after x-amz-trailer-signature');
    const colon = text.indexOf(':');
    if (colon <= 0) throw malformed('bad trailer line');
    const name = text.slice(0, colon).trim().toLowerCase();
    const value = text.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (name === 'x-amz-trailer-signature') {
      if (!this.opts.signedTrailer) throw malformed('x-amz-trailer-signature in an unsigned trailer');
      if (!SIGNATURE.test(value)) throw malformed('bad x-amz-trailer-signature');
      this.trailerSignature = value.toLowerCase();
      return;
    }
    if (!names.includes(name)) throw new SigV4Error('InvalidRequest', `The trailer ${name} was not declared in x-amz-trailer.`);
    if (this.trailers.has(name)) throw malformed(`trailer ${name} sent twice`);
    this.trailers.set(name, value);
    this.trailerCanonical += `${name}:${value}\n`;
  }

  private completeTrailers(): void {
    for (const name of this.opts.trailerNames) {
      if (!this.trailers.has(name)) throw new SigV4Error('InvalidRequest', `The trailer ${name} declared in x-amz-trailer was not sent.`);
    }
    if (!this.opts.signedTrailer || (this.trailers.size === 0 && this.trailerSignature === undefined)) return;
    if (this.trailerSignature === undefined) {
      throw new SigV4Error('IncompleteSignature', 'The trailer is missing its x-amz-trailer-signature.');
    }
    const s = this.opts.signing!;
    const toSign = `AWS4-HMAC-SHA256-TRAILER\n${s.amzDate}\n${s.scope}\n${this.previousSignature}\n${sha256Hex(Buffer.from(this.trailerCanonical, 'latin1'))}`;
    if (!signaturesEqual(signHex(this.key!, toSign), this.trailerSignature)) {
      throw new SigV4Error('SignatureDoesNotMatch', 'The trailer signature we calculated does not match the x-amz-trailer-signature you provided.');
    }
  }
}
