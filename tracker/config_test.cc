#include "tracker/config.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "common/base/conf.h"
#include "common/base/fs.h"

namespace depot::tracker {
namespace {

const std::string kShipped = std::string(DEPOT_SOURCE_DIR) + "/conf/tracker.conf";

// The smallest valid file: the two required keys.
const std::string kMinimal =
    "base_path = /tmp/depot-tracker\n"
    "cluster_secret = 0123456789abcdef\n";

Result<TrackerConfig> Parse(const std::string& extra) {
  return ParseTrackerConfig(kMinimal + extra, "t.conf");
}

bool Names(const Status& s, const std::string& key) {
  return s.message().find("`" + key + "`") != std::string::npos;
}

// Every key ParseTrackerConfig binds. Keep in step with tracker/config.cc.
const std::vector<std::string> kAllKeys = {
    "bind_addr",     "port",           "metrics_port",  "base_path",       "log_file",
    "log_level",     "work_threads",   "max_connections", "idle_timeout",  "network_timeout",
    "store_lookup",  "store_group",    "store_server",  "store_path",      "storage_timeout",
    "cluster_secret"};

TEST(TrackerConfigTest, ShippedFileEqualsStructDefaults) {
  auto c = LoadTrackerConfig(kShipped);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  const TrackerConfig d;
  EXPECT_EQ(c->bind_addr, d.bind_addr);
  EXPECT_EQ(c->port, d.port);
  EXPECT_EQ(c->metrics_port, d.metrics_port);
  EXPECT_EQ(c->log_file, d.log_file);
  EXPECT_EQ(c->log_level, d.log_level);
  EXPECT_EQ(c->work_threads, d.work_threads);
  EXPECT_EQ(c->max_connections, d.max_connections);
  EXPECT_EQ(c->idle_timeout, d.idle_timeout);
  EXPECT_EQ(c->network_timeout, d.network_timeout);
  EXPECT_EQ(c->store_lookup, d.store_lookup);
  EXPECT_EQ(c->store_group, d.store_group);
  EXPECT_EQ(c->store_server, d.store_server);
  EXPECT_EQ(c->store_path, d.store_path);
  EXPECT_EQ(c->storage_timeout, d.storage_timeout);
  // The keys without a usable default carry example values.
  EXPECT_EQ(c->base_path, "/var/lib/depot/tracker");
  EXPECT_EQ(c->cluster_secret, "change-me-please");
}

TEST(TrackerConfigTest, ShippedFileSetsEveryKeyOnceWithACommentAbove) {
  auto text = ReadSmallFile(kShipped);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  auto file = ConfFile::Parse(*text, kShipped);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  std::vector<std::string> lines;
  {
    size_t pos = 0;
    while (pos <= text->size()) {
      size_t nl = text->find('\n', pos);
      if (nl == std::string::npos) nl = text->size();
      lines.push_back(text->substr(pos, nl - pos));
      pos = nl + 1;
    }
  }
  std::multiset<std::string> seen;
  for (const auto& e : file->entries()) {
    seen.insert(e.key);
    ASSERT_GE(e.line, 2) << e.key;
    EXPECT_EQ(lines[e.line - 2].rfind("#", 0), 0u) << "no comment above `" << e.key << "`";
  }
  for (const auto& k : kAllKeys) EXPECT_EQ(seen.count(k), 1u) << "key `" << k << "`";
  EXPECT_EQ(seen.size(), kAllKeys.size());
}

TEST(TrackerConfigTest, MinimalFileTakesDefaults) {
  auto c = Parse("");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  const TrackerConfig d;
  EXPECT_EQ(c->base_path, "/tmp/depot-tracker");
  EXPECT_EQ(c->cluster_secret, "0123456789abcdef");
  EXPECT_EQ(c->port, 22122);
  EXPECT_EQ(c->metrics_port, 22180);
  EXPECT_EQ(c->bind_addr, d.bind_addr);
  EXPECT_EQ(c->storage_timeout, 30);
  EXPECT_EQ(c->idle_timeout, 900);
  EXPECT_EQ(c->store_lookup, "round_robin");
}

TEST(TrackerConfigTest, EveryKeyIsBound) {
  // A bad value for each non-string key must fail naming that key (so the key is bound and
  // range-checked, not silently ignored).
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"port", "x"},           {"metrics_port", "x"},   {"log_level", "loud"},
      {"work_threads", "x"},   {"max_connections", "x"}, {"idle_timeout", "x"},
      {"network_timeout", "x"}, {"store_lookup", "x"},   {"store_server", "x"},
      {"store_path", "x"},     {"storage_timeout", "x"}};
  for (const auto& [k, v] : bad) {
    auto c = Parse(k + " = " + v + "\n");
    ASSERT_FALSE(c.ok()) << k;
    EXPECT_TRUE(c.status().IsInvalidArgument()) << k;
    EXPECT_TRUE(Names(c.status(), k)) << k << ": " << c.status().ToString();
  }
  for (const std::string k : {"bind_addr", "log_file", "store_group"}) {
    EXPECT_TRUE(Parse(k + " = something\n").ok()) << k;
  }
}

