// Bodies of Depot's dedup commands (doc/dedup.md, doc/protocol.md):
//   232 DEDUP_SCAN (internal): one member reconciles its files with the dht index.
//   242 INSTANT_UPLOAD (public): "do you have this content?" -> a possession challenge.
//   243 INSTANT_PROVE (public): the answer to the challenge -> a new file ID without the body.
// And the dedup head that rides on a replicated create (SYNC_RECORD flag kSyncFlagDedup).
// Every decoder bounds what it reads and returns InvalidArgument on bad input.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/status.h"

namespace depot::proto {

// A content's identity for dedup: XXH3-128 of the bytes (16 bytes, big-endian high then low)
// and the size.
struct ContentKey {
  std::string fp;  // 16 bytes
  uint64_t size = 0;
  static constexpr size_t kEncodedLen = 24;
  std::string Encode() const;  // fp + size8
  static Result<ContentKey> Decode(std::string_view b);
  std::string Hex() const;     // 32 hex digits of fp, '-', decimal size
  bool operator==(const ContentKey&) const = default;
};

// The dedup head of a replicated create: the content key and the canonical file (the remote
// name whose content the file shares, zero-padded to kMaxRemoteNameLen; empty: not yet
// registered in the dht).
inline constexpr size_t kDedupHeadLen = ContentKey::kEncodedLen + 128;
std::string EncodeDedupHead(const ContentKey& k, std::string_view canonical);
Status DecodeDedupHead(std::string_view b, ContentKey* k, std::string* canonical);

// 232 DEDUP_SCAN, JSON both ways.
struct DedupScanRequest {
  bool repair = false;     // change things (merge copies, fix the dht); false: report only
  bool reconcile = false;  // this member sets the group's dht records (one member per group)
};
struct DedupScanReport {
  uint64_t files = 0;          // normal files looked at
  uint64_t fingerprinted = 0;  // files hashed now (stored without dedup, or unknown)
  uint64_t contents = 0;       // distinct contents among them
  uint64_t merged = 0;         // extra copies replaced by a link (or that would be)
  uint64_t registered = 0;     // dht records created (or that would be)
  uint64_t refs_fixed = 0;     // dht records whose count was wrong
  uint64_t records_removed = 0;  // dht records of contents no file has any more
  uint64_t collisions = 0;     // same fingerprint, different bytes: kept apart
  uint64_t stale_entries = 0;  // local index entries of files that are gone
  uint64_t bytes_saved = 0;    // bytes not stored twice on this member, after the scan
  bool dht_ok = true;          // false: the dht could not be reached (nothing was reconciled)
  uint64_t problems() const { return merged + registered + refs_fixed + records_removed + stale_entries; }
};
std::string EncodeDedupScanRequest(const DedupScanRequest& r);
Result<DedupScanRequest> DecodeDedupScanRequest(std::string_view body);
std::string EncodeDedupScanReport(const DedupScanReport& r);
Result<DedupScanReport> DecodeDedupScanReport(std::string_view body);

// 242 INSTANT_UPLOAD: store_path1 + size8 + ext6 + fp16. Reply: nonce16 + n1 + n x (offset8 +
// length8): the ranges the client must prove it holds. ENOENT: the group does not have it.
inline constexpr size_t kInstantUploadLen = 1 + 8 + 6 + 16;
inline constexpr size_t kInstantNonceLen = 16;
inline constexpr size_t kInstantMaxRanges = 16;
struct InstantUploadRequest {
  uint8_t store_path = 0xFF;
  uint64_t size = 0;
  std::string ext;
  std::string fp;  // 16 bytes
};
struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};
struct InstantChallenge {
  std::string nonce;  // kInstantNonceLen bytes
  std::vector<ByteRange> ranges;
};
std::string EncodeInstantUpload(const InstantUploadRequest& r);
Result<InstantUploadRequest> DecodeInstantUpload(std::string_view body);
std::string EncodeInstantChallenge(const InstantChallenge& c);
// `size`: the content's size; every range must lie inside it.
Result<InstantChallenge> DecodeInstantChallenge(std::string_view body, uint64_t size);
// 243 INSTANT_PROVE: nonce16 + proof32, proof = HMAC-SHA256(nonce, the ranges' bytes in order).
// Reply: group16 + remote name, as an upload.
inline constexpr size_t kInstantProveLen = kInstantNonceLen + 32;

}  // namespace depot::proto
