#include "opsd/config.h"

#include <gtest/gtest.h>

#include <set>

#include "common/base/conf.h"
#include "common/base/fs.h"

namespace depot::opsd {
namespace {

const std::string kShipped = std::string(DEPOT_SOURCE_DIR) + "/conf/opsd.conf";

Result<OpsdConfig> Parse(const std::string& extra) {
  return ParseOpsdConfig("base_path = /tmp/opsd\n" + extra, "t.conf");
}

TEST(OpsdConfigTest, ShippedFileEqualsStructDefaults) {
  auto c = LoadOpsdConfig(kShipped);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  const OpsdConfig d;
  EXPECT_EQ(c->bind_addr, d.bind_addr);
  EXPECT_EQ(c->port, d.port);
  EXPECT_EQ(c->loop_threads, d.loop_threads);
  EXPECT_EQ(c->worker_threads, d.worker_threads);
  EXPECT_EQ(c->max_connections, d.max_connections);
  EXPECT_EQ(c->idle_timeout, d.idle_timeout);
  EXPECT_EQ(c->io_timeout, d.io_timeout);
  EXPECT_EQ(c->durable_writes, d.durable_writes);
  EXPECT_EQ(c->upload_group, d.upload_group);
  EXPECT_EQ(c->max_upload_size, d.max_upload_size);
  EXPECT_EQ(c->max_body_size, d.max_body_size);
  EXPECT_EQ(c->admin_user, d.admin_user);
  EXPECT_EQ(c->admin_password, d.admin_password);
  EXPECT_EQ(c->session_ttl, d.session_ttl);
  EXPECT_EQ(c->lockout_threshold, d.lockout_threshold);
  EXPECT_EQ(c->lockout_seconds, d.lockout_seconds);
  EXPECT_EQ(c->log_file, d.log_file);
  EXPECT_EQ(c->log_level, d.log_level);
  EXPECT_EQ(c->base_path, "/var/lib/depot/opsd");
  EXPECT_EQ(c->db_path, "/var/lib/depot/opsd/db");
  EXPECT_EQ(c->secret_key_file, "/var/lib/depot/opsd/secret.key");
  EXPECT_EQ(c->tracker_servers, std::vector<std::string>{"127.0.0.1:22122"});
}

TEST(OpsdConfigTest, ShippedFileSetsEveryKeyOnceWithACommentAbove) {
  auto text = ReadSmallFile(kShipped);
  ASSERT_TRUE(text.ok());
  auto file = ConfFile::Parse(*text, kShipped);
  ASSERT_TRUE(file.ok());
  std::vector<std::string> lines;
  for (size_t pos = 0; pos <= text->size();) {
    size_t nl = text->find('\n', pos);
    if (nl == std::string::npos) nl = text->size();
    lines.push_back(text->substr(pos, nl - pos));
    pos = nl + 1;
  }
  std::set<std::string> seen;
  for (const auto& e : file->entries()) {
    EXPECT_TRUE(seen.insert(e.key).second) << e.key;
    ASSERT_GE(e.line, 2);
    EXPECT_EQ(lines[e.line - 2].rfind("#", 0), 0u) << "no comment above `" << e.key << "`";
  }
  EXPECT_EQ(seen.size(), 22u);
}

TEST(OpsdConfigTest, BadValuesFailNamingTheKey) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"port", "70000"},          {"loop_threads", "0"},     {"worker_threads", "x"},
      {"durable_writes", "maybe"}, {"session_ttl", "0"},     {"lockout_threshold", "0"},
      {"max_body_size", "10"},    {"log_level", "loud"},     {"tracker_server", "nohost"},
      {"admin_password", "short"}, {"admin_user", "a"},      {"unknown_key", "1"}};
  for (const auto& [k, v] : bad) {
    auto c = Parse(k + " = " + v + "\n");
    ASSERT_FALSE(c.ok()) << k;
    EXPECT_NE(c.status().message().find(k), std::string::npos) << c.status().ToString();
  }
  EXPECT_FALSE(ParseOpsdConfig("port = 1\n", "t").ok());  // base_path is required
}

TEST(OpsdConfigTest, DerivedPaths) {
  auto c = Parse("db_path = /x/db\n");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->db_path, "/x/db");
  EXPECT_EQ(c->secret_key_file, "/tmp/opsd/secret.key");
}

}  // namespace
}  // namespace depot::opsd
