// The wire protocol as doc/protocol.md describes it, checked byte by byte against real
// depot-trackerd and depot-storaged: every request frame is built by hand from the document
// (tests/integration/raw_wire.h), every reply is taken apart field by field. The second half
// replays requests recorded from a real FastDFS 6.16.1 cluster (shared/fastdfs-vectors) and
// checks that Depot answers with the same layout and status.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>

#include "common/base/hash.h"
#include "common/proto/file_id.h"
#include "tests/harness/harness.h"
#include "tests/integration/raw_wire.h"

namespace depot::testing {
namespace {

using namespace std::string_literals;
using wire::Frame;
using wire::GetU32;
using wire::GetU64;
using wire::IsError;
using wire::IsOk;
using wire::Pad;
using wire::Raw;
using wire::RawReply;

constexpr uint8_t kUpload = 11, kDelete = 12, kSetMeta = 13, kDownload = 14, kGetMeta = 15,
                  kFileInfo = 22, kQuit = 82, kListOne = 90, kListGroups = 91, kListStorages = 92,
                  kStoreOne = 101, kFetchOne = 102, kUpdate = 103, kStoreInGroup = 104,
                  kFetchAll = 105, kStoreAll = 106, kStoreAllInGroup = 107, kActiveTest = 111,
                  kChallenge = 200, kProof = 201, kJoin = 210, kHeartbeat = 211,
                  kUploadAppender = 23;

const std::string kHello = "hello depot\n";  // crc32 0x8277373a (vectors 01, 05)

class ProtocolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = std::make_unique<MiniCluster>();
    ASSERT_TRUE(cluster_->Start().ok());
  }
  void TearDown() override {
    EXPECT_TRUE(cluster_->tracker(0).Running());
    EXPECT_TRUE(cluster_->storage(0, 0).Running());
  }
  int tracker_port() { return cluster_->tracker(0).port(); }
  int storage_port() { return cluster_->storage(0, 0).port(); }

  // Upload (11) on `c`; returns the remote name ("M00/XX/YY/name"), empty on failure.
  std::string Upload(Raw& c, std::string_view data, std::string_view ext = "txt") {
    RawReply r = c.Call(Frame(kUpload, wire::UploadBody(0, ext, data)));
    EXPECT_TRUE(IsOk(r, 16 + 44));
    if (!r.ok || r.body.size() != 60) return "";
    EXPECT_EQ(r.body.substr(0, 16), Pad("group1", 16));
    return r.body.substr(16);
  }
  RawReply Download(Raw& c, uint64_t offset, uint64_t length, std::string_view remote,
                    std::string_view group = "group1") {
    return c.Call(Frame(kDownload, wire::DownloadBody(offset, length, group, remote)));
  }

  std::unique_ptr<MiniCluster> cluster_;
};

// Checks a 39-byte target (group16 + ip15 + port8) or 40-byte one (+ store path index).
void ExpectTarget(const RawReply& r, size_t len, int port) {
  ASSERT_TRUE(IsOk(r, len));
  EXPECT_EQ(r.body.substr(0, 16), Pad("group1", 16));
  EXPECT_EQ(r.body.substr(16, 15), Pad("127.0.0.1", 15));
  EXPECT_EQ(GetU64(r.body, 31), static_cast<uint64_t>(port));
  if (len == 40) EXPECT_EQ(r.body[39], '\0');  // one store path: index 0
}

TEST_F(ProtocolTest, QueryStoreRepliesGroupIpPortAndPathIndex) {
  Raw t(tracker_port());
  ExpectTarget(t.Call(Frame(kStoreOne, "")), 40, storage_port());
  ExpectTarget(t.Call(Frame(kStoreInGroup, Pad("group1", 16))), 40, storage_port());
  // One writable server: the "all" forms have the same 40 bytes.
  ExpectTarget(t.Call(Frame(kStoreAll, "")), 40, storage_port());
  ExpectTarget(t.Call(Frame(kStoreAllInGroup, Pad("group1", 16))), 40, storage_port());
  EXPECT_TRUE(IsError(t.Call(Frame(kStoreInGroup, Pad("group9", 16))), 2));
  EXPECT_TRUE(IsError(t.Call(Frame(kStoreInGroup, Pad("grp$", 16))), 22));
  EXPECT_TRUE(IsError(t.Call(Frame(kStoreInGroup, "group1")), 22));  // not 16 bytes
  EXPECT_TRUE(IsError(t.Call(Frame(kStoreOne, "x")), 22));           // must be empty
  EXPECT_TRUE(IsOk(t.Call(Frame(kActiveTest, "")), 0));  // the connection survived them all
}

