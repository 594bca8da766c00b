// CreateBucket, DeleteBucket, HeadBucket, GetBucketLocation, GetBucketVersioning.
// Every bucket is versioned with object lock on, from its creation; nothing can turn that off.
import { insertBucket } from '../../accounts.ts';
import { S3Error } from '../errors.ts';
import { validateBucketName } from '../names.ts';
import { header, readSmallBody, type S3Operation } from '../request.ts';
import { parseXml, xmlDocument } from '../xml.ts';
import { parseLockMode, requireBucket } from './common.ts';
import { xmlOk } from './list.ts';

export const createBucket: S3Operation = async (ctx, r) => {
  const name = r.bucket!;
  const bad = validateBucketName(name);
  if (bad) throw new S3Error('InvalidBucketName', `The specified bucket is not valid: it ${bad}.`, { fields: { BucketName: name } });
  const body = await readSmallBody(r);
  if (body.length) {
    const loc = (parseXml(body).CreateBucketConfiguration as { LocationConstraint?: string } | undefined)?.LocationConstraint;
    if (loc && loc !== ctx.region) throw new S3Error('InvalidLocationConstraint', 'The specified location-constraint is not valid', { status: 400 });
  }
  if (header(r, 'x-amz-bucket-object-lock-enabled') === 'false') throw new S3Error('InvalidRequest', 'Every bucket on this gateway has object lock enabled.');
  // an operator may give a default retention at creation (shelter extension headers; or PutObjectLockConfiguration after)
  const mode = parseLockMode(header(r, 'x-shelter-default-retention-mode'));
  const days = header(r, 'x-shelter-default-retention-days');
  await r.commit(() => {
    const existing = ctx.meta.bucket(name);
    if (existing) throw new S3Error('BucketAlreadyOwnedByYou', 'Your previous request to create the named bucket succeeded and you already own it.', { fields: { BucketName: name } });
    insertBucket(ctx, name, null, mode ? { mode, days: Number(days ?? 1), years: null } : undefined);
  });
  return { status: 200, headers: { location: `/${name}` } };
};

export const deleteBucket: S3Operation = async (ctx, r) => {
  const b = requireBucket(ctx, r);
  r.req.resume();
  if (b.serverId) throw new S3Error('AccessDenied', 'A server\'s bucket is removed with the server, through the deletion workflow.');
  await r.commit(() => {
    // "holds no version at all": delete markers and unfinished uploads count too
    if (ctx.meta.bucketHasVersions(b.name)) throw new S3Error('BucketNotEmpty', 'The bucket you tried to delete is not empty', { fields: { BucketName: b.name } });
    ctx.meta.deleteBucket(b.name);
  }, 204);
  return { status: 204 };
};

export const headBucket: S3Operation = async (ctx, r) => {
  requireBucket(ctx, r);
  return { status: 200, headers: { 'x-amz-bucket-region': ctx.region } };
};

export const getBucketLocation: S3Operation = async (ctx, r) => {
  requireBucket(ctx, r);
  // us-east-1 is an empty LocationConstraint, as on AWS
  return xmlOk(xmlDocument('LocationConstraint', {}).replace('<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/"></LocationConstraint>',
    `<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${ctx.region === 'us-east-1' ? '' : ctx.region}</LocationConstraint>`));
};

export const getBucketVersioning: S3Operation = async (ctx, r) => {
  requireBucket(ctx, r);
  return xmlOk(xmlDocument('VersioningConfiguration', { Status: 'Enabled', MfaDelete: 'Disabled' }));
};
