// Codecs of the replication and fsck commands (common/proto/sync.{h,cc}): round trips, exact
// bytes of the binary record head, and the rejection of every kind of bad input with
// InvalidArgument.
#include "common/proto/sync.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "common/base/hash.h"
#include "common/proto/protocol.h"

namespace depot::proto {
namespace {

using namespace std::string_literals;

#define EXPECT_INVALID(expr)                                                  \
  do {                                                                        \
    auto r_ = (expr);                                                         \
    EXPECT_FALSE(r_.ok()) << #expr;                                           \
    EXPECT_TRUE(r_.status().IsInvalidArgument()) << #expr << ": " << r_.status().ToString(); \
  } while (0)

// ---- 221 SYNC_RECORD head -------------------------------------------------------------------

SyncRecordHead Head(char op, uint64_t data_len = 0, uint8_t flags = 0, uint16_t name_len = 30) {
  SyncRecordHead h;
  h.origin = 0x0123456789ABCDEFULL;
  h.oseq = 42;
  h.data_len = data_len;
  h.version = op == 'M' ? 0x1122334455667788ULL : 0;
  h.op = op;
  h.flags = flags;
  h.name_len = name_len;
  return h;
}

void ExpectSameHead(const SyncRecordHead& a, const SyncRecordHead& b) {
  EXPECT_EQ(a.origin, b.origin);
  EXPECT_EQ(a.oseq, b.oseq);
  EXPECT_EQ(a.data_len, b.data_len);
  EXPECT_EQ(a.version, b.version);
  EXPECT_EQ(a.op, b.op);
  EXPECT_EQ(a.flags, b.flags);
  EXPECT_EQ(a.name_len, b.name_len);
}

TEST(SyncRecordHeadTest, ExactBytes) {
  SyncRecordHead h;
  h.origin = 0x0102030405060708ULL;
  h.oseq = 0x1112131415161718ULL;
  h.data_len = 0x2122232425262728ULL;
  h.version = 0x3132333435363738ULL;
  h.op = 'C';
  h.flags = 0;
  h.name_len = 0x0080;
  std::string b = EncodeSyncRecordHead(h);
  ASSERT_EQ(b.size(), kSyncRecordHead);
  EXPECT_EQ(kSyncRecordHead, 36u);
  EXPECT_EQ(HexEncode(b),
            "0102030405060708" "1112131415161718" "2122232425262728" "3132333435363738"
            "43" "00" "0080");
}

TEST(SyncRecordHeadTest, RoundTrips) {
  std::vector<SyncRecordHead> heads = {
      Head('C', 0),
      Head('C', 1),
      Head('C', 64ULL << 30),
      Head('C', ~0ULL),  // the size limit is the receiver's (max_file_size), not the codec's
      Head('C', 0, kSyncFlagGone),
      Head('D', 0),
      Head('D', 0, kSyncFlagGone),
      Head('M', 0),
      Head('M', 1 << 20),
      Head('M', 0, kSyncFlagGone),
      Head('C', 10, 0, 1),
      Head('C', 10, 0, kMaxRemoteNameLen),
  };
  SyncRecordHead big = Head('C', 5);
  big.origin = ~0ULL;
  big.oseq = ~0ULL;
  heads.push_back(big);
  for (const auto& h : heads) {
    SCOPED_TRACE(std::string(1, h.op) + " data_len " + std::to_string(h.data_len));
    std::string b = EncodeSyncRecordHead(h);
    auto d = DecodeSyncRecordHead(b);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    ExpectSameHead(*d, h);
    // Only the first 36 bytes count: the name follows in the same buffer.
    auto d2 = DecodeSyncRecordHead(b + std::string(h.name_len, 'n'));
    ASSERT_TRUE(d2.ok());
    ExpectSameHead(*d2, h);
  }
}

TEST(SyncRecordHeadTest, ShortInputIsRejected) {
  std::string b = EncodeSyncRecordHead(Head('C', 3));
  for (size_t n = 0; n < b.size(); ++n) EXPECT_INVALID(DecodeSyncRecordHead(b.substr(0, n)));
}

TEST(SyncRecordHeadTest, BadFieldsAreRejected) {
  auto bad = [](SyncRecordHead h) { return DecodeSyncRecordHead(EncodeSyncRecordHead(h)); };
  // Bad ops.
  for (char op : {'\0', 'c', 'd', 'm', 'X', 'U', '\xFF'}) {
    SyncRecordHead h = Head('C');
    h.op = op;
    EXPECT_INVALID(bad(h));
  }
  // Zero origin or zero sequence.
  SyncRecordHead h = Head('C', 1);
  h.origin = 0;
  EXPECT_INVALID(bad(h));
  h = Head('C', 1);
  h.oseq = 0;
  EXPECT_INVALID(bad(h));
  // Name length 0 or over 128.
  EXPECT_INVALID(bad(Head('C', 1, 0, 0)));
  EXPECT_INVALID(bad(Head('C', 1, 0, kMaxRemoteNameLen + 1)));
  EXPECT_INVALID(bad(Head('D', 0, 0, 0xFFFF)));
  // Unknown flags.
  for (uint8_t f : {8, 0x80, 0xFF}) {
    EXPECT_INVALID(bad(Head('C', 1, f)));
    EXPECT_INVALID(bad(Head('D', 0, f)));
  }
  // Dedup flags: only on a create, never with "gone", a link only with the dedup head and no data.
  for (int fi : {int{kSyncFlagDedup}, int{kSyncFlagLink}, kSyncFlagDedup | kSyncFlagLink}) {
    auto f = static_cast<uint8_t>(fi);
    EXPECT_INVALID(bad(Head('D', 0, f)));
    EXPECT_INVALID(bad(Head('M', 1, f)));
    EXPECT_INVALID(bad(Head('C', 0, static_cast<uint8_t>(f | kSyncFlagGone))));
  }
  EXPECT_INVALID(bad(Head('C', 0, kSyncFlagLink)));
  EXPECT_INVALID(bad(Head('C', 5, kSyncFlagDedup | kSyncFlagLink)));
  EXPECT_TRUE(DecodeSyncRecordHead(EncodeSyncRecordHead(Head('C', 5, kSyncFlagDedup))).ok());
  EXPECT_TRUE(DecodeSyncRecordHead(EncodeSyncRecordHead(Head('C', 0, kSyncFlagDedup | kSyncFlagLink))).ok());
  // A delete with data, "gone" with data, metadata over 1 MiB.
  EXPECT_INVALID(bad(Head('D', 1)));
  EXPECT_INVALID(bad(Head('D', ~0ULL)));
  EXPECT_INVALID(bad(Head('C', 1, kSyncFlagGone)));
  EXPECT_INVALID(bad(Head('M', 1, kSyncFlagGone)));
  EXPECT_INVALID(bad(Head('M', (1 << 20) + 1)));
  EXPECT_INVALID(bad(Head('M', ~0ULL)));
}

// Appender changes: 'A' and 'W' carry bytes at the offset in `version`, 'T' the new size and
// no bytes.
TEST(SyncRecordHeadTest, AppenderOps) {
  auto rt = [](SyncRecordHead h) { return DecodeSyncRecordHead(EncodeSyncRecordHead(h)); };
  for (char op : {'A', 'W'}) {
    SyncRecordHead h = Head(op, 4096);
    h.version = 1ULL << 40;
    auto d = rt(h);
    ASSERT_TRUE(d.ok()) << op;
    EXPECT_EQ(d->op, op);
    EXPECT_EQ(d->version, 1ULL << 40);
    EXPECT_EQ(d->data_len, 4096u);
    EXPECT_TRUE(rt(Head(op, 0, kSyncFlagGone)).ok());
    EXPECT_INVALID(rt(Head(op, 1, kSyncFlagGone)));
    h.version = ~0ULL;  // a negative offset
    EXPECT_INVALID(rt(h));
  }
  SyncRecordHead t = Head('T', 0);
  t.version = 7;
  ASSERT_TRUE(rt(t).ok());
  EXPECT_EQ(rt(t)->version, 7u);
  EXPECT_INVALID(rt(Head('T', 1)));
  t.version = ~0ULL;  // a size that would be a negative off_t
  EXPECT_INVALID(rt(t));
}

// ---- 220 SYNC_HELLO -------------------------------------------------------------------------

TEST(SyncHelloTest, RoundTrips) {
  for (bool dump : {false, true}) {
    SyncHello h{"127.0.0.2:23000", dump};
    auto d = DecodeSyncHello(EncodeSyncHello(h));
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    EXPECT_EQ(d->from, h.from);
    EXPECT_EQ(d->dump, dump);
  }
  // 64 characters is the limit; "dump" is optional (false), other fields are ignored.
  auto d = DecodeSyncHello(R"({"from":")" + std::string(64, 'a') + R"("})");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->from.size(), 64u);
  EXPECT_FALSE(d->dump);
  d = DecodeSyncHello(R"({"from":"x","dump":1,"extra":[1,2]})");
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->dump);  // not a boolean: not a dump
}

