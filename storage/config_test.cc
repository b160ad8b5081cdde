#include "storage/config.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "common/base/conf.h"
#include "common/base/fs.h"

namespace depot::storage {
namespace {

const std::string kShipped = std::string(DEPOT_SOURCE_DIR) + "/conf/storage.conf";

// The smallest valid file: the required keys.
const std::string kMinimal =
    "group_name = group1\n"
    "base_path = /tmp/depot-storage\n"
    "tracker_server = 127.0.0.1:22122\n"
    "cluster_secret = 0123456789abcdef\n";

Result<StorageConfig> Parse(const std::string& extra) {
  return ParseStorageConfig(kMinimal + extra, "s.conf");
}

bool Names(const Status& s, const std::string& key) {
  return s.message().find("`" + key + "`") != std::string::npos;
}

// Removes the line of `key` from kMinimal.
std::string MinimalWithout(const std::string& key) {
  std::string out;
  size_t pos = 0;
  while (pos < kMinimal.size()) {
    size_t nl = kMinimal.find('\n', pos);
    std::string line = kMinimal.substr(pos, nl - pos + 1);
    if (line.rfind(key + " ", 0) != 0) out += line;
    pos = nl + 1;
  }
  return out;
}

// Every key ParseStorageConfig binds (store_path0 stands for the store_pathN family). Keep in
// step with storage/config.cc.
const std::vector<std::string> kAllKeys = {
    "group_name",          "bind_addr",           "port",           "advertise_address",
    "http_port",           "metrics_port",        "base_path",      "store_path0",
    "tracker_server",      "heartbeat_interval",  "durable_writes", "reserved_space",
    "max_file_size",       "work_threads",        "disk_writer_threads",
    "disk_reader_threads", "max_connections",     "idle_timeout",   "network_timeout",
    "upload_priority",     "log_file",            "log_level",      "cluster_secret",
    "replication",         "write_quorum",        "sync_window",    "sync_delay_ms",
    "http_threads",        "http_token",          "http_secret",    "http_token_ttl",
    "http_mime_types",     "http_cache_max_age",  "http_miss",      "http_advertise_port",
    "use_trunk_file",      "slot_min_size",       "slot_max_size",  "trunk_file_size",
    "dedup",               "dht_replicas",        "dht_timeout_ms", "dedup_min_size",
    "dedup_threads"};

TEST(StorageConfigTest, ShippedFileEqualsStructDefaults) {
  auto c = LoadStorageConfig(kShipped);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  const StorageConfig d;
  EXPECT_EQ(c->bind_addr, d.bind_addr);
  EXPECT_EQ(c->port, d.port);
  EXPECT_EQ(c->advertise_address, d.advertise_address);
  EXPECT_EQ(c->http_port, d.http_port);
  EXPECT_EQ(c->http_miss, d.http_miss);
  EXPECT_EQ(c->http_advertise_port, d.http_advertise_port);
  EXPECT_EQ(c->metrics_port, d.metrics_port);
  EXPECT_EQ(c->heartbeat_interval, d.heartbeat_interval);
  EXPECT_EQ(c->durable_writes, d.durable_writes);
  EXPECT_EQ(c->use_trunk_file, d.use_trunk_file);
  EXPECT_EQ(c->slot_min_size, d.slot_min_size);
  EXPECT_EQ(c->slot_max_size, d.slot_max_size);
  EXPECT_EQ(c->trunk_file_size, d.trunk_file_size);
  EXPECT_EQ(c->reserved_space, d.reserved_space);
  EXPECT_EQ(c->max_file_size, d.max_file_size);
  EXPECT_EQ(c->work_threads, d.work_threads);
  EXPECT_EQ(c->disk_writer_threads, d.disk_writer_threads);
  EXPECT_EQ(c->disk_reader_threads, d.disk_reader_threads);
  EXPECT_EQ(c->max_connections, d.max_connections);
  EXPECT_EQ(c->idle_timeout, d.idle_timeout);
  EXPECT_EQ(c->network_timeout, d.network_timeout);
  EXPECT_EQ(c->upload_priority, d.upload_priority);
  EXPECT_EQ(c->replication, d.replication);
  EXPECT_EQ(c->write_quorum, d.write_quorum);
  EXPECT_EQ(c->sync_window, d.sync_window);
  EXPECT_EQ(c->sync_delay_ms, d.sync_delay_ms);
  EXPECT_EQ(c->log_file, d.log_file);
  EXPECT_EQ(c->log_level, d.log_level);
  // The keys without a usable default carry example values.
  EXPECT_EQ(c->group_name, "group1");
  EXPECT_EQ(c->base_path, "/var/lib/depot/storage");
  EXPECT_EQ(c->store_paths, std::vector<std::string>{"/var/lib/depot/storage"});
  EXPECT_EQ(c->tracker_servers, std::vector<std::string>{"127.0.0.1:22122"});
  EXPECT_EQ(c->cluster_secret, "change-me-please");
}

TEST(StorageConfigTest, ShippedFileSetsEveryKeyOnceWithACommentAbove) {
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
}

TEST(StorageConfigTest, MinimalFileTakesDefaults) {
  auto c = Parse("");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->group_name, "group1");
  EXPECT_EQ(c->port, 23000);
  EXPECT_EQ(c->http_port, 8888);
  EXPECT_EQ(c->metrics_port, 23080);
  EXPECT_EQ(c->reserved_space, "1G");
  EXPECT_EQ(c->max_file_size, 64ULL << 30);
  EXPECT_FALSE(c->durable_writes);
  // Without store_pathN the one store path is base_path.
  EXPECT_EQ(c->store_paths, std::vector<std::string>{"/tmp/depot-storage"});
}

TEST(StorageConfigTest, EveryKeyIsBound) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"port", "x"},
      {"advertise_address", "x"},
      {"http_port", "x"},
      {"metrics_port", "x"},
      {"heartbeat_interval", "x"},
      {"durable_writes", "maybe"},
      {"reserved_space", "lots"},
      {"max_file_size", "x"},
      {"work_threads", "x"},
      {"disk_writer_threads", "x"},
      {"disk_reader_threads", "x"},
      {"max_connections", "x"},
      {"idle_timeout", "x"},
      {"network_timeout", "x"},
      {"upload_priority", "x"},
      {"log_level", "x"},
  };
  for (const auto& [k, v] : bad) {
    auto c = Parse(k + " = " + v + "\n");
    ASSERT_FALSE(c.ok()) << k;
    EXPECT_TRUE(c.status().IsInvalidArgument()) << k;
    EXPECT_TRUE(Names(c.status(), k)) << k << ": " << c.status().ToString();
  }
  for (const std::string k : {"bind_addr", "log_file"}) {
    EXPECT_TRUE(Parse(k + " = something\n").ok()) << k;
  }
}

