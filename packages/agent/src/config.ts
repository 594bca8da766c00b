// The agent's configuration: $SHELTER_CONFIG_DIR/config.yaml, else $XDG_CONFIG_HOME/shelter/,
// else ~/.config/shelter/. Every setting can also come from the environment alone (containers,
// CI): AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, SHELTER_ENDPOINT, SHELTER_BUCKET, SHELTER_REGION,
// SHELTER_CA_CERT, SHELTER_KEY (hex master key) or SHELTER_KEY_FILE / SHELTER_KEY_COMMAND /
// SHELTER_PASSPHRASE; the environment wins over the file.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { CORE_SCHEMA, dump, loadAll, YAMLException } from 'js-yaml';

export interface KeySource {
  /** a key file holding the master key (created by init) */
  file?: string;
  /**
   * a key slot (master key wrapped by a passphrase or by a command's wrapping key): a slot file,
   * or the id, or a prefix of 8 hex digits or more, of keys/<id> in the bucket (`shelter key list`)
   */
  slot?: string;
  /** command printing the wrapping key (hex) of `slot`: a KMS or vault client */
  command?: string;
}

export interface AgentConfig {
  endpoint: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  caCert?: string;
  insecureHttp?: boolean;
  /** old S3 stores that reject aws-chunked trailers (Ceph Pacific) */
  legacyChecksums?: boolean;
  key: KeySource;
  /** the repository this configuration was initialised for (the fingerprint lock) */
  repository?: { id: string; fingerprint: string };
}

export class ConfigError extends Error {}

export function configDir(env = process.env): string {
  if (env.SHELTER_CONFIG_DIR) return resolve(env.SHELTER_CONFIG_DIR);
  return join(env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'shelter');
}

export const configPath = (env = process.env) => join(configDir(env), 'config.yaml');

const str = (v: unknown, name: string): string | undefined => {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw new ConfigError(`config: ${name} must be a string`);
  return v;
};

/** Reads the file (if any) and applies the environment on top; validates what a command needs. */
export function loadConfig(env = process.env): AgentConfig {
  const path = configPath(env);
  let file: Record<string, unknown> = {};
  if (existsSync(path)) {
    try {
      // (every document: a file of comments alone holds none, an empty configuration)
      const docs = loadAll(readFileSync(path, 'utf8'), { schema: CORE_SCHEMA }) as unknown[];
      if (docs.length > 1) throw new Error('several documents');
      const doc = docs[0];
      if (doc !== null && doc !== undefined && (typeof doc !== 'object' || Array.isArray(doc))) throw new Error('not a mapping');
      file = (doc ?? {}) as Record<string, unknown>;
    } catch (e) {
      // the reason and the place, never the parser's snippet of the file: it would print the
      // secret access key on the line in question to the terminal and the run's log. Some reasons
      // name what they found (an alias, a tag): quoted parts and tags are left out as well
      const reason = (r: string) => r.replace(/\s*("[^"]*"|'[^']*'|!<[^>]*>|![^\s,]*)/g, '');
      const why = e instanceof YAMLException ? `${reason(e.reason)}${e.mark ? ` at line ${e.mark.line + 1}, column ${e.mark.column + 1}` : ''}` : (e as Error).message;
      throw new ConfigError(`${path}: not valid YAML (${why})`);
    }
  }
  const key = (file.key ?? {}) as Record<string, unknown>;
  const cfg: AgentConfig = {
    endpoint: env.SHELTER_ENDPOINT ?? str(file.endpoint, 'endpoint') ?? '',
    bucket: env.SHELTER_BUCKET ?? str(file.bucket, 'bucket') ?? '',
    region: env.SHELTER_REGION ?? str(file.region, 'region') ?? 'us-east-1',
    accessKeyId: env.AWS_ACCESS_KEY_ID ?? str(file.accessKeyId, 'accessKeyId') ?? '',
    secretAccessKey: env.AWS_SECRET_ACCESS_KEY ?? str(file.secretAccessKey, 'secretAccessKey') ?? '',
    caCert: env.SHELTER_CA_CERT ?? str(file.caCert, 'caCert'),
    insecureHttp: env.SHELTER_INSECURE_HTTP === '1' || file.insecureHttp === true,
    legacyChecksums: file.legacyChecksums === true,
    key: {
      file: env.SHELTER_KEY_FILE ?? str(key.file, 'key.file'),
      slot: env.SHELTER_KEY_SLOT ?? str(key.slot, 'key.slot'),
      command: env.SHELTER_KEY_COMMAND ?? str(key.command, 'key.command'),
    },
    repository: file.repository as AgentConfig['repository'],
  };
  return cfg;
}

export function requireConfig(cfg: AgentConfig): AgentConfig {
  const missing = [['endpoint', cfg.endpoint], ['bucket', cfg.bucket], ['access key id', cfg.accessKeyId], ['secret access key', cfg.secretAccessKey]]
    .filter(([, v]) => !v).map(([n]) => n);
  if (missing.length) throw new ConfigError(`not configured: ${missing.join(', ')} (run \`shelter init\` or set the environment variables, see \`shelter --help\`)`);
  return cfg;
}

/** Writes config.yaml with mode 0600 (it holds the secret access key), atomically. */
export function saveConfig(cfg: AgentConfig, env = process.env): string {
  const path = configPath(env);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const doc: Record<string, unknown> = {
    endpoint: cfg.endpoint, bucket: cfg.bucket, region: cfg.region, accessKeyId: cfg.accessKeyId, secretAccessKey: cfg.secretAccessKey,
    ...(cfg.caCert ? { caCert: cfg.caCert } : {}), ...(cfg.insecureHttp ? { insecureHttp: true } : {}),
    ...(cfg.legacyChecksums ? { legacyChecksums: true } : {}),
    key: Object.fromEntries(Object.entries(cfg.key).filter(([, v]) => v !== undefined)),
    ...(cfg.repository ? { repository: cfg.repository } : {}),
  };
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, '# shelter agent configuration (holds a secret: keep it 0600)\n' + dump(doc, { schema: CORE_SCHEMA }), { mode: 0o600 });
  renameSync(tmp, path);
  return path;
}