TEST_F(ProtocolTest, UploadRepliesGroupAndAFileId) {
  Raw s(storage_port());
  int64_t before = UnixSeconds();
  std::string remote = Upload(s, kHello, "txt");
  ASSERT_EQ(remote.size(), 44u);
  auto id = proto::ParseRemoteName("group1", remote);
  ASSERT_TRUE(id.ok()) << remote << ": " << id.status().ToString();
  EXPECT_EQ(remote.substr(0, 4), "M00/");
  EXPECT_EQ(remote.substr(remote.size() - 4), ".txt");
  EXPECT_EQ(id->fields.source_ip, 0x7f000001u);
  EXPECT_EQ(id->fields.crc32, 0x8277373au);
  EXPECT_EQ(proto::SizeFromWord(id->fields.size_word), kHello.size());
  EXPECT_TRUE(id->IsMarked());
  EXPECT_FALSE(id->IsAppender());
  EXPECT_GE(static_cast<int64_t>(id->fields.create_time), before - 1);
  EXPECT_LE(static_cast<int64_t>(id->fields.create_time), UnixSeconds() + 1);
  // No extension: 7 digits instead of digits + ".ext"; 0xFF lets the storage pick the path.
  RawReply r = s.Call(Frame(kUpload, wire::UploadBody(0xFF, "", "A")));
  ASSERT_TRUE(IsOk(r, 60));
  std::string bare = r.body.substr(16);
  EXPECT_EQ(bare.find('.'), std::string::npos) << bare;
  ASSERT_TRUE(proto::ParseRemoteName("group1", bare).ok()) << bare;
  // The file is where the ID says: <store path>/data/XX/YY/name.
  std::ifstream on_disk(cluster_->StorePath(0, 0, 0) + "/data/" + remote.substr(4));
  std::string content((std::istreambuf_iterator<char>(on_disk)), {});
  EXPECT_EQ(content, kHello);
}

TEST_F(ProtocolTest, DownloadWholeRangedAndEdges) {
  Raw s(storage_port());
  std::string remote = Upload(s, kHello);
  ASSERT_FALSE(remote.empty());
  RawReply r = Download(s, 0, 0, remote);  // length 0: to the end
  ASSERT_TRUE(IsOk(r, 12));
  EXPECT_EQ(r.body, kHello);
  r = Download(s, 6, 5, remote);  // vector 08
  ASSERT_TRUE(IsOk(r, 5));
  EXPECT_EQ(r.body, "depot");
  r = Download(s, 6, 0, remote);
  ASSERT_TRUE(IsOk(r, 6));
  EXPECT_EQ(r.body, "depot\n");
  r = Download(s, 10, 1000, remote);  // past the end: clamped (vector 44)
  ASSERT_TRUE(IsOk(r, 2));
  EXPECT_EQ(r.body, "t\n");
  EXPECT_TRUE(IsError(Download(s, 12, 0, remote), 22));     // offset == size (vector 45)
  EXPECT_TRUE(IsError(Download(s, 13, 1, remote), 22));     // offset past the end
  EXPECT_TRUE(IsError(Download(s, ~0ULL, 0, remote), 22));  // negative as a signed integer
  // A 0-byte file: FastDFS answers 22 (vector 43); Depot sends the empty body.
  std::string empty = Upload(s, "", "txt");
  ASSERT_FALSE(empty.empty());
  EXPECT_TRUE(IsOk(Download(s, 0, 0, empty), 0));
  EXPECT_TRUE(IsOk(Download(s, 0, 5, empty), 0));
  // A well-formed ID that names no file.
  std::string missing = remote.substr(0, 10) + "fwAAAWsJFUqAOD_FAAAADIJ3Nzo492.txt";
  EXPECT_TRUE(IsError(Download(s, 0, 0, missing), 2));
  EXPECT_TRUE(IsError(s.Call(Frame(kDownload, wire::U64(0) + wire::U64(0))), 22));  // too short
  // Larger than the in-memory path (128 KiB): served with sendfile, same bytes.
  std::string big = PatternBytes(300000, 5);
  std::string big_remote = Upload(s, big, "bin");
  r = Download(s, 0, 0, big_remote);
  ASSERT_TRUE(IsOk(r, big.size()));
  EXPECT_TRUE(r.body == big);
  r = Download(s, 1000, 200000, big_remote);
  ASSERT_TRUE(IsOk(r, 200000));
  EXPECT_TRUE(r.body == big.substr(1000, 200000));
}

