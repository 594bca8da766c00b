// Which agent the benchmark runs: the working tree (default), or a snapshot of a git revision
// (`--agent-rev REV`), so that figures belong to one commit while the working tree keeps moving.
// A snapshot is `git archive REV packages/agent packages/format` extracted into DEST, with a
// node_modules that links every package of the project's node_modules except @shelter/*, which
// point at the snapshot's own packages.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';

export interface AgentSource {
  /** path of bin/shelter.js to run */
  bin: string;
  /** commit the agent's sources come from */
  commit: string;
  /** the working tree's uncommitted changes under packages/agent and packages/format (git status --porcelain), '' if clean or a snapshot */
  dirty: string;
  label: string;
}

const git = (root: string, args: string[]) => execFileSync('git', ['-C', root, ...args], { encoding: 'utf8' }).trim();

export function workingTreeAgent(root: string): AgentSource {
  const commit = git(root, ['rev-parse', 'HEAD']);
  const dirty = git(root, ['status', '--porcelain', '--', 'packages/agent', 'packages/format']);
  return { bin: join(root, 'packages/agent/bin/shelter.js'), commit, dirty, label: `working tree at ${commit.slice(0, 10)}${dirty ? ' + uncommitted changes' : ''}` };
}

export function snapshotAgent(root: string, rev: string, dest: string): AgentSource {
  const commit = git(root, ['rev-parse', '--verify', `${rev}^{commit}`]);
  mkdirSync(dest, { recursive: true });
  execFileSync('sh', ['-c', 'git -C "$1" archive "$2" packages/agent packages/format | tar -x -C "$3"', 'sh', root, commit, dest]);
  const nm = join(dest, 'node_modules');
  mkdirSync(join(nm, '@shelter'), { recursive: true });
  for (const e of readdirSync(join(root, 'node_modules'))) if (e !== '@shelter') symlinkSync(join(root, 'node_modules', e), join(nm, e));
  for (const p of ['agent', 'format']) symlinkSync(join(dest, 'packages', p), join(nm, '@shelter', p));
  return { bin: join(dest, 'packages/agent/bin/shelter.js'), commit, dirty: '', label: `commit ${commit.slice(0, 10)} (snapshot of ${rev})` };
}
