// Frame header and command codes of Depot's binary protocol (the FastDFS framing).
// The format is documented in doc/protocol.md; keep the two in step.
//
//   offset 0, 8 bytes: body length, unsigned big-endian
//   offset 8, 1 byte : command
//   offset 9, 1 byte : status (0 = success; errno values on FastDFS-compatible replies)
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/status.h"

namespace depot::proto {

inline constexpr size_t kHeaderSize = 10;
inline constexpr size_t kGroupNameLen = 16;      // group fields in requests and most replies
inline constexpr size_t kGroupNameStatLen = 17;  // group fields in stat records
inline constexpr size_t kExtLen = 6;
inline constexpr size_t kPrefixLen = 16;
inline constexpr size_t kIpLen = 16;        // storage-side and stat-record IP fields
inline constexpr size_t kQueryIpLen = 15;   // tracker query replies
inline constexpr size_t kMaxMetaKeyLen = 64;
inline constexpr size_t kMaxMetaValueLen = 256;
inline constexpr size_t kMaxRemoteNameLen = 128;
inline constexpr uint8_t kStorePathAny = 0xFF;

// Commands (FastDFS V6 codes; Depot-internal ones are >= 200, see doc/protocol.md).
enum Command : uint8_t {
  // storage, FastDFS-compatible
  kStorageUpload = 11,
  kStorageDelete = 12,
  kStorageSetMeta = 13,
  kStorageDownload = 14,
  kStorageGetMeta = 15,
  kStorageUploadSlave = 21,
  kStorageQueryFileInfo = 22,
  kStorageUploadAppender = 23,
  kStorageAppend = 24,
  kStorageModify = 34,
  kStorageTruncate = 36,
  kStorageRegenerateAppender = 38,
  // common
  kQuit = 82,
  kResponse = 100,
  kActiveTest = 111,
  // tracker, FastDFS-compatible
  kTrackerListOneGroup = 90,
  kTrackerListGroups = 91,
  kTrackerListStorages = 92,
  kTrackerQueryStoreNoGroupOne = 101,
  kTrackerQueryFetchOne = 102,
  kTrackerQueryUpdate = 103,
  kTrackerQueryStoreWithGroupOne = 104,
  kTrackerQueryFetchAll = 105,
  kTrackerQueryStoreNoGroupAll = 106,
  kTrackerQueryStoreWithGroupAll = 107,
  // Depot internal (codes FastDFS does not define)
  kDepotAuthChallenge = 200,
  kDepotAuthProof = 201,
  kDepotStorageJoin = 210,
  kDepotStorageHeartbeat = 211,
  // storage <-> storage replication (doc/replication.md)
  kDepotSyncHello = 220,
  kDepotSyncRecord = 221,
  kDepotSyncFlush = 222,
  kDepotSyncDumpRequest = 223,
  kDepotSyncDumpDone = 224,
  // fsck (internal, storage)
  kDepotListFiles = 230,
  kDepotRepairFile = 231,
  // dedup (doc/dedup.md): the repair scan (internal, storage)
  kDepotDedupScan = 232,
  // tracker: the cluster's state as JSON (public, read-only)
  kDepotClusterStatus = 240,
  // storage: instant upload of content the group already has (public, doc/dedup.md)
  kDepotInstantUpload = 242,
  kDepotInstantProve = 243,
};

// Depot's internal command range (200..249): a code there that a daemon does not serve is
// refused like an internal command when the connection has not proved the cluster secret.
inline bool IsInternalRange(uint8_t cmd) { return cmd >= 200 && cmd < 250; }

// FastDFS storage states (tracker_types.h values).
enum class StorageState : uint8_t {
  kInit = 0,
  kWaitSync = 1,
  kSyncing = 2,
  kIpChanged = 3,
  kDeleted = 4,
  kOffline = 5,
  kOnline = 6,
  kActive = 7,
  kRecovery = 9,
  kNone = 99,
};
const char* StorageStateName(StorageState s);

struct FrameHeader {
  uint64_t body_len = 0;
  uint8_t cmd = 0;
  uint8_t status = 0;
};

inline void PutU64(char* p, uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<char>(v & 0xFF);
    v >>= 8;
  }
}
inline uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
inline void PutU32(char* p, uint32_t v) {
  for (int i = 3; i >= 0; --i) {
    p[i] = static_cast<char>(v & 0xFF);
    v >>= 8;
  }
}
inline uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

inline void EncodeHeader(const FrameHeader& h, char out[kHeaderSize]) {
  PutU64(out, h.body_len);
  out[8] = static_cast<char>(h.cmd);
  out[9] = static_cast<char>(h.status);
}
inline FrameHeader DecodeHeader(const char in[kHeaderSize]) {
  FrameHeader h;
  h.body_len = GetU64(in);
  h.cmd = static_cast<uint8_t>(in[8]);
  h.status = static_cast<uint8_t>(in[9]);
  return h;
}
std::string EncodeFrame(uint8_t cmd, uint8_t status, std::string_view body);

// The one mapping from Status to the status byte of a FastDFS-compatible reply (errno values),
// and back for clients.
uint8_t StatusToWire(const Status& s);
Status WireToStatus(uint8_t wire, std::string_view what);

// Appends fixed-width, NUL-padded text (truncated to `width`).
void AppendFixed(std::string* out, std::string_view s, size_t width);
void AppendU64(std::string* out, uint64_t v);
// Text of a NUL-padded field, up to the first NUL.
std::string_view TrimFixed(std::string_view field);

// One storage address of a tracker's QUERY_FETCH_ALL (105) reply.
struct FetchTarget {
  std::string ip;
  int port = 0;
};
// Decodes a 105 reply: group (16), then IP (15) + port (8) per member (FastDFS 6.16's layout).
// Corruption for any other length.
Result<std::vector<FetchTarget>> DecodeFetchAll(std::string_view body);

}  // namespace depot::proto