TEST_F(ProtocolTest, QueryFileInfoHasSignExtendedCrcAnd16ByteIp) {
  Raw s(storage_port());
  std::string remote = Upload(s, kHello);
  ASSERT_FALSE(remote.empty());
  auto id = proto::ParseRemoteName("group1", remote);
  ASSERT_TRUE(id.ok());
  std::string body = wire::GroupAndName("group1", remote);
  RawReply r = s.Call(Frame(kFileInfo, body));
  ASSERT_TRUE(IsOk(r, 40));
  EXPECT_EQ(GetU64(r.body, 0), 12u);
  EXPECT_EQ(GetU64(r.body, 8), id->fields.create_time);
  EXPECT_EQ(r.body.substr(16, 8), "\xff\xff\xff\xff\x82\x77\x37\x3a"s);  // sign-extended
  EXPECT_EQ(r.body.substr(24, 16), Pad("127.0.0.1", 16));
  // Flags in the header's status byte: bit 0 = no CRC (the field is 0); bit 1 only silences logs.
  r = s.Call(Frame(kFileInfo, body, 1));
  ASSERT_TRUE(IsOk(r, 40));
  EXPECT_EQ(GetU64(r.body, 16), 0u);
  EXPECT_EQ(GetU64(r.body, 0), 12u);
  r = s.Call(Frame(kFileInfo, body, 3));  // vector 41
  ASSERT_TRUE(IsOk(r, 40));
  EXPECT_EQ(GetU64(r.body, 16), 0u);
  r = s.Call(Frame(kFileInfo, body, 2));
  ASSERT_TRUE(IsOk(r, 40));
  EXPECT_EQ(GetU64(r.body, 16), 0xffffffff8277373aULL);
  // A CRC below 0x80000000 keeps zero high bytes.
  std::string low;
  for (int i = 0; low.empty() || Crc32(low) >= 0x80000000u; ++i)
    low = "content " + std::to_string(i);
  std::string low_remote = Upload(s, low);
  r = s.Call(Frame(kFileInfo, wire::GroupAndName("group1", low_remote)));
  ASSERT_TRUE(IsOk(r, 40));
  EXPECT_EQ(GetU64(r.body, 16), static_cast<uint64_t>(Crc32(low)));
  // Missing file: 2, with or without the "silent" flag (vector 42).
  std::string missing = remote.substr(0, 10) + "fwAAAWsJFUqAOD_FAAAADIJ3Nzo492.txt";
  EXPECT_TRUE(IsError(s.Call(Frame(kFileInfo, wire::GroupAndName("group1", missing))), 2));
  EXPECT_TRUE(IsError(s.Call(Frame(kFileInfo, wire::GroupAndName("group1", missing), 2)), 2));
}

