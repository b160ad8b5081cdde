// The fixed-size stat records of FastDFS's list-groups (90/91, 113 bytes per group) and
// list-storages (92, 487 bytes per storage) replies. Layouts in doc/protocol.md; the field order
// follows the records captured from FastDFS 6.16.1 (shared/fastdfs-vectors/stat-records.txt).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/status.h"

namespace depot::proto {

inline constexpr size_t kGroupStatSize = 113;
inline constexpr size_t kStorageStatSize = 487;

struct GroupStat {
  std::string group_name;
  int64_t total_mb = 0;
  int64_t free_mb = 0;
  int64_t reserved_mb = 0;
  int64_t trunk_free_mb = 0;
  int64_t storage_count = 0;
  int64_t storage_port = 0;
  int64_t readable_count = 0;
  int64_t writable_count = 0;
  int64_t current_write_server = 0;
  int64_t store_path_count = 0;
  int64_t subdir_count_per_path = 256;
  int64_t current_trunk_file_id = -1;
};

// The counters of the stat block, in wire order after the three 4-byte connection counters.
inline constexpr int kStorageCounterCount = 38;

struct StorageStat {
  uint8_t status = 0;
  uint8_t rw_mode = 6;
  std::string id;
  std::string ip;
  std::string src_id;
  std::string version;
  int64_t join_time = 0;
  int64_t up_time = 0;
  int64_t total_mb = 0;
  int64_t free_mb = 0;
  int64_t reserved_mb = 0;
  int64_t upload_priority = 10;
  int64_t store_path_count = 0;
  int64_t subdir_count_per_path = 256;
  int64_t current_write_path = 0;
  int64_t storage_port = 0;
  uint32_t conn_alloc = 0;
  uint32_t conn_current = 0;
  uint32_t conn_max = 0;
  // total/success pairs: upload, append, modify, truncate, set_meta, delete, download, get_meta,
  // create_link, delete_link, upload_bytes, append_bytes, modify_bytes, download_bytes,
  // sync_in_bytes, sync_out_bytes, file_open, file_read, file_write (19 pairs = 38 counters).
  int64_t counters[kStorageCounterCount] = {};
  int64_t last_source_update = 0;
  int64_t last_sync_update = 0;
  int64_t last_synced_timestamp = 0;
  int64_t last_heartbeat_time = 0;
  uint8_t if_trunk_server = 0;
};

// Indexes into StorageStat::counters (the total of each pair; success is +1).
enum StorageCounter : int {
  kCntUpload = 0,
  kCntAppend = 2,
  kCntModify = 4,
  kCntTruncate = 6,
  kCntSetMeta = 8,
  kCntDelete = 10,
  kCntDownload = 12,
  kCntGetMeta = 14,
  kCntCreateLink = 16,
  kCntDeleteLink = 18,
  kCntUploadBytes = 20,
  kCntAppendBytes = 22,
  kCntModifyBytes = 24,
  kCntDownloadBytes = 26,
  kCntSyncInBytes = 28,
  kCntSyncOutBytes = 30,
  kCntFileOpen = 32,
  kCntFileRead = 34,
  kCntFileWrite = 36,
};

void AppendGroupStat(std::string* out, const GroupStat& g);
void AppendStorageStat(std::string* out, const StorageStat& s);
Result<std::vector<GroupStat>> DecodeGroupStats(std::string_view body);
Result<std::vector<StorageStat>> DecodeStorageStats(std::string_view body);

}  // namespace depot::proto
