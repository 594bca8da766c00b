// Preloaded (NODE_OPTIONS=--require) by a test: prints the V8/Node flags the process was started
// with, so a test can tell how a command started Node (roundtrip.test.ts).
process.stdout.write(`execArgv ${JSON.stringify(process.execArgv)}\n`);