TEST_F(ProtocolTest, DeleteThenDeleteAgainIsNotFound) {
  Raw s(storage_port());
  std::string remote = Upload(s, "short-lived");
  ASSERT_FALSE(remote.empty());
  std::string body = wire::GroupAndName("group1", remote);
  EXPECT_TRUE(IsOk(s.Call(Frame(kDelete, body)), 0));
  EXPECT_TRUE(IsError(s.Call(Frame(kDelete, body)), 2));  // vector 28
  EXPECT_TRUE(IsError(Download(s, 0, 0, remote), 2));     // vector 27
  EXPECT_TRUE(IsError(s.Call(Frame(kFileInfo, body)), 2));
}

TEST_F(ProtocolTest, MetadataOverwriteMergeAndGet) {
  Raw s(storage_port());
  std::string remote = Upload(s, "picture");
  ASSERT_FALSE(remote.empty());
  std::string get = wire::GroupAndName("group1", remote);
  // No metadata yet: 2 (vector 19).
  EXPECT_TRUE(IsError(s.Call(Frame(kGetMeta, get)), 2));
  // 'O': the set is replaced; the reply to get is sorted by key.
  std::string meta =
      "width\x02"
      "1024\x01"
      "height\x02"
      "768"s;
  EXPECT_TRUE(IsOk(s.Call(Frame(kSetMeta, wire::SetMetaBody('O', "group1", remote, meta))), 0));
  RawReply r = s.Call(Frame(kGetMeta, get));
  ASSERT_TRUE(IsOk(r, meta.size()));
  EXPECT_EQ(r.body,
            "height\x02"
            "768\x01"
            "width\x02"
            "1024"s);
  // 'M': updates and adds.
  std::string merge =
      "width\x02"
      "800\x01"
      "author\x02"
      "ann"s;
  EXPECT_TRUE(IsOk(s.Call(Frame(kSetMeta, wire::SetMetaBody('M', "group1", remote, merge))), 0));
  r = s.Call(Frame(kGetMeta, get));
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.body,
            "author\x02"
            "ann\x01"
            "height\x02"
            "768\x01"
            "width\x02"
            "800"s);
  // 'O' again: only the new set is left.
  EXPECT_TRUE(
      IsOk(s.Call(Frame(kSetMeta, wire::SetMetaBody('O', "group1", remote, "k\x02v"s))), 0));
  r = s.Call(Frame(kGetMeta, get));
  ASSERT_TRUE(IsOk(r, 3));
  EXPECT_EQ(r.body, "k\x02v"s);
  // 'O' with no records removes the metadata.
  EXPECT_TRUE(IsOk(s.Call(Frame(kSetMeta, wire::SetMetaBody('O', "group1", remote, ""))), 0));
  EXPECT_TRUE(IsError(s.Call(Frame(kGetMeta, get)), 2));
  // A flag other than 'O'/'M', and lengths that disagree with the body: 22.
  EXPECT_TRUE(
      IsError(s.Call(Frame(kSetMeta, wire::SetMetaBody('X', "group1", remote, "k\x02v"s))), 22));
  std::string lying = wire::SetMetaBody('O', "group1", remote, "k\x02v"s);
  lying[15] = 9;  // meta_len 9, only 3 bytes follow
  EXPECT_TRUE(IsError(s.Call(Frame(kSetMeta, lying)), 22));
  // Metadata of a missing file: 2.
  std::string missing = remote.substr(0, 10) + "fwAAAWsJFUqAOD_FAAAADIJ3Nzo492.txt";
  EXPECT_TRUE(
      IsError(s.Call(Frame(kSetMeta, wire::SetMetaBody('O', "group1", missing, "k\x02v"s))), 2));
  EXPECT_TRUE(IsError(s.Call(Frame(kGetMeta, wire::GroupAndName("group1", missing))), 2));
  // Deleting the file removes its metadata with it.
  EXPECT_TRUE(
      IsOk(s.Call(Frame(kSetMeta, wire::SetMetaBody('O', "group1", remote, "k\x02v"s))), 0));
  EXPECT_TRUE(IsOk(s.Call(Frame(kDelete, get)), 0));
  EXPECT_TRUE(IsError(s.Call(Frame(kGetMeta, get)), 2));
}

