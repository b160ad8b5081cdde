// Unit tests of opsd/crypto.{h,cc}: password hashes, tokens, SHA-256, base64 and SecretBox. The
// key-file tests work in their own mkdtemp directory. Known-answer values for PBKDF2 and
// AES-256-GCM were computed independently (Python hashlib and pyca/cryptography).
#include "opsd/crypto.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace depot::opsd {
namespace {

using namespace std::string_literals;

// Splits a stored password hash at '$'.
std::vector<std::string> Fields(const std::string& stored) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t dollar = stored.find('$', start);
    out.push_back(stored.substr(start, dollar == std::string::npos ? dollar : dollar - start));
    if (dollar == std::string::npos) return out;
    start = dollar + 1;
  }
}

std::string Join(const std::vector<std::string>& fields) {
  std::string out;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) out += '$';
    out += fields[i];
  }
  return out;
}

// ---- Passwords ---------------------------------------------------------------------------------

TEST(PasswordTest, RoundTrip) {
  auto stored = HashPassword("correct horse", 1000);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(stored->rfind("pbkdf2-sha256$1000$", 0), 0u) << *stored;
  EXPECT_TRUE(VerifyPassword("correct horse", *stored));
  EXPECT_FALSE(VerifyPassword("correct horsE", *stored));
  EXPECT_FALSE(VerifyPassword("correct horse ", *stored));
  EXPECT_FALSE(VerifyPassword("", *stored));
  EXPECT_EQ(PasswordIterations(*stored), 1000);
}

TEST(PasswordTest, StoredFieldsHaveTheDocumentedSizes) {
  auto stored = HashPassword("pw", 1000);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  std::vector<std::string> f = Fields(*stored);
  ASSERT_EQ(f.size(), 4u);
  EXPECT_EQ(f[0], "pbkdf2-sha256");
  EXPECT_EQ(f[1], "1000");
  auto salt = Base64Decode(f[2]);
  auto hash = Base64Decode(f[3]);
  ASSERT_TRUE(salt.ok());
  ASSERT_TRUE(hash.ok());
  EXPECT_EQ(salt->size(), 16u);
  EXPECT_EQ(hash->size(), 32u);
}

TEST(PasswordTest, EmptyAndBinaryPasswords) {
  auto empty = HashPassword("", 1000);
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_TRUE(VerifyPassword("", *empty));
  EXPECT_FALSE(VerifyPassword("x", *empty));

  const std::string binary = "a\0b\xff"s;
  auto stored = HashPassword(binary, 1000);
  ASSERT_TRUE(stored.ok());
  EXPECT_TRUE(VerifyPassword(binary, *stored));
  EXPECT_FALSE(VerifyPassword("a", *stored));  // no truncation at the NUL
  EXPECT_FALSE(VerifyPassword("a\0b"s, *stored));
}

TEST(PasswordTest, SaltMakesTwoHashesOfOnePasswordDiffer) {
  auto a = HashPassword("same password", 1000);
  auto b = HashPassword("same password", 1000);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_NE(Fields(*a)[2], Fields(*b)[2]);
  EXPECT_NE(Fields(*a)[3], Fields(*b)[3]);
  EXPECT_TRUE(VerifyPassword("same password", *a));
  EXPECT_TRUE(VerifyPassword("same password", *b));
}

// PBKDF2-HMAC-SHA256("correct horse", "0123456789abcdef", 1000, 32) from Python's hashlib: the
// stored format is what any other PBKDF2 implementation would produce.
TEST(PasswordTest, VerifiesAHashMadeElsewhere) {
  const std::string stored =
      "pbkdf2-sha256$1000$MDEyMzQ1Njc4OWFiY2RlZg==$cBg8D2DungRB9k76szThf5ehfyBz991ay6PT8Srwk4M=";
  EXPECT_TRUE(VerifyPassword("correct horse", stored));
  EXPECT_FALSE(VerifyPassword("correct horse!", stored));
  EXPECT_EQ(PasswordIterations(stored), 1000);
}

TEST(PasswordTest, HonoursTheIterationParameter) {
  auto stored = HashPassword("slow and steady", 600000);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(PasswordIterations(*stored), 600000);
  EXPECT_EQ(Fields(*stored)[1], "600000");
  EXPECT_TRUE(VerifyPassword("slow and steady", *stored));
}