TEST(StorageConfigTest, ParsesValues) {
  auto c = Parse(
      "bind_addr = 127.0.0.1\nport = 0\nadvertise_address = 10.1.2.3\nhttp_port = 0\n"
      "metrics_port = -1\nheartbeat_interval = 2m\ndurable_writes = on\n"
      "reserved_space = 10%\nmax_file_size = 512M\nwork_threads = 4\n"
      "disk_writer_threads = 3\ndisk_reader_threads = 5\nmax_connections = 100\n"
      "idle_timeout = 1h\nnetwork_timeout = 15s\nupload_priority = -5\n"
      "log_file = /tmp/s.log\nlog_level = warn\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->bind_addr, "127.0.0.1");
  EXPECT_EQ(c->port, 0);
  EXPECT_EQ(c->advertise_address, "10.1.2.3");
  EXPECT_EQ(c->http_port, 0);
  EXPECT_EQ(c->metrics_port, -1);
  EXPECT_EQ(c->heartbeat_interval, 120);
  EXPECT_TRUE(c->durable_writes);
  EXPECT_EQ(c->reserved_space, "10%");
  EXPECT_EQ(c->max_file_size, 512ULL << 20);
  EXPECT_EQ(c->work_threads, 4);
  EXPECT_EQ(c->disk_writer_threads, 3);
  EXPECT_EQ(c->disk_reader_threads, 5);
  EXPECT_EQ(c->max_connections, 100);
  EXPECT_EQ(c->idle_timeout, 3600);
  EXPECT_EQ(c->network_timeout, 15);
  EXPECT_EQ(c->upload_priority, -5);
  EXPECT_EQ(c->log_file, "/tmp/s.log");
  EXPECT_EQ(c->log_level, "warn");
}

TEST(StorageConfigTest, BoolSpellings) {
  for (const std::string v : {"true", "on", "yes", "1", "TRUE", "On"}) {
    auto c = Parse("durable_writes = " + v + "\n");
    ASSERT_TRUE(c.ok()) << v;
    EXPECT_TRUE(c->durable_writes) << v;
  }
  for (const std::string v : {"false", "off", "no", "0"}) {
    auto c = Parse("durable_writes = " + v + "\n");
    ASSERT_TRUE(c.ok()) << v;
    EXPECT_FALSE(c->durable_writes) << v;
  }
}

TEST(StorageConfigTest, UnknownKeyFailsNamingIt) {
  auto c = Parse("subdir_count_per_path = 256\n");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(c.status().IsInvalidArgument());
  EXPECT_TRUE(Names(c.status(), "subdir_count_per_path")) << c.status().ToString();
  EXPECT_NE(c.status().message().find("unknown key"), std::string::npos);
}

TEST(StorageConfigTest, OutOfRangeValuesFailNamingTheKey) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"port", "-1"},
      {"port", "65536"},
      {"http_port", "65536"},
      {"http_miss", "follow"},
      {"http_advertise_port", "-1"},
      {"metrics_port", "-2"},
      {"heartbeat_interval", "0"},
      {"heartbeat_interval", "3601"},
      {"heartbeat_interval", "2h"},
      {"max_file_size", "0"},
      {"max_file_size", "1025T"},
      {"max_file_size", "-1"},
      {"max_file_size", "10P"},
      {"work_threads", "0"},
      {"work_threads", "65"},
      {"disk_writer_threads", "0"},
      {"disk_writer_threads", "65"},
      {"disk_reader_threads", "0"},
      {"disk_reader_threads", "65"},
      {"max_connections", "0"},
      {"idle_timeout", "86401"},
      {"network_timeout", "0"},
      {"upload_priority", "1000001"},
      {"upload_priority", "-1000001"},
      {"log_level", "verbose"},
      {"reserved_space", "101%"},
      {"reserved_space", "-1%"},
      {"reserved_space", "%"},
      {"reserved_space", "10 %"},
      {"reserved_space", "-1G"},
  };
  for (const auto& [k, v] : cases) {
    auto c = Parse(k + " = " + v + "\n");
    ASSERT_FALSE(c.ok()) << k << " = " << v;
    EXPECT_TRUE(c.status().IsInvalidArgument()) << k << " = " << v;
    EXPECT_TRUE(Names(c.status(), k)) << k << " = " << v << ": " << c.status().ToString();
  }
  for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
           {"max_file_size", "1"}, {"max_file_size", "1024T"}, {"heartbeat_interval", "1h"},
           {"upload_priority", "-1000000"}, {"reserved_space", "0"}, {"reserved_space", "100%"},
           {"reserved_space", "0%"}}) {
    EXPECT_TRUE(Parse(k + " = " + v + "\n").ok()) << k << " = " << v;
  }
}