TEST_F(ProtocolTest, QueryFetchAndUpdate) {
  Raw s(storage_port());
  std::string remote = Upload(s, kHello);
  ASSERT_FALSE(remote.empty());
  Raw t(tracker_port());
  std::string body = wire::GroupAndName("group1", remote);
  ExpectTarget(t.Call(Frame(kFetchOne, body)), 39, storage_port());
  ExpectTarget(t.Call(Frame(kUpdate, body)), 39, storage_port());
  ExpectTarget(t.Call(Frame(kFetchAll, body)), 39, storage_port());  // one server
  // The tracker does not know files: any well-formed name of an existing group is answered.
  std::string other = "M00/00/00/fwAAAWsJFUqAOD_FAAAADIJ3Nzo492.txt";
  ExpectTarget(t.Call(Frame(kFetchOne, wire::GroupAndName("group1", other))), 39, storage_port());
  EXPECT_TRUE(IsError(t.Call(Frame(kFetchOne, wire::GroupAndName("group9", remote))), 2));
  EXPECT_TRUE(IsError(t.Call(Frame(kUpdate, wire::GroupAndName("group9", remote))), 2));
  EXPECT_TRUE(
      IsError(t.Call(Frame(kFetchOne, wire::GroupAndName("group1", "M00/1F/38/short.txt"))), 22));
  EXPECT_TRUE(IsError(t.Call(Frame(kFetchAll, Pad("group1", 16))), 22));  // no name at all
  EXPECT_TRUE(IsOk(t.Call(Frame(kActiveTest, "")), 0));
}

TEST_F(ProtocolTest, ListGroupsAndStoragesRecords) {
  Raw s(storage_port());
  ASSERT_FALSE(Upload(s, kHello).empty());
  Raw t(tracker_port());
  RawReply r = t.Call(Frame(kListGroups, ""));
  ASSERT_TRUE(IsOk(r, 113));
  const std::string& g = r.body;
  EXPECT_EQ(g.substr(0, 17), Pad("group1", 17));
  EXPECT_GT(GetU64(g, 17), 0u);             // total_mb
  EXPECT_LE(GetU64(g, 25), GetU64(g, 17));  // free_mb <= total_mb
  EXPECT_EQ(GetU64(g, 41), 0u);             // trunk_free_mb
  EXPECT_EQ(GetU64(g, 49), 1u);             // storage_count
  EXPECT_EQ(GetU64(g, 57), static_cast<uint64_t>(storage_port()));
  EXPECT_EQ(GetU64(g, 65), 1u);      // readable
  EXPECT_EQ(GetU64(g, 73), 1u);      // writable
  EXPECT_EQ(GetU64(g, 89), 1u);      // store_path_count
  EXPECT_EQ(GetU64(g, 97), 256u);    // subdir_count_per_path
  EXPECT_EQ(GetU64(g, 105), ~0ULL);  // current_trunk_file_id -1
  RawReply one = t.Call(Frame(kListOne, Pad("group1", 16)));
  ASSERT_TRUE(IsOk(one, 113));
  EXPECT_EQ(one.body.substr(0, 17), g.substr(0, 17));
  EXPECT_EQ(one.body.substr(41, 72), g.substr(41, 72));
  EXPECT_TRUE(IsError(t.Call(Frame(kListOne, Pad("group9", 16))), 2));
  EXPECT_TRUE(IsError(t.Call(Frame(kListOne, "")), 22));

  // The storage's counters reach the tracker with the next heartbeat.
  RawReply st;
  ASSERT_TRUE(WaitFor(
      [&] {
        st = t.Call(Frame(kListStorages, Pad("group1", 16)));
        return st.ok && st.body.size() == 487 && GetU64(st.body, 150) >= 1;
      },
      10000));
  ASSERT_TRUE(IsOk(st, 487));
  const std::string& m = st.body;
  EXPECT_EQ(m[0], 7);  // ACTIVE
  EXPECT_EQ(m[1], 6);  // read and write
  std::string id = wire::Text(m.substr(2, 16));
  EXPECT_EQ(id, "127.0.0.1:" + std::to_string(storage_port()));
  EXPECT_EQ(m.substr(18, 16), Pad("127.0.0.1", 16));
  EXPECT_FALSE(wire::Text(m.substr(50, 8)).empty());  // version
  EXPECT_GT(GetU64(m, 58), 0u);                       // join_time
  EXPECT_GE(GetU64(m, 66), GetU64(m, 58));            // up_time >= join_time
  EXPECT_GT(GetU64(m, 74), 0u);                       // total_mb
  EXPECT_EQ(GetU64(m, 98), 10u);                      // upload_priority
  EXPECT_EQ(GetU64(m, 106), 1u);                      // store_path_count
  EXPECT_EQ(GetU64(m, 114), 256u);                    // subdir_count_per_path
  EXPECT_EQ(GetU64(m, 130), static_cast<uint64_t>(storage_port()));
  EXPECT_GE(GetU64(m, 158), 1u);             // success_upload_count
  EXPECT_GE(GetU64(m, 310), kHello.size());  // total_upload_bytes
  EXPECT_GT(GetU64(m, 454), 0u);             // last_source_update
  EXPECT_GT(GetU64(m, 478), 0u);             // last_heart_beat_time
  EXPECT_EQ(m[486], 0);                      // if_trunk_server
  // Optional storage id after the group: that server only; an unknown one is 2.
  r = t.Call(Frame(kListStorages, Pad("group1", 16) + id));
  ASSERT_TRUE(IsOk(r, 487));
  EXPECT_TRUE(IsError(t.Call(Frame(kListStorages, Pad("group1", 16) + "10.9.9.9:1")), 2));
  EXPECT_TRUE(IsError(t.Call(Frame(kListStorages, Pad("group9", 16))), 2));
}

