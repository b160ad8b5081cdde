#include "common/base/hash.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace depot {
namespace {

std::string Repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

// Values from the FastDFS vectors: the CRC32 field of real file IDs equals these.
TEST(Crc32Test, KnownValues) {
  EXPECT_EQ(Crc32(""), 0u);
  EXPECT_EQ(Crc32("123456789"), 0xcbf43926u);  // the CRC-32/ISO-HDLC check value
  EXPECT_EQ(Crc32("hello depot\n"), 0x8277373au);
  EXPECT_EQ(Crc32("A"), 0xd3d99e8bu);
  EXPECT_EQ(Crc32("crc probe 124\n"), 0xb27eaffbu);
  EXPECT_EQ(Crc32(Repeat("0123456789", 7000)), 0xcc0571ebu);
  EXPECT_EQ(Crc32(Repeat("0123456789", 100000)), 0x30e39c7fu);
}

TEST(Crc32Test, IncrementalEqualsOneShot) {
  const std::string data = Repeat("0123456789", 7000);
  for (size_t split : {size_t{0}, size_t{1}, size_t{4096}, size_t{65536}, data.size()}) {
    uint32_t crc = Crc32Update(0, data.data(), split);
    crc = Crc32Update(crc, data.data() + split, data.size() - split);
    EXPECT_EQ(crc, 0xcc0571ebu) << "split at " << split;
  }
  // Byte by byte.
  uint32_t crc = 0;
  for (char c : std::string("hello depot\n")) crc = Crc32Update(crc, &c, 1);
  EXPECT_EQ(crc, 0x8277373au);
  // An empty update changes nothing.
  EXPECT_EQ(Crc32Update(0x8277373au, "", 0), 0x8277373au);
}

TEST(Crc32Test, DetectsASingleFlippedBit) {
  std::string data = Repeat("0123456789", 7000);
  data[35000] ^= 0x01;
  EXPECT_NE(Crc32(data), 0xcc0571ebu);
}

TEST(HmacSha256Test, Rfc4231Vectors) {
  // RFC 4231 test case 1.
  const std::string key1(20, '\x0b');
  EXPECT_EQ(HexEncode(HmacSha256(key1, "Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  // Test case 2: a key shorter than the block.
  EXPECT_EQ(HexEncode(HmacSha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // Test case 6: a key longer than the block (hashed first).
  const std::string key6(131, '\xaa');
  EXPECT_EQ(HexEncode(HmacSha256(key6, "Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  EXPECT_EQ(HmacSha256("k", "d").size(), 32u);
  EXPECT_NE(HmacSha256("k1", "d"), HmacSha256("k2", "d"));
}

TEST(HexEncodeTest, LowercaseTwoDigitsPerByte) {
  EXPECT_EQ(HexEncode(""), "");
  EXPECT_EQ(HexEncode(std::string("\x00\x01\x0f\x10\x7f\x80\xab\xff", 8)), "00010f107f80abff");
  EXPECT_EQ(HexEncode("depot"), "6465706f74");
}

TEST(ConstantTimeEqualsTest, ComparesContentAndLength) {
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_TRUE(ConstantTimeEquals("secret", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secreT"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "Secret"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secret2"));
  EXPECT_FALSE(ConstantTimeEquals("secret", ""));
  EXPECT_TRUE(ConstantTimeEquals(std::string("a\0b", 3), std::string("a\0b", 3)));
  EXPECT_FALSE(ConstantTimeEquals(std::string("a\0b", 3), std::string("a\0c", 3)));
}

TEST(RandomTest, ProducesDistinctValuesAndRequestedLength) {
  std::set<uint64_t> seen;
  for (int i = 0; i < 1000; ++i) seen.insert(RandomU64());
  EXPECT_GT(seen.size(), 990u);
  EXPECT_EQ(SecureRandomBytes(0).size(), 0u);
  std::string a = SecureRandomBytes(32), b = SecureRandomBytes(32);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);
}

TEST(ClockTest, MonotonicAdvancesAndWallClockIsSane) {
  int64_t t0 = MonotonicNanos();
  int64_t t1 = MonotonicNanos();
  EXPECT_LE(t0, t1);
  EXPECT_GT(UnixSeconds(), 1600000000);  // after September 2020
}

}  // namespace
}  // namespace depot
