// Bodies of Depot's internal replication commands (storage <-> storage) and of the admin
// commands built on them (fsck, cluster status). doc/protocol.md and doc/replication.md describe
// them; every decoder bounds what it reads and returns InvalidArgument on bad input.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/status.h"

namespace depot::proto {

// 220 SYNC_HELLO: a pusher (or a dump) introduces itself.
struct SyncHello {
  std::string from;   // the sender's id, "ip:port"
  bool dump = false;  // a catch-up dump (sends every record, own and applied)
};
// The receiver's answer: whether it accepts records on this connection now (a member still
// catching up accepts only its dump), and how far it has applied each origin.
struct SyncHelloReply {
  bool accepting = false;
  std::map<uint64_t, uint64_t> applied;  // origin epoch -> last applied oseq
};

// 221 SYNC_RECORD: fixed head, then the remote name, then `data_len` bytes (the file for a
// create, the metadata for a metadata change, the sender's current bytes at `version` for an
// append or modify of an appender file, nothing for a delete or truncate).
inline constexpr size_t kSyncRecordHead = 8 + 8 + 8 + 8 + 1 + 1 + 2;
inline constexpr uint8_t kSyncFlagGone = 1;  // the sender no longer has the file / metadata
// A create of a deduplicated file (doc/dedup.md): the name is followed by a dedup head
// (kDedupHeadLen bytes: content key and canonical name) before the `data_len` bytes.
inline constexpr uint8_t kSyncFlagDedup = 2;
// With kSyncFlagDedup: no bytes (data_len 0); the receiver links the name to its copy of the
// canonical file, or answers ENOENT when it has none (the sender then sends the bytes).
inline constexpr uint8_t kSyncFlagLink = 4;
struct SyncRecordHead {
  uint64_t origin = 0;
  uint64_t oseq = 0;
  uint64_t data_len = 0;
  // 'M': the metadata version (last writer wins); 'A'/'W': the offset of the data; 'T': the
  // new size; 0 otherwise.
  uint64_t version = 0;
  // 'C' create, 'D' delete, 'M' metadata, 'A' append, 'W' modify, 'T' truncate
  char op = 0;
  uint8_t flags = 0;
  uint16_t name_len = 0;
};
std::string EncodeSyncRecordHead(const SyncRecordHead& h);
// Decodes the head from the first kSyncRecordHead bytes and validates its fields.
Result<SyncRecordHead> DecodeSyncRecordHead(std::string_view bytes);

// 223 SYNC_DUMP_REQUEST: {"to": id}; 224 SYNC_DUMP_DONE: empty body.
std::string EncodeSyncHello(const SyncHello& h);
Result<SyncHello> DecodeSyncHello(std::string_view body);
std::string EncodeSyncHelloReply(const SyncHelloReply& r);
Result<SyncHelloReply> DecodeSyncHelloReply(std::string_view body);
std::string EncodeDumpRequest(const std::string& to);
Result<std::string> DecodeDumpRequest(std::string_view body);

// 230 LIST_FILES (fsck): the files of one top-level data directory of one store path.
struct ListFilesRequest {
  int store_path = 0;
  int dir1 = 0;
  bool verify = false;  // check each file's content against the size and CRC32 in its name
};
struct ListedFile {
  std::string name;  // "M00/XX/YY/<name>"
  uint64_t size = 0;
  bool intact = true;  // false: content does not match its name (only with verify)
  // With verify, for files whose name does not carry their CRC32 (appender and slave files):
  // the content's CRC32, compared across members.
  bool has_crc = false;
  uint32_t crc = 0;
};
struct ListFilesReply {
  std::vector<ListedFile> files;
  std::vector<std::string> deleted;  // tombstones in that directory
};
std::string EncodeListFilesRequest(const ListFilesRequest& r);
Result<ListFilesRequest> DecodeListFilesRequest(std::string_view body);
std::string EncodeListFilesReply(const ListFilesReply& r);
Result<ListFilesReply> DecodeListFilesReply(std::string_view body);

// 231 REPAIR_FILE (fsck --repair): copy `name` from the member at from_ip:from_port.
struct RepairRequest {
  std::string name;
  std::string from_ip;
  int from_port = 0;
};
std::string EncodeRepairRequest(const RepairRequest& r);
Result<RepairRequest> DecodeRepairRequest(std::string_view body);

}  // namespace depot::proto
