#include "opsd/crypto.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "common/base/fs.h"
#include "common/base/hash.h"

namespace depot::opsd {
namespace {

constexpr std::string_view kPasswordScheme = "pbkdf2-sha256";
constexpr size_t kSaltSize = 16;
constexpr size_t kDerivedKeySize = 32;
// PKCS5_PBKDF2_HMAC takes an int length; no real password comes near this.
constexpr size_t kMaxPasswordSize = size_t{1} << 20;

constexpr std::string_view kSealPrefix = "v1.";
constexpr size_t kNonceSize = 12;
constexpr size_t kTagSize = 16;
// The EVP update calls take int lengths; secrets at rest are small.
constexpr size_t kMaxSealInput = size_t{64} << 20;

constexpr char kStdAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr char kUrlAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;

const unsigned char* Bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}
unsigned char* MutableBytes(std::string& s) { return reinterpret_cast<unsigned char*>(s.data()); }

// Wipes a buffer that held key material when it goes out of scope (a moved-from string is empty,
// so a buffer handed on to the caller is not touched).
class Wiper {
 public:
  explicit Wiper(std::string* s) : s_(s) {}
  ~Wiper() {
    if (!s_->empty()) OPENSSL_cleanse(s_->data(), s_->size());
  }
  Wiper(const Wiper&) = delete;
  Wiper& operator=(const Wiper&) = delete;

 private:
  std::string* s_;
};

class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;

 private:
  int fd_;
};

// Our own invariant broken or OpenSSL unusable: there is no safe way on.
[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "depot opsd crypto: %s\n", what);
  std::abort();
}

// `n` bytes from the CSPRNG into `out`; false when RAND_bytes fails (never a weaker fallback).
bool RandomBytes(size_t n, std::string* out) {
  out->assign(n, '\0');
  size_t done = 0;
  while (done < n) {
    size_t chunk = std::min(n - done, size_t{1} << 20);
    if (RAND_bytes(MutableBytes(*out) + done, static_cast<int>(chunk)) != 1) {
      OPENSSL_cleanse(out->data(), out->size());
      out->clear();
      return false;
    }
    done += chunk;
  }
  return true;
}

// Decimal without sign or leading zeros, within the bounds; 0 otherwise. At most 8 digits, so the
// accumulation cannot overflow.
int ParseIterations(std::string_view s) {
  if (s.empty() || s.size() > 8 || s[0] == '0') return 0;
  int value = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return 0;
    value = value * 10 + (c - '0');
  }
  if (value < kMinPasswordIterations || value > kMaxPasswordIterations) return 0;
  return value;
}

struct ParsedPasswordHash {
  int iterations = 0;
  std::string salt;
  std::string hash;
};

// Splits "pbkdf2-sha256$<iterations>$<salt>$<hash>"; false when any part is off.
bool ParsePasswordHash(std::string_view stored, ParsedPasswordHash* out) {
  std::string_view parts[4];
  for (int i = 0; i < 4; ++i) {
    size_t dollar = stored.find('$');
    if (i < 3) {
      if (dollar == std::string_view::npos) return false;
      parts[i] = stored.substr(0, dollar);
      stored.remove_prefix(dollar + 1);
    } else {
      if (dollar != std::string_view::npos) return false;
      parts[i] = stored;
    }
  }
  if (parts[0] != kPasswordScheme) return false;
  out->iterations = ParseIterations(parts[1]);
  if (out->iterations == 0) return false;
  Result<std::string> salt = Base64Decode(parts[2]);
  if (!salt.ok() || salt->size() != kSaltSize) return false;
  Result<std::string> hash = Base64Decode(parts[3]);
  if (!hash.ok() || hash->size() != kDerivedKeySize) return false;
  out->salt = std::move(salt).value();
  out->hash = std::move(hash).value();
  return true;
}

bool Pbkdf2(std::string_view password, std::string_view salt, int iterations, std::string* out) {
  out->assign(kDerivedKeySize, '\0');
  // OpenSSL treats a null password as empty, but an empty string_view's data() need not be null.
  const char* pass = password.empty() ? "" : password.data();
  return PKCS5_PBKDF2_HMAC(pass, static_cast<int>(password.size()), Bytes(salt),
                           static_cast<int>(salt.size()), iterations, EVP_sha256(),
                           static_cast<int>(kDerivedKeySize), MutableBytes(*out)) == 1;
}

