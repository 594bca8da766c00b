// Limits on everything a client controls (sizes, counts, time). One place, with AWS's values
// where AWS has one.
export interface Limits {
  maxObjectBytes: number;      // single PUT (AWS: 5 GiB)
  maxPartBytes: number;        // one multipart part (AWS: 5 GiB)
  minPartBytes: number;        // every part but the last (AWS: 5 MiB)
  maxParts: number;            // AWS: 10,000
  maxXmlBytes: number;         // XML request bodies other than DeleteObjects
  maxDeleteXmlBytes: number;   // DeleteObjects: up to 1000 keys of 1 KiB
  maxDeleteKeys: number;       // AWS: 1000
  maxHeaderBytes: number;      // all request headers together (AWS: 8 KiB for user metadata)
  maxUserMetadataBytes: number;
  maxKeyBytes: number;
  headersTimeoutMs: number;    // time to receive the request headers
  requestTimeoutMs: number;    // whole request (large uploads need long; the idle timeout catches stalls)
  idleTimeoutMs: number;       // no byte received for this long: the socket is closed (slow bodies)
  maxConnections: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxObjectBytes: 5 * 1024 ** 3,
  maxPartBytes: 5 * 1024 ** 3,
  minPartBytes: 5 * 1024 ** 2,
  maxParts: 10_000,
  maxXmlBytes: 64 * 1024,
  maxDeleteXmlBytes: 2 * 1024 * 1024,
  maxDeleteKeys: 1000,
  maxHeaderBytes: 16 * 1024,
  maxUserMetadataBytes: 2 * 1024,
  maxKeyBytes: 1024,
  headersTimeoutMs: 30_000,
  requestTimeoutMs: 6 * 3600_000,
  idleTimeoutMs: 60_000,
  maxConnections: 1024,
};
