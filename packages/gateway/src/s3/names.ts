// Limits on names a client controls.
export const MAX_KEY_BYTES = 1024;

/** AWS bucket naming rules; returns why a name is invalid, or undefined */
export function validateBucketName(name: string): string | undefined {
  if (name.length < 3 || name.length > 63) return 'must be 3-63 characters long';
  if (!/^[a-z0-9][a-z0-9.-]*[a-z0-9]$/.test(name)) return 'may hold only a-z, 0-9, dots and hyphens, starting and ending with a letter or digit';
  if (/\.\./.test(name) || /\.-|-\./.test(name)) return 'must not hold adjacent dots or a dot next to a hyphen';
  if (/^\d+\.\d+\.\d+\.\d+$/.test(name)) return 'must not be formatted as an IP address';
  if (name.startsWith('xn--') || name.endsWith('-s3alias')) return 'uses a reserved prefix or suffix';
  return undefined;
}