TEST_F(ProtocolTest, ActiveTestPersistenceAndQuit) {
  for (int port : {tracker_port(), storage_port()}) {
    Raw c(port);
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(IsOk(c.Call(Frame(kActiveTest, "")), 0));
    // Two requests sent back to back are answered in order.
    ASSERT_TRUE(c.Send(Frame(kActiveTest, "") + Frame(kActiveTest, "")));
    EXPECT_TRUE(IsOk(c.Read(), 0));
    EXPECT_TRUE(IsOk(c.Read(), 0));
    // QUIT: no reply, the server closes.
    ASSERT_TRUE(c.Send(Frame(kQuit, "")));
    EXPECT_TRUE(c.WaitClosed(5000)) << "port " << port;
  }
}

TEST_F(ProtocolTest, InternalHandshakeJoinAndHeartbeat) {
  Raw t(tracker_port());
  RawReply nonce = t.Call(Frame(kChallenge, ""));
  ASSERT_TRUE(IsOk(nonce, 16));
  RawReply nonce2 = t.Call(Frame(kChallenge, ""));  // a new challenge replaces the nonce
  ASSERT_TRUE(IsOk(nonce2, 16));
  EXPECT_NE(nonce.body, nonce2.body);
  std::string proof = HmacSha256(cluster_->secret(), nonce2.body);
  ASSERT_EQ(proof.size(), 32u);
  EXPECT_TRUE(IsOk(t.Call(Frame(kProof, proof)), 0));
  // A storage joins: JSON in, {"id": ...} out.
  std::string join =
      R"({"group":"group7","ip":"127.0.0.9","port":4321,"http_port":8080,"store_path_count":1,)"
      R"("subdir_count":256,"upload_priority":10,"version":"test","join_time":1,"up_time":2})";
  RawReply r = t.Call(Frame(kJoin, join));
  ASSERT_TRUE(r.ok);
  ASSERT_EQ(r.status, 0);
  EXPECT_EQ(r.body, R"({"id":"127.0.0.9:4321"})");
  std::string hb =
      R"({"id":"127.0.0.9:4321","paths":[{"total_mb":1000,"free_mb":900}],"reserved_mb":10,)"
      R"("current_write_path":0,"last_source_update":0})";
  r = t.Call(Frame(kHeartbeat, hb));
  ASSERT_TRUE(r.ok);
  ASSERT_EQ(r.status, 0);
  EXPECT_EQ(r.body,
            R"({"peers":[{"http_port":8080,"id":"127.0.0.9:4321","ip":"127.0.0.9","port":4321,)"
            R"("state":7}]})");
  // The new group is now listed (two 113-byte records).
  Raw t2(tracker_port());
  r = t2.Call(Frame(kListGroups, ""));
  ASSERT_TRUE(IsOk(r, 226));
  EXPECT_EQ(r.body.substr(113, 17), Pad("group7", 17));
  // Bad bodies: 22, the connection stays.
  EXPECT_TRUE(IsError(t.Call(Frame(kJoin, "not json")), 22));
  EXPECT_TRUE(IsError(t.Call(Frame(kJoin, R"({"group":"group7"})")), 22));
  std::string bad_port = join;
  bad_port.replace(bad_port.find("4321"), 4, "0");
  EXPECT_TRUE(IsError(t.Call(Frame(kJoin, bad_port)), 22));
  EXPECT_TRUE(IsError(t.Call(Frame(kHeartbeat, "[]")), 22));
  // Unknown member: 2 (join first).
  std::string stranger = hb;
  stranger.replace(stranger.find("4321"), 4, "4322");
  EXPECT_TRUE(IsError(t.Call(Frame(kHeartbeat, stranger)), 2));
  EXPECT_TRUE(IsOk(t.Call(Frame(kActiveTest, "")), 0));
}

