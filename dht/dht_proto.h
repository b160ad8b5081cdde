// Bodies of the dht commands (246..255): pure codecs, bytes <-> structs, no I/O. The format is
// documented in doc/dht.md; keep the two in step. Integers are big-endian.
//
//   key    = u16 length (1..512) + bytes
//   record = u64 version, i64 count, u8 flags (1 = tombstone), u32 value length (<= 8192), value
//   node   = u16 length (1..255) + "host:port"
//
// Every decoder takes a whole body, bounds every length, rejects trailing bytes and unknown flag
// bits, and returns InvalidArgument on bad input (they are fuzzed: tests/fuzz/fuzz_internal.cc).
// Thread-compatible: plain functions on values.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/base/status.h"

namespace depot::dht {

// The command byte is 8 bits: the client-facing operations and SCAN take 250..255, the
// node-to-node commands the top of Depot's internal range, 246..249 (doc/dht.md).
enum DhtCommand : uint8_t {
  kDhtReplicate = 246,
  kDhtNodes = 247,
  kDhtJoin = 248,
  kDhtStats = 249,
  kDhtGet = 250,
  kDhtPutIfAbsent = 251,
  kDhtAdd = 252,
  kDhtCas = 253,
  kDhtRemove = 254,
  kDhtScan = 255,
};

inline constexpr size_t kMaxKeyLen = 512;
inline constexpr size_t kMaxValueLen = 8192;
inline constexpr size_t kMaxNodeIdLen = 255;
inline constexpr size_t kMaxNodes = 1024;      // in a node list or a scan filter
inline constexpr uint32_t kMaxScanLimit = 1000;
inline constexpr size_t kRecordHeadLen = 8 + 8 + 1 + 4;
// A scan reply stops adding entries once it is this large (and sets `more`).
inline constexpr size_t kScanReplySoftLimit = 1 << 20;
// The largest scan reply: the soft limit plus one entry of the largest size, plus framing.
inline constexpr size_t kMaxScanReply = kScanReplySoftLimit + 2 + kMaxKeyLen + kRecordHeadLen +
                                        kMaxValueLen + 64;

inline constexpr uint8_t kRecordTombstone = 1;
inline constexpr uint8_t kScanIncludeTombstones = 1;
inline constexpr uint8_t kScanOwnershipFilter = 2;

struct Record {
  uint64_t version = 0;
  int64_t count = 0;
  bool tombstone = false;
  std::string value;
};
bool operator==(const Record& a, const Record& b);
// True when `a` replaces `b` on a replica (doc/dht.md, "Versions"): a higher version, or the same
// version and an encoding (EncodeRecord, compared as unsigned bytes) greater than b's. A total
// order on distinct records, so every replica keeps the same one whatever the delivery order.
bool Supersedes(const Record& a, const Record& b);

// Checks a key (1..512 bytes) and a value (<= 8192 bytes). InvalidArgument otherwise.
Status ValidateKey(std::string_view key);
Status ValidateValue(std::string_view value);
// Checks a node id: 1..255 bytes of the form host:port.
Status ValidateNodeId(std::string_view node);

// A record alone: the body of 0-replies to 250..254 and the LevelDB value (doc/dht.md).
std::string EncodeRecord(const Record& r);
Result<Record> DecodeRecord(std::string_view body);

// 250 GET: a key alone.
struct KeyRequest {
  std::string key;
};
std::string EncodeKeyRequest(const KeyRequest& r);
Result<KeyRequest> DecodeKeyRequest(std::string_view body);

// 251 PUT_IF_ABSENT: key, i64 count, u32 value length, value.
struct PutRequest {
  std::string key;
  int64_t count = 0;
  std::string value;
};
std::string EncodePutRequest(const PutRequest& r);
Result<PutRequest> DecodePutRequest(std::string_view body);

// 252 ADD: key, i64 delta.
struct AddRequest {
  std::string key;
  int64_t delta = 0;
};
std::string EncodeAddRequest(const AddRequest& r);
Result<AddRequest> DecodeAddRequest(std::string_view body);

// 253 CAS: key, u64 expected version, i64 count, u32 value length, value.
struct CasRequest {
  std::string key;
  uint64_t expected_version = 0;
  int64_t count = 0;
  std::string value;
};
std::string EncodeCasRequest(const CasRequest& r);
Result<CasRequest> DecodeCasRequest(std::string_view body);

// 254 REMOVE: key, u64 expected version (0 = any).
struct RemoveRequest {
  std::string key;
  uint64_t expected_version = 0;
};
std::string EncodeRemoveRequest(const RemoveRequest& r);
Result<RemoveRequest> DecodeRemoveRequest(std::string_view body);

// 255 SCAN. `start` is exclusive (empty: from the first key); limit 1..1000. With a filter the
// sender returns only keys that nodes[index] owns in Ring(nodes) with `replicas` replicas.
struct ScanRequest {
  std::string start;
  uint32_t limit = kMaxScanLimit;
  bool include_tombstones = false;
  bool has_filter = false;
  uint16_t replicas = 0;
  std::vector<std::string> nodes;
  uint16_t index = 0;
};
std::string EncodeScanRequest(const ScanRequest& r);
Result<ScanRequest> DecodeScanRequest(std::string_view body);

struct ScanReply {
  std::vector<std::pair<std::string, Record>> entries;
  bool more = false;
};
std::string EncodeScanReply(const ScanReply& r);
Result<ScanReply> DecodeScanReply(std::string_view body);

// 246 REPLICATE: key, record.
struct ReplicateRequest {
  std::string key;
  Record record;
};
std::string EncodeReplicateRequest(const ReplicateRequest& r);
Result<ReplicateRequest> DecodeReplicateRequest(std::string_view body);

// 247 NODES reply and 248 JOIN reply: u16 n, n node ids.
std::string EncodeNodeList(const std::vector<std::string>& nodes);
Result<std::vector<std::string>> DecodeNodeList(std::string_view body);

// 248 JOIN request: one node id.
std::string EncodeJoinRequest(const std::string& node);
Result<std::string> DecodeJoinRequest(std::string_view body);

// 249 STATS reply: u64 live keys, i64 sum of counts.
struct StatsReply {
  uint64_t keys = 0;
  int64_t references = 0;
};
std::string EncodeStatsReply(const StatsReply& r);
Result<StatsReply> DecodeStatsReply(std::string_view body);

}  // namespace depot::dht
