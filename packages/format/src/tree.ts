// Trees: one directory listing per blob (type "tree" in packs), canonical JSON so that an
// unchanged directory produces the same bytes, hence the same blob id, and dedups.
//
//   {"v":1,"nodes":[node, ...]}      nodes sorted by the bytes of their names, names unique
//
// A node's fields, always in this order, absent ones omitted (see docs/FORMAT.md for each):
//   name | nameB64, type, mode, uid, gid, user, group, size, mtime, atime, ctime, inode,
//   device, links, rdev, target | targetB64, content, subtree, xattrs
// Names and symlink targets are bytes on Linux: valid UTF-8 is stored as a JSON string,
// anything else as base64 in the *B64 variant, so every name round-trips exactly.
// Times are nanoseconds since the epoch and inode/device numbers are 64-bit: decimal strings,
// because JSON numbers lose precision above 2^53.
import { isUtf8 } from 'node:buffer';
import { FormatError } from './errors.ts';
import { asBuffer, checkVersion, fromHex, parseJsonObject, toHex, FORMAT_VERSION } from './common.ts';
import { MAX_BLOB_BYTES } from './pack.ts';

export type NodeType = 'file' | 'dir' | 'symlink' | 'chardev' | 'blockdev' | 'fifo' | 'socket';
const NODE_TYPES: readonly NodeType[] = ['file', 'dir', 'symlink', 'chardev', 'blockdev', 'fifo', 'socket'];

export interface Xattr {
  name: Buffer;
  value: Buffer;
}

export interface TreeNode {
  /** Raw name bytes: anything but empty, ".", "..", "/" or NUL. */
  name: Buffer;
  type: NodeType;
  /** Permission bits including setuid/setgid/sticky (st_mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  user?: string;
  group?: string;
  /** Files: length in bytes (the sum of the content blobs' lengths). */
  size?: number;
  /** Nanoseconds since 1970-01-01T00:00:00Z (may be negative). */
  mtime: bigint;
  atime: bigint;
  ctime: bigint;
  inode?: bigint;
  device?: bigint;
  /** st_nlink: a file with links > 1 is a hard link of every node with the same device and inode. */
  links?: number;
  /** Character and block devices: st_rdev. */
  rdev?: bigint;
  /** Symlinks: the target, as bytes. */
  target?: Buffer;
  /** Files: data blob ids in order. */
  content?: Buffer[];
  /** Directories: the tree blob id of the directory's listing. */
  subtree?: Buffer;
  /** Extended attributes, sorted by name bytes. */
  xattrs?: Xattr[];
}

const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;
const UINT = /^(0|[1-9][0-9]{0,19})$/;
const INT = /^(0|-?[1-9][0-9]{0,18})$/;
const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export function validateName(name: Uint8Array, code: 'Invalid' | 'Corrupt' = 'Invalid'): void {
  const bad = name.length === 0 || name.includes(0x2f) || name.includes(0)
    || (name.length === 1 && name[0] === 0x2e) || (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e);
  // A restore joins names to paths: these would escape or confuse the target directory.
  if (bad) throw new FormatError(code, `invalid file name ${JSON.stringify(asBuffer(name).toString('latin1'))} in tree`);
}

function putBytes(o: Record<string, unknown>, key: string, b: Buffer): void {
  if (isUtf8(b)) o[key] = b.toString('utf8'); else o[key + 'B64'] = b.toString('base64');
}

function getBytes(o: Record<string, unknown>, key: string, what: string, required: boolean): Buffer | undefined {
  const s = o[key], b = o[key + 'B64'];
  if (s !== undefined && b !== undefined) throw new FormatError('Corrupt', `${what}: both ${key} and ${key}B64`);
  if (s !== undefined) {
    if (typeof s !== 'string') throw new FormatError('Corrupt', `${what}: ${key} must be a string`);
    return Buffer.from(s, 'utf8');
  }
  if (b !== undefined) {
    if (typeof b !== 'string' || !B64.test(b)) throw new FormatError('Corrupt', `${what}: ${key}B64 must be base64`);
    return Buffer.from(b, 'base64');
  }
  if (required) throw new FormatError('Corrupt', `${what}: missing ${key}`);
  return undefined;
}

