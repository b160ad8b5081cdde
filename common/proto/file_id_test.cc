#include "common/proto/file_id.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "common/base/hash.h"
#include "common/proto/protocol.h"

namespace depot::proto {
namespace {

constexpr int64_t kAppender = -1;

// The IDs of tests/data/fastdfs-file-ids.txt with the 20 bytes their base64 part decodes to, the
// size recorded in the size word (kAppender: an appender file, no size), and whether the name is
// a slave name. Values from shared/fastdfs-vectors/file-ids.txt.
struct Golden {
  const char* id;
  const char* fields_hex;
  int64_t size;
  bool slave;
};
const Golden kGolden[] = {
    {"group1/M00/1F/38/fwAAAWsJFUqAOD_FAAAADIJ3Nzo492.txt",
     "7f0000016b09154a80383fc50000000c8277373a", 12, false},
    {"group1/M00/1F/38/fwAAAWsJFVyAYgXiAAAAAAAAAAA057.txt",
     "7f0000016b09155c806205e20000000000000000", 0, false},
    {"group1/M00/1F/38/fwAAAWsJFV2AQZZCAAAAAdPZnos1492850",
     "7f0000016b09155d8041964200000001d3d99e8b", 1, false},
    {"group1/M00/1F/38/fwAAAWsJFV-AK0-jAAAADIJ3Nzo1185000",
     "7f0000016b09155f802b4fa30000000c8277373a", 12, false},
    {"group1/M00/1F/38/fwAAAWsJFVuAQFG_AAERcMwFces376.dat",
     "7f0000016b09155b804051bf00011170cc0571eb", 70000, false},
    {"group1/M00/1F/38/fwAAAWsJFWCAWeafAA9CQDDjnH8043.bin",
     "7f0000016b0915608059e69f000f424030e39c7f", 1000000, false},
    {"group1/M00/1F/38/fwAAAWsJFcqADjzeAAAABBj7OiE.abcdef",
     "7f0000016b0915ca800e3cde0000000418fb3a21", 4, false},
    {"group1/M00/1F/38/fwAAAWsJFcyATpYiAAAABXGFeFA6432926",
     "7f0000016b0915cc804e96220000000571857850", 5, false},
    {"group1/M00/1F/38/fwAAAWsJFW-AcKHYAAAADIJ3Nzo795.txt",
     "7f0000016b09156f8070a1d80000000c8277373a", 12, false},
    {"group1/M00/1F/38/fwAAAWsJFW-AcKHYAAAADIJ3Nzo795_big.txt",
     "7f0000016b09156f8070a1d80000000c8277373a", 12, true},
    {"group1/M00/1F/38/fwAAAWsJFYGEMorpAAAAAO2B-fY417.txt",
     "7f0000016b09158184328ae900000000ed81f9f6", kAppender, false},
    {"group1/M00/1F/38/fwAAAWsJFYiEKFpuAAAAAIJ3Nzo135.txt",
     "7f0000016b09158884285a6e000000008277373a", kAppender, false},
    {"group1/M00/1F/38/fwAAAWsJFZGANANfAAAAHkxmi4A135.txt",
     "7f0000016b0915918034035f0000001e4c668b80", 30, false},
    {"group1/M00/1F/38/fwAAAWsJFZuALagYAAAADIJ3Nzo778.txt",
     "7f0000016b09159b802da8180000000c8277373a", 12, false},
    {"group1/M00/1F/39/fwAAAWsJF0aAB5unAAAADIJ3Nzo038.txt",
     "7f0000016b09174680079ba70000000c8277373a", 12, false},
    {"group1/M00/1F/39/fwAAAWsJF0aAB5unAAAADIJ3Nzo0381024x1024.txt",
     "7f0000016b09174680079ba70000000c8277373a", 12, true},
    {"group1/M00/1F/38/fwAAAWsJFyGAH7VmAAAADrJ-r_s561.txt",
     "7f0000016b091721801fb5660000000eb27eaffb", 14, false},
};

const char kHello[] = "group1/M00/1F/38/fwAAAWsJFUqAOD_FAAAADIJ3Nzo492.txt";

std::string PackFields(const FileNameFields& f) {
  char raw[20];
  PutU32(raw, f.source_ip);
  PutU32(raw + 4, f.create_time);
  PutU64(raw + 8, f.size_word);
  PutU32(raw + 16, f.crc32);
  return std::string(raw, 20);
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

std::vector<std::string> ReadGoldenFile() {
  std::ifstream in(std::string(DEPOT_TEST_DATA_DIR) + "/fastdfs-file-ids.txt");
  EXPECT_TRUE(in.good()) << "cannot open " << DEPOT_TEST_DATA_DIR "/fastdfs-file-ids.txt";
  std::vector<std::string> ids;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    ids.push_back(line);
  }
  return ids;
}

TEST(FileIdGoldenTest, DataFileHoldsTheSeventeenIds) {
  std::vector<std::string> ids = ReadGoldenFile();
  ASSERT_EQ(ids.size(), std::size(kGolden));
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(ids[i], kGolden[i].id) << "line " << i;
}

TEST(FileIdGoldenTest, EveryIdParsesAndRoundTrips) {
  for (const std::string& text : ReadGoldenFile()) {
    auto r = ParseFileId(text);
    ASSERT_TRUE(r.ok()) << text << ": " << r.status().ToString();
    EXPECT_EQ(r->ToString(), text);
    EXPECT_EQ(r->group, "group1");
    EXPECT_EQ(r->RemoteName(), text.substr(7));
    EXPECT_EQ(r->store_path, 0);
    EXPECT_EQ(r->dir1, 0x1F);
    EXPECT_EQ(r->RelativePath(), "data/" + text.substr(11));
    EXPECT_EQ(IpToString(r->fields.source_ip), "127.0.0.1") << text;
  }
}

TEST(FileIdGoldenTest, DecodedFieldsMatchTheVectors) {
  for (const Golden& g : kGolden) {
    auto r = ParseFileId(g.id);
    ASSERT_TRUE(r.ok()) << g.id;
    EXPECT_EQ(HexEncode(PackFields(r->fields)), g.fields_hex) << g.id;
    EXPECT_TRUE(r->IsMarked()) << g.id;
    EXPECT_FALSE(r->IsTrunk()) << g.id;
    EXPECT_EQ(r->IsAppender(), g.size == kAppender) << g.id;
    EXPECT_EQ(r->IsSlave(), g.slave) << g.id;
    if (g.size != kAppender) {
      EXPECT_EQ(SizeFromWord(r->fields.size_word), static_cast<uint64_t>(g.size)) << g.id;
    }
    // The size word is MakeSizeWord() of the size, the appender flag and the 23 random bits.
    uint64_t random = (r->fields.size_word >> 32) & 0x007FFFFF;
    EXPECT_EQ(MakeSizeWord(g.size == kAppender ? 0 : g.size, g.size == kAppender, random),
              r->fields.size_word)
        << g.id;
  }
}

TEST(FileIdGoldenTest, FirstIdByteByByte) {
  auto r = ParseFileId(kHello);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->group, "group1");
  EXPECT_EQ(r->store_path, 0);
  EXPECT_EQ(r->dir1, 31);
  EXPECT_EQ(r->dir2, 56);
  EXPECT_EQ(r->name, "fwAAAWsJFUqAOD_FAAAADIJ3Nzo492.txt");
  EXPECT_EQ(r->fields.source_ip, 0x7f000001u);
  EXPECT_EQ(r->fields.create_time, 1795757386u);
  EXPECT_EQ(r->fields.size_word, 0x80383fc50000000cULL);
  EXPECT_EQ(r->fields.crc32, 0x8277373au);
  EXPECT_EQ(r->fields.crc32, Crc32("hello depot\n"));
  EXPECT_EQ(SizeFromWord(r->fields.size_word), 12u);
  EXPECT_FALSE(r->IsAppender());
  EXPECT_FALSE(r->IsSlave());
}

TEST(FileIdGoldenTest, AppenderAndSlave) {
  auto app = ParseFileId("group1/M00/1F/38/fwAAAWsJFYGEMorpAAAAAO2B-fY417.txt");
  ASSERT_TRUE(app.ok());
  EXPECT_TRUE(app->IsAppender());
  EXPECT_EQ(app->fields.size_word, 0x84328ae900000000ULL);
  EXPECT_EQ(app->fields.crc32, Crc32("hello "));  // the content when the appender was created

  // A slave's base64 part is its master's, so it decodes to the master's fields.
  auto master = ParseFileId("group1/M00/1F/39/fwAAAWsJF0aAB5unAAAADIJ3Nzo038.txt");
  auto slave = ParseFileId("group1/M00/1F/39/fwAAAWsJF0aAB5unAAAADIJ3Nzo0381024x1024.txt");
  ASSERT_TRUE(master.ok() && slave.ok());
  EXPECT_EQ(slave->dir2, 0x39);
  EXPECT_EQ(PackFields(slave->fields), PackFields(master->fields));
  EXPECT_TRUE(slave->IsSlave());
  EXPECT_FALSE(master->IsSlave());
}

// MakeFileName with the decoded fields and the right digits rebuilds every non-slave name.
TEST(FileIdGoldenTest, MakeFileNameReproducesTheNames) {
  for (const Golden& g : kGolden) {
    if (g.slave) continue;
    auto r = ParseFileId(g.id);
    ASSERT_TRUE(r.ok());
    std::string suffix = r->name.substr(kFileNameB64Len);
    size_t dot = suffix.find('.');
    std::string ext = dot == std::string::npos ? "" : suffix.substr(dot + 1);
    std::string digits = suffix.substr(0, dot);
    uint64_t random = 0;  // MakeFileName emits the lowest decimal digit first
    for (size_t i = digits.size(); i-- > 0;) random = random * 10 + (digits[i] - '0');
    EXPECT_EQ(MakeFileName(r->fields, ext, random), r->name) << g.id;
  }
}

TEST(MakeFileNameTest, SuffixIsSevenCharacters) {
  FileNameFields f{0x0a000002, 1700000000, MakeSizeWord(1234, false, 0x123456), 0xdeadbeef};
  const std::string b64 = Base64Encode(PackFields(f));
  ASSERT_EQ(b64.size(), kFileNameB64Len);
  for (int i = 0; i < 50; ++i) {
    uint64_t random = RandomU64();
    std::string txt = MakeFileName(f, "txt", random);
    ASSERT_EQ(txt.size(), kFileNameB64Len + kFileSuffixLen);
    EXPECT_EQ(txt.substr(0, kFileNameB64Len), b64);
    EXPECT_EQ(txt.substr(kFileNameB64Len + 3), ".txt");
    for (int d = 0; d < 3; ++d) EXPECT_TRUE(IsDigit(txt[kFileNameB64Len + d])) << txt;

    std::string none = MakeFileName(f, "", random);
    ASSERT_EQ(none.size(), kFileNameB64Len + kFileSuffixLen);
    for (size_t d = kFileNameB64Len; d < none.size(); ++d) EXPECT_TRUE(IsDigit(none[d])) << none;

    EXPECT_EQ(MakeFileName(f, "abcdef", random), b64 + ".abcdef");
    EXPECT_EQ(MakeFileName(f, "c", random).substr(kFileNameB64Len + 5), ".c");

    auto back = ParseRemoteName("g", "M00/00/FF/" + txt);
    ASSERT_TRUE(back.ok()) << txt;
    EXPECT_EQ(PackFields(back->fields), PackFields(f));
    EXPECT_EQ(back->dir2, 0xFF);
  }
  EXPECT_EQ(MakeFileName(f, "txt", 294).substr(kFileNameB64Len), "492.txt");
  EXPECT_EQ(MakeFileName(f, "", 582941).substr(kFileNameB64Len), "1492850");
}

TEST(SizeWordTest, BitsAndLargeFiles) {
  EXPECT_EQ(MakeSizeWord(12, false, 0x383fc5), 0x80383fc50000000cULL);
  EXPECT_EQ(MakeSizeWord(12, true, 0x328ae9), 0x84328ae900000000ULL);
  // Random bits above the 23 allowed ones are dropped.
  EXPECT_EQ(MakeSizeWord(1, false, 0xFFFFFFFFFFFFFFFFULL), 0x807FFFFF00000001ULL);
  const uint64_t big = 5ULL << 30;  // 5 GiB: plain size, no marker
  EXPECT_EQ(MakeSizeWord(big, false, 0x123), big);
  EXPECT_EQ(SizeFromWord(big), big);
  EXPECT_EQ(SizeFromWord(MakeSizeWord(0xFFFFFFFFULL, false, 7)), 0xFFFFFFFFULL);
  FileId id;
  id.fields.size_word = kTrunkBit;  // without the marker a flag bit means nothing
  EXPECT_FALSE(id.IsTrunk());
  id.fields.size_word = kSizeMarker | kTrunkBit;
  EXPECT_TRUE(id.IsTrunk());
}

TEST(Base64Test, FastDfsAlphabetAndRoundTrip) {
  EXPECT_EQ(Base64Encode(""), "");
  EXPECT_EQ(Base64Encode("\xfb\xff"), "-_8");
  EXPECT_EQ(Base64Encode(std::string_view("\x00\x10\x83", 3)), "ABCD");
  for (size_t n = 0; n <= 40; ++n) {
    std::string bytes = SecureRandomBytes(n);
    std::string text = Base64Encode(bytes);
    EXPECT_EQ(text.size(), (n * 8 + 5) / 6);
    auto back = Base64Decode(text);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, bytes) << n;
  }
  auto fields = Base64Decode("fwAAAWsJFyGAH7VmAAAADrJ-r_s");
  ASSERT_TRUE(fields.ok());
  EXPECT_EQ(HexEncode(*fields), "7f0000016b091721801fb5660000000eb27eaffb");
  for (const char* bad : {"ab+c", "ab/c", "abc=", "ab.c", "ab c", "\xc3\xa9"}) {
    EXPECT_TRUE(Base64Decode(bad).status().IsInvalidArgument()) << bad;
  }
}

