// Rows of the metadata database as the rest of the gateway sees them.
export type LockMode = 'GOVERNANCE' | 'COMPLIANCE';
export type ChecksumAlgorithm = 'CRC32' | 'CRC32C' | 'CRC64NVME' | 'SHA1' | 'SHA256';

export interface Server { id: string; name: string; bucket: string; createdAt: number; disabledAt: number | null }
export interface AccessKey { accessKeyId: string; role: 'server' | 'operator'; serverId: string | null; createdAt: number; revokedAt: number | null }
export interface Bucket { name: string; serverId: string | null; createdAt: number; lockMode: LockMode | null; lockDays: number | null; lockYears: number | null }

/** A stored checksum: FULL_OBJECT for single PUTs, COMPOSITE ("value-N") for multipart */
export interface StoredChecksum { algorithm: ChecksumAlgorithm; value: string; type: 'FULL_OBJECT' | 'COMPOSITE' }
/** The pieces of a version's body in storage, in order: [blob id, size] (one for PUT, one per part for multipart) */
export type BlobRef = [id: string, size: number];
/** headers stored with an object and returned on GET/HEAD */
export type StoredHeaders = Record<string, string>;

export interface Version {
  seq: number; bucket: string; key: string; versionId: string; deleteMarker: boolean;
  size: number; etag: string | null; lastModified: number; contentType: string | null;
  headers: StoredHeaders; checksum: StoredChecksum | null; blobs: BlobRef[];
  retentionMode: LockMode | null; retainUntil: number | null; legalHold: boolean; writer: string | null;
}

export interface Upload {
  uploadId: string; bucket: string; key: string; createdAt: number; contentType: string | null;
  headers: StoredHeaders; checksumAlgorithm: ChecksumAlgorithm | null;
  lock: { mode: LockMode | null; retainUntil: number | null; legalHold: boolean } | null; initiator: string | null;
}

export interface Part { uploadId: string; partNumber: number; blobId: string; size: number; etag: string; checksum: string | null; lastModified: number }