TEST(PasswordTest, HashPasswordRejectsIterationsOutOfBounds) {
  for (int iterations : {-1, 0, 1, 999, kMaxPasswordIterations + 1}) {
    auto stored = HashPassword("pw", iterations);
    ASSERT_FALSE(stored.ok()) << iterations;
    EXPECT_EQ(stored.status().code(), StatusCode::kInvalidArgument) << iterations;
  }
}

TEST(PasswordTest, WrongOrMalformedStoredStringsAreFalse) {
  auto made = HashPassword("pw", 1000);
  ASSERT_TRUE(made.ok());
  const std::string good = *made;
  ASSERT_TRUE(VerifyPassword("pw", good));

  // Every truncation.
  for (size_t n = 0; n < good.size(); ++n) {
    EXPECT_FALSE(VerifyPassword("pw", good.substr(0, n))) << n;
    EXPECT_EQ(PasswordIterations(good.substr(0, n)), 0) << n;
  }

  std::vector<std::string> bad = {
      "",
      "$$$",
      "garbage",
      "pbkdf2-sha256",
      good + "$",
      good + "=",
      good + "A",
      " " + good,
      "$" + good,
  };
  std::vector<std::string> f = Fields(good);
  ASSERT_EQ(f.size(), 4u);
  auto with = [&f](size_t i, const std::string& value) {
    std::vector<std::string> g = f;
    g[i] = value;
    return Join(g);
  };
  bad.push_back(with(0, "pbkdf2-sha1"));
  bad.push_back(with(0, "PBKDF2-SHA256"));
  bad.push_back(with(2, "!!!!"));
  bad.push_back(with(2, f[2].substr(0, f[2].size() - 4)));               // salt too short
  bad.push_back(with(2, Base64Encode(std::string(15, 's'))));             // 15-byte salt
  bad.push_back(with(3, Base64Encode(std::string(31, 'h'))));             // 31-byte hash
  bad.push_back(with(3, Base64Encode(Base64Decode(f[3]).value() + "x")));  // 33-byte hash
  bad.push_back(with(3, ""));
  // Same salt, another password's hash.
  auto other = HashPassword("other", 1000);
  ASSERT_TRUE(other.ok());
  bad.push_back(with(3, Fields(*other)[3]));
  for (const std::string& s : bad) EXPECT_FALSE(VerifyPassword("pw", s)) << s;
}

TEST(PasswordTest, IterationCountsOutsideTheBoundsAreMalformed) {
  auto made = HashPassword("pw", 1000);
  ASSERT_TRUE(made.ok());
  std::vector<std::string> f = Fields(*made);
  ASSERT_EQ(f.size(), 4u);
  auto with_iterations = [&f](const std::string& iterations) {
    std::vector<std::string> g = f;
    g[1] = iterations;
    return Join(g);
  };
  // The untouched record verifies, so each failure below is the iteration field's doing.
  ASSERT_TRUE(VerifyPassword("pw", with_iterations("1000")));
  for (const std::string& it :
       {"0"s, "999"s, "10000001"s, "99999999"s, "4294968296"s, "99999999999999999999"s, "-1000"s,
        "+1000"s, "01000"s, " 1000"s, "1000 "s, "1e3"s, "0x3e8"s, ""s}) {
    // Huge counts must fail at parse time, not after hours of PBKDF2.
    EXPECT_FALSE(VerifyPassword("pw", with_iterations(it))) << it;
    EXPECT_EQ(PasswordIterations(with_iterations(it)), 0) << it;
  }
  // The bounds themselves are well-formed (parse only; 10M rounds are not run here).
  EXPECT_EQ(PasswordIterations(with_iterations("10000000")), kMaxPasswordIterations);
  EXPECT_EQ(PasswordIterations(with_iterations("1000")), kMinPasswordIterations);
  EXPECT_EQ(PasswordIterations(with_iterations("123456")), 123456);
  // A count that parses but is not the one the hash was made with does not verify.
  EXPECT_FALSE(VerifyPassword("pw", with_iterations("1001")));
}

// ---- Tokens, digests, comparison ---------------------------------------------------------------

