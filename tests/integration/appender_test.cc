// Appender and slave files against real daemons: every operation through libdepot and through
// frames built by hand from doc/protocol.md (24, 34, 36, 38, 21, 23, 22), FastDFS's error statuses,
// serialised concurrent appends, replication of every change to the second member (and fsck
// --verify finding them equal), and a 1 GiB chunked upload resumed after kill -9 of the storage.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>

#include <atomic>
#include <set>
#include <thread>

#include "common/base/hash.h"
#include "common/proto/file_id.h"
#include "tests/harness/harness.h"
#include "tests/integration/raw_wire.h"
#include "tests/integration/replication_util.h"

namespace depot::testing {
namespace {

using wire::Frame;
using wire::GetU64;
using wire::IsError;
using wire::IsOk;
using wire::Pad;
using wire::Raw;
using wire::RawReply;
using wire::U64;

constexpr uint8_t kUploadSlave = 21, kQueryInfo = 22, kUploadAppender = 23, kAppend = 24,
                  kModify = 34, kTruncate = 36, kRegenerate = 38, kUpload = 11, kDownload = 14;

UploadOptions Ext(const std::string& ext) {
  UploadOptions o;
  o.ext = ext;
  return o;
}

ClusterOptions Opts(int per_group, bool durable) {
  ClusterOptions o;
  o.per_group = per_group;
  o.durable_writes = durable;
  return o;
}

std::string Remote(const std::string& file_id) { return file_id.substr(file_id.find('/') + 1); }

class AppenderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = std::make_unique<MiniCluster>(Opts(2, false));
    ASSERT_TRUE(cluster_->Start().ok());
    client_ = cluster_->NewClient();
  }
  Daemon& source() { return cluster_->storage(0, 0); }
  // The member that holds (is the source of) a file ID.
  Daemon& SourceOf(const std::string& file_id) {
    auto id = proto::ParseFileId(file_id);
    EXPECT_TRUE(id.ok());
    for (int m = 0; m < 2; ++m) {
      if (cluster_->StorageIp(0, m) == proto::IpToString(id->fields.source_ip)) {
        return cluster_->storage(0, m);
      }
    }
    ADD_FAILURE() << "no member is the source of " << file_id;
    return source();
  }
  std::string Download(const std::string& id) {
    auto r = client_->DownloadToBuffer(id);
    EXPECT_TRUE(r.ok()) << id << ": " << r.status().ToString();
    return r.ok() ? *r : std::string();
  }
  std::string Converged(const Expected& want) {
    return WaitConverged(GroupMembers(*cluster_, 0, 2), want, 30000);
  }

  std::unique_ptr<MiniCluster> cluster_;
  std::unique_ptr<Client> client_;
};

TEST_F(AppenderTest, ClientAppendModifyTruncateRegenerate) {
  auto id = client_->UploadAppenderBuffer("hello ", Ext("txt"));
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  auto parsed = proto::ParseFileId(*id);
  ASSERT_TRUE(parsed.ok());
  EXPECT_TRUE(parsed->IsAppender());
  EXPECT_EQ(parsed->fields.crc32, Crc32("hello "));

  ASSERT_TRUE(client_->AppendBuffer(*id, "depot\n").ok());
  EXPECT_EQ(Download(*id), "hello depot\n");
  auto info = client_->Info(*id);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->size, 12u);
  EXPECT_EQ(info->crc32, Crc32("hello depot\n"));  // computed now, not the name's

  // fdfs_appender_test's sequence (vector 24): truncate to 6, append, modify at 18.
  ASSERT_TRUE(client_->Truncate(*id, 6).ok());
  EXPECT_EQ(Download(*id), "hello ");
  ASSERT_TRUE(client_->AppendBuffer(*id, "hello depot\n").ok());
  ASSERT_TRUE(client_->ModifyBuffer(*id, 18, "hello depot\n").ok());
  std::string want = "hello hello depot\nhello depot\n";
  EXPECT_EQ(Download(*id), want);
  ASSERT_TRUE(client_->ModifyBuffer(*id, 0, "HELLO").ok());
  want.replace(0, 5, "HELLO");
  EXPECT_EQ(Download(*id), want);
  ASSERT_TRUE(client_->SetMeta(*id, {{"kind", "log"}}, false).ok());

  Expected exp;
  exp.live[*id] = want;
  EXPECT_EQ(Converged(exp), "");

  // Regenerate: a normal file with the content's size and CRC32, the old digits and extension.
  auto fresh = client_->RegenerateAppender(*id);
  ASSERT_TRUE(fresh.ok()) << fresh.status().ToString();
  auto f = proto::ParseFileId(*fresh);
  ASSERT_TRUE(f.ok());
  EXPECT_FALSE(f->IsAppender());
  EXPECT_EQ(proto::SizeFromWord(f->fields.size_word), want.size());
  EXPECT_EQ(f->fields.crc32, Crc32(want));
  EXPECT_EQ(f->name.substr(27), parsed->name.substr(27));
  EXPECT_EQ(Download(*fresh), want);
  auto meta = client_->GetMeta(*fresh);
  ASSERT_TRUE(meta.ok());
  EXPECT_EQ(meta->at("kind"), "log");
  EXPECT_EQ(client_->DownloadToBuffer(*id).status().code(), StatusCode::kNotFound);
  // The new name is a normal file now: no more appends.
  EXPECT_EQ(client_->AppendBuffer(*fresh, "x").code(), StatusCode::kInvalidArgument);

  exp.live.clear();
  exp.live[*fresh] = want;
  exp.deleted.insert(*id);
  EXPECT_EQ(Converged(exp), "");
}

