#!/usr/bin/env node
// Runs the TypeScript sources directly (Node >= 24 strips types; npm scripts and npx put the
// Node 24 from the `node` package first on PATH).
const [major] = process.versions.node.split('.').map(Number);
if (major < 24) {
  process.stderr.write(`shelter needs Node.js 24 or newer (this is ${process.version}); run it through npx or npm, which use the project's Node 24\n`);
  process.exit(2);
}
await import('../src/cli.ts');
