#include "storage/config.h"

#include "common/base/conf.h"
#include "common/net/frame_server.h"
#include "common/base/fs.h"
#include "common/proto/file_id.h"

namespace depot::storage {

Result<uint64_t> ReservedBytes(const std::string& spec, uint64_t total_bytes) {
  if (!spec.empty() && spec.back() == '%') {
    std::string num = spec.substr(0, spec.size() - 1);
    char* end = nullptr;
    double pct = std::strtod(num.c_str(), &end);
    // Written as !(in range) so that "nan%" is rejected too (NaN fails every comparison).
    if (num.empty() || end != num.c_str() + num.size() || !(pct >= 0 && pct <= 100)) {
      return Status::InvalidArgument("not a percentage:", spec);
    }
    return static_cast<uint64_t>(static_cast<double>(total_bytes) * pct / 100.0);
  }
  return ParseByteSize(spec);
}

Result<StorageConfig> ParseStorageConfig(const std::string& text, const std::string& name) {
  DEPOT_ASSIGN_OR_RETURN(ConfFile file, ConfFile::Parse(text, name));
  StorageConfig c;
  ConfBinder b(file);
  b.String("group_name", &c.group_name);
  b.String("bind_addr", &c.bind_addr);
  b.Int("port", &c.port, 0, 65535);
  b.String("advertise_address", &c.advertise_address);
  b.Int("http_port", &c.http_port, -1, 65535);
  b.Int("http_threads", &c.http_threads, 1, 64);
  b.Bool("http_token", &c.http_token);
  b.String("http_secret", &c.http_secret);
  b.Seconds("http_token_ttl", &c.http_token_ttl, 1, 30 * 86400);
  b.String("http_mime_types", &c.http_mime_types);
  b.Seconds("http_cache_max_age", &c.http_cache_max_age, 0, 10 * 365 * 86400);
  b.Enum("http_miss", &c.http_miss, {"redirect", "proxy", "off"});
  b.Int("http_advertise_port", &c.http_advertise_port, 0, 65535);
  b.Int("metrics_port", &c.metrics_port, -1, 65535);
  b.String("base_path", &c.base_path);
  b.Indexed("store_path", &c.store_paths, 256);
  b.Repeated("tracker_server", &c.tracker_servers);
  b.Seconds("heartbeat_interval", &c.heartbeat_interval, 1, 3600);
  b.Bool("durable_writes", &c.durable_writes);
  b.String("reserved_space", &c.reserved_space);
  b.Bytes("max_file_size", &c.max_file_size, 1, 1ULL << 50);
  b.Int("work_threads", &c.work_threads, 1, 64);
  b.Int("disk_writer_threads", &c.disk_writer_threads, 1, 64);
  b.Int("disk_reader_threads", &c.disk_reader_threads, 1, 64);
  b.Int("max_connections", &c.max_connections, 1, 1000000);
  b.Seconds("idle_timeout", &c.idle_timeout, 1, 86400);
  b.Seconds("network_timeout", &c.network_timeout, 1, 3600);
  b.Int("upload_priority", &c.upload_priority, -1000000, 1000000);
  b.String("log_file", &c.log_file);
  b.Enum("log_level", &c.log_level, {"trace", "debug", "info", "warn", "error", "critical", "off"});
  b.String("cluster_secret", &c.cluster_secret);
  b.Repeated("allow_hosts", &c.allow_hosts);
  for (const auto& h : c.allow_hosts) {
    if (!net::ValidateAllowEntry(h).ok()) b.Fail("allow_hosts", "expected a.b.c.d or a.b.c.d/n: " + h);
  }
  b.Enum("replication", &c.replication, {"async", "sync"});
  b.Int("write_quorum", &c.write_quorum, 1, 64);
  b.Int("sync_window", &c.sync_window, 1, 1024);
  b.Int("sync_delay_ms", &c.sync_delay_ms, 0, 60000);
  b.Bool("use_trunk_file", &c.use_trunk_file);
  b.Bytes("slot_min_size", &c.slot_min_size, 64, 64ULL << 20);
  b.Bytes("slot_max_size", &c.slot_max_size, 64, 256ULL << 20);
  b.Bytes("trunk_file_size", &c.trunk_file_size, 1ULL << 20, 4ULL << 30);
  b.Bool("dedup", &c.dedup);
  std::vector<std::string> dht_lines;
  b.Repeated("dht_servers", &dht_lines);
  b.Int("dht_replicas", &c.dht_replicas, 1, 5);
  b.Int("dht_timeout_ms", &c.dht_timeout_ms, 10, 60000);
  b.Bytes("dedup_min_size", &c.dedup_min_size, 1, 1ULL << 50);
  b.Int("dedup_threads", &c.dedup_threads, 1, 64);
  for (const std::string& line : dht_lines) {
    size_t at = 0;
    while (at <= line.size()) {
      size_t comma = line.find(',', at);
      std::string item = line.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
      while (!item.empty() && item.front() == ' ') item.erase(0, 1);
      while (!item.empty() && item.back() == ' ') item.pop_back();
      std::string host;
      int port = 0;
      if (!ParseHostPort(item, &host, &port).ok()) {
        b.Fail("dht_servers", "expected host:port[,host:port...]: " + item);
      } else {
        c.dht_servers.push_back(item);
      }
      if (comma == std::string::npos) break;
      at = comma + 1;
    }
  }
  if (c.dedup && c.dht_servers.empty()) b.Fail("dht_servers", "is required with dedup = on");
  if (c.group_name.empty()) {
    b.Fail("group_name", "is required");
  } else if (!proto::ValidateGroupName(c.group_name).ok()) {
    b.Fail("group_name", "must be 1-16 characters of A-Z a-z 0-9 _ -");
  }
  if (c.base_path.empty()) b.Fail("base_path", "is required");
  if (c.tracker_servers.empty()) b.Fail("tracker_server", "at least one is required");
  for (const auto& t : c.tracker_servers) {
    std::string host;
    int port;
    if (!ParseHostPort(t, &host, &port).ok()) b.Fail("tracker_server", "expected host:port: " + t);
  }
  if (!c.advertise_address.empty() && !proto::ParseIpv4(c.advertise_address).ok()) {
    b.Fail("advertise_address", "must be an IPv4 address");
  }
  if (!ReservedBytes(c.reserved_space, 1ULL << 40).ok()) {
    b.Fail("reserved_space", "expected a size (10G) or a percentage (10%)");
  }
  if (c.http_token && c.http_secret.size() < 8) {
    b.Fail("http_secret", "is required with http_token = on (8 characters or more)");
  }
  if (c.slot_min_size > c.slot_max_size) b.Fail("slot_min_size", "must not exceed slot_max_size");
  if (c.slot_max_size * 2 > c.trunk_file_size) {
    b.Fail("trunk_file_size", "must hold at least two slots of slot_max_size");
  }
  if (c.cluster_secret.size() < 8) b.Fail("cluster_secret", "is required (8 characters or more)");
  DEPOT_RETURN_IF_ERROR(b.Finish());
  if (c.store_paths.empty()) c.store_paths.push_back(c.base_path);
  return c;
}

Result<StorageConfig> LoadStorageConfig(const std::string& path) {
  DEPOT_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path));
  return ParseStorageConfig(text, path);
}

}  // namespace depot::storage