TEST(SyncHelloTest, BadInputIsRejected) {
  for (std::string body :
       {""s, " "s, "{"s, "}"s, "null"s, "[]"s, "[{\"from\":\"a\"}]"s, "\"from\""s, "42"s,
        R"({"from":"a"} trailing)"s, R"({"from":"a",})"s, "{\"from\":\"a\0\"}"s,
        std::string(1, '\xFF'), R"({})"s, R"({"dump":true})"s, R"({"from":1})"s,
        R"({"from":null})"s, R"({"from":["a"]})"s, R"({"from":{"a":1}})"s,
        R"({"from":")" + std::string(65, 'a') + R"("})"}) {
    SCOPED_TRACE(body);
    EXPECT_INVALID(DecodeSyncHello(body));
  }
}

TEST(SyncHelloReplyTest, RoundTrips) {
  SyncHelloReply r;
  r.accepting = true;
  r.applied[1] = 1;
  r.applied[0x0123456789ABCDEFULL] = 77;
  r.applied[~0ULL] = ~0ULL;
  r.applied[0x10] = 0;
  std::string body = EncodeSyncHelloReply(r);
  // Origins are 16 lower-case hex digits.
  EXPECT_NE(body.find("\"0123456789abcdef\""), std::string::npos) << body;
  EXPECT_NE(body.find("\"0000000000000001\""), std::string::npos) << body;
  auto d = DecodeSyncHelloReply(body);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_TRUE(d->accepting);
  EXPECT_EQ(d->applied, r.applied);

  SyncHelloReply empty;
  d = DecodeSyncHelloReply(EncodeSyncHelloReply(empty));
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->accepting);
  EXPECT_TRUE(d->applied.empty());
  // Short hex keys are accepted; "accepting" defaults to false.
  d = DecodeSyncHelloReply(R"({"applied":{"a":5,"00ff":6}})");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_FALSE(d->accepting);
  EXPECT_EQ(d->applied, (std::map<uint64_t, uint64_t>{{0xa, 5}, {0xff, 6}}));
}