TEST(RandomTokenTest, LengthAndCharset) {
  const std::vector<std::pair<size_t, size_t>> sizes = {{0, 0},  {1, 2},   {2, 3},  {3, 4},
                                                        {4, 6},  {16, 22}, {32, 43}, {64, 86}};
  for (auto [bytes, chars] : sizes) {
    std::string token = RandomToken(bytes);
    EXPECT_EQ(token.size(), chars) << bytes;
    for (char c : token) {
      EXPECT_TRUE((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_')
          << token;
    }
    auto raw = Base64Decode(token, /*url=*/true);
    ASSERT_TRUE(raw.ok()) << token;
    EXPECT_EQ(raw->size(), bytes);
  }
}

TEST(RandomTokenTest, Unique) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) seen.insert(RandomToken(16));
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Sha256Test, StreamingEqualsOneShot) {
  std::string data;
  for (int i = 0; i < 100000; ++i) data.push_back(static_cast<char>(i * 131 + (i >> 7)));
  const std::string expected = Sha256Hex(data);
  ASSERT_EQ(expected.size(), 64u);
  for (size_t split : {size_t{0}, size_t{1}, size_t{55}, size_t{63}, size_t{64}, size_t{65},
                       size_t{4096}, data.size() - 1, data.size()}) {
    Sha256 sha;
    sha.Update(data.data(), split);
    sha.Update(data.data() + split, data.size() - split);
    EXPECT_EQ(sha.HexDigest(), expected) << "split at " << split;
  }
  // Byte by byte, and uneven chunks.
  Sha256 bytewise;
  for (char c : std::string("abc")) bytewise.Update(&c, 1);
  EXPECT_EQ(bytewise.HexDigest(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 chunks;
  for (size_t pos = 0, step = 1; pos < data.size(); pos += step, step = step * 3 % 9973 + 1) {
    chunks.Update(data.data() + pos, std::min(step, data.size() - pos));
  }
  EXPECT_EQ(chunks.HexDigest(), expected);
}

TEST(Sha256Test, MillionAs) {
  Sha256 sha;
  const std::string chunk(1000, 'a');
  for (int i = 0; i < 1000; ++i) sha.Update(chunk);
  EXPECT_EQ(sha.HexDigest(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256Test, DigestIsStableAndMovesCarryState) {
  Sha256 a;
  a.Update("ab", 2);
  Sha256 b(std::move(a));
  b.Update("c", 1);
  const std::string digest = b.HexDigest();
  EXPECT_EQ(digest, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(b.HexDigest(), digest);  // a second call returns the same digest
  Sha256 c;
  c = std::move(b);
  EXPECT_EQ(c.HexDigest(), digest);
}

// ---- Base64 -----------------------------------------------------------------------------------

TEST(Base64Test, Rfc4648Vectors) {
  const std::vector<std::vector<std::string>> vectors = {
      {"", "", ""},
      {"f", "Zg==", "Zg"},
      {"fo", "Zm8=", "Zm8"},
      {"foo", "Zm9v", "Zm9v"},
      {"foob", "Zm9vYg==", "Zm9vYg"},
      {"fooba", "Zm9vYmE=", "Zm9vYmE"},
      {"foobar", "Zm9vYmFy", "Zm9vYmFy"},
  };
  for (const auto& v : vectors) {
    EXPECT_EQ(Base64Encode(v[0]), v[1]);
    EXPECT_EQ(Base64Encode(v[0], /*url=*/true), v[2]);
    auto std_back = Base64Decode(v[1]);
    ASSERT_TRUE(std_back.ok()) << v[1] << ": " << std_back.status().ToString();
    EXPECT_EQ(*std_back, v[0]);
    auto url_back = Base64Decode(v[2], /*url=*/true);
    ASSERT_TRUE(url_back.ok()) << v[2] << ": " << url_back.status().ToString();
    EXPECT_EQ(*url_back, v[0]);
  }
}

TEST(Base64Test, TheTwoAlphabets) {
  const std::string bytes = "\xfb\xff"s;
  EXPECT_EQ(Base64Encode(bytes), "+/8=");
  EXPECT_EQ(Base64Encode(bytes, /*url=*/true), "-_8");
  const std::string all = "\x00\x10\x83\x10\x51\x87\x20\x92\x8b\x30\xd3\x8f\x41\x14\x93\x51\x55\x97"
                          "\x61\x96\x9b\x71\xd7\x9f\x82\x18\xa3\x92\x59\xa7\xa2\x9a\xab\xb2\xdb\xaf"
                          "\xc3\x1c\xb3\xd3\x5d\xb7\xe3\x9e\xbb\xf3\xdf\xbf"s;
  EXPECT_EQ(Base64Encode(all),
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");
  EXPECT_EQ(Base64Encode(all, /*url=*/true),
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");
  // Each alphabet's special characters are foreign to the other.
  EXPECT_FALSE(Base64Decode("-_8=").ok());
  EXPECT_FALSE(Base64Decode("+/8", /*url=*/true).ok());
  auto back = Base64Decode("-_8", /*url=*/true);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, bytes);
}

TEST(Base64Test, EveryLengthAndByteValueRoundTrips) {
  std::string data;
  for (int len = 0; len <= 300; ++len) {
    for (bool url : {false, true}) {
      std::string text = Base64Encode(data, url);
      auto back = Base64Decode(text, url);
      ASSERT_TRUE(back.ok()) << len << " " << url << ": " << back.status().ToString();
      EXPECT_EQ(*back, data) << len << " " << url;
    }
    data.push_back(static_cast<char>(len * 167 + 13));  // covers all 256 values
  }
}

TEST(Base64Test, StrictDecodingRejectsBadInput) {
  for (const std::string& s :
       {"Zg"s, "Zg="s, "Zg==="s, "Z==="s, "===="s, "=Zg="s, "Zm8=Zm8="s, "Z=g="s, "Zm9v\n"s,
        " Zm9v"s, "Zm9v "s, "Zm 9v"s, "Zm9v\0"s, "Zm\09v"s, "Zh=="s, "Zm9="s, "Z"s, "Zm9vZ"s,
        "Zm9v-_=="s, "Zm9v\xc3\xa9"s, "Zm.v"s}) {
    auto r = Base64Decode(s);
    EXPECT_FALSE(r.ok()) << "standard accepted: " << s;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    }
  }
  for (const std::string& s : {"Zg=="s, "Zg="s, "Zm8="s, "Z"s, "Zm9vZ"s, "Zh"s, "Zm9"s, "+/8"s,
                               "Zm9v\n"s, " Zm9v"s, "Zm9v\0"s, "Zm.v"s, "="s}) {
    auto r = Base64Decode(s, /*url=*/true);
    EXPECT_FALSE(r.ok()) << "url accepted: " << s;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    }
  }
}

// ---- SecretBox --------------------------------------------------------------------------------

std::string TestKey(char fill = 'k') { return std::string(SecretBox::kKeySize, fill); }

TEST(SecretBoxTest, SealOpenRoundTrip) {
  SecretBox box = SecretBox::FromKey(TestKey());
  for (const std::string& plain : {"hunter2"s, ""s, "a\0b\xff"s, std::string(100000, 'x')}) {
    for (const std::string& aad : {"secret/42"s, ""s}) {
      auto sealed = box.Seal(plain, aad);
      ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
      EXPECT_EQ(sealed->rfind("v1.", 0), 0u);
      auto raw = Base64Decode(sealed->substr(3), /*url=*/true);
      ASSERT_TRUE(raw.ok());
      EXPECT_EQ(raw->size(), 12 + plain.size() + 16);
      if (!plain.empty()) {  // not in the clear
        EXPECT_EQ(raw->find(plain), std::string::npos);
      }
      auto opened = box.Open(*sealed, aad);
      ASSERT_TRUE(opened.ok()) << opened.status().ToString();
      EXPECT_EQ(*opened, plain);
    }
  }
}

// Sealed by pyca/cryptography: AESGCM(bytes(range(32))).encrypt(bytes(range(100, 112)),
// b"hunter2", b"secret/42"), nonce prepended, base64url without padding.
TEST(SecretBoxTest, OpensAValueSealedElsewhere) {
  std::string key;
  for (int i = 0; i < 32; ++i) key.push_back(static_cast<char>(i));
  SecretBox box = SecretBox::FromKey(key);
  const std::string sealed = "v1.ZGVmZ2hpamtsbW5vIG6wEhybZCFVWSKm27b-XYMImYWRNFQ";
  auto opened = box.Open(sealed, "secret/42");
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(*opened, "hunter2");
  EXPECT_FALSE(box.Open(sealed, "secret/43").ok());
}

TEST(SecretBoxTest, TwoSealsOfOnePlaintextDiffer) {
  SecretBox box = SecretBox::FromKey(TestKey());
  auto a = box.Seal("same", "secret/1");
  auto b = box.Seal("same", "secret/1");
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_NE(a->substr(0, 3 + 16), b->substr(0, 3 + 16));  // the nonces differ
}

TEST(SecretBoxTest, EverySingleByteFlipIsRejected) {
  SecretBox box = SecretBox::FromKey(TestKey());
  // 12 + 6 + 16 = 34 bytes: the last base64 character carries 4 unused bits, so flips there test
  // the decoder's strictness too.
  auto sealed = box.Seal("s3cr3t", "secret/42");
  ASSERT_TRUE(sealed.ok());
  ASSERT_EQ(sealed->size(), 3 + 46u);
  for (size_t pos = 0; pos < sealed->size(); ++pos) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = *sealed;
      bad[pos] = static_cast<char>(bad[pos] ^ (1 << bit));
      auto opened = box.Open(bad, "secret/42");
      EXPECT_FALSE(opened.ok()) << "flip of bit " << bit << " at " << pos << " accepted";
      if (!opened.ok()) {
        EXPECT_EQ(opened.status().code(), StatusCode::kCorruption);
      }
    }
  }
  // Every truncation, and trailing bytes.
  for (size_t n = 0; n < sealed->size(); ++n) {
    EXPECT_FALSE(box.Open(sealed->substr(0, n), "secret/42").ok()) << n;
  }
  for (const std::string& tail : {"A"s, "AA"s, "AAAA"s, "="s, "\n"s}) {
    EXPECT_FALSE(box.Open(*sealed + tail, "secret/42").ok()) << tail;
  }
  EXPECT_TRUE(box.Open(*sealed, "secret/42").ok());
}

TEST(SecretBoxTest, WrongAadOrKeyIsRejected) {
  SecretBox box = SecretBox::FromKey(TestKey());
  auto sealed = box.Seal("hunter2", "secret/42");
  ASSERT_TRUE(sealed.ok());
  for (const std::string& aad : {"secret/43"s, "secret/4"s, "secret/42 "s, ""s, "Secret/42"s}) {
    auto opened = box.Open(*sealed, aad);
    EXPECT_FALSE(opened.ok()) << aad;
    if (!opened.ok()) {
      EXPECT_EQ(opened.status().code(), StatusCode::kCorruption);
    }
  }
  auto no_aad = box.Seal("hunter2", "");
  ASSERT_TRUE(no_aad.ok());
  EXPECT_FALSE(box.Open(*no_aad, "x").ok());

  SecretBox other = SecretBox::FromKey(TestKey('K'));
  auto opened = other.Open(*sealed, "secret/42");
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), StatusCode::kCorruption);
}

