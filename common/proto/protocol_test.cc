#include "common/proto/protocol.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <string>

#include "common/base/hash.h"
#include "common/proto/stat_records.h"

namespace depot::proto {
namespace {

std::string Unhex(std::string_view hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

TEST(HeaderTest, ExactBytesAndRoundTrip) {
  char buf[kHeaderSize];
  EncodeHeader({27, kStorageUpload, 0}, buf);
  EXPECT_EQ(HexEncode(std::string_view(buf, kHeaderSize)), "000000000000001b0b00");

  FrameHeader h = DecodeHeader(buf);
  EXPECT_EQ(h.body_len, 27u);
  EXPECT_EQ(h.cmd, kStorageUpload);
  EXPECT_EQ(h.status, 0);

  // Big-endian across all eight bytes, and the high bit of every byte survives.
  EncodeHeader({0x0102030405060708ULL, kResponse, 0xFE}, buf);
  EXPECT_EQ(HexEncode(std::string_view(buf, kHeaderSize)), "010203040506070864fe");
  h = DecodeHeader(buf);
  EXPECT_EQ(h.body_len, 0x0102030405060708ULL);
  EXPECT_EQ(h.cmd, kResponse);
  EXPECT_EQ(h.status, 0xFE);

  EncodeHeader({0xFFFFFFFFFFFFFFFFULL, 0xFF, 0xFF}, buf);
  h = DecodeHeader(buf);
  EXPECT_EQ(h.body_len, 0xFFFFFFFFFFFFFFFFULL);
  EXPECT_EQ(h.cmd, 0xFF);
}

TEST(HeaderTest, IntegerHelpersAreBigEndian) {
  char b[8];
  PutU32(b, 0x7f000001);
  EXPECT_EQ(HexEncode(std::string_view(b, 4)), "7f000001");
  EXPECT_EQ(GetU32(b), 0x7f000001u);
  PutU64(b, 40013);
  EXPECT_EQ(HexEncode(std::string_view(b, 8)), "0000000000009c4d");
  EXPECT_EQ(GetU64(b), 40013u);
  std::string out;
  AppendU64(&out, static_cast<uint64_t>(-1));
  EXPECT_EQ(HexEncode(out), "ffffffffffffffff");
}

TEST(FrameTest, EncodeFrame) {
  std::string f = EncodeFrame(kTrackerListGroups, 0, "");
  EXPECT_EQ(HexEncode(f), "00000000000000005b00");

  f = EncodeFrame(kResponse, ENOENT, "abc");
  ASSERT_EQ(f.size(), kHeaderSize + 3);
  EXPECT_EQ(HexEncode(f), "00000000000000036402616263");
  FrameHeader h = DecodeHeader(f.data());
  EXPECT_EQ(h.body_len, 3u);
  EXPECT_EQ(h.status, ENOENT);
  EXPECT_EQ(f.substr(kHeaderSize), "abc");

  std::string body(5000, '\0');
  f = EncodeFrame(kStorageAppend, 0, body);
  EXPECT_EQ(DecodeHeader(f.data()).body_len, 5000u);
  EXPECT_EQ(f.size(), kHeaderSize + 5000);
}

TEST(WireStatusTest, FastDfsErrnoValues) {
  EXPECT_EQ(StatusToWire(Status::OK()), 0);
  EXPECT_EQ(StatusToWire(Status::NotFound("x")), 2);
  EXPECT_EQ(StatusToWire(Status::AlreadyExists("x")), 17);
  EXPECT_EQ(StatusToWire(Status::InvalidArgument("x")), 22);
  EXPECT_EQ(StatusToWire(Status::ResourceExhausted("x")), 28);
  EXPECT_EQ(StatusToWire(Status::Busy("x")), 16);
  EXPECT_EQ(StatusToWire(Status::PermissionDenied("x")), EACCES);
  EXPECT_EQ(StatusToWire(Status::IOError("x")), EIO);
  EXPECT_EQ(StatusToWire(Status::Corruption("x")), EIO);
  EXPECT_EQ(StatusToWire(Status::Internal("x")), EIO);
  // Every error maps to a non-zero byte: an error must never look like success on the wire.
  for (int c = 1; c <= static_cast<int>(StatusCode::kBusy); ++c) {
    EXPECT_NE(StatusToWire(Status(static_cast<StatusCode>(c), "x")), 0) << c;
  }
}

TEST(WireStatusTest, WireToStatus) {
  EXPECT_TRUE(WireToStatus(0, "upload").ok());
  EXPECT_EQ(WireToStatus(2, "download").code(), StatusCode::kNotFound);
  EXPECT_EQ(WireToStatus(17, "x").code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(WireToStatus(22, "x").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(WireToStatus(28, "x").code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(WireToStatus(16, "x").code(), StatusCode::kBusy);
  EXPECT_EQ(WireToStatus(EPERM, "x").code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(WireToStatus(EIO, "x").code(), StatusCode::kIOError);
  EXPECT_EQ(WireToStatus(200, "x").code(), StatusCode::kIOError);  // unknown errno

  Status s = WireToStatus(2, "download group1/M00/00/00/x");
  EXPECT_NE(s.message().find("download group1/M00/00/00/x"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("server status 2"), std::string::npos) << s.message();

  // Codes with a wire value of their own survive the round trip.
  for (StatusCode c :
       {StatusCode::kNotFound, StatusCode::kAlreadyExists, StatusCode::kInvalidArgument,
        StatusCode::kResourceExhausted, StatusCode::kBusy, StatusCode::kPermissionDenied,
        StatusCode::kIOError, StatusCode::kUnavailable, StatusCode::kTimedOut,
        StatusCode::kNotSupported}) {
    EXPECT_EQ(WireToStatus(StatusToWire(Status(c, "x")), "y").code(), c) << StatusCodeName(c);
  }
}

TEST(FixedFieldTest, AppendFixedPadsAndTruncates) {
  std::string out;
  AppendFixed(&out, "group1", kGroupNameLen);
  ASSERT_EQ(out.size(), 16u);
  EXPECT_EQ(HexEncode(out), "67726f75703100000000000000000000");
  AppendFixed(&out, "0123456789abcdefXYZ", kGroupNameLen);
  ASSERT_EQ(out.size(), 32u);
  EXPECT_EQ(out.substr(16), "0123456789abcdef");
  AppendFixed(&out, "", 3);
  EXPECT_EQ(out.substr(32), std::string(3, '\0'));

  EXPECT_EQ(TrimFixed(std::string_view("group1\0\0\0", 9)), "group1");
  EXPECT_EQ(TrimFixed("full"), "full");
  EXPECT_EQ(TrimFixed(std::string_view("\0abc", 4)), "");
  EXPECT_EQ(TrimFixed(std::string_view("ab\0cd", 5)), "ab");
}

// Records captured from FastDFS 6.16.1 (shared/fastdfs-vectors/stat-records.txt, vector 32).
const char kGroupRecordHex[] =
    "67726f75703100000000000000000000000000000000009c4d0000000000008cc10000000000001f42000000"
    "0000000000000000000000000100000000000059d80000000000000001000000000000000100000000000000"
    "0000000000000000010000000000000100ffffffffffffffff";

const char kStorageRecordHex[] =
    "07063132372e302e302e31000000000000003132372e302e302e310000000000000000000000000000000000"
    "000000000000362e31362e310000000000006b0909ac000000006b0915390000000000009c4d000000000000"
    "8cc10000000000001f42000000000000000a0000000000000001000000000000010000000000000000000000"
    "0000000059d80000004000000000000000020000000000120ee40000000000120ee400000000000000020000"
    "0000000000020000000000000001000000000000000100000000000000010000000000000001000000000000"
    "00070000000000000007000000000011c78e000000000011c78e00000000002dd50c00000000002dd50c0000"
    "0000000000040000000000000004000000000000000000000000000000000000000000000000000000000000"
    "000000000007b0e3228300000007b0e3228300000000000000120000000000000012000000000000000c0000"
    "00000000000c00000025dc8a462f00000025dc8a462f00000000000000000000000000000000000000000000"
    "0000000000000000000000000000003fe3ff00000000003fe3ff000000000031532700000000003153270000"
    "000000127a100000000000127a10000000006b09158800000000000000000000000000000000000000006b09"
    "159400";

TEST(StatRecordsTest, DecodesFastDfsGroupRecord) {
  const std::string raw = Unhex(kGroupRecordHex);
  ASSERT_EQ(raw.size(), kGroupStatSize);
  auto r = DecodeGroupStats(raw);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 1u);
  const GroupStat& g = (*r)[0];
  EXPECT_EQ(g.group_name, "group1");
  EXPECT_EQ(g.total_mb, 40013);
  EXPECT_EQ(g.free_mb, 36033);
  EXPECT_EQ(g.reserved_mb, 8002);
  EXPECT_EQ(g.trunk_free_mb, 0);
  EXPECT_EQ(g.storage_count, 1);
  EXPECT_EQ(g.storage_port, 23000);
  EXPECT_EQ(g.readable_count, 1);
  EXPECT_EQ(g.writable_count, 1);
  EXPECT_EQ(g.current_write_server, 0);
  EXPECT_EQ(g.store_path_count, 1);
  EXPECT_EQ(g.subdir_count_per_path, 256);
  EXPECT_EQ(g.current_trunk_file_id, -1);

  std::string again;
  AppendGroupStat(&again, g);
  EXPECT_EQ(HexEncode(again), kGroupRecordHex);
}

TEST(StatRecordsTest, DecodesFastDfsStorageRecord) {
  const std::string raw = Unhex(kStorageRecordHex);
  ASSERT_EQ(raw.size(), kStorageStatSize);
  auto r = DecodeStorageStats(raw);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 1u);
  const StorageStat& s = (*r)[0];
  EXPECT_EQ(s.status, static_cast<uint8_t>(StorageState::kActive));
  EXPECT_EQ(s.status, 7);
  EXPECT_EQ(s.rw_mode, 6);
  EXPECT_EQ(s.id, "127.0.0.1");
  EXPECT_EQ(s.ip, "127.0.0.1");
  EXPECT_EQ(s.src_id, "");
  EXPECT_EQ(s.version, "6.16.1");
  EXPECT_EQ(s.join_time, 1795754412);
  EXPECT_EQ(s.up_time, 1795757369);
  EXPECT_EQ(s.total_mb, 40013);
  EXPECT_EQ(s.free_mb, 36033);
  EXPECT_EQ(s.reserved_mb, 8002);
  EXPECT_EQ(s.upload_priority, 10);
  EXPECT_EQ(s.store_path_count, 1);
  EXPECT_EQ(s.subdir_count_per_path, 256);
  EXPECT_EQ(s.current_write_path, 0);
  EXPECT_EQ(s.storage_port, 23000);
  EXPECT_EQ(s.conn_alloc, 64u);
  EXPECT_EQ(s.conn_current, 0u);
  EXPECT_EQ(s.conn_max, 2u);
  // total, success per pair (success is the index + 1).
  const struct {
    int index;
    int64_t value;
  } counters[] = {
      {kCntUpload, 1183460},
      {kCntAppend, 2},
      {kCntModify, 1},
      {kCntTruncate, 1},
      {kCntSetMeta, 7},
      {kCntDelete, 1165198},
      {kCntDownload, 3003660},
      {kCntGetMeta, 4},
      {kCntCreateLink, 0},
      {kCntDeleteLink, 0},
      {kCntUploadBytes, 33032446595},
      {kCntAppendBytes, 18},
      {kCntModifyBytes, 12},
      {kCntDownloadBytes, 162613839407},
      {kCntSyncInBytes, 0},
      {kCntSyncOutBytes, 0},
      {kCntFileOpen, 4187135},
      {kCntFileRead, 3232551},
      {kCntFileWrite, 1210896},
  };
  for (const auto& c : counters) {
    EXPECT_EQ(s.counters[c.index], c.value) << "counter " << c.index;
    EXPECT_EQ(s.counters[c.index + 1], c.value) << "counter " << c.index + 1;
  }
  EXPECT_EQ(s.last_source_update, 1795757448);
  EXPECT_EQ(s.last_sync_update, 0);
  EXPECT_EQ(s.last_synced_timestamp, 0);
  EXPECT_EQ(s.last_heartbeat_time, 1795757460);
  EXPECT_EQ(s.if_trunk_server, 0);

  std::string again;
  AppendStorageStat(&again, s);
  EXPECT_EQ(HexEncode(again), kStorageRecordHex);
}

TEST(StatRecordsTest, SeveralRecordsBackToBack) {
  std::string two = Unhex(kStorageRecordHex);
  StorageStat second;
  second.id = "10.0.0.2";
  second.ip = "10.0.0.2";
  second.status = static_cast<uint8_t>(StorageState::kOffline);
  second.counters[kCntFileWrite + 1] = 5;
  second.if_trunk_server = 1;
  AppendStorageStat(&two, second);
  ASSERT_EQ(two.size(), 2 * kStorageStatSize);
  auto r = DecodeStorageStats(two);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].storage_port, 23000);
  EXPECT_EQ((*r)[1].ip, "10.0.0.2");
  EXPECT_EQ((*r)[1].status, 5);
  EXPECT_EQ((*r)[1].counters[kCntFileWrite + 1], 5);
  EXPECT_EQ((*r)[1].if_trunk_server, 1);

  auto none = DecodeGroupStats("");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST(StatRecordsTest, WrongLengthIsCorruption) {
  const std::string group = Unhex(kGroupRecordHex);
  const std::string storage = Unhex(kStorageRecordHex);
  // Cut the tail, add a byte, and the older 105-byte group layout.
  for (const std::string& bad :
       {group.substr(0, kGroupStatSize - 1), group + "x", group.substr(0, 105)}) {
    auto r = DecodeGroupStats(bad);
    EXPECT_EQ(r.status().code(), StatusCode::kCorruption) << bad.size();
  }
  for (const std::string& bad :
       {storage.substr(0, kStorageStatSize - 1), storage + "x", storage + storage.substr(0, 30)}) {
    auto r = DecodeStorageStats(bad);
    EXPECT_EQ(r.status().code(), StatusCode::kCorruption) << bad.size();
  }
}

TEST(StatRecordsTest, AFlippedByteChangesOnlyItsField) {
  std::string raw = Unhex(kGroupRecordHex);
  raw[17 + 8 + 7] ^= 0x01;  // low byte of free_mb
  auto r = DecodeGroupStats(raw);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)[0].free_mb, 36032);
  EXPECT_EQ((*r)[0].total_mb, 40013);
  EXPECT_EQ((*r)[0].reserved_mb, 8002);
}

TEST(StorageStateTest, Names) {
  EXPECT_STREQ(StorageStateName(StorageState::kActive), "ACTIVE");
  EXPECT_STREQ(StorageStateName(StorageState::kWaitSync), "WAIT_SYNC");
  EXPECT_STREQ(StorageStateName(StorageState::kNone), "NONE");
  EXPECT_STREQ(StorageStateName(static_cast<StorageState>(42)), "UNKNOWN");
}

}  // namespace
}  // namespace depot::proto

namespace depot::proto {
namespace {

TEST(FetchAllTest, DecodesEveryMemberAndRefusesOtherLengths) {
  std::string body;
  AppendFixed(&body, "group1", kGroupNameLen);
  AppendFixed(&body, "127.0.0.1", kQueryIpLen);
  AppendU64(&body, 23000);  // vector 18: one member
  auto one = DecodeFetchAll(body);
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0].ip, "127.0.0.1");
  EXPECT_EQ((*one)[0].port, 23000);
  AppendFixed(&body, "127.0.0.2", kQueryIpLen);
  AppendU64(&body, 23001);
  auto two = DecodeFetchAll(body);
  ASSERT_TRUE(two.ok());
  ASSERT_EQ(two->size(), 2u);
  EXPECT_EQ((*two)[1].ip, "127.0.0.2");
  EXPECT_EQ((*two)[1].port, 23001);
  // The older layout (an extra member as an IP alone), a bare group, a cut entry: refused.
  for (size_t len : {body.size() - 8, size_t{16}, size_t{30}, size_t{0}}) {
    EXPECT_FALSE(DecodeFetchAll(std::string_view(body).substr(0, len)).ok()) << len;
  }
}

}  // namespace
}  // namespace depot::proto
