// From the file system to tree nodes: stat fields, names as bytes, user and group names.
import { constants, openSync, readFileSync } from 'node:fs';
import type { TreeNode } from '@shelter/format';
import type { FileStat } from './walk.ts';

/** Linux dev_t (glibc encoding) to major and minor device numbers */
export function devNumbers(rdev: bigint): { major: number; minor: number } {
  return {
    major: Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & 0xfffff000n)),
    minor: Number((rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n)),
  };
}

export interface Accounts { users: Map<number, string>; groups: Map<number, string> }

/** /etc/passwd and /etc/group (Node has no getpwuid; names are informational, ids are restored) */
export function readAccounts(): Accounts {
  const read = (file: string) => {
    const m = new Map<number, string>();
    try {
      for (const line of readFileSync(file, 'utf8').split('\n')) {
        const f = line.split(':');
        if (f.length > 3 && f[0]) m.set(Number(f[2]), f[0]);
      }
    } catch { /* no such file: names stay unknown */ }
    return m;
  };
  return { users: read('/etc/passwd'), groups: read('/etc/group') };
}

/** the node for a stat; the caller fills content, subtree or target */
export function statNode(name: Buffer, st: FileStat, accounts: Accounts): TreeNode {
  const type = st.type;
  const node: TreeNode = {
    name, type, mode: st.mode, uid: st.uid, gid: st.gid,
    mtime: st.mtimeNs, atime: st.atimeNs, ctime: st.ctimeNs, inode: st.ino, device: st.dev, links: st.nlink,
  };
  const user = accounts.users.get(node.uid);
  const group = accounts.groups.get(node.gid);
  if (user) node.user = user;
  if (group) node.group = group;
  if (type === 'file') node.size = st.size;
  if (type === 'chardev' || type === 'blockdev') node.rdev = st.rdev;
  return node;
}

export function joinPath(dir: Buffer, name: Buffer): Buffer {
  const slash = dir.length === 1 && dir[0] === 0x2f ? 0 : 1;
  const path = Buffer.allocUnsafe(dir.length + slash + name.length); // every byte written below
  dir.copy(path, 0);
  if (slash) path[dir.length] = 0x2f;
  name.copy(path, dir.length + slash);
  return path;
}

/** the key that groups hard links of one inode (a file with several links), else undefined */
export const hardlinkKey = (n: TreeNode): string | undefined =>
  n.links !== undefined && n.links > 1 && n.inode !== undefined ? `${n.device}:${n.inode}` : undefined;

/**
 * Opens a file to back it up without touching its access time (O_NOATIME, Linux): a backup must
 * not change what it backs up, and an atime changed by the previous run would make every directory
 * listing differ from the parent's. O_NOATIME is allowed on one's own files (or as root); for the
 * others the file is opened plainly. O_NONBLOCK (no effect on a regular file): a file replaced by
 * a fifo since the walk fails to read instead of blocking the backup forever. O_NOFOLLOW unless
 * the backup follows symlinks (`follow`): a file its owner replaced by a symlink since the walk
 * (to /etc/shadow, say, for a backup running as root) fails to open (ELOOP), rather than have
 * the target's bytes stored under the owner's file name, theirs at the next restore.
 */
const noAtime = constants.O_NOATIME ?? 0;
const flags = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);
const noFollow = constants.O_NOFOLLOW ?? 0;
export function openForBackup(path: Buffer, follow = false): number {
  const f = follow ? flags : flags | noFollow;
  try {
    if (noAtime) {
      try { return openSync(path, f | noAtime); }
      catch (e) { if ((e as NodeJS.ErrnoException).code !== 'EPERM') throw e; }
    }
    return openSync(path, f);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOOP' && !follow) throw Object.assign(new Error('it is a symlink now, not the file listed: not read (replaced during the backup?)'), { code: 'ELOOP' });
    throw e;
  }
}
