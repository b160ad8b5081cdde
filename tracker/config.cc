#include "tracker/config.h"

#include "common/base/conf.h"
#include "common/net/frame_server.h"
#include "common/base/fs.h"
#include "common/proto/file_id.h"

namespace depot::tracker {

Result<TrackerConfig> ParseTrackerConfig(const std::string& text, const std::string& name) {
  DEPOT_ASSIGN_OR_RETURN(ConfFile file, ConfFile::Parse(text, name));
  TrackerConfig c;
  ConfBinder b(file);
  b.String("bind_addr", &c.bind_addr);
  b.Int("port", &c.port, 0, 65535);
  b.Int("metrics_port", &c.metrics_port, -1, 65535);
  b.String("base_path", &c.base_path);
  b.String("log_file", &c.log_file);
  b.Enum("log_level", &c.log_level, {"trace", "debug", "info", "warn", "error", "critical", "off"});
  b.Int("work_threads", &c.work_threads, 1, 64);
  b.Int("max_connections", &c.max_connections, 1, 1000000);
  b.Seconds("idle_timeout", &c.idle_timeout, 1, 86400);
  b.Seconds("network_timeout", &c.network_timeout, 1, 3600);
  b.Enum("store_lookup", &c.store_lookup, {"round_robin", "specified", "most_free"});
  b.String("store_group", &c.store_group);
  b.Enum("store_server", &c.store_server, {"round_robin", "most_free", "first_by_priority"});
  b.Enum("store_path", &c.store_path, {"round_robin", "most_free"});
  b.Seconds("storage_timeout", &c.storage_timeout, 2, 86400);
  b.String("cluster_secret", &c.cluster_secret);
  b.Repeated("allow_hosts", &c.allow_hosts);
  for (const auto& h : c.allow_hosts) {
    if (!net::ValidateAllowEntry(h).ok()) b.Fail("allow_hosts", "expected a.b.c.d or a.b.c.d/n: " + h);
  }
  if (c.base_path.empty()) b.Fail("base_path", "is required");
  if (c.cluster_secret.size() < 8) b.Fail("cluster_secret", "is required (8 characters or more)");
  if (c.store_lookup == "specified") {
    if (c.store_group.empty()) {
      b.Fail("store_group", "is required when store_lookup = specified");
    } else if (!proto::ValidateGroupName(c.store_group).ok()) {
      b.Fail("store_group", "not a valid group name");
    }
  }
  DEPOT_RETURN_IF_ERROR(b.Finish());
  return c;
}

Result<TrackerConfig> LoadTrackerConfig(const std::string& path) {
  DEPOT_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path));
  return ParseTrackerConfig(text, path);
}

}  // namespace depot::tracker
