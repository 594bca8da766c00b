// @shelter/format: the Shelter repository format (docs/FORMAT.md). Pure functions over
// buffers: no I/O, no network, no clock except where a caller does not pass a time.
export { FormatError, isFormatError, type FormatErrorCode } from './errors.ts';
export { FORMAT_VERSION, systemRng, sha256, toHex, fromHex, freeBuffer, type Rng } from './common.ts';
export {
  deriveKeys, subkey, keyFingerprint, blobId, assertFingerprint,
  MASTER_KEY_BYTES, REPOSITORY_ID_BYTES, BLOB_ID_BYTES, FINGERPRINT_BYTES,
  type RepoKeys, type KeyPurpose,
} from './derive.ts';
export {
  seal, open, openEnvelope, sealBlob, openBlob, sealObject, openObject, openObjectEnvelope,
  ENVELOPE_OVERHEAD, ENVELOPE_VERSION, FLAG_ZSTD, DEFAULT_ZSTD_LEVEL, MAX_PLAINTEXT,
  type SealOptions, type SealedBlob, type SealedObject, type ObjectKind, type Opened,
} from './envelope.ts';
export {
  Chunker, ChunkSplitter, chunkLengths, gearTable, validateChunkerParams, DEFAULT_CHUNKER, GEAR_WINDOW,
  type ChunkerParams,
} from './chunker.ts';
export {
  PackWriter, readPackHeader, extractBlob, verifyPackId, encodeEntries, decodeEntries, checkEntries, onlyTreeEntries,
  PACK_ENTRY_BYTES, DEFAULT_PACK_TARGET, MAX_PACK_BYTES, PACK_TAIL_HINT, MAX_BLOB_BYTES,
  type BlobType, type PackEntry, type FinishedPack, type FinishedPackParts, type PackWriterOptions,
} from './pack.ts';
export { sealIndex, openIndex, openIndexCompact, encodeIndex, decodeIndex, decodeIndexCompact, MAX_INDEX_BYTES, INDEX_TARGET_BLOBS, type IndexedPack, type EncodedIndexedPack } from './indexfile.ts';
export { BlobIndex, INDEX_BYTES_PER_BLOB, type BlobLocation } from './memindex.ts';
export { encodeTree, decodeTree, subtreeIds, sameNode, validateName, compareNames, type TreeNode, type NodeType, type Xattr } from './tree.ts';
export { sealSnapshot, openSnapshot, encodeSnapshot, decodeSnapshot, type Snapshot } from './snapshot.ts';
export { encodeManifest, parseManifest, manifestKeyFor, MAX_MANIFEST_BYTES, type Manifest, type ParseManifestOptions } from './manifest.ts';
export {
  CONFIG_KEY, keySlotKey, packKey, indexKey, snapshotKey, manifestKey, parseObjectKey,
  BACKUP_NAME, validateBackupName, type ObjectType, type ParsedKey,
} from './names.ts';
export { encodeConfig, parseConfig, verifyConfig, openRepository, createRepository, type RepoConfig, type ParsedConfig, type NewRepository } from './config.ts';
export {
  createKeySlot, encodeKeySlot, parseKeySlot, openKeySlot, encodeKeyFile, parseKeyFile, validateScrypt, DEFAULT_SCRYPT,
  type KeySlot, type ScryptParams, type SlotSecret, type SealedSlot,
} from './keys.ts';
export { formatRecoveryKit, parseRecoveryKit, base32Encode, base32Decode, type RecoveryKit } from './recovery.ts';
