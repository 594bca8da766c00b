// Preloaded (NODE_OPTIONS=--require) by a test: prints the V8/Node flags the process was started
// with and the malloc settings in its environment, so a test can tell how a command started Node
// (roundtrip.test.ts).
const malloc = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('MALLOC_')).sort());
process.stdout.write(`execArgv ${JSON.stringify(process.execArgv)} ${JSON.stringify(malloc)}\n`);