TEST(SyncHelloReplyTest, BadInputIsRejected) {
  for (std::string body :
       {""s, "{"s, "[]"s, "true"s, R"({"accepting":true})"s, R"({"applied":[]})"s,
        R"({"applied":null})"s, R"({"applied":"0000000000000001"})"s, R"({"applied":{"":1}})"s,
        R"({"applied":{"xyz":1}})"s, R"({"applied":{"0x10":1}})"s, R"({"applied":{"ABCDEF":1}})"s,
        R"({"applied":{"-1":1}})"s, R"({"applied":{" 1":1}})"s,
        R"({"applied":{"00000000000000001":1}})"s,  // 17 digits
        R"({"applied":{"1":-1}})"s, R"({"applied":{"1":1.5}})"s, R"({"applied":{"1":"2"}})"s,
        R"({"applied":{"1":null}})"s, R"({"applied":{"1":true}})"s,
        R"({"applied":{"1":1,"2":[2]}})"s, R"({"applied":{"1":1}} x)"s}) {
    SCOPED_TRACE(body);
    EXPECT_INVALID(DecodeSyncHelloReply(body));
  }
  // More than 65,536 origins.
  std::string many = R"({"applied":{)";
  for (int i = 1; i <= 65537; ++i) {
    char key[24];
    std::snprintf(key, sizeof key, "\"%x\":1", i);
    if (i > 1) many += ",";
    many += key;
  }
  many += "}}";
  EXPECT_INVALID(DecodeSyncHelloReply(many));
}