int Base64Value(char c, bool url) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == (url ? '-' : '+')) return 62;
  if (c == (url ? '_' : '/')) return 63;
  return -1;
}

// Checks mode, type and size of an open key file and reads its 32 bytes.
Result<std::string> ReadKeyFile(int fd, const std::string& path) {
  struct stat st;
  if (fstat(fd, &st) != 0) return Status::FromErrno(errno, "stat key file", path);
  if (!S_ISREG(st.st_mode)) {
    return Status::InvalidArgument("key file is not a regular file:", path);
  }
  if ((st.st_mode & 077) != 0) {
    return Status::PermissionDenied("key file is accessible to group or others (chmod 600):",
                                    path);
  }
  if (st.st_size != static_cast<off_t>(SecretBox::kKeySize)) {
    return Status::Corruption("key file is not 32 bytes:", path);
  }
  // One byte more than expected, to notice a file that changed size since the fstat.
  std::string key(SecretBox::kKeySize + 1, '\0');
  Wiper wipe(&key);
  size_t got = 0;
  while (got < key.size()) {
    ssize_t n = read(fd, key.data() + got, key.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "read key file", path);
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  if (got != SecretBox::kKeySize) return Status::Corruption("key file is not 32 bytes:", path);
  key.resize(SecretBox::kKeySize);
  return key;
}

Result<std::string> LoadKey(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return Status::FromErrno(errno, "open key file", path);
  ScopedFd closer(fd);
  return ReadKeyFile(fd, path);
}

// Creates `path` holding a fresh key. The key is written and fsynced under a temp name and then
// linked into place, so `path` never exists short; link() refuses to replace, so AlreadyExists
// means another process created the key first and the caller should load theirs.
Result<std::string> CreateKey(const std::string& path) {
  std::string key;
  Wiper wipe(&key);
  if (!RandomBytes(SecretBox::kKeySize, &key)) {
    return Status::Internal("RAND_bytes failed creating key file", path);
  }
  const std::string tmp =
      path + ".tmp." + std::to_string(getpid()) + "." + std::to_string(RandomU64());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Status::FromErrno(errno, "create key file", tmp);
  Status s;
  // The umask can only clear bits; fchmod also restores owner rw if it cleared those.
  if (fchmod(fd, 0600) != 0) s = Status::FromErrno(errno, "chmod key file", tmp);
  if (s.ok()) s = WriteAll(fd, key.data(), key.size(), tmp);
  if (s.ok() && fsync(fd) != 0) s = Status::FromErrno(errno, "fsync key file", tmp);
  if (close(fd) != 0 && s.ok()) s = Status::FromErrno(errno, "close key file", tmp);
  if (s.ok() && link(tmp.c_str(), path.c_str()) != 0) {
    s = Status::FromErrno(errno, "link key file", path);
  }
  unlink(tmp.c_str());
  if (!s.ok()) return s;
  DEPOT_RETURN_IF_ERROR(FsyncDir(DirName(path)));
  return key;
}

}  // namespace

// ---- Passwords ---------------------------------------------------------------------------------

Result<std::string> HashPassword(std::string_view password, int iterations) {
  if (iterations < kMinPasswordIterations || iterations > kMaxPasswordIterations) {
    return Status::InvalidArgument("password hash iterations out of range:",
                                   std::to_string(iterations));
  }
  if (password.size() > kMaxPasswordSize) {
    return Status::InvalidArgument("password longer than 1 MiB");
  }
  std::string salt;
  if (!RandomBytes(kSaltSize, &salt)) return Status::Internal("RAND_bytes failed for a salt");
  std::string derived;
  if (!Pbkdf2(password, salt, iterations, &derived)) {
    return Status::Internal("PKCS5_PBKDF2_HMAC failed");
  }
  std::string out(kPasswordScheme);
  out += '$';
  out += std::to_string(iterations);
  out += '$';
  out += Base64Encode(salt);
  out += '$';
  out += Base64Encode(derived);
  return out;
}

bool VerifyPassword(std::string_view password, std::string_view stored) {
  if (password.size() > kMaxPasswordSize) return false;
  ParsedPasswordHash parsed;
  if (!ParsePasswordHash(stored, &parsed)) return false;
  std::string derived;
  if (!Pbkdf2(password, parsed.salt, parsed.iterations, &derived)) return false;
  return ConstantTimeEquals(derived, parsed.hash);
}