TEST_F(AppenderTest, FastDfsErrorStatuses) {
  auto normal = client_->UploadBuffer("plain", Ext("txt"));
  ASSERT_TRUE(normal.ok());
  auto app = client_->UploadAppenderBuffer("0123456789", {});
  ASSERT_TRUE(app.ok());
  // Through libdepot: InvalidArgument is FastDFS's EINVAL, NotFound ENOENT, AlreadyExists EEXIST.
  EXPECT_EQ(client_->AppendBuffer(*normal, "x").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->ModifyBuffer(*app, 11, "x").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->Truncate(*app, 11).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->Truncate(*normal, 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->RegenerateAppender(*normal).status().code(), StatusCode::kInvalidArgument);
  // A well-formed master ID that does not exist (the real one's fields, another digit suffix).
  std::string missing = *normal;
  missing[missing.size() - 5] = missing[missing.size() - 5] == '0' ? '1' : '0';
  EXPECT_EQ(client_->UploadSlaveBuffer(missing, "_t", "x", {}).status().code(),
            StatusCode::kNotFound);
  ASSERT_TRUE(client_->UploadSlaveBuffer(*normal, "_t", "thumb", {}).ok());
  EXPECT_EQ(client_->UploadSlaveBuffer(*normal, "_t", "again", {}).status().code(),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(client_->UploadSlaveBuffer(*normal, "../x", "x", {}).status().code(),
            StatusCode::kInvalidArgument);
  // Nothing changed.
  EXPECT_EQ(Download(*normal), "plain");
  EXPECT_EQ(Download(*app), "0123456789");
  // Modify at exactly the end is allowed (it appends).
  EXPECT_TRUE(client_->ModifyBuffer(*app, 10, "AB").ok());
  EXPECT_EQ(Download(*app), "0123456789AB");
}

// The frames of doc/protocol.md byte by byte, against the file's source storage.
TEST_F(AppenderTest, HandBuiltFrames) {
  Daemon& st = source();
  Raw c(st.host(), st.port());
  // 23: as 11.
  RawReply up = c.Call(Frame(kUploadAppender, wire::UploadBody(0, "log", "hello ")));
  ASSERT_TRUE(IsOk(up, 16 + 44));
  EXPECT_EQ(wire::Text(up.body.substr(0, 16)), "group1");
  std::string remote = up.body.substr(16);
  std::string file_id = "group1/" + remote;
  auto id = proto::ParseFileId(file_id);
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(id->IsAppender());
  EXPECT_EQ(cluster_->StorageIp(0, 0), proto::IpToString(id->fields.source_ip));

  // 24: name_len + size + name + bytes.
  EXPECT_TRUE(IsOk(c.Call(Frame(kAppend, U64(remote.size()) + U64(6) + remote + "depot\n")), 0));
  // 34: name_len + offset + size + name + bytes.
  EXPECT_TRUE(IsOk(c.Call(Frame(kModify, U64(remote.size()) + U64(0) + U64(5) + remote + "HELLO")),
                   0));
  // 22 of an appender: size now, its mtime, the CRC32 of its content now.
  RawReply info = c.Call(Frame(kQueryInfo, wire::GroupAndName("group1", remote)));
  ASSERT_TRUE(IsOk(info, 40));
  EXPECT_EQ(GetU64(info.body, 0), 12u);
  EXPECT_GE(GetU64(info.body, 8), id->fields.create_time);
  EXPECT_EQ(GetU64(info.body, 16),
            static_cast<uint64_t>(static_cast<int64_t>(static_cast<int32_t>(Crc32("HELLO depot\n")))));
  EXPECT_EQ(wire::Text(info.body.substr(24, 16)), cluster_->StorageIp(0, 0));
  // 36: name_len + new size + name.
  EXPECT_TRUE(IsOk(c.Call(Frame(kTruncate, U64(remote.size()) + U64(5) + remote)), 0));
  RawReply dl = c.Call(Frame(kDownload, wire::DownloadBody(0, 0, "group1", remote)));
  ASSERT_TRUE(IsOk(dl, 5));
  EXPECT_EQ(dl.body, "HELLO");

  // The errors, each with FastDFS's status, the connection still usable afterwards.
  RawReply normal = c.Call(Frame(kUpload, wire::UploadBody(0, "txt", "plain")));
  ASSERT_TRUE(IsOk(normal, 16 + 44));
  std::string nremote = normal.body.substr(16);
  EXPECT_TRUE(IsError(c.Call(Frame(kAppend, U64(nremote.size()) + U64(1) + nremote + "x")), 22));
  EXPECT_TRUE(IsError(c.Call(Frame(kModify, U64(remote.size()) + U64(6) + U64(1) + remote + "x")),
                      22));  // offset 6 > size 5
  EXPECT_TRUE(IsError(c.Call(Frame(kTruncate, U64(remote.size()) + U64(6) + remote)), 22));
  std::string gone = remote;
  gone[gone.size() - 5] = gone[gone.size() - 5] == '0' ? '1' : '0';
  EXPECT_TRUE(IsError(c.Call(Frame(kAppend, U64(gone.size()) + U64(1) + gone + "x")), 2));
  // 21: master_len + size + prefix16 + ext6 + master + bytes.
  auto slave_body = [](const std::string& master, const std::string& prefix, const std::string& ext,
                       const std::string& data) {
    return U64(master.size()) + U64(data.size()) + Pad(prefix, 16) + Pad(ext, 6) + master + data;
  };
  std::string ngone = nremote;
  ngone[ngone.size() - 5] = ngone[ngone.size() - 5] == '0' ? '1' : '0';
  EXPECT_TRUE(IsError(c.Call(Frame(kUploadSlave, slave_body(ngone, "_s", "", "thumb"))), 2));
  RawReply sl = c.Call(Frame(kUploadSlave, slave_body(nremote, "_150x150", "jpg", "thumb")));
  size_t dot = nremote.rfind('.');
  std::string want_slave = nremote.substr(0, dot) + "_150x150.jpg";
  ASSERT_TRUE(IsOk(sl, 16 + want_slave.size()));
  EXPECT_EQ(sl.body.substr(16), want_slave);
  auto slave_id = SlaveFileId("group1/" + nremote, "_150x150", "jpg");
  ASSERT_TRUE(slave_id.ok());
  EXPECT_EQ(*slave_id, "group1/" + want_slave);
  EXPECT_TRUE(IsError(c.Call(Frame(kUploadSlave, slave_body(nremote, "_150x150", "jpg", "x"))), 17));
  EXPECT_TRUE(IsError(c.Call(Frame(kUploadSlave, slave_body(nremote, "a/b", "", "x"))), 22));
  EXPECT_TRUE(IsError(c.Call(Frame(kUploadSlave, slave_body(nremote, "", "", "x"))), 22));
  EXPECT_TRUE(IsError(c.Call(Frame(kUploadSlave, slave_body("M00/../../etc/passwd_xxxxxxxxxxxxxxxxxxxxxxxxx", "_a", "", "x"))), 22));
  // Slave info: its own size and CRC32 (its name carries the master's).
  RawReply sinfo = c.Call(Frame(kQueryInfo, wire::GroupAndName("group1", want_slave)));
  ASSERT_TRUE(IsOk(sinfo, 40));
  EXPECT_EQ(GetU64(sinfo.body, 0), 5u);
  EXPECT_EQ(static_cast<uint32_t>(GetU64(sinfo.body, 16)), Crc32("thumb"));
  // A slave without an extension takes the master's.
  RawReply sl2 = c.Call(Frame(kUploadSlave, slave_body(nremote, "-m", "", "m")));
  ASSERT_TRUE(IsOk(sl2, 16 + nremote.size() + 2));
  EXPECT_EQ(sl2.body.substr(16), nremote.substr(0, dot) + "-m.txt");

  // 38: the bare name; the reply is group + new name.
  RawReply rg = c.Call(Frame(kRegenerate, remote));
  ASSERT_TRUE(IsOk(rg, 16 + 44));
  std::string fresh = rg.body.substr(16);
  EXPECT_EQ(fresh.substr(0, 10), remote.substr(0, 10));
  EXPECT_EQ(fresh.substr(37), remote.substr(37));
  EXPECT_TRUE(IsError(c.Call(Frame(kRegenerate, remote)), 2));  // the appender name is gone
  EXPECT_TRUE(IsError(c.Call(Frame(kRegenerate, nremote)), 22));
  RawReply dl2 = c.Call(Frame(kDownload, wire::DownloadBody(0, 0, "group1", fresh)));
  ASSERT_TRUE(IsOk(dl2, 5));
  EXPECT_EQ(dl2.body, "HELLO");

  Expected exp;
  exp.live["group1/" + fresh] = "HELLO";
  exp.live["group1/" + want_slave] = "thumb";
  exp.live["group1/" + nremote.substr(0, dot) + "-m.txt"] = "m";
  exp.deleted.insert(file_id);
  EXPECT_EQ(Converged(exp), "");
}

// 8 clients append 24 records each to one file at once: every record lands whole, once, and
// every member ends with the same bytes.
TEST_F(AppenderTest, ConcurrentAppendsAreSerialised) {
  auto id = client_->UploadAppenderBuffer("", {});
  ASSERT_TRUE(id.ok());
  constexpr int kThreads = 8, kEach = 24;
  constexpr size_t kRecord = 3000;  // not a power of two: interleaved writes would show
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto c = cluster_->NewClient();
      for (int i = 0; i < kEach; ++i) {
        std::string rec(kRecord, static_cast<char>('A' + t));
        std::string tag = std::to_string(t) + ":" + std::to_string(i) + ";";
        rec.replace(0, tag.size(), tag);
        if (!c->AppendBuffer(*id, rec).ok()) failures++;
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failures.load(), 0);
  std::string all = Download(*id);
  ASSERT_EQ(all.size(), kThreads * kEach * kRecord);
  std::set<std::string> seen;
  for (size_t at = 0; at < all.size(); at += kRecord) {
    std::string rec = all.substr(at, kRecord);
    size_t semi = rec.find(';');
    ASSERT_NE(semi, std::string::npos) << "record at " << at << " is torn";
    int t = std::atoi(rec.c_str());
    ASSERT_TRUE(t >= 0 && t < kThreads);
    EXPECT_EQ(rec.find_first_not_of(static_cast<char>('A' + t), semi + 1), std::string::npos)
        << "record at " << at << " mixes writers";
    EXPECT_TRUE(seen.insert(rec.substr(0, semi)).second) << "record twice: " << rec.substr(0, semi);
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kThreads * kEach));
  Expected exp;
  exp.live[*id] = all;
  EXPECT_EQ(Converged(exp), "");
}

// Every kind of change reaches the other member, and fsck --verify compares the content of
// appender and slave files (their names do not pin it): equal after replication, a member whose
// copy was changed behind Depot's back is found and repaired from the source.
TEST_F(AppenderTest, ReplicatedAndCheckedByFsck) {
  std::string big = PatternBytes(3 << 20, 7);
  auto id = client_->UploadAppenderBuffer(big.substr(0, 1 << 20), Ext("bin"));
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(client_->AppendBuffer(*id, big.substr(1 << 20)).ok());
  ASSERT_TRUE(client_->ModifyBuffer(*id, 100, "patched").ok());
  big.replace(100, 7, "patched");
  ASSERT_TRUE(client_->Truncate(*id, big.size() - 1000).ok());
  big.resize(big.size() - 1000);
  ASSERT_TRUE(client_->AppendBuffer(*id, "tail").ok());
  big += "tail";
  auto master = client_->UploadBuffer("master bytes", Ext("jpg"));
  ASSERT_TRUE(master.ok());
  auto slave = client_->UploadSlaveBuffer(*master, "_small", "thumb bytes", {});
  ASSERT_TRUE(slave.ok()) << slave.status().ToString();
  EXPECT_EQ(*slave, *SlaveFileId(*master, "_small"));
  Expected exp;
  exp.live[*id] = big;
  exp.live[*master] = "master bytes";
  exp.live[*slave] = "thumb bytes";
  ASSERT_EQ(Converged(exp), "");

  ClientOptions o = cluster_->ClientOpts();
  o.cluster_secret = cluster_->secret();
  auto admin = Client::Create(o);
  ASSERT_TRUE(admin.ok());
  auto report = (*admin)->Fsck({.group = "group1", .verify = true});
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_TRUE(report->clean()) << report->problems.size() << " problems";
  EXPECT_EQ(report->files, 3);

  // Change the other member's copy in place (same size): only --verify's CRC32 can see it.
  Daemon& src = SourceOf(*id);
  int other = &src == &cluster_->storage(0, 0) ? 1 : 0;
  auto pid = proto::ParseFileId(*id);
  std::string path = cluster_->StorePath(0, other, 0) + "/" + pid->RelativePath();
  {
    FILE* f = std::fopen(path.c_str(), "r+b");
    ASSERT_NE(f, nullptr) << path;
    std::fseek(f, 5000, SEEK_SET);
    std::fputs("XXXX", f);
    std::fclose(f);
  }
  auto bad = (*admin)->Fsck({.group = "group1", .verify = true});
  ASSERT_TRUE(bad.ok());
  ASSERT_EQ(bad->problems.size(), 1u);
  EXPECT_EQ(bad->problems[0].kind, "corrupt");
  EXPECT_EQ(bad->problems[0].file_id, *id);
  auto fixed = (*admin)->Fsck({.group = "group1", .repair = true, .verify = true});
  ASSERT_TRUE(fixed.ok());
  EXPECT_TRUE(fixed->clean());
  EXPECT_EQ(Converged(exp), "");
}

// Regression (review of issue 5): a crash after a truncate's or an append's binlog record but
// before the file changed must leave every member with what the source keeps. The pushes send
// the file's current size (truncate) and current bytes (append), not what the record says.
TEST(AppenderCrashTest, ChangesCutByACrashLeaveEveryMemberTheSame) {
  MiniCluster cluster(Opts(2, true));
  ASSERT_TRUE(cluster.Start().ok());
  auto client = cluster.NewClient();
  auto id = client->UploadAppenderBuffer("0123456789", {});
  ASSERT_TRUE(id.ok());
  auto members = GroupMembers(cluster, 0, 2);
  Expected exp;
  exp.live[*id] = "0123456789";
  ASSERT_EQ(WaitConverged(members, exp, 30000), "");
  auto parsed = proto::ParseFileId(*id);
  int src = cluster.StorageIp(0, 0) == proto::IpToString(parsed->fields.source_ip) ? 0 : 1;
  Daemon& source = cluster.storage(0, src);
  auto crash_at = [&](const char* point) {
    source.Stop();
    source.set_wrapper({"/usr/bin/env", std::string("DEPOT_CRASH_POINT=") + point});
    ASSERT_TRUE(source.Start().ok());
    ASSERT_TRUE(cluster.WaitAllActive().ok());
  };
  auto restart = [&] {
    ASSERT_TRUE(WaitFor([&] { return !source.Running(); }, 10000)) << "no crash";
    source.set_wrapper({});
    ASSERT_TRUE(source.Start().ok());
    ASSERT_TRUE(cluster.WaitAllActive().ok());
  };

  crash_at("truncate-recorded");
  EXPECT_FALSE(client->Truncate(*id, 4).ok());
  restart();
  EXPECT_EQ(WaitConverged(members, exp, 30000), "") << "a peer cut what the source kept";
  // A later truncate to another size: its record is pushed after the crashed one, so the end
  // state shows whether the crashed record cut a peer (to 4, then "grown" to 8 with zeros).
  ASSERT_TRUE(client->Truncate(*id, 8).ok());
  exp.live[*id] = "01234567";
  EXPECT_EQ(WaitConverged(members, exp, 30000), "") << "a peer cut what the source kept";
  ASSERT_TRUE(client->Truncate(*id, 4).ok());
  exp.live[*id] = "0123";
  EXPECT_EQ(WaitConverged(members, exp, 30000), "");

  crash_at("append-recorded");
  EXPECT_FALSE(client->AppendBuffer(*id, "XYZ").ok());
  restart();
  EXPECT_EQ(WaitConverged(members, exp, 30000), "");
  auto info = client->Info(*id);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->size, 4u);  // the client resumes from here
  ASSERT_TRUE(client->AppendBuffer(*id, "XYZ").ok());
  exp.live[*id] = "0123XYZ";
  EXPECT_EQ(WaitConverged(members, exp, 30000), "");
}