TEST(StorageConfigTest, RequiredKeysMissingFail) {
  for (const std::string key : {"group_name", "base_path", "tracker_server", "cluster_secret"}) {
    auto c = ParseStorageConfig(MinimalWithout(key), "s.conf");
    ASSERT_FALSE(c.ok()) << key;
    EXPECT_TRUE(Names(c.status(), key)) << key << ": " << c.status().ToString();
  }
  auto c = ParseStorageConfig(MinimalWithout("cluster_secret") + "cluster_secret = 1234567\n", "s.conf");
  ASSERT_FALSE(c.ok()) << "a 7-character secret is too short";
  EXPECT_TRUE(Names(c.status(), "cluster_secret"));
}

TEST(StorageConfigTest, GroupNameIsValidated) {
  for (const std::string g : {"group_name_of_17c", "bad/group", "bad group", "a.b"}) {
    auto c = ParseStorageConfig(MinimalWithout("group_name") + "group_name = " + g + "\n", "s.conf");
    ASSERT_FALSE(c.ok()) << g;
    EXPECT_TRUE(Names(c.status(), "group_name")) << g << ": " << c.status().ToString();
  }
  auto c = ParseStorageConfig(MinimalWithout("group_name") + "group_name = G-16_chars_long_\n",
                              "s.conf");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->group_name, "G-16_chars_long_");
}

TEST(StorageConfigTest, StorePathsAreIndexed) {
  // Order in the file does not matter; the index does.
  auto c = Parse("store_path2 = /c\nstore_path0 = /a\nstore_path1 = /b\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->store_paths, (std::vector<std::string>{"/a", "/b", "/c"}));

  c = Parse("store_path0 = /a\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->store_paths, std::vector<std::string>{"/a"});
}

TEST(StorageConfigTest, StorePathIndexesMustBeContiguousAndInRange) {
  auto c = Parse("store_path0 = /a\nstore_path2 = /c\n");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Names(c.status(), "store_path2")) << c.status().ToString();

  c = Parse("store_path1 = /b\n");
  ASSERT_FALSE(c.ok()) << "store_path0 missing";
  EXPECT_TRUE(Names(c.status(), "store_path1")) << c.status().ToString();

  c = Parse("store_path0 = /a\nstore_path0 = /b\n");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Names(c.status(), "store_path0")) << c.status().ToString();

  c = Parse("store_path256 = /a\n");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Names(c.status(), "store_path256")) << c.status().ToString();

  c = Parse("store_path00 = /a\n");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Names(c.status(), "store_path00")) << c.status().ToString();

  c = Parse("store_path0 =\n");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Names(c.status(), "store_path0")) << c.status().ToString();

  std::string many;
  for (int i = 0; i < 256; ++i) many += "store_path" + std::to_string(i) + " = /p" + std::to_string(i) + "\n";
  c = Parse(many);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->store_paths.size(), 256u);
  EXPECT_EQ(c->store_paths[255], "/p255");
}

