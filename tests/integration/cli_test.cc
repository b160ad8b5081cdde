// The `depot` CLI as a user runs it: exit codes, --json, one-line errors, and a 2 GiB transfer
// that keeps both the CLI and storaged under 64 MiB of RSS.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/base/fs.h"
#include "tests/harness/harness.h"

namespace depot::testing {
namespace {

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = std::make_unique<MiniCluster>(ClusterOptions{.trackers = 2});
    ASSERT_TRUE(cluster_->Start().ok());
  }
  RunResult Depot(std::vector<std::string> args) {
    args.insert(args.begin(), {"depot", "--trackers", cluster_->TrackerList()});
    return RunProgram(args);
  }
  std::unique_ptr<MiniCluster> cluster_;
};

TEST_F(CliTest, UploadDownloadInfoMetaDelete) {
  std::string src = cluster_->dir() + "/hello.txt";
  ASSERT_TRUE(WriteFileAtomic(src, "hello depot\n", false).ok());
  auto up = Depot({"upload", src, "--meta", "owner=ann"});
  ASSERT_EQ(up.exit_code, 0) << up.err;
  std::string id = up.out.substr(0, up.out.find('\n'));
  EXPECT_TRUE(id.rfind("group1/M00/", 0) == 0) << id;
  EXPECT_EQ(id.substr(id.size() - 4), ".txt");

  auto down = Depot({"download", id});
  ASSERT_EQ(down.exit_code, 0) << down.err;
  EXPECT_EQ(down.out, "hello depot\n");
  std::string dst = cluster_->dir() + "/out.txt";
  ASSERT_EQ(Depot({"download", id, "-o", dst}).exit_code, 0);
  EXPECT_TRUE(FilesEqual(src, dst));

  auto info = Depot({"info", id, "--json"});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  auto j = nlohmann::json::parse(info.out);
  EXPECT_EQ(j["size"], 12);
  EXPECT_EQ(j["crc32"], "8277373a");

  auto meta = Depot({"meta", "get", id});
  EXPECT_EQ(meta.out, "owner=ann\n");
  ASSERT_EQ(Depot({"meta", "set", id, "tag=x", "--merge"}).exit_code, 0);
  EXPECT_EQ(Depot({"meta", "get", id}).out, "owner=ann\ntag=x\n");
  ASSERT_EQ(Depot({"meta", "set", id, "only=1"}).exit_code, 0);
  EXPECT_EQ(Depot({"meta", "get", id}).out, "only=1\n");

  ASSERT_EQ(Depot({"delete", id}).exit_code, 0);
  auto gone = Depot({"download", id});
  EXPECT_EQ(gone.exit_code, 3);  // not found
  EXPECT_NE(gone.err.find("NotFound"), std::string::npos) << gone.err;
  EXPECT_EQ(std::count(gone.err.begin(), gone.err.end(), '\n'), 1) << "one-line error";
}