int PasswordIterations(std::string_view stored) {
  ParsedPasswordHash parsed;
  return ParsePasswordHash(stored, &parsed) ? parsed.iterations : 0;
}

// ---- Tokens, digests, comparison ---------------------------------------------------------------

std::string RandomToken(size_t bytes) {
  std::string raw;
  Wiper wipe(&raw);
  if (!RandomBytes(bytes, &raw)) Die("RAND_bytes failed; refusing to issue a predictable token");
  return Base64Encode(raw, /*url=*/true);
}

std::string Sha256Hex(std::string_view data) {
  Sha256 sha;
  sha.Update(data);
  return sha.HexDigest();
}

// ---- Base64 -----------------------------------------------------------------------------------

std::string Base64Encode(std::string_view data, bool url) {
  const char* alphabet = url ? kUrlAlphabet : kStdAlphabet;
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  auto at = [&data](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(data[i])); };
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    uint32_t v = (at(i) << 16) | (at(i + 1) << 8) | at(i + 2);
    out.push_back(alphabet[v >> 18]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.push_back(alphabet[(v >> 6) & 63]);
    out.push_back(alphabet[v & 63]);
  }
  size_t rest = data.size() - i;
  if (rest == 1) {
    uint32_t v = at(i) << 16;
    out.push_back(alphabet[v >> 18]);
    out.push_back(alphabet[(v >> 12) & 63]);
    if (!url) out.append("==");
  } else if (rest == 2) {
    uint32_t v = (at(i) << 16) | (at(i + 1) << 8);
    out.push_back(alphabet[v >> 18]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.push_back(alphabet[(v >> 6) & 63]);
    if (!url) out.push_back('=');
  }
  return out;
}

Result<std::string> Base64Decode(std::string_view text, bool url) {
  std::string_view body = text;
  if (!url) {
    if (text.size() % 4 != 0) return Status::InvalidArgument("base64: length not a multiple of 4");
    // At most two '=' and only at the very end; any other '=' fails as a bad character below.
    size_t pad = 0;
    if (!text.empty() && text.back() == '=') {
      pad = (text.size() >= 2 && text[text.size() - 2] == '=') ? 2 : 1;
    }
    body = text.substr(0, text.size() - pad);
  }
  if (body.size() % 4 == 1) return Status::InvalidArgument("base64: impossible length");
  std::string out;
  out.reserve(body.size() / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : body) {
    int v = Base64Value(c, url);
    if (v < 0) return Status::InvalidArgument("base64: character outside the alphabet");
    acc = ((acc << 6) | static_cast<uint32_t>(v)) & 0xfff;  // never more than 12 live bits
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  // 2 or 4 bits are left over after a partial group; a canonical encoding leaves them zero.
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
    return Status::InvalidArgument("base64: non-zero trailing bits");
  }
  return out;
}

// ---- Sha256 -----------------------------------------------------------------------------------

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) {
    Die("cannot initialise SHA-256");
  }
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

Sha256::Sha256(Sha256&& other) noexcept
    : ctx_(std::exchange(other.ctx_, nullptr)), digest_(std::move(other.digest_)) {}

Sha256& Sha256::operator=(Sha256&& other) noexcept {
  if (this != &other) {
    EVP_MD_CTX_free(ctx_);
    ctx_ = std::exchange(other.ctx_, nullptr);
    digest_ = std::move(other.digest_);
  }
  return *this;
}

void Sha256::Update(const void* data, size_t n) {
  if (ctx_ == nullptr || !digest_.empty() || n == 0) return;
  // A silently wrong digest would be worse than stopping.
  if (EVP_DigestUpdate(ctx_, data, n) != 1) Die("EVP_DigestUpdate failed");
}

std::string Sha256::HexDigest() {
  if (ctx_ == nullptr || !digest_.empty()) return digest_;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx_, md, &len) != 1) Die("EVP_DigestFinal_ex failed");
  digest_ = HexEncode(std::string_view(reinterpret_cast<const char*>(md), len));
  return digest_;
}

// ---- SecretBox --------------------------------------------------------------------------------

Result<SecretBox> SecretBox::LoadOrCreate(const std::string& path) {
  Result<std::string> key = LoadKey(path);
  if (!key.ok() && key.status().IsNotFound()) {
    key = CreateKey(path);
    if (!key.ok() && key.status().code() == StatusCode::kAlreadyExists) key = LoadKey(path);
  }
  if (!key.ok()) return std::move(key).TakeStatus();
  SecretBox box(std::move(key).value());
  return box;
}