// ---- 223 SYNC_DUMP_REQUEST ------------------------------------------------------------------

TEST(DumpRequestTest, RoundTripAndRejections) {
  auto d = DecodeDumpRequest(EncodeDumpRequest("127.0.1.5:23001"));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(*d, "127.0.1.5:23001");
  for (std::string body : {""s, "{"s, "[]"s, R"({})"s, R"({"to":5})"s, R"({"to":null})"s,
                           R"({"from":"a"})"s, R"({"to":")" + std::string(65, 'x') + R"("})"}) {
    SCOPED_TRACE(body);
    EXPECT_INVALID(DecodeDumpRequest(body));
  }
}

// ---- 230 LIST_FILES -------------------------------------------------------------------------

TEST(ListFilesRequestTest, RoundTrips) {
  for (auto [p, d1, v] : {std::tuple{0, 0, false}, std::tuple{3, 17, true}, std::tuple{255, 255, true}}) {
    ListFilesRequest r{p, d1, v};
    auto d = DecodeListFilesRequest(EncodeListFilesRequest(r));
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    EXPECT_EQ(d->store_path, p);
    EXPECT_EQ(d->dir1, d1);
    EXPECT_EQ(d->verify, v);
  }
  auto d = DecodeListFilesRequest(R"({"store_path":1,"dir1":2})");
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->verify);
}

TEST(ListFilesRequestTest, BadInputIsRejected) {
  for (std::string body :
       {""s, "[]"s, "{"s, R"({})"s, R"({"store_path":0})"s, R"({"dir1":0})"s,
        R"({"store_path":-1,"dir1":0})"s, R"({"store_path":256,"dir1":0})"s,
        R"({"store_path":0,"dir1":-1})"s, R"({"store_path":0,"dir1":256})"s,
        R"({"store_path":0,"dir1":99999999999999999999})"s,
        R"({"store_path":1.5,"dir1":0})"s, R"({"store_path":"1","dir1":0})"s,
        R"({"store_path":0,"dir1":"00"})"s, R"({"store_path":0,"dir1":null})"s,
        R"({"store_path":0,"dir1":true})"s, R"({"store_path":[0],"dir1":0})"s}) {
    SCOPED_TRACE(body);
    EXPECT_INVALID(DecodeListFilesRequest(body));
  }
}

TEST(ListFilesReplyTest, RoundTrips) {
  ListFilesReply r;
  r.files.push_back({"M00/00/00/a.txt", 0, true});
  r.files.push_back({"M00/00/01/b", 64ULL << 30, false});
  r.files.push_back({std::string(1024, 'n'), ~0ULL, true});
  r.files.push_back({"M00/00/04/appender", 12, true, true, 0x8277373a});
  r.deleted = {"M00/00/02/gone.jpg", "M00/00/03/x"};
  auto d = DecodeListFilesReply(EncodeListFilesReply(r));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  ASSERT_EQ(d->files.size(), r.files.size());
  for (size_t i = 0; i < r.files.size(); ++i) {
    EXPECT_EQ(d->files[i].name, r.files[i].name);
    EXPECT_EQ(d->files[i].size, r.files[i].size);
    EXPECT_EQ(d->files[i].intact, r.files[i].intact);
    EXPECT_EQ(d->files[i].has_crc, r.files[i].has_crc);
    EXPECT_EQ(d->files[i].crc, r.files[i].crc);
  }
  EXPECT_EQ(d->deleted, r.deleted);
  d = DecodeListFilesReply(EncodeListFilesReply({}));
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->files.empty());
  EXPECT_TRUE(d->deleted.empty());
}