TEST(FileIdRejectTest, MalformedIds) {
  const std::string name = "fwAAAWsJFUqAOD_FAAAADIJ3Nzo492.txt";
  const std::string b64 = name.substr(0, kFileNameB64Len);
  const std::string pre = "group1/M00/1F/38/";
  const std::string cases[] = {
      "",
      "..",
      "group1/M00/../../etc/passwd",
      "group1/M00/../../" + name,
      "group1/M00/1F/38/../../../../../../../../../../../../../../etc/passwd",
      "grp.1/M00/1F/38/" + name,
      "group 1/M00/1F/38/" + name,
      "gr\xc3\xbcp/M00/1F/38/" + name,
      "abcdefghijklmnopq/M00/1F/38/" + name,  // 17 characters
      "group1/M00/1f/38/" + name,
      "group1/M00/1F/3a/" + name,
      "group1/m00/1F/38/" + name,
      "group1/M0a/1F/38/" + name,
      "group1/M00/1G/38/" + name,
      "group1/MZZ/1F/38/" + name,
      "group1/M00/1F/38/" + name.substr(1),               // too short
      pre + b64 + "492" + std::string(85, 'p') + ".txt",  // remote name of 129 characters
      pre + "fwAAAWsJFUqAOD+FAAAADIJ3Nzo492.txt",
      pre + "fwAAAWsJFUqAOD=FAAAADIJ3Nzo492.txt",
      pre + "fwAAAWsJFUqAOD.FAAAADIJ3Nzo492.txt",
      pre + b64 + "49.2.txt",
      pre + b64 + "492txt.",
      pre + b64 + ".abcdefg",
      pre + b64 + "492.t+t",
      "M00/1F/38/" + name,
      "/M00/1F/38/" + name,
      pre + b64 + "49/2.txt",
      pre + "fwAAAWsJFUqAOD/FAAAADIJ3Nzo492.txt",
      "group1/M00/1F/38/39/" + name,
      "group1/M00/1F38/" + name,
      "group1//M00/1F/38/" + name,
      pre + name.substr(0, 30) + std::string(1, '\0') + "txt",
  };
  for (const std::string& c : cases) {
    auto r = ParseFileId(c);
    EXPECT_FALSE(r.ok()) << "accepted: " << c;
    EXPECT_TRUE(r.status().IsInvalidArgument()) << c;
  }
}

