#include "opsd/config.h"

#include "common/base/conf.h"
#include "common/base/fs.h"

namespace depot::opsd {

Result<OpsdConfig> ParseOpsdConfig(const std::string& text, const std::string& name) {
  DEPOT_ASSIGN_OR_RETURN(ConfFile file, ConfFile::Parse(text, name));
  OpsdConfig c;
  ConfBinder b(file);
  b.String("bind_addr", &c.bind_addr);
  b.Int("port", &c.port, 0, 65535);
  b.Int("loop_threads", &c.loop_threads, 1, 64);
  b.Int("worker_threads", &c.worker_threads, 1, 256);
  b.String("base_path", &c.base_path);
  b.String("db_path", &c.db_path);
  b.String("secret_key_file", &c.secret_key_file);
  b.Bool("durable_writes", &c.durable_writes);
  b.Repeated("tracker_server", &c.tracker_servers);
  b.String("upload_group", &c.upload_group);
  b.String("admin_user", &c.admin_user);
  b.String("admin_password", &c.admin_password);
  b.Seconds("session_ttl", &c.session_ttl, 1, 30 * 86400);
  b.Int("lockout_threshold", &c.lockout_threshold, 1, 1000);
  b.Seconds("lockout_seconds", &c.lockout_seconds, 1, 30 * 86400);
  b.Bytes("max_body_size", &c.max_body_size, 4096, 64ULL << 20);
  b.Bytes("max_upload_size", &c.max_upload_size, 1, 1ULL << 50);
  b.Seconds("idle_timeout", &c.idle_timeout, 1, 86400);
  b.Seconds("io_timeout", &c.io_timeout, 1, 3600);
  b.Int("max_connections", &c.max_connections, 1, 1000000);
  b.String("log_file", &c.log_file);
  b.Enum("log_level", &c.log_level, {"trace", "debug", "info", "warn", "error", "critical", "off"});
  if (c.base_path.empty()) b.Fail("base_path", "is required");
  for (const auto& t : c.tracker_servers) {
    std::string host;
    int port = 0;
    if (!ParseHostPort(t, &host, &port).ok()) b.Fail("tracker_server", "expected host:port: " + t);
  }
  if (c.admin_user.size() < 2 || c.admin_user.size() > 32) {
    b.Fail("admin_user", "must have 2 to 32 characters");
  }
  if (!c.admin_password.empty() && c.admin_password.size() < 8) {
    b.Fail("admin_password", "must have at least 8 characters");
  }
  DEPOT_RETURN_IF_ERROR(b.Finish());
  if (c.db_path.empty()) c.db_path = c.base_path + "/db";
  if (c.secret_key_file.empty()) c.secret_key_file = c.base_path + "/secret.key";
  return c;
}

Result<OpsdConfig> LoadOpsdConfig(const std::string& path) {
  DEPOT_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path));
  return ParseOpsdConfig(text, path);
}

}  // namespace depot::opsd