function intField(o: Record<string, unknown>, k: string, what: string, max: number, required: boolean): number | undefined {
  const v = o[k];
  if (v === undefined) { if (required) throw new FormatError('Corrupt', `${what}: missing ${k}`); return undefined; }
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > max) throw new FormatError('Corrupt', `${what}: ${k} must be an integer 0..${max}`);
  return v;
}

function bigField(o: Record<string, unknown>, k: string, what: string, signed: boolean, required: boolean): bigint | undefined {
  const v = o[k];
  if (v === undefined) { if (required) throw new FormatError('Corrupt', `${what}: missing ${k}`); return undefined; }
  if (typeof v !== 'string' || !(signed ? INT : UINT).test(v)) throw new FormatError('Corrupt', `${what}: ${k} must be a decimal string`);
  const n = BigInt(v);
  if (signed ? n < I64_MIN || n > I64_MAX : n > U64_MAX) throw new FormatError('Corrupt', `${what}: ${k} out of range`);
  return n;
}

function checkBig(n: bigint | undefined, what: string, signed: boolean): void {
  if (n === undefined) return;
  if (typeof n !== 'bigint' || (signed ? n < I64_MIN || n > I64_MAX : n < 0n || n > U64_MAX)) throw new FormatError('Invalid', `${what} out of range`);
}

function checkInt(n: number | undefined, what: string, max: number): void {
  if (n !== undefined && (!Number.isSafeInteger(n) || n < 0 || n > max)) throw new FormatError('Invalid', `${what} must be an integer 0..${max}`);
}