// ---------------------------------------------------------------------------------------------
// Replay of the FastDFS 6.16.1 vectors.

struct VectorMessage {
  bool from_client = false;
  bool to_tracker = false;
  int stream = 0;
  std::string bytes;
};

std::string Unhex(std::string_view hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

// The message lines of a vector file, with their stream numbers. Abbreviated lines (bodies over
// 4096 bytes, written with "...") are skipped.
std::vector<VectorMessage> LoadVector(const std::string& name) {
  std::ifstream in(std::string(DEPOT_VECTORS_DIR) + "/" + name);
  EXPECT_TRUE(in.good()) << "cannot read vector " << name;
  std::vector<VectorMessage> out;
  int stream = 0;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# -- stream ", 0) == 0) {
      stream = std::atoi(line.c_str() + 12);
      continue;
    }
    if (line.empty() || line[0] == '#' || line.find("...") != std::string::npos) continue;
    std::istringstream fields(line);
    std::string dir, role, hex;
    fields >> dir >> role >> hex;
    out.push_back({dir == "C>S", role == "tracker", stream, Unhex(hex)});
  }
  return out;
}

// Compares Depot's reply to the recorded one for request command `cmd`: same header command and
// status, same body length, and the same layout; values that vary between runs (ports, times,
// random bits of names) are compared by shape.
void ExpectSameLayout(uint8_t cmd, const std::string& recorded, const RawReply& got, int port,
                      const std::string& where) {
  SCOPED_TRACE(where);
  ASSERT_TRUE(got.ok);
  std::string_view rec_body = std::string_view(recorded).substr(10);
  EXPECT_EQ(got.cmd, static_cast<uint8_t>(recorded[8]));
  ASSERT_EQ(got.status, static_cast<uint8_t>(recorded[9]));
  ASSERT_EQ(got.body.size(), rec_body.size());
  if (got.status != 0 || got.body.empty()) return;
  switch (cmd) {
    case kStoreOne:
    case kStoreInGroup:
    case kStoreAll:
    case kStoreAllInGroup:
    case kFetchOne:
    case kFetchAll:
    case kUpdate:
      EXPECT_EQ(got.body.substr(0, 31), rec_body.substr(0, 31));  // group16 + ip15
      EXPECT_EQ(GetU64(got.body, 31), static_cast<uint64_t>(port));
      if (got.body.size() == 40) EXPECT_EQ(got.body[39], rec_body[39]);  // store path index
      break;
    case kUpload:
    case kUploadAppender: {
      EXPECT_EQ(got.body.substr(0, 16), rec_body.substr(0, 16));
      std::string mine = got.body.substr(16), theirs(rec_body.substr(16));
      auto a = proto::ParseRemoteName("group1", mine);
      auto b = proto::ParseRemoteName("group1", theirs);
      ASSERT_TRUE(a.ok()) << mine;
      ASSERT_TRUE(b.ok()) << theirs;
      EXPECT_EQ(mine.substr(0, 4), theirs.substr(0, 4));  // M00/
      EXPECT_EQ(a->fields.source_ip, b->fields.source_ip);
      EXPECT_EQ(a->fields.crc32, b->fields.crc32);
      EXPECT_EQ(proto::SizeFromWord(a->fields.size_word), proto::SizeFromWord(b->fields.size_word));
      EXPECT_EQ(a->IsMarked(), b->IsMarked());
      EXPECT_EQ(a->IsAppender(), b->IsAppender());
      size_t dot_a = mine.rfind('.'), dot_b = theirs.rfind('.');
      EXPECT_EQ(dot_a, dot_b);
      if (dot_a != std::string::npos && dot_b != std::string::npos) {
        EXPECT_EQ(mine.substr(dot_a), theirs.substr(dot_b));
      }
      break;
    }
    default:
      break;
  }
}

