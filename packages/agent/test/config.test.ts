// config.ts: config.yaml written and read back unchanged (values YAML would otherwise take for
// numbers, booleans or null stay strings), the environment over the file, and a broken file
// reported by line and column without printing any of it (it holds the secret access key).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, configPath, loadConfig, saveConfig, type AgentConfig } from '../src/config.ts';

function withDir(f: (env: NodeJS.ProcessEnv, dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'shelter-config-'));
  try { f({ SHELTER_CONFIG_DIR: dir }, dir); } finally { rmSync(dir, { recursive: true, force: true }); }
}

const sample: AgentConfig = {
  endpoint: 'https://gw.example:8443', bucket: '0123', region: 'true',
  accessKeyId: '1e5', secretAccessKey: 'null: # ~ yes', caCert: '/etc/shelter/ca.pem',
  key: { file: '/etc/shelter/key', slot: undefined, command: 'vault read -field=key secret/shelter' },
  repository: { id: '00ff00ff', fingerprint: '123456' },
};

test('config: what saveConfig writes, loadConfig reads back unchanged; the file is 0600', () => withDir((env) => {
  const path = saveConfig(sample, env);
  assert.equal(path, configPath(env));
  assert.equal(statSync(path).mode & 0o777, 0o600);
  const text = readFileSync(path, 'utf8');
  assert.ok(text.startsWith('# shelter agent configuration'), text);
  const back = loadConfig(env);
  assert.deepEqual({ ...back, insecureHttp: undefined, legacyChecksums: undefined }, { ...sample, insecureHttp: undefined, legacyChecksums: undefined });
  assert.equal(typeof back.bucket, 'string');
  assert.equal(back.insecureHttp, false);
}));

test('config: the environment wins over the file; a hand-written block-style file is read', () => withDir((env, dir) => {
  writeFileSync(join(dir, 'config.yaml'), [
    '# written by hand',
    'endpoint: https://a.example',
    'bucket: from-file',
    'accessKeyId: AKFILE',
    'secretAccessKey: "quoted secret"',
    'insecureHttp: true',
    'key:',
    '  file: /k',
    '',
  ].join('\n'));
  const c = loadConfig({ ...env, SHELTER_BUCKET: 'from-env' });
  assert.equal(c.bucket, 'from-env');
  assert.equal(c.endpoint, 'https://a.example');
  assert.equal(c.secretAccessKey, 'quoted secret');
  assert.equal(c.insecureHttp, true);
  assert.equal(c.region, 'us-east-1');
  assert.deepEqual(c.key, { file: '/k', slot: undefined, command: undefined });
}));

test('config: a broken file is a ConfigError naming the line, never quoting the file', () => withDir((env, dir) => {
  writeFileSync(join(dir, 'config.yaml'), 'endpoint: https://a.example\nsecretAccessKey: VERY-SECRET-VALUE: oops\n');
  assert.throws(() => loadConfig(env), (e: unknown) => {
    assert.ok(e instanceof ConfigError, String(e));
    assert.match(e.message, /not valid YAML \(.+ at line 2, column \d+\)/);
    assert.ok(!e.message.includes('VERY-SECRET-VALUE'), `the message quotes the file: ${e.message}`);
    return true;
  });
  // reasons that would name what the parser found (an alias, a tag) do not either
  for (const line of ['secretAccessKey: *SECRETALIAS', 'secretAccessKey: !SECRETTAG x', 'secretAccessKey: !<tag:SECRETURI> x']) {
    writeFileSync(join(dir, 'config.yaml'), `endpoint: https://a.example\n${line}\n`);
    assert.throws(() => loadConfig(env), (e: unknown) => {
      assert.ok(e instanceof ConfigError, String(e));
      assert.match(e.message, /not valid YAML \(.+ at line 2, column \d+\)/);
      assert.ok(!/SECRET/.test(e.message), `the message quotes the file: ${e.message}`);
      return true;
    });
  }
  writeFileSync(join(dir, 'config.yaml'), '- a list\n- not a mapping\n');
  assert.throws(() => loadConfig(env), /not valid YAML \(not a mapping\)/);
  writeFileSync(join(dir, 'config.yaml'), 'bucket: [1, 2]\n');
  assert.throws(() => loadConfig(env), /bucket must be a string/);
}));

test('config: an empty file is an empty configuration', () => withDir((env, dir) => {
  writeFileSync(join(dir, 'config.yaml'), '# nothing yet\n');
  const c = loadConfig(env);
  assert.equal(c.endpoint, '');
  assert.equal(c.region, 'us-east-1');
}));