TEST(SecretBoxTest, MalformedSealedValuesAreCorruption) {
  SecretBox box = SecretBox::FromKey(TestKey());
  auto sealed = box.Seal("hunter2", "a");
  ASSERT_TRUE(sealed.ok());
  const std::string body = sealed->substr(3);
  for (const std::string& s :
       {""s, "v1"s, "v1."s, "v2." + body, "V1." + body, body, "v1.." + body, "v1.!!!!"s,
        "v1." + Base64Encode(std::string(27, 'x'), /*url=*/true),
        "v1." + Base64Encode(std::string(28, 'x'), /*url=*/true)}) {
    auto opened = box.Open(s, "a");
    EXPECT_FALSE(opened.ok()) << s;
    if (!opened.ok()) {
      EXPECT_EQ(opened.status().code(), StatusCode::kCorruption) << s;
    }
  }
}

TEST(SecretBoxTest, CopiesAndMovesKeepTheKey) {
  SecretBox box = SecretBox::FromKey(TestKey());
  auto sealed = box.Seal("v", "r");
  ASSERT_TRUE(sealed.ok());
  SecretBox copy = box;
  SecretBox moved = std::move(box);
  EXPECT_EQ(copy.Open(*sealed, "r").value(), "v");
  EXPECT_EQ(moved.Open(*sealed, "r").value(), "v");
}

class SecretBoxFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "depot_crypto_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/secret.key";
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  void WriteKeyFile(const std::string& content, mode_t mode) {
    { std::ofstream(path_, std::ios::binary | std::ios::trunc) << content; }
    ASSERT_EQ(chmod(path_.c_str(), mode), 0);
  }

  std::vector<std::string> DirEntries() {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      out.push_back(e.path().filename().string());
    }
    return out;
  }

  std::string dir_;
  std::string path_;
};

TEST_F(SecretBoxFileTest, CreatesA0600KeyFileAndReloadsTheSameKey) {
  auto first = SecretBox::LoadOrCreate(path_);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  struct stat st;
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_size, 32);
  EXPECT_EQ(DirEntries(), std::vector<std::string>{"secret.key"});  // no temp file left

  auto sealed = first->Seal("db password", "secret/7");
  ASSERT_TRUE(sealed.ok());

  auto second = SecretBox::LoadOrCreate(path_);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  auto opened = second->Open(*sealed, "secret/7");
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(*opened, "db password");

  // The file holds the raw key.
  std::ifstream in(path_, std::ios::binary);
  std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_EQ(raw.size(), 32u);
  EXPECT_EQ(SecretBox::FromKey(raw).Open(*sealed, "secret/7").value(), "db password");
}