TEST(FileIdRejectTest, LimitsThatAreStillValid) {
  const std::string b64 = "fwAAAWsJFUqAOD_FAAAADIJ3Nzo";
  // A 16-character group, a remote name of exactly 128 characters, a 6-character extension.
  EXPECT_TRUE(ParseFileId("abcdefghijklmnop/M00/1F/38/" + b64 + "492.txt").ok());
  EXPECT_TRUE(ParseFileId("G_1-x/M00/1F/38/" + b64 + "492.txt").ok());
  std::string longest = "group1/M00/1F/38/" + b64 + "492" + std::string(84, 'p') + ".txt";
  ASSERT_EQ(longest.size() - 7, kMaxRemoteNameLen);
  EXPECT_TRUE(ParseFileId(longest).ok());
  EXPECT_TRUE(ParseFileId("group1/MFF/FF/00/" + b64 + ".abcdef").ok());
  EXPECT_EQ(ParseFileId("group1/MFF/FF/00/" + b64 + ".abcdef")->store_path, 255);
}

TEST(FileIdTest, ParseRemoteNameAndValidators) {
  auto r = ParseRemoteName("group1", "M00/1F/38/fwAAAWsJFUqAOD_FAAAADIJ3Nzo492.txt");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->ToString(), kHello);
  EXPECT_FALSE(ParseRemoteName("", "M00/1F/38/fwAAAWsJFUqAOD_FAAAADIJ3Nzo492.txt").ok());
  EXPECT_FALSE(ParseRemoteName("group1", "/M00/1F/38/fwAAAWsJFUqAOD_FAAAADIJ3Nzo492.tx").ok());

  EXPECT_TRUE(ValidateGroupName("group1").ok());
  EXPECT_TRUE(ValidateGroupName("").IsInvalidArgument());
  EXPECT_TRUE(ValidateGroupName("a/b").IsInvalidArgument());
  EXPECT_TRUE(ValidateExt("").ok());
  EXPECT_TRUE(ValidateExt("tar_gz").ok());
  EXPECT_TRUE(ValidateExt("abcdefg").IsInvalidArgument());
  EXPECT_TRUE(ValidateExt("a.b").IsInvalidArgument());

  EXPECT_EQ(IpToString(0x7f000001), "127.0.0.1");
  EXPECT_EQ(IpToString(0xc0a80a01), "192.168.10.1");
  EXPECT_EQ(*ParseIpv4("10.0.0.2"), 0x0a000002u);
  for (const char* bad : {"", "10.0.0", "10.0.0.256", "::1", "host"}) {
    EXPECT_TRUE(ParseIpv4(bad).status().IsInvalidArgument()) << bad;
  }
}

}  // namespace
}  // namespace depot::proto