SecretBox SecretBox::FromKey(std::string_view key32) {
  if (key32.size() != kKeySize) Die("SecretBox::FromKey needs a 32-byte key");
  return SecretBox(std::string(key32));
}

SecretBox::~SecretBox() {
  if (!key_.empty()) OPENSSL_cleanse(key_.data(), key_.size());
}

Result<std::string> SecretBox::Seal(std::string_view plaintext, std::string_view aad) const {
  if (key_.size() != kKeySize) return Status::Internal("SecretBox without a key (moved from)");
  if (plaintext.size() > kMaxSealInput || aad.size() > kMaxSealInput) {
    return Status::InvalidArgument("secret or aad larger than 64 MiB");
  }
  // nonce | ciphertext | tag, encrypted in place.
  std::string raw(kNonceSize + plaintext.size() + kTagSize, '\0');
  unsigned char* nonce = MutableBytes(raw);
  unsigned char* ct = nonce + kNonceSize;
  unsigned char* tag = ct + plaintext.size();
  if (RAND_bytes(nonce, static_cast<int>(kNonceSize)) != 1) {
    return Status::Internal("RAND_bytes failed for a nonce");
  }
  auto fail = [] { return Status::Internal("AES-256-GCM seal failed"); };
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (ctx == nullptr) return fail();
  int len = 0;
  if (EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(kNonceSize),
                          nullptr) != 1 ||
      EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, Bytes(key_), nonce) != 1) {
    return fail();
  }
  if (!aad.empty() &&
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, Bytes(aad), static_cast<int>(aad.size())) != 1) {
    return fail();
  }
  if (!plaintext.empty() &&
      (EVP_EncryptUpdate(ctx.get(), ct, &len, Bytes(plaintext),
                         static_cast<int>(plaintext.size())) != 1 ||
       len != static_cast<int>(plaintext.size()))) {
    return fail();
  }
  // GCM is a stream mode: Final writes no bytes.
  if (EVP_EncryptFinal_ex(ctx.get(), tag, &len) != 1 || len != 0 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagSize), tag) != 1) {
    return fail();
  }
  std::string sealed(kSealPrefix);
  sealed += Base64Encode(raw, /*url=*/true);
  return sealed;
}

Result<std::string> SecretBox::Open(std::string_view sealed, std::string_view aad) const {
  if (key_.size() != kKeySize) return Status::Internal("SecretBox without a key (moved from)");
  // One message for format, tag and aad: the caller cannot act on the difference.
  auto bad = [] { return Status::Corruption("sealed secret does not open (format, tag or aad)"); };
  if (aad.size() > kMaxSealInput || !sealed.starts_with(kSealPrefix)) return bad();
  Result<std::string> raw = Base64Decode(sealed.substr(kSealPrefix.size()), /*url=*/true);
  if (!raw.ok() || raw->size() < kNonceSize + kTagSize ||
      raw->size() - kNonceSize - kTagSize > kMaxSealInput) {
    return bad();
  }
  const size_t ct_size = raw->size() - kNonceSize - kTagSize;
  const unsigned char* nonce = Bytes(*raw);
  const unsigned char* ct = nonce + kNonceSize;
  unsigned char tag[kTagSize];  // SET_TAG takes a non-const pointer
  std::memcpy(tag, ct + ct_size, kTagSize);

  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (ctx == nullptr ||
      EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(kNonceSize),
                          nullptr) != 1 ||
      EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, Bytes(key_), nonce) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagSize), tag) !=
          1) {
    return Status::Internal("AES-256-GCM open failed to initialise");
  }
  int len = 0;
  if (!aad.empty() &&
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, Bytes(aad), static_cast<int>(aad.size())) != 1) {
    return bad();
  }
  std::string plain(ct_size, '\0');
  Wiper wipe(&plain);  // unverified plaintext never leaves this function
  if (ct_size > 0 && (EVP_DecryptUpdate(ctx.get(), MutableBytes(plain), &len, ct,
                                        static_cast<int>(ct_size)) != 1 ||
                      len != static_cast<int>(ct_size))) {
    return bad();
  }
  if (EVP_DecryptFinal_ex(ctx.get(), MutableBytes(plain) + ct_size, &len) != 1 || len != 0) {
    return bad();
  }
  return plain;
}

}  // namespace depot::opsd
