// Object Lock: Get/PutObjectRetention, Get/PutObjectLegalHold, Get/PutObjectLockConfiguration.
// What may change is decided in policy/ (checkRetentionChange, checkLegalHoldChange).
import { checkLegalHoldChange, checkRetentionChange } from '../../policy/policy.ts';
import { S3Error } from '../errors.ts';
import { header, readXml, type S3Operation } from '../request.ts';
import { isoDate, xmlDocument } from '../xml.ts';
import { parseDate, parseLockMode, requireBucket, requireKey } from './common.ts';
import { addressedVersion } from './object.ts';
import { xmlOk } from './list.ts';

export const getObjectRetention: S3Operation = async (ctx, r) => {
  const bucket = requireBucket(ctx, r);
  const v = addressedVersion(ctx, bucket.name, requireKey(r), r.query.get('versionId'));
  r.audit.versionId = v.versionId;
  if (!v.retentionMode || v.retainUntil === null) throw new S3Error('NoSuchObjectLockConfiguration', 'The specified object does not have a ObjectLock configuration');
  return xmlOk(xmlDocument('Retention', { Mode: v.retentionMode, RetainUntilDate: isoDate(v.retainUntil) }));
};

export const putObjectRetention: S3Operation = async (ctx, r) => {
  const bucket = requireBucket(ctx, r);
  const key = requireKey(r);
  const doc = await readXml(r);
  // an empty <Retention/> asks to remove the retention (refused by policy while it is in force)
  const ret = (doc.Retention === '' ? {} : doc.Retention) as { Mode?: string; RetainUntilDate?: string } | undefined;
  if (!ret || typeof ret !== 'object') throw new S3Error('MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema.');
  const mode = parseLockMode(ret.Mode);
  const until = ret.RetainUntilDate ? parseDate(String(ret.RetainUntilDate), 'RetainUntilDate') : null;
  if ((mode === null) !== (until === null)) throw new S3Error('MalformedXML', 'Retention needs both Mode and RetainUntilDate.');
  const now = ctx.now().getTime();
  if (until !== null && until <= now) throw new S3Error('InvalidArgument', 'The retain until date must be in the future!');
  const versionId = r.query.get('versionId');
  r.audit.detail = { mode, retainUntil: until === null ? null : isoDate(until) };
  await r.commit(() => {
    const v = addressedVersion(ctx, bucket.name, key, versionId);
    r.audit.versionId = v.versionId;
    checkRetentionChange(v, { mode, retainUntil: until, bypassGovernance: header(r, 'x-amz-bypass-governance-retention') === 'true' }, now);
    ctx.meta.setRetention(v.seq, mode, until);
  });
  return { status: 200 };
};

export const getObjectLegalHold: S3Operation = async (ctx, r) => {
  const bucket = requireBucket(ctx, r);
  const v = addressedVersion(ctx, bucket.name, requireKey(r), r.query.get('versionId'));
  r.audit.versionId = v.versionId;
  return xmlOk(xmlDocument('LegalHold', { Status: v.legalHold ? 'ON' : 'OFF' }));
};

export const putObjectLegalHold: S3Operation = async (ctx, r) => {
  const bucket = requireBucket(ctx, r);
  const key = requireKey(r);
  const doc = await readXml(r);
  const status = (doc.LegalHold as { Status?: string } | undefined)?.Status;
  if (status !== 'ON' && status !== 'OFF') throw new S3Error('MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema.');
  checkLegalHoldChange(r.principal, status === 'ON');
  const versionId = r.query.get('versionId');
  r.audit.detail = { legalHold: status };
  await r.commit(() => {
    const v = addressedVersion(ctx, bucket.name, key, versionId);
    r.audit.versionId = v.versionId;
    ctx.meta.setLegalHold(v.seq, status === 'ON');
  });
  return { status: 200 };
};

export const getObjectLockConfiguration: S3Operation = async (ctx, r) => {
  const b = requireBucket(ctx, r);
  const rule = b.lockMode ? { DefaultRetention: { Mode: b.lockMode, Days: b.lockDays ?? undefined, Years: b.lockYears ?? undefined } } : undefined;
  return xmlOk(xmlDocument('ObjectLockConfiguration', { ObjectLockEnabled: 'Enabled', Rule: rule }));
};

/** Operators only (policy/): sets or changes the bucket's default retention. */
export const putObjectLockConfiguration: S3Operation = async (ctx, r) => {
  const b = requireBucket(ctx, r);
  const doc = await readXml(r);
  const conf = doc.ObjectLockConfiguration as { ObjectLockEnabled?: string; Rule?: Array<{ DefaultRetention?: { Mode?: string; Days?: string; Years?: string } }> } | undefined;
  if (!conf || conf.ObjectLockEnabled !== 'Enabled') throw new S3Error('MalformedXML', 'ObjectLockEnabled must be Enabled.');
  const dr = conf.Rule?.[0]?.DefaultRetention;
  let mode = null, days = null, years = null;
  if (dr) {
    mode = parseLockMode(dr.Mode);
    days = dr.Days !== undefined ? Number(dr.Days) : null;
    years = dr.Years !== undefined ? Number(dr.Years) : null;
    if (mode === null || (days === null) === (years === null) || (days !== null && !(Number.isInteger(days) && days > 0)) || (years !== null && !(Number.isInteger(years) && years > 0))) {
      throw new S3Error('InvalidRetentionPeriod', 'Default retention needs a mode and either a positive number of Days or of Years.');
    }
  }
  r.audit.detail = { mode, days, years };
  await r.commit(() => ctx.meta.setBucketLock(b.name, mode, days, years));
  return { status: 200 };
};