namespace depot::proto {
namespace {

// FastDFS's slave rule, checked against vector 40's names.
TEST(SlaveNameTest, MasterBasePlusPrefixPlusExtension) {
  auto m = ParseFileId("group1/M00/1F/38/fwAAAWsJFW-AcKHYAAAADIJ3Nzo795.txt");
  ASSERT_TRUE(m.ok());
  EXPECT_FALSE(m->IsSlave());
  EXPECT_EQ(*MakeSlaveName(*m, "_big", ""), "fwAAAWsJFW-AcKHYAAAADIJ3Nzo795_big.txt");
  EXPECT_EQ(*MakeSlaveName(*m, "_big", "jpg"), "fwAAAWsJFW-AcKHYAAAADIJ3Nzo795_big.jpg");
  auto s = ParseFileId("group1/M00/1F/38/fwAAAWsJFW-AcKHYAAAADIJ3Nzo795_big.txt");
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->IsSlave());
  EXPECT_EQ(MakeSlaveName(*s, "_x", "").status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(MakeSlaveName(*m, "", "").ok());
  EXPECT_FALSE(MakeSlaveName(*m, "a/b", "").ok());
  EXPECT_FALSE(MakeSlaveName(*m, "..", "").ok());
  EXPECT_FALSE(MakeSlaveName(*m, "12345678901234567", "").ok());
  EXPECT_TRUE(MakeSlaveName(*m, "1234567890123456", "").ok());
  EXPECT_FALSE(MakeSlaveName(*m, "_a", "toolong").ok());
  // No extension on the master: digits fill the suffix, the slave has none either.
  auto n = ParseFileId("group1/M00/00/00/fwAAAWsJFW-AcKHYAAAADIJ3Nzo1234567");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*MakeSlaveName(*n, "-s", ""), "fwAAAWsJFW-AcKHYAAAADIJ3Nzo1234567-s");
  // Every slave name parses back as a slave file ID of the same directory.
  auto back = ParseFileId("group1/M00/1F/38/" + *MakeSlaveName(*m, "_150x150", "webp"));
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(back->IsSlave());
  EXPECT_EQ(back->fields.crc32, m->fields.crc32);
}

TEST(EncodeNameFieldsTest, IsTheStartOfMakeFileName) {
  FileNameFields f{0x7f000001, 1795757457, MakeSizeWord(30, false, 0x1234), 0x4c668b80};
  std::string name = MakeFileName(f, "txt", 135);
  EXPECT_EQ(EncodeNameFields(f), name.substr(0, kFileNameB64Len));
  auto back = DecodeNameFields(EncodeNameFields(f));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->crc32, f.crc32);
}

}  // namespace
}  // namespace depot::proto