TEST(StorageConfigTest, StockFastDfsStorePathCountIsAnUnknownKey) {
  // FastDFS's storage.conf has store_path_count; Depot counts the store_pathN lines instead.
  auto c = Parse("store_path_count = 1\nstore_path0 = /a\n");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("unknown key `store_path_count`"), std::string::npos)
      << c.status().ToString();

  c = Parse("store_path = /a\n");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("unknown key `store_path`"), std::string::npos)
      << c.status().ToString();
}

TEST(StorageConfigTest, TrackerServersRepeatInOrder) {
  auto c = Parse("tracker_server = 10.0.0.2:22122\ntracker_server = tracker3.example:22123\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->tracker_servers, (std::vector<std::string>{
                                    "127.0.0.1:22122", "10.0.0.2:22122", "tracker3.example:22123"}));
}

TEST(StorageConfigTest, TrackerServerMustBeHostPort) {
  for (const std::string t : {"127.0.0.1", "127.0.0.1:", ":22122", "127.0.0.1:0",
                              "127.0.0.1:65536", "127.0.0.1:port", "127.0.0.1:22122x"}) {
    auto c = Parse("tracker_server = " + t + "\n");
    ASSERT_FALSE(c.ok()) << t;
    EXPECT_TRUE(Names(c.status(), "tracker_server")) << t << ": " << c.status().ToString();
  }
  auto c = Parse("tracker_server =\n");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Names(c.status(), "tracker_server")) << c.status().ToString();
}

TEST(StorageConfigTest, AdvertiseAddressMustBeIpv4) {
  for (const std::string a : {"storage1.example", "10.0.0", "10.0.0.256", "::1", "10.0.0.1:23000"}) {
    auto c = Parse("advertise_address = " + a + "\n");
    ASSERT_FALSE(c.ok()) << a;
    EXPECT_TRUE(Names(c.status(), "advertise_address")) << a << ": " << c.status().ToString();
  }
  auto c = Parse("advertise_address = 192.168.1.20\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->advertise_address, "192.168.1.20");
}

TEST(StorageConfigTest, MaxFileSizeUnits) {
  auto c = Parse("max_file_size = 64GB\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->max_file_size, 64ULL << 30);
  c = Parse("max_file_size = 4096\n");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->max_file_size, 4096u);
  c = Parse("max_file_size = 2k\n");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->max_file_size, 2048u);
}

TEST(ReservedBytesTest, PercentOfTotal) {
  auto r = ReservedBytes("10%", 1000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 100u);
  r = ReservedBytes("2.5%", 1000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 25u);
  r = ReservedBytes("0%", 1000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 0u);
  r = ReservedBytes("100%", 1ULL << 40);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 1ULL << 40);
}

TEST(ReservedBytesTest, ByteSizeIgnoresTotal) {
  auto r = ReservedBytes("1G", 1000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 1ULL << 30);
  r = ReservedBytes("512M", 1ULL << 40);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 512ULL << 20);
  r = ReservedBytes("4096", 0);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 4096u);
}

TEST(ReservedBytesTest, RejectsGarbage) {
  for (const std::string s : {"", "%", "101%", "-1%", "x%", "10%%", "1e400%", "nan%", "NAN%",
                              "inf%", "ten", "1Q", "-1G"}) {
    EXPECT_FALSE(ReservedBytes(s, 1000).ok()) << "`" << s << "`";
  }
}

TEST(ReservedBytesTest, NanPercentIsRejectedByTheConfig) {
  // Regression: strtod accepts "nan", which passed both range checks and reached an undefined
  // double-to-integer conversion.
  auto c = Parse("reserved_space = nan%\n");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Names(c.status(), "reserved_space")) << c.status().ToString();
}


TEST(StorageConfigTest, DedupNeedsDhtServersAndParsesTheirList) {
  const std::string base =
      "group_name = g1\nbase_path = /tmp/x\ntracker_server = 127.0.0.1:22122\n"
      "cluster_secret = 0123456789\n";
  auto none = ParseStorageConfig(base + "dedup = on\n", "t");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().ToString().find("dht_servers"), std::string::npos);
  auto bad = ParseStorageConfig(base + "dedup = on\ndht_servers = 127.0.0.1\n", "t");
  EXPECT_FALSE(bad.ok());
  auto ok = ParseStorageConfig(
      base + "dedup = on\ndht_servers = 127.0.0.1:1, 127.0.0.1:2\ndht_servers = h:3\n", "t");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_TRUE(ok->dedup);
  EXPECT_EQ(ok->dht_servers, (std::vector<std::string>{"127.0.0.1:1", "127.0.0.1:2", "h:3"}));
}

}  // namespace
}  // namespace depot::storage
