#include "dht/config.h"

#include "common/base/conf.h"
#include "common/base/fs.h"
#include "common/net/frame_server.h"
#include "dht/dht_proto.h"

namespace depot::dht {
namespace {

// Splits "a, b,c" at commas, trimming blanks; empty items are dropped.
std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string::npos) comma = text.size();
    std::string item = text.substr(pos, comma - pos);
    size_t b = item.find_first_not_of(" \t");
    size_t e = item.find_last_not_of(" \t");
    if (b != std::string::npos) out.push_back(item.substr(b, e - b + 1));
    pos = comma + 1;
  }
  return out;
}

}  // namespace

Result<DhtConfig> ParseDhtConfig(const std::string& text, const std::string& name) {
  DEPOT_ASSIGN_OR_RETURN(ConfFile file, ConfFile::Parse(text, name));
  DhtConfig c;
  ConfBinder b(file);
  std::string peers;
  b.String("bind_addr", &c.bind_addr);
  b.Int("port", &c.port, 0, 65535);
  b.String("advertise_address", &c.advertise_address);
  b.String("peers", &peers);
  b.Int("replicas", &c.replicas, 1, 5);
  b.Int("vnodes", &c.vnodes, 1, 1024);
  b.String("data_path", &c.data_path);
  b.Bool("durable_writes", &c.durable_writes);
  b.String("cluster_secret", &c.cluster_secret);
  b.Repeated("allow_hosts", &c.allow_hosts);
  b.Int("max_connections", &c.max_connections, 1, 1000000);
  b.Int("threads", &c.threads, 1, 64);
  b.Seconds("network_timeout", &c.network_timeout, 1, 3600);
  b.Seconds("idle_timeout", &c.idle_timeout, 1, 86400);
  b.Seconds("anti_entropy_interval", &c.anti_entropy_interval, 0, 86400);
  b.Int("metrics_port", &c.metrics_port, -1, 65535);
  b.String("log_file", &c.log_file);
  b.Enum("log_level", &c.log_level, {"trace", "debug", "info", "warn", "error", "critical", "off"});

  for (const auto& h : c.allow_hosts) {
    if (!net::ValidateAllowEntry(h).ok()) b.Fail("allow_hosts", "expected a.b.c.d or a.b.c.d/n: " + h);
  }
  c.peers = SplitList(peers);
  for (const auto& p : c.peers) {
    if (!ValidateNodeId(p).ok()) b.Fail("peers", "expected host:port, got `" + p + "`");
  }
  if (!c.advertise_address.empty()) {
    // host:0 stands for the bound port (port = 0 in tests).
    std::string probe = c.advertise_address;
    if (probe.size() > 2 && probe.compare(probe.size() - 2, 2, ":0") == 0) {
      probe.replace(probe.size() - 1, 1, "1");
    }
    if (!ValidateNodeId(probe).ok()) {
      b.Fail("advertise_address", "expected host:port, got `" + c.advertise_address + "`");
    }
  } else if (c.bind_addr == "0.0.0.0" || c.bind_addr.empty()) {
    b.Fail("advertise_address", "is required when bind_addr is 0.0.0.0");
  }
  if (c.data_path.empty()) b.Fail("data_path", "is required");
  if (c.cluster_secret.size() < 8) b.Fail("cluster_secret", "is required (8 characters or more)");
  DEPOT_RETURN_IF_ERROR(b.Finish());
  return c;
}

Result<DhtConfig> LoadDhtConfig(const std::string& path) {
  DEPOT_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path));
  return ParseDhtConfig(text, path);
}

}  // namespace depot::dht
