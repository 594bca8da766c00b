// --include / --exclude of `restore` (into a directory or as an archive). A path inside a snapshot
// is written without its leading slash ("srv/www/index.html": the snapshot's tree mirrors the
// absolute paths that were backed up); a glob matches that path or the base name alone. A glob
// given with a leading slash means the same path (users type absolute paths).
import { matchesGlob } from 'node:path';

export interface PathFilter {
  /** any glob was given (without, every path is selected: no need to make paths into text) */
  readonly active: boolean;
  /** --include globs were given */
  readonly hasIncludes: boolean;
  /** an --exclude glob matches: skip the path, and everything below it */
  excluded(rel: string): boolean;
  /** an --include glob matches the path, its base name, or a directory above it */
  included(rel: string): boolean;
}

export function pathFilter(include: readonly string[] = [], exclude: readonly string[] = []): PathFilter {
  const strip = (g: string) => g.replace(/^\/+/, '');
  const inc = include.map(strip);
  const exc = exclude.map(strip);
  const matches = (rel: string, g: string) => matchesGlob(rel, g) || matchesGlob(rel.slice(rel.lastIndexOf('/') + 1), g);
  return {
    active: inc.length + exc.length > 0,
    hasIncludes: inc.length > 0,
    excluded: (rel) => exc.some((g) => matches(rel, g)),
    included: (rel) => inc.some((g) => matches(rel, g) || rel.startsWith(g.replace(/\/\*\*$/, '') + '/')),
  };
}
