#include "common/proto/stat_records.h"

#include "common/proto/protocol.h"

namespace depot::proto {

void AppendGroupStat(std::string* out, const GroupStat& g) {
  size_t start = out->size();
  AppendFixed(out, g.group_name, kGroupNameStatLen);
  for (int64_t v : {g.total_mb, g.free_mb, g.reserved_mb, g.trunk_free_mb, g.storage_count,
                    g.storage_port, g.readable_count, g.writable_count, g.current_write_server,
                    g.store_path_count, g.subdir_count_per_path, g.current_trunk_file_id}) {
    AppendU64(out, static_cast<uint64_t>(v));
  }
  (void)start;
}

void AppendStorageStat(std::string* out, const StorageStat& s) {
  out->push_back(static_cast<char>(s.status));
  out->push_back(static_cast<char>(s.rw_mode));
  AppendFixed(out, s.id, 16);
  AppendFixed(out, s.ip, kIpLen);
  AppendFixed(out, s.src_id, 16);
  AppendFixed(out, s.version, 8);
  for (int64_t v : {s.join_time, s.up_time, s.total_mb, s.free_mb, s.reserved_mb,
                    s.upload_priority, s.store_path_count, s.subdir_count_per_path,
                    s.current_write_path, s.storage_port}) {
    AppendU64(out, static_cast<uint64_t>(v));
  }
  char b4[4];
  for (uint32_t v : {s.conn_alloc, s.conn_current, s.conn_max}) {
    PutU32(b4, v);
    out->append(b4, 4);
  }
  for (int64_t v : s.counters) AppendU64(out, static_cast<uint64_t>(v));
  for (int64_t v : {s.last_source_update, s.last_sync_update, s.last_synced_timestamp,
                    s.last_heartbeat_time}) {
    AppendU64(out, static_cast<uint64_t>(v));
  }
  out->push_back(static_cast<char>(s.if_trunk_server));
}

Result<std::vector<GroupStat>> DecodeGroupStats(std::string_view body) {
  if (body.size() % kGroupStatSize != 0) {
    return Status::Corruption("group stat reply is not a multiple of 113 bytes");
  }
  std::vector<GroupStat> out;
  for (size_t off = 0; off < body.size(); off += kGroupStatSize) {
    const char* p = body.data() + off;
    GroupStat g;
    g.group_name = std::string(TrimFixed(std::string_view(p, kGroupNameStatLen)));
    p += kGroupStatSize - 12 * 8;
    int64_t* fields[] = {&g.total_mb, &g.free_mb, &g.reserved_mb, &g.trunk_free_mb,
                         &g.storage_count, &g.storage_port, &g.readable_count,
                         &g.writable_count, &g.current_write_server, &g.store_path_count,
                         &g.subdir_count_per_path, &g.current_trunk_file_id};
    for (int64_t* f : fields) {
      *f = static_cast<int64_t>(GetU64(p));
      p += 8;
    }
    out.push_back(std::move(g));
  }
  return out;
}

Result<std::vector<StorageStat>> DecodeStorageStats(std::string_view body) {
  if (body.size() % kStorageStatSize != 0) {
    return Status::Corruption("storage stat reply is not a multiple of 487 bytes");
  }
  std::vector<StorageStat> out;
  for (size_t off = 0; off < body.size(); off += kStorageStatSize) {
    const char* p = body.data() + off;
    StorageStat s;
    s.status = static_cast<uint8_t>(p[0]);
    s.rw_mode = static_cast<uint8_t>(p[1]);
    p += 2;
    s.id = std::string(TrimFixed(std::string_view(p, 16)));
    p += 16;
    s.ip = std::string(TrimFixed(std::string_view(p, kIpLen)));
    p += kIpLen;
    s.src_id = std::string(TrimFixed(std::string_view(p, 16)));
    p += 16;
    s.version = std::string(TrimFixed(std::string_view(p, 8)));
    p += 8;
    int64_t* fields[] = {&s.join_time,       &s.up_time,         &s.total_mb,
                         &s.free_mb,         &s.reserved_mb,     &s.upload_priority,
                         &s.store_path_count, &s.subdir_count_per_path, &s.current_write_path,
                         &s.storage_port};
    for (int64_t* f : fields) {
      *f = static_cast<int64_t>(GetU64(p));
      p += 8;
    }
    s.conn_alloc = GetU32(p);
    s.conn_current = GetU32(p + 4);
    s.conn_max = GetU32(p + 8);
    p += 12;
    for (auto& c : s.counters) {
      c = static_cast<int64_t>(GetU64(p));
      p += 8;
    }
    int64_t* times[] = {&s.last_source_update, &s.last_sync_update, &s.last_synced_timestamp,
                        &s.last_heartbeat_time};
    for (int64_t* f : times) {
      *f = static_cast<int64_t>(GetU64(p));
      p += 8;
    }
    s.if_trunk_server = static_cast<uint8_t>(*p);
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace depot::proto
