#include "dht/config.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "common/base/conf.h"
#include "common/base/fs.h"

namespace depot::dht {
namespace {

const std::string kShipped = std::string(DEPOT_SOURCE_DIR) + "/conf/dht.conf";

// The smallest valid file: the required keys (and a bind_addr, since with the default 0.0.0.0
// advertise_address would be required).
const std::string kMinimal =
    "data_path = /tmp/depot-dht\n"
    "cluster_secret = 0123456789abcdef\n"
    "bind_addr = 127.0.0.1\n";

Result<DhtConfig> Parse(const std::string& extra) {
  return ParseDhtConfig(kMinimal + extra, "d.conf");
}

bool Names(const Status& s, const std::string& key) {
  return s.message().find("`" + key + "`") != std::string::npos;
}

// Every key ParseDhtConfig binds. Keep in step with dht/config.cc.
const std::vector<std::string> kAllKeys = {
    "bind_addr",      "port",          "advertise_address", "peers",        "replicas",
    "vnodes",         "data_path",     "durable_writes",    "cluster_secret", "max_connections",
    "threads",        "network_timeout", "idle_timeout",    "metrics_port", "log_file",
    "log_level",      "anti_entropy_interval"};

TEST(DhtConfigTest, ShippedFileEqualsStructDefaults) {
  auto c = LoadDhtConfig(kShipped);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  const DhtConfig d;
  EXPECT_EQ(c->bind_addr, d.bind_addr);
  EXPECT_EQ(c->port, d.port);
  EXPECT_EQ(c->peers, d.peers);
  EXPECT_EQ(c->replicas, d.replicas);
  EXPECT_EQ(c->vnodes, d.vnodes);
  EXPECT_EQ(c->durable_writes, d.durable_writes);
  EXPECT_EQ(c->allow_hosts, d.allow_hosts);
  EXPECT_EQ(c->max_connections, d.max_connections);
  EXPECT_EQ(c->threads, d.threads);
  EXPECT_EQ(c->network_timeout, d.network_timeout);
  EXPECT_EQ(c->idle_timeout, d.idle_timeout);
  EXPECT_EQ(c->anti_entropy_interval, d.anti_entropy_interval);
  EXPECT_EQ(c->metrics_port, d.metrics_port);
  EXPECT_EQ(c->log_file, d.log_file);
  EXPECT_EQ(c->log_level, d.log_level);
  // The keys without a usable default carry example values.
  EXPECT_EQ(c->advertise_address, "10.0.0.5:11411");
  EXPECT_EQ(c->data_path, "/var/lib/depot/dht");
  EXPECT_EQ(c->cluster_secret, "change-me-please");
}

TEST(DhtConfigTest, ShippedFileSetsEveryKeyOnceWithACommentAbove) {
  auto text = ReadSmallFile(kShipped);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  auto file = ConfFile::Parse(*text, kShipped);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos <= text->size()) {
    size_t nl = text->find('\n', pos);
    if (nl == std::string::npos) nl = text->size();
    lines.push_back(text->substr(pos, nl - pos));
    pos = nl + 1;
  }
  std::multiset<std::string> seen;
  for (const auto& e : file->entries()) {
    seen.insert(e.key);
    ASSERT_GE(e.line, 2) << e.key;
    EXPECT_EQ(lines[e.line - 2].rfind("#", 0), 0u) << "no comment above `" << e.key << "`";
  }
  for (const auto& k : kAllKeys) EXPECT_EQ(seen.count(k), 1u) << "key `" << k << "`";
  EXPECT_EQ(seen.size(), kAllKeys.size());
  // allow_hosts is documented (commented out: its default is empty).
  EXPECT_NE(text->find("# allow_hosts = "), std::string::npos);
}

TEST(DhtConfigTest, ParsesValues) {
  auto c = Parse(
      "advertise_address = 127.0.0.1:0\nport = 0\npeers = 127.0.0.1:1, 127.0.0.2:2 ,\nreplicas = 3\n"
      "vnodes = 16\ndurable_writes = true\nallow_hosts = 10.0.0.0/8\nmax_connections = 10\n"
      "threads = 4\nnetwork_timeout = 5s\nidle_timeout = 1m\nmetrics_port = -1\n"
      "anti_entropy_interval = 2m\n"
      "log_file = /tmp/d.log\nlog_level = debug\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->bind_addr, "127.0.0.1");
  EXPECT_EQ(c->advertise_address, "127.0.0.1:0");  // port 0: the bound port
  EXPECT_EQ(c->port, 0);
  EXPECT_EQ(c->peers, (std::vector<std::string>{"127.0.0.1:1", "127.0.0.2:2"}));
  EXPECT_EQ(c->replicas, 3);
  EXPECT_EQ(c->vnodes, 16);
  EXPECT_TRUE(c->durable_writes);
  EXPECT_EQ(c->allow_hosts, (std::vector<std::string>{"10.0.0.0/8"}));
  EXPECT_EQ(c->max_connections, 10);
  EXPECT_EQ(c->threads, 4);
  EXPECT_EQ(c->network_timeout, 5);
  EXPECT_EQ(c->idle_timeout, 60);
  EXPECT_EQ(c->anti_entropy_interval, 120);
  EXPECT_EQ(Parse("anti_entropy_interval = 0\n")->anti_entropy_interval, 0);  // off
  EXPECT_EQ(c->metrics_port, -1);
  EXPECT_EQ(c->log_file, "/tmp/d.log");
  EXPECT_EQ(c->log_level, "debug");
}

TEST(DhtConfigTest, BadValuesFailNamingTheKey) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"port", "-1"},           {"port", "65536"},          {"replicas", "0"},
      {"replicas", "6"},        {"vnodes", "0"},            {"vnodes", "1025"},
      {"durable_writes", "maybe"}, {"max_connections", "0"}, {"threads", "0"},
      {"threads", "65"},        {"network_timeout", "0"},   {"idle_timeout", "25h"},
      {"anti_entropy_interval", "-1"}, {"anti_entropy_interval", "25h"},
      {"metrics_port", "-2"},   {"log_level", "loud"},      {"peers", "nohost"},
      {"peers", "a:1,b"},       {"peers", "a:0"},           {"advertise_address", "x"},
      {"advertise_address", "x:70000"}, {"allow_hosts", "example.com"},
  };
  for (const auto& [k, v] : cases) {
    auto c = Parse(k + " = " + v + "\n");
    ASSERT_FALSE(c.ok()) << k << " = " << v;
    EXPECT_TRUE(c.status().IsInvalidArgument()) << k << " = " << v;
    EXPECT_TRUE(Names(c.status(), k)) << k << " = " << v << ": " << c.status().ToString();
  }
  EXPECT_TRUE(Parse("advertise_address = dht-1.example:11411\n").ok());
}

TEST(DhtConfigTest, RequiredKeys) {
  auto c = ParseDhtConfig("cluster_secret = 0123456789abcdef\nbind_addr = 127.0.0.1\n", "d.conf");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Names(c.status(), "data_path")) << c.status().ToString();
  c = ParseDhtConfig("data_path = /x\nbind_addr = 127.0.0.1\ncluster_secret = 1234567\n", "d.conf");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Names(c.status(), "cluster_secret")) << c.status().ToString();
  // bind_addr 0.0.0.0 (the default) is no address to be reached at.
  c = ParseDhtConfig("data_path = /x\ncluster_secret = 12345678\n", "d.conf");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Names(c.status(), "advertise_address")) << c.status().ToString();
  EXPECT_TRUE(
      ParseDhtConfig("data_path = /x\ncluster_secret = 12345678\nbind_addr = 127.0.0.1\n", "d.conf")
          .ok());
}

TEST(DhtConfigTest, UnknownAndDuplicateKeysFail) {
  auto c = Parse("replication = 2\n");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Names(c.status(), "replication")) << c.status().ToString();
  c = Parse("port = 1\nport = 2\n");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Names(c.status(), "port")) << c.status().ToString();
}

}  // namespace
}  // namespace depot::dht