// Sends every recorded request of `name` to Depot (one connection per recorded stream) and
// compares each reply with the recorded one. Returns the number of exchanges checked.
int ReplayVector(MiniCluster* cluster, const std::string& name) {
  std::vector<VectorMessage> msgs = LoadVector(name);
  std::map<int, std::unique_ptr<Raw>> conns;
  int checked = 0;
  for (size_t i = 0; i < msgs.size(); ++i) {
    const VectorMessage& req = msgs[i];
    if (!req.from_client) continue;
    const VectorMessage* rec = nullptr;
    for (size_t j = i + 1; j < msgs.size() && rec == nullptr; ++j) {
      if (!msgs[j].from_client && msgs[j].stream == req.stream) rec = &msgs[j];
    }
    if (rec == nullptr) continue;  // reply abbreviated or none
    int port = req.to_tracker ? cluster->tracker(0).port() : cluster->storage(0, 0).port();
    auto& c = conns[req.stream];
    if (!c) c = std::make_unique<Raw>(port);
    RawReply got = c->Call(req.bytes);
    uint8_t cmd = static_cast<uint8_t>(req.bytes[8]);
    ExpectSameLayout(cmd, rec->bytes, got, cluster->storage(0, 0).port(),
                     name + " message " + std::to_string(i) + " (cmd " + std::to_string(cmd) + ")");
    ++checked;
  }
  return checked;
}

TEST_F(ProtocolTest, VectorUploadsGetTheSameLayout) {
  // 101 then 11 each: 12 bytes with ".txt", 0 bytes, 1 byte and 12 bytes without an extension,
  // and a 6-character extension that leaves no room for digits; 101 then 23 (an appender file:
  // the appender bit, the first content's CRC32).
  for (const char* name :
       {"01-query-store-upload.txt", "03-upload-empty.txt", "04-upload-1byte-noext.txt",
        "05-upload-12-noext.txt", "37-upload-6char-ext.txt", "20-upload-appender.txt"}) {
    EXPECT_EQ(ReplayVector(cluster_.get(), name), 2) << name;
  }
}

TEST_F(ProtocolTest, VectorErrorsGetTheSameStatus) {
  // 19: fetch (ok, 39 bytes), get-metadata of a file Depot does not have (2), two ACTIVE_TESTs.
  EXPECT_EQ(ReplayVector(cluster_.get(), "19-getmeta-no-metadata.txt"), 4);
  // 29: fetch (ok), download of a missing file (2).
  EXPECT_EQ(ReplayVector(cluster_.get(), "29-error-nonexistent-fileid.txt"), 2);
  // 30: unknown group at the tracker (2); 31: malformed name at the tracker (22).
  EXPECT_EQ(ReplayVector(cluster_.get(), "30-error-invalid-group.txt"), 1);
  EXPECT_EQ(ReplayVector(cluster_.get(), "31-error-malformed-filename.txt"), 1);
}

}  // namespace
}  // namespace depot::testing