TEST_F(SecretBoxFileTest, TwoFreshKeyFilesDiffer) {
  auto a = SecretBox::LoadOrCreate(path_);
  ASSERT_TRUE(a.ok());
  auto other = SecretBox::LoadOrCreate(dir_ + "/other.key");
  ASSERT_TRUE(other.ok());
  auto sealed = a->Seal("x", "r");
  ASSERT_TRUE(sealed.ok());
  EXPECT_FALSE(other->Open(*sealed, "r").ok());
}

TEST_F(SecretBoxFileTest, UsesAnExistingKeyFile) {
  WriteKeyFile(TestKey('z'), 0600);
  auto box = SecretBox::LoadOrCreate(path_);
  ASSERT_TRUE(box.ok()) << box.status().ToString();
  auto sealed = SecretBox::FromKey(TestKey('z')).Seal("v", "r");
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(box->Open(*sealed, "r").value(), "v");
  // Owner read-only is fine too.
  ASSERT_EQ(chmod(path_.c_str(), 0400), 0);
  EXPECT_TRUE(SecretBox::LoadOrCreate(path_).ok());
}

TEST_F(SecretBoxFileTest, RefusesAKeyFileOthersCanReach) {
  for (mode_t mode : {0644, 0640, 0604, 0660, 0602, 0620, 0666}) {
    WriteKeyFile(TestKey(), mode);
    auto box = SecretBox::LoadOrCreate(path_);
    ASSERT_FALSE(box.ok()) << "mode 0" << (mode >> 6) << ((mode >> 3) & 7) << (mode & 7);
    EXPECT_EQ(box.status().code(), StatusCode::kPermissionDenied) << box.status().ToString();
  }
}

TEST_F(SecretBoxFileTest, RefusesAKeyFileOfTheWrongSize) {
  for (size_t size : {size_t{31}, size_t{0}, size_t{33}, size_t{64}}) {
    WriteKeyFile(std::string(size, 'k'), 0600);
    auto box = SecretBox::LoadOrCreate(path_);
    ASSERT_FALSE(box.ok()) << size;
    EXPECT_EQ(box.status().code(), StatusCode::kCorruption) << box.status().ToString();
    // The bad file is left for the operator, not replaced.
    struct stat st;
    ASSERT_EQ(stat(path_.c_str(), &st), 0);
    EXPECT_EQ(static_cast<size_t>(st.st_size), size);
  }
}

TEST_F(SecretBoxFileTest, FailsWithoutCreatingWhenTheDirectoryIsMissing) {
  auto box = SecretBox::LoadOrCreate(dir_ + "/missing/secret.key");
  ASSERT_FALSE(box.ok());
  EXPECT_EQ(box.status().code(), StatusCode::kNotFound) << box.status().ToString();
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/missing"));
}

TEST_F(SecretBoxFileTest, RefusesADirectory) {
  ASSERT_TRUE(std::filesystem::create_directory(path_));
  auto box = SecretBox::LoadOrCreate(path_);
  EXPECT_FALSE(box.ok());
}

}  // namespace
}  // namespace depot::opsd