export function compareNames(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

/** Canonical bytes of a directory listing. Nodes are sorted here; duplicate names are refused. */
export function encodeTree(nodes: readonly TreeNode[]): Buffer {
  const sorted = [...nodes].sort((a, b) => compareNames(a.name, b.name));
  const out: Record<string, unknown>[] = [];
  for (let k = 0; k < sorted.length; k++) {
    const n = sorted[k]!;
    validateName(n.name);
    if (k > 0 && compareNames(sorted[k - 1]!.name, n.name) === 0) throw new FormatError('Invalid', `duplicate name in tree: ${n.name.toString('utf8')}`);
    if (!NODE_TYPES.includes(n.type)) throw new FormatError('Invalid', `unknown node type ${String(n.type)}`);
    checkInt(n.mode, 'mode', 0o7777); checkInt(n.uid, 'uid', 0xffffffff); checkInt(n.gid, 'gid', 0xffffffff);
    checkInt(n.size, 'size', Number.MAX_SAFE_INTEGER); checkInt(n.links, 'links', 0xffffffff);
    checkBig(n.mtime, 'mtime', true); checkBig(n.atime, 'atime', true); checkBig(n.ctime, 'ctime', true);
    checkBig(n.inode, 'inode', false); checkBig(n.device, 'device', false); checkBig(n.rdev, 'rdev', false);
    if (n.type === 'file' && (n.content === undefined || n.size === undefined)) throw new FormatError('Invalid', 'a file node needs size and content');
    if (n.type === 'dir' && n.subtree === undefined) throw new FormatError('Invalid', 'a dir node needs a subtree');
    if (n.type === 'symlink' && n.target === undefined) throw new FormatError('Invalid', 'a symlink node needs a target');
    if (n.type !== 'file' && n.content !== undefined) throw new FormatError('Invalid', 'only files have content');
    if (n.type !== 'dir' && n.subtree !== undefined) throw new FormatError('Invalid', 'only directories have a subtree');
    const o: Record<string, unknown> = {};
    putBytes(o, 'name', n.name);
    o.type = n.type;
    o.mode = n.mode;
    o.uid = n.uid;
    o.gid = n.gid;
    if (n.user !== undefined) o.user = n.user;
    if (n.group !== undefined) o.group = n.group;
    if (n.size !== undefined) o.size = n.size;
    o.mtime = n.mtime.toString();
    o.atime = n.atime.toString();
    o.ctime = n.ctime.toString();
    if (n.inode !== undefined) o.inode = n.inode.toString();
    if (n.device !== undefined) o.device = n.device.toString();
    if (n.links !== undefined) o.links = n.links;
    if (n.rdev !== undefined) o.rdev = n.rdev.toString();
    if (n.target !== undefined) putBytes(o, 'target', n.target);
    if (n.content !== undefined) o.content = n.content.map((id) => { if (id.length !== 32) throw new FormatError('Invalid', 'content ids are 32 bytes'); return toHex(id); });
    if (n.subtree !== undefined) { if (n.subtree.length !== 32) throw new FormatError('Invalid', 'subtree id is 32 bytes'); o.subtree = toHex(n.subtree); }
    if (n.xattrs !== undefined && n.xattrs.length > 0) {
      const xs = [...n.xattrs].sort((a, b) => compareNames(a.name, b.name));
      o.xattrs = xs.map((x, i) => {
        if (x.name.length === 0 || (i > 0 && compareNames(xs[i - 1]!.name, x.name) === 0)) throw new FormatError('Invalid', 'xattr names must be non-empty and unique');
        const e: Record<string, unknown> = {};
        putBytes(e, 'name', x.name);
        e.value = x.value.toString('base64');
        return e;
      });
    }
    out.push(o);
  }
  const bytes = Buffer.from(JSON.stringify({ v: FORMAT_VERSION, nodes: out }), 'utf8');
  if (bytes.length > MAX_BLOB_BYTES) throw new FormatError('TooLarge', `directory listing of ${bytes.length} bytes exceeds ${MAX_BLOB_BYTES}`);
  return bytes;
}

const sameBytes = (a: Buffer | undefined, b: Buffer | undefined) => a === b || (a !== undefined && b !== undefined && a.equals(b));
const sameIds = (a: Buffer[] | undefined, b: Buffer[] | undefined) =>
  a === b || (a !== undefined && b !== undefined && a.length === b.length && a.every((id, i) => id.equals(b[i]!)));

const sortedXattrs = (x: Xattr[] | undefined) => [...(x ?? [])].sort((p, q) => compareNames(p.name, q.name));
function sameXattrs(a: Xattr[] | undefined, b: Xattr[] | undefined): boolean {
  if ((a?.length ?? 0) !== (b?.length ?? 0)) return false;
  if (!a?.length) return true;
  const sb = sortedXattrs(b);
  return sortedXattrs(a).every((x, i) => x.name.equals(sb[i]!.name) && x.value.equals(sb[i]!.value));
}

/**
 * Whether two nodes encode to the same bytes: every field encodeTree writes is compared. An
 * incremental backup reuses a directory's previous tree id, without encoding or hashing it again,
 * when each of its nodes is the same as before.
 */
export function sameNode(a: TreeNode, b: TreeNode): boolean {
  return a.type === b.type && a.mode === b.mode && a.uid === b.uid && a.gid === b.gid && a.user === b.user && a.group === b.group
    && a.size === b.size && a.mtime === b.mtime && a.atime === b.atime && a.ctime === b.ctime && a.inode === b.inode
    && a.device === b.device && a.links === b.links && a.rdev === b.rdev && sameBytes(a.name, b.name) && sameBytes(a.target, b.target)
    && sameBytes(a.subtree, b.subtree) && sameIds(a.content, b.content)
    && sameXattrs(a.xattrs, b.xattrs);
}

/** Parses and validates a tree blob's plaintext. Unknown node fields are ignored (additions within format version 1). */
export function decodeTree(bytes: Uint8Array): TreeNode[] {
  const top = parseJsonObject(bytes, MAX_BLOB_BYTES, 'tree');
  checkVersion(top.v, 'tree');
  if (!Array.isArray(top.nodes)) throw new FormatError('Corrupt', 'tree: nodes must be an array');
  const nodes: TreeNode[] = [];
  for (let k = 0; k < top.nodes.length; k++) {
    const o: unknown = top.nodes[k];
    const what = `tree node ${k}`;
    if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new FormatError('Corrupt', `${what} is not an object`);
    const r = o as Record<string, unknown>;
    const name = getBytes(r, 'name', what, true)!;
    validateName(name, 'Corrupt');
    if (k > 0 && compareNames(nodes[k - 1]!.name, name) >= 0) throw new FormatError('Corrupt', `${what}: names are not sorted and unique`);
    const type = r.type;
    if (typeof type !== 'string' || !NODE_TYPES.includes(type as NodeType)) throw new FormatError('Corrupt', `${what}: unknown type`);
    const node: TreeNode = {
      name, type: type as NodeType,
      mode: intField(r, 'mode', what, 0o7777, true)!,
      uid: intField(r, 'uid', what, 0xffffffff, true)!,
      gid: intField(r, 'gid', what, 0xffffffff, true)!,
      mtime: bigField(r, 'mtime', what, true, true)!,
      atime: bigField(r, 'atime', what, true, true)!,
      ctime: bigField(r, 'ctime', what, true, true)!,
    };
    for (const k2 of ['user', 'group'] as const) {
      const v = r[k2];
      if (v !== undefined) { if (typeof v !== 'string') throw new FormatError('Corrupt', `${what}: ${k2} must be a string`); node[k2] = v; }
    }
    const size = intField(r, 'size', what, Number.MAX_SAFE_INTEGER, false); if (size !== undefined) node.size = size;
    const links = intField(r, 'links', what, 0xffffffff, false); if (links !== undefined) node.links = links;
    const inode = bigField(r, 'inode', what, false, false); if (inode !== undefined) node.inode = inode;
    const device = bigField(r, 'device', what, false, false); if (device !== undefined) node.device = device;
    const rdev = bigField(r, 'rdev', what, false, false); if (rdev !== undefined) node.rdev = rdev;
    const target = getBytes(r, 'target', what, type === 'symlink'); if (target !== undefined) node.target = target;
    if (type === 'file') {
      if (size === undefined) throw new FormatError('Corrupt', `${what}: a file needs a size`);
      if (!Array.isArray(r.content)) throw new FormatError('Corrupt', `${what}: a file needs content`);
      node.content = r.content.map((h: unknown) => fromHex(h, 32, `${what} content id`));
    } else if (r.content !== undefined) throw new FormatError('Corrupt', `${what}: only files have content`);
    if (type === 'dir') node.subtree = fromHex(r.subtree, 32, `${what} subtree`);
    else if (r.subtree !== undefined) throw new FormatError('Corrupt', `${what}: only directories have a subtree`);
    if (r.xattrs !== undefined) {
      if (!Array.isArray(r.xattrs)) throw new FormatError('Corrupt', `${what}: xattrs must be an array`);
      node.xattrs = r.xattrs.map((x: unknown, i: number) => {
        if (typeof x !== 'object' || x === null) throw new FormatError('Corrupt', `${what}: xattr ${i} is not an object`);
        const xo = x as Record<string, unknown>;
        const xn = getBytes(xo, 'name', `${what} xattr ${i}`, true)!;
        if (typeof xo.value !== 'string' || !B64.test(xo.value)) throw new FormatError('Corrupt', `${what}: xattr ${i} value must be base64`);
        return { name: xn, value: Buffer.from(xo.value, 'base64') };
      });
      for (let i = 1; i < node.xattrs.length; i++) {
        if (compareNames(node.xattrs[i - 1]!.name, node.xattrs[i]!.name) >= 0) throw new FormatError('Corrupt', `${what}: xattrs are not sorted and unique`);
      }
    }
    nodes.push(node);
  }
  return nodes;
}

const SUBTREE_KEY = Buffer.from('"subtree":"');
const HEX64 = /^[0-9a-f]{64}$/;
/**
 * The subtree ids a tree's plaintext names, found by scanning for the key rather than parsing (a
 * tree loader looks ahead without decoding each tree twice): inside a JSON string every quote is
 * escaped, so `"subtree":"` only occurs as that key. Not a validation: a miss only costs a later
 * load on demand, and decodeTree checks the tree when it is used.
 */
export function subtreeIds(plain: Uint8Array): Buffer[] {
  const b = asBuffer(plain);
  const out: Buffer[] = [];
  for (let at = b.indexOf(SUBTREE_KEY); at >= 0; at = b.indexOf(SUBTREE_KEY, at + 1)) {
    const hex = b.toString('latin1', at + SUBTREE_KEY.length, at + SUBTREE_KEY.length + 64);
    if (HEX64.test(hex)) out.push(Buffer.from(hex, 'hex'));
  }
  return out;
}