TEST(ListFilesReplyTest, BadInputIsRejected) {
  const std::string long_name(1025, 'n');
  for (std::string body :
       {""s, "[]"s, R"({})"s, R"({"files":[]})"s, R"({"deleted":[]})"s,
        R"({"files":{},"deleted":[]})"s, R"({"files":[],"deleted":"x"})"s,
        R"({"files":null,"deleted":[]})"s, R"({"files":["a"],"deleted":[]})"s,
        R"({"files":[["a",1]],"deleted":[]})"s, R"({"files":[["a",1,true,4,5]],"deleted":[]})"s,
        R"({"files":[["a",1,true,-4]],"deleted":[]})"s,
        R"({"files":[["a",1,true,4294967296]],"deleted":[]})"s,
        R"({"files":[["a",1,true,"4"]],"deleted":[]})"s,
        R"({"files":[[1,1,true]],"deleted":[]})"s, R"({"files":[["a",-1,true]],"deleted":[]})"s,
        R"({"files":[["a",1.5,true]],"deleted":[]})"s, R"({"files":[["a","1",true]],"deleted":[]})"s,
        R"({"files":[["a",1,1]],"deleted":[]})"s, R"({"files":[["a",1,null]],"deleted":[]})"s,
        R"({"files":[{"name":"a"}],"deleted":[]})"s,
        R"({"files":[["a",1,true]],"deleted":[1]})"s, R"({"files":[],"deleted":[null]})"s,
        R"({"files":[],"deleted":[["a"]]})"s,
        R"({"files":[[")" + long_name + R"(",1,true]],"deleted":[]})",
        R"({"files":[],"deleted":[")" + long_name + R"("]})"}) {
    SCOPED_TRACE(body.substr(0, 80));
    EXPECT_INVALID(DecodeListFilesReply(body));
  }
}

// ---- 231 REPAIR_FILE ------------------------------------------------------------------------

TEST(RepairRequestTest, RoundTripAndRejections) {
  RepairRequest r{"M00/00/00/wKgBAWZabc.txt", "192.168.100.200", 65535};
  auto d = DecodeRepairRequest(EncodeRepairRequest(r));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->name, r.name);
  EXPECT_EQ(d->from_ip, r.from_ip);
  EXPECT_EQ(d->from_port, r.from_port);
  r.name = std::string(kMaxRemoteNameLen, 'n');
  r.from_port = 1;
  d = DecodeRepairRequest(EncodeRepairRequest(r));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->name.size(), kMaxRemoteNameLen);

  auto body = [](const std::string& name, const std::string& ip, const std::string& port) {
    return R"({"name":)" + name + R"(,"from_ip":)" + ip + R"(,"from_port":)" + port + "}";
  };
  for (std::string b :
       {""s, "[]"s, R"({})"s, body(R"("a")", R"("1.2.3.4")", "0"),
        body(R"("a")", R"("1.2.3.4")", "65536"), body(R"("a")", R"("1.2.3.4")", "-1"),
        body(R"("a")", R"("1.2.3.4")", R"("80")"), body(R"("a")", R"("1.2.3.4")", "80.5"),
        body(R"("a")", R"("1.2.3.4")", "null"), body(R"("a")", R"("1234.1234.1234.1")", "80"),
        body(R"("a")", "1", "80"), body("1", R"("1.2.3.4")", "80"),
        body(R"(")" + std::string(kMaxRemoteNameLen + 1, 'n') + R"(")", R"("1.2.3.4")", "80"),
        R"({"name":"a","from_ip":"1.2.3.4"})"s, R"({"name":"a","from_port":80})"s,
        R"({"from_ip":"1.2.3.4","from_port":80})"s}) {
    SCOPED_TRACE(b);
    EXPECT_INVALID(DecodeRepairRequest(b));
  }
}

}  // namespace
}  // namespace depot::proto