TEST(TrackerConfigTest, ParsesValues) {
  auto c = Parse(
      "bind_addr = 127.0.0.1\nport = 0\nmetrics_port = -1\nlog_file = /tmp/t.log\n"
      "log_level = debug\nwork_threads = 8\nmax_connections = 10\nidle_timeout = 5m\n"
      "network_timeout = 45s\nstore_lookup = most_free\nstore_server = first_by_priority\n"
      "store_path = most_free\nstorage_timeout = 1h\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->bind_addr, "127.0.0.1");
  EXPECT_EQ(c->port, 0);
  EXPECT_EQ(c->metrics_port, -1);
  EXPECT_EQ(c->log_file, "/tmp/t.log");
  EXPECT_EQ(c->log_level, "debug");
  EXPECT_EQ(c->work_threads, 8);
  EXPECT_EQ(c->max_connections, 10);
  EXPECT_EQ(c->idle_timeout, 300);
  EXPECT_EQ(c->network_timeout, 45);
  EXPECT_EQ(c->store_lookup, "most_free");
  EXPECT_EQ(c->store_server, "first_by_priority");
  EXPECT_EQ(c->store_path, "most_free");
  EXPECT_EQ(c->storage_timeout, 3600);
}

TEST(TrackerConfigTest, UnknownKeyFailsNamingIt) {
  auto c = Parse("reserved_storage_space = 10%\n");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(c.status().IsInvalidArgument());
  EXPECT_TRUE(Names(c.status(), "reserved_storage_space")) << c.status().ToString();
  EXPECT_NE(c.status().message().find("unknown key"), std::string::npos);
  EXPECT_NE(c.status().message().find("t.conf:3"), std::string::npos) << c.status().ToString();
}

TEST(TrackerConfigTest, AllowHostsTakesAddressesAndCidrBlocks) {
  auto ok = Parse("allow_hosts = 10.0.0.0/8\nallow_hosts = 192.168.1.7\n");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->allow_hosts, (std::vector<std::string>{"10.0.0.0/8", "192.168.1.7"}));
  for (const char* bad : {"10.0.0.0/33", "example.com", "10.0.0/8", "10.0.0.1/", "1.2.3.4/x"}) {
    auto c = Parse(std::string("allow_hosts = ") + bad + "\n");
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_TRUE(Names(c.status(), "allow_hosts")) << c.status().ToString();
  }
}

TEST(TrackerConfigTest, OutOfRangeValuesFailNamingTheKey) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"port", "-1"},
      {"port", "65536"},
      {"metrics_port", "-2"},
      {"metrics_port", "65536"},
      {"work_threads", "0"},
      {"work_threads", "65"},
      {"max_connections", "0"},
      {"max_connections", "1000001"},
      {"idle_timeout", "0"},
      {"idle_timeout", "86401"},
      {"idle_timeout", "25h"},
      {"network_timeout", "0"},
      {"network_timeout", "61m"},
      {"storage_timeout", "1"},
      {"storage_timeout", "1s"},
      {"storage_timeout", "86401"},
      {"storage_timeout", "5d"},
      {"storage_timeout", "99999999999999999"},
      {"log_level", "verbose"},
      {"store_lookup", "random"},
      {"store_server", "load_balance"},
      {"store_path", "first"},
  };
  for (const auto& [k, v] : cases) {
    auto c = Parse(k + " = " + v + "\n");
    ASSERT_FALSE(c.ok()) << k << " = " << v;
    EXPECT_TRUE(c.status().IsInvalidArgument()) << k << " = " << v;
    EXPECT_TRUE(Names(c.status(), k)) << k << " = " << v << ": " << c.status().ToString();
  }
  // The bounds themselves are accepted.
  for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
           {"port", "65535"}, {"metrics_port", "-1"}, {"work_threads", "64"},
           {"storage_timeout", "2"}, {"idle_timeout", "24h"}, {"network_timeout", "1h"}}) {
    EXPECT_TRUE(Parse(k + " = " + v + "\n").ok()) << k << " = " << v;
  }
}

TEST(TrackerConfigTest, RequiredKeysMissingFail) {
  auto c = ParseTrackerConfig("cluster_secret = 0123456789abcdef\n", "t.conf");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Names(c.status(), "base_path")) << c.status().ToString();

  c = ParseTrackerConfig("base_path = /tmp/x\n", "t.conf");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Names(c.status(), "cluster_secret")) << c.status().ToString();

  c = ParseTrackerConfig("base_path = /tmp/x\ncluster_secret = 1234567\n", "t.conf");
  ASSERT_FALSE(c.ok()) << "a 7-character secret is too short";
  EXPECT_TRUE(Names(c.status(), "cluster_secret")) << c.status().ToString();

  EXPECT_TRUE(ParseTrackerConfig("base_path = /tmp/x\ncluster_secret = 12345678\n", "t.conf").ok());
  EXPECT_FALSE(ParseTrackerConfig("", "t.conf").ok());
}

TEST(TrackerConfigTest, SpecifiedLookupNeedsAValidStoreGroup) {
  auto c = Parse("store_lookup = specified\n");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Names(c.status(), "store_group")) << c.status().ToString();

  c = Parse("store_lookup = specified\nstore_group = bad/group\n");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Names(c.status(), "store_group")) << c.status().ToString();

  c = Parse("store_lookup = specified\nstore_group = group_with_17_chars\n");
  ASSERT_FALSE(c.ok());

  c = Parse("store_lookup = specified\nstore_group = group2\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->store_group, "group2");
}

TEST(TrackerConfigTest, DuplicateKeyFails) {
  auto c = Parse("port = 1\nport = 2\n");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Names(c.status(), "port")) << c.status().ToString();
  EXPECT_NE(c.status().message().find("more than once"), std::string::npos);
}

TEST(TrackerConfigTest, LineWithoutEqualsFails) {
  auto c = Parse("port 22122\n");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(c.status().IsInvalidArgument());
}

TEST(TrackerConfigTest, MissingFileFails) {
  auto c = LoadTrackerConfig("/nonexistent/depot/tracker.conf");
  EXPECT_FALSE(c.ok());
}

}  // namespace
}  // namespace depot::tracker
