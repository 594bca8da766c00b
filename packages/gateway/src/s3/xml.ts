// XML in and out. Requests are parsed by fast-xml-parser (maintained, no native code) with entity
// expansion off and a size cap applied before parsing; responses are written by a tiny escaping
// builder, because S3 responses are flat and their element order matters to some clients.
import { XMLParser } from 'fast-xml-parser';
import { S3Error } from './errors.ts';

const parser = new XMLParser({
  ignoreAttributes: true,
  parseTagValue: false,      // keep "0012" and "true" as strings: we validate ourselves
  trimValues: true,
  processEntities: true,
  htmlEntities: true,       // also decodes numeric references (Go clients write quotes as &#34;)
  isArray: (name) => ['Part', 'Object', 'Rule'].includes(name),
});

/** Parses a request body; anything that is not well-formed XML is MalformedXML, as on AWS. */
export function parseXml(body: Buffer): Record<string, unknown> {
  const text = body.toString('utf8').trim();
  // S3 request documents never carry a DTD; refusing one rules out entity tricks of every kind
  if (!text.startsWith('<') || /<!(DOCTYPE|ENTITY)/i.test(text)) throw new S3Error('MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema.');
  try {
    const doc = parser.parse(text, true) as Record<string, unknown>;
    return doc;
  } catch {
    throw new S3Error('MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema.');
  }
}

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

export type XmlValue = string | number | boolean | null | undefined | XmlNode | XmlNode[] | XmlValue[];
export interface XmlNode { [tag: string]: XmlValue }

function render(tag: string, v: XmlValue, out: string[]): void {
  if (v === undefined || v === null) return;
  if (Array.isArray(v)) { for (const item of v) render(tag, item as XmlValue, out); return; }
  if (typeof v === 'object') {
    out.push(`<${tag}>`);
    for (const [k, child] of Object.entries(v)) render(k, child, out);
    out.push(`</${tag}>`);
    return;
  }
  out.push(`<${tag}>${escapeXml(String(v))}</${tag}>`);
}

const NS = 'http://s3.amazonaws.com/doc/2006-03-01/';

/** `<?xml ...?><Root xmlns=...>...</Root>`; keys keep insertion order, undefined/null are skipped. */
export function xmlDocument(root: string, body: XmlNode, withNamespace = true): string {
  const out: string[] = ['<?xml version="1.0" encoding="UTF-8"?>\n', withNamespace ? `<${root} xmlns="${NS}">` : `<${root}>`];
  for (const [k, v] of Object.entries(body)) render(k, v, out);
  out.push(`</${root}>`);
  return out.join('');
}

export function isoDate(ms: number): string {
  return new Date(ms).toISOString();
}