namespace depot::proto {
namespace {

// Trunk file IDs: the 16 characters after the 27 name the slot; the directories must be the
// trunk id's low bytes (one name per file), and the slot must hold the recorded size.
TEST(TrunkFileIdTest, SlotIsDecodedAndAliasesAreRefused) {
  FileNameFields f{0x7f000001, 1795757457, MakeTrunkSizeWord(4000, 9), 0x12345678};
  TrunkInfo t{0x0201, 3 * 4160, 4160};
  std::string name = EncodeNameFields(f) + EncodeTrunkInfo(t) + "123.jpg";
  ASSERT_EQ(name.size(), 27u + 16 + 7);
  auto id = ParseRemoteName("group1", "M00/01/02/" + name);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_TRUE(id->IsTrunk());
  EXPECT_TRUE(id->InTrunk());
  EXPECT_FALSE(id->IsSlave());
  EXPECT_EQ(id->trunk.trunk_id, 0x0201u);
  EXPECT_EQ(id->trunk.offset, 3u * 4160);
  EXPECT_EQ(id->trunk.alloc, 4160u);
  // The same slot under other directories is not a name of this file.
  EXPECT_FALSE(ParseRemoteName("group1", "M00/02/01/" + name).ok());
  EXPECT_FALSE(ParseRemoteName("group1", "M00/01/03/" + name).ok());
  // A slot too small for the size, an offset between slots, a missing position.
  for (TrunkInfo bad : {TrunkInfo{0x0201, 0, 4000}, TrunkInfo{0x0201, 100, 4160},
                        TrunkInfo{0x0201, 0, 0}}) {
    std::string n = EncodeNameFields(f) + EncodeTrunkInfo(bad) + "123.jpg";
    EXPECT_FALSE(ParseRemoteName("group1", "M00/01/02/" + n).ok()) << bad.offset << " " << bad.alloc;
  }
  EXPECT_FALSE(ParseRemoteName("group1", "M00/01/02/" + EncodeNameFields(f) + "123.jpg").ok());
  // A slave of a trunk file: the master's name plus a prefix; not in a trunk itself.
  auto slave = ParseRemoteName("group1", "M00/01/02/" + *MakeSlaveName(*id, "_t", ""));
  ASSERT_TRUE(slave.ok());
  EXPECT_TRUE(slave->IsSlave());
  EXPECT_FALSE(slave->InTrunk());
}

}  // namespace
}  // namespace depot::proto
