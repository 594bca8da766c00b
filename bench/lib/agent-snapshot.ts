// Which code the agent benchmark runs: the working tree (default), or a snapshot of a git
// revision (`--agent-rev REV`, `--gateway-rev REV`), so that figures belong to one commit while
// the working tree keeps moving. A snapshot is `git archive REV packages` extracted into DEST,
// with a node_modules that links every package of the project's node_modules except @shelter/*,
// which point at the snapshot's own packages (so the snapshot never loads working-tree code).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';

export interface CodeSource {
  /** the packages/ directory to run from */
  packages: string;
  /** commit the sources come from */
  commit: string;
  /** uncommitted changes of the working tree under the package(s) (git status --porcelain); '' if clean or a snapshot */
  dirty: string;
  label: string;
}

const git = (root: string, args: string[]) => execFileSync('git', ['-C', root, ...args], { encoding: 'utf8' }).trim();

/** the working tree; `paths` are the package directories whose uncommitted changes are reported */
export function workingTree(root: string, paths: string[]): CodeSource {
  const commit = git(root, ['rev-parse', 'HEAD']);
  const dirty = git(root, ['status', '--porcelain', '--', ...paths]);
  return { packages: join(root, 'packages'), commit, dirty, label: `working tree at ${commit.slice(0, 10)}${dirty ? ' + uncommitted changes' : ''}` };
}

/** packages/ of `rev`, extracted under `scratch` (reused when the same commit is asked twice) */
export function snapshot(root: string, rev: string, scratch: string): CodeSource {
  const commit = git(root, ['rev-parse', '--verify', `${rev}^{commit}`]);
  const dest = join(scratch, `rev-${commit.slice(0, 12)}`);
  if (!existsSync(join(dest, 'node_modules'))) {
    mkdirSync(dest, { recursive: true });
    execFileSync('sh', ['-c', 'git -C "$1" archive "$2" packages | tar -x -C "$3"', 'sh', root, commit, dest]);
    const nm = join(dest, 'node_modules');
    mkdirSync(join(nm, '@shelter'), { recursive: true });
    for (const e of readdirSync(join(root, 'node_modules'))) if (e !== '@shelter') symlinkSync(join(root, 'node_modules', e), join(nm, e));
    for (const p of readdirSync(join(dest, 'packages'))) symlinkSync(join(dest, 'packages', p), join(nm, '@shelter', p));
  }
  return { packages: join(dest, 'packages'), commit, dirty: '', label: `commit ${commit.slice(0, 10)} (snapshot of ${rev})` };
}