// Done-means 2: 1 GiB through 64 appends of 16 MiB with durable writes; the storage is killed
// with -9 in the middle of chunk 31; the client resumes from the size `info` reports.
TEST(AppenderResumeTest, OneGiBChunkedUploadSurvivesKillNine) {
  MiniCluster cluster(Opts(1, true));
  ASSERT_TRUE(cluster.Start().ok());
  constexpr uint64_t kChunk = 16ULL << 20, kChunks = 64;
  std::string local = cluster.dir() + "/source.bin";
  ASSERT_TRUE(WritePatternFile(local, kChunk * kChunks, 42).ok());
  int fd = open(local.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  auto read_chunk = [&](uint64_t i) {
    std::string buf(kChunk, '\0');
    EXPECT_EQ(pread(fd, buf.data(), kChunk, static_cast<off_t>(i * kChunk)),
              static_cast<ssize_t>(kChunk));
    return buf;
  };
  auto client = cluster.NewClient();
  auto id = client->UploadAppenderBuffer("", Ext("bin"));
  ASSERT_TRUE(id.ok());
  for (uint64_t i = 0; i < 30; ++i) {
    ASSERT_TRUE(client->AppendBuffer(*id, read_chunk(i)).ok()) << "chunk " << i;
  }
  // Chunk 31 (index 30): half its bytes, then kill -9.
  {
    Daemon& st = cluster.storage(0, 0);
    Raw c(st.host(), st.port());
    std::string remote = Remote(*id);
    std::string chunk = read_chunk(30);
    ASSERT_TRUE(c.Send(wire::Header(16 + remote.size() + kChunk, kAppend) + U64(remote.size()) +
                       U64(kChunk) + remote + chunk.substr(0, kChunk / 2)));
    st.Kill9();
  }
  ASSERT_TRUE(cluster.storage(0, 0).Start().ok());
  ASSERT_TRUE(cluster.WaitAllActive().ok());
  auto info = client->Info(*id);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  ASSERT_EQ(info->size, 30 * kChunk) << "an acknowledged append was lost or a partial one shows";
  for (uint64_t i = info->size / kChunk; i < kChunks; ++i) {
    ASSERT_TRUE(client->AppendBuffer(*id, read_chunk(i)).ok()) << "chunk " << i;
  }
  close(fd);
  std::string back = cluster.dir() + "/back.bin";
  ASSERT_TRUE(client->DownloadToFile(*id, back).ok());
  EXPECT_TRUE(FilesEqual(local, back));
  auto final_info = client->Info(*id);
  ASSERT_TRUE(final_info.ok());
  EXPECT_EQ(final_info->size, kChunk * kChunks);
}

}  // namespace
}  // namespace depot::testing