TEST_F(CliTest, ErrorsAreOneLineWithDistinctExitCodes) {
  auto bad = Depot({"download", "group1/M00/../../etc/passwd"});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  auto json_err = Depot({"info", "not-a-file-id", "--json"});
  EXPECT_EQ(json_err.exit_code, 2);
  auto j = nlohmann::json::parse(json_err.out);
  EXPECT_EQ(j["error"]["code"], "InvalidArgument");
  auto no_trackers = RunProgram({"depot", "status"}, {"DEPOT_TRACKERS="});
  EXPECT_NE(no_trackers.exit_code, 0);
  auto dead = RunProgram({"depot", "--trackers", "127.0.0.1:1", "status"});
  EXPECT_EQ(dead.exit_code, 4) << dead.err;
  auto help = RunProgram({"depot", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("upload"), std::string::npos);
}

TEST_F(CliTest, AppenderAndSlaveCommands) {
  std::string a = cluster_->dir() + "/a.log", b = cluster_->dir() + "/b.log";
  ASSERT_TRUE(WriteFileAtomic(a, "hello ", false).ok());
  ASSERT_TRUE(WriteFileAtomic(b, "depot\n", false).ok());
  auto up = Depot({"upload-appender", a, "--json"});
  ASSERT_EQ(up.exit_code, 0) << up.err;
  std::string id = nlohmann::json::parse(up.out)["file_id"];
  ASSERT_EQ(Depot({"append", id, b}).exit_code, 0);
  EXPECT_EQ(Depot({"download", id}).out, "hello depot\n");
  ASSERT_EQ(Depot({"modify", id, "0", b}).exit_code, 0);
  EXPECT_EQ(Depot({"download", id}).out, "depot\ndepot\n");
  ASSERT_EQ(Depot({"truncate", id, "6"}).exit_code, 0);
  EXPECT_EQ(Depot({"download", id}).out, "depot\n");
  auto past = Depot({"modify", id, "7", b});
  EXPECT_EQ(past.exit_code, 2) << past.err;  // FastDFS's EINVAL: past the end
  EXPECT_NE(past.err.find("EINVAL"), std::string::npos) << past.err;
  EXPECT_EQ(Depot({"truncate", id, "7"}).exit_code, 2);
  auto regen = Depot({"regenerate", id});
  ASSERT_EQ(regen.exit_code, 0) << regen.err;
  std::string normal = regen.out.substr(0, regen.out.find('\n'));
  EXPECT_EQ(Depot({"download", normal}).out, "depot\n");
  EXPECT_EQ(Depot({"download", id}).exit_code, 3);
  EXPECT_EQ(Depot({"append", normal, b}).exit_code, 2);  // not an appender file any more

  auto slave = Depot({"upload-slave", normal, "_s", b, "--json"});
  ASSERT_EQ(slave.exit_code, 0) << slave.err;
  std::string sid = nlohmann::json::parse(slave.out)["file_id"];
  EXPECT_EQ(sid, normal.substr(0, normal.rfind('.')) + "_s.log");
  EXPECT_EQ(Depot({"download", sid}).out, "depot\n");
  EXPECT_EQ(Depot({"upload-slave", normal, "_s", b}).exit_code, 1);  // EEXIST
  auto url = Depot({"url", normal, "--slave-prefix", "_s", "--base", "http://h:1", "--json"});
  ASSERT_EQ(url.exit_code, 0) << url.err;
  EXPECT_EQ(nlohmann::json::parse(url.out)["url"], "http://h:1/" + sid);
  EXPECT_EQ(Depot({"upload-slave", normal, "../x", b}).exit_code, 2);
  for (const char* cmd : {"upload-appender", "append", "modify", "truncate", "regenerate",
                          "upload-slave"}) {
    auto help = Depot({cmd, "--help"});
    EXPECT_EQ(help.exit_code, 0) << cmd;
    EXPECT_NE(help.out.find("FILE"), std::string::npos) << cmd;
  }
}

TEST_F(CliTest, StatusJsonListsMembers) {
  auto st = Depot({"status", "--json"});
  ASSERT_EQ(st.exit_code, 0) << st.err;
  auto j = nlohmann::json::parse(st.out);
  ASSERT_EQ(j["groups"].size(), 1u);
  EXPECT_EQ(j["groups"][0]["members"][0]["state"], "ACTIVE");
}

TEST_F(CliTest, TwoGiBTransferStaysUnder64MiBRss) {
  std::string src = cluster_->dir() + "/2g.bin", dst = cluster_->dir() + "/2g.out";
  ASSERT_TRUE(WritePatternFile(src, 2ULL << 30, 99).ok());
  auto up = Depot({"upload", src});
  ASSERT_EQ(up.exit_code, 0) << up.err;
  std::string id = up.out.substr(0, up.out.find('\n'));
  auto down = Depot({"download", id, "-o", dst});
  ASSERT_EQ(down.exit_code, 0) << down.err;
  EXPECT_TRUE(FilesEqual(src, dst));
  long storaged_kb = cluster_->storage(0, 0).PeakRssKb();
  std::printf("peak RSS: depot upload %ld KiB, depot download %ld KiB, depot-storaged %ld KiB\n",
              up.max_rss_kb, down.max_rss_kb, storaged_kb);
  EXPECT_LT(up.max_rss_kb, 64 * 1024);
  EXPECT_LT(down.max_rss_kb, 64 * 1024);
  EXPECT_GT(storaged_kb, 0);
  EXPECT_LT(storaged_kb, 64 * 1024);
}

}  // namespace
}  // namespace depot::testing
