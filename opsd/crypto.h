// Cryptography for opsd: password hashes, random tokens, SHA-256, base64, and secrets at rest.
//
// Everything here goes through OpenSSL 3 EVP APIs; nothing logs a password, key, token or
// plaintext. Threading: the free functions are thread-safe. A Sha256 is thread-compatible (one
// thread at a time). A SecretBox is immutable after construction, so Seal and Open may be called
// from any number of threads at once. SecretBox::LoadOrCreate does blocking file I/O: call it at
// start-up, never from a network loop.
//
// Formats (stable; a change needs a new version tag):
//   password hash  "pbkdf2-sha256$<iterations>$<salt>$<hash>", PBKDF2-HMAC-SHA256, salt 16 random
//                  bytes, hash 32 bytes, both standard base64 with '=' padding, iterations in
//                  decimal without leading zeros.
//   sealed secret  "v1." + base64url-no-padding(nonce[12] | ciphertext | tag[16]), AES-256-GCM,
//                  the caller's aad authenticated but not stored.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

#include "common/base/status.h"

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX, kept out of this header.

namespace depot::opsd {

// Bounds on the PBKDF2 iteration count, for new hashes and for stored ones alike: a tampered
// record cannot make a verification run for hours.
inline constexpr int kMinPasswordIterations = 1000;
inline constexpr int kMaxPasswordIterations = 10'000'000;

// Hashes `password` with PBKDF2-HMAC-SHA256, a fresh 16-byte salt and `iterations` rounds, in the
// stored format above. InvalidArgument when `iterations` is outside the bounds or the password is
// longer than 1 MiB; Internal when OpenSSL fails.
Result<std::string> HashPassword(std::string_view password, int iterations);

// True only when `stored` is a well-formed hash (iterations within the bounds) of `password`. The
// derived keys are compared in constant time. Malformed input is false, never an error.
bool VerifyPassword(std::string_view password, std::string_view stored);

// The iteration count recorded in `stored`, or 0 when `stored` is malformed (as VerifyPassword
// judges it). Lets callers re-hash old, weaker hashes after a successful login.
int PasswordIterations(std::string_view stored);

// `bytes` bytes from the OpenSSL CSPRNG, base64url without padding (ceil(4 * bytes / 3) chars).
// Aborts the process only if the CSPRNG fails: a predictable token is worse than no service.
std::string RandomToken(size_t bytes);

// SHA-256 of `data`, 64 lowercase hex digits.
std::string Sha256Hex(std::string_view data);

// RFC 4648 base64. `url` selects the base64url alphabet ('-', '_') without padding; otherwise the
// standard alphabet ('+', '/') with '=' padding.
std::string Base64Encode(std::string_view data, bool url = false);
// Strict inverse of Base64Encode with the same `url`: rejects (InvalidArgument) characters outside
// the alphabet (whitespace included), missing, extra or misplaced padding, an impossible length and
// non-zero unused bits in the last character, so every byte string has exactly one encoding.
Result<std::string> Base64Decode(std::string_view text, bool url = false);

// Streaming SHA-256, for hashing a file as it streams. Thread-compatible; movable, not copyable.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  Sha256(Sha256&& other) noexcept;
  Sha256& operator=(Sha256&& other) noexcept;

  // Adds `n` bytes at `data`. Ignored once HexDigest has been called.
  void Update(const void* data, size_t n);
  void Update(std::string_view data) { Update(data.data(), data.size()); }
  // Finishes and returns the 64-digit lowercase hex digest. Call once; later calls return the
  // same digest.
  std::string HexDigest();

 private:
  evp_md_ctx_st* ctx_;  // owned; null after a move
  std::string digest_;  // set by the first HexDigest
};

// Secrets at rest: AES-256-GCM under a 32-byte key kept in a key file (mode 0600). Copyable and
// movable; the key bytes are wiped when a SecretBox is destroyed.
class SecretBox {
 public:
  static constexpr size_t kKeySize = 32;

  // Reads the 32-byte raw key at `path`. When the file does not exist, creates it from RAND_bytes
  // with mode 0600: written to a temp file (O_EXCL) in the same directory, fsynced, linked into
  // place (so a crash never leaves a short key file, and a concurrent creator's key wins), and the
  // directory fsynced. Returns PermissionDenied for a key file readable or writable by group or
  // others, Corruption when its size is not 32, InvalidArgument when it is not a regular file, and
  // the errno-derived Status (naming the path) when a file operation fails.
  static Result<SecretBox> LoadOrCreate(const std::string& path);

  // A box with the given raw key, for tests. `key32` must be 32 bytes; anything else aborts (a
  // programming error, never input from outside).
  static SecretBox FromKey(std::string_view key32);

  SecretBox(const SecretBox&) = default;
  SecretBox& operator=(const SecretBox&) = default;
  SecretBox(SecretBox&&) noexcept = default;
  SecretBox& operator=(SecretBox&&) noexcept = default;
  ~SecretBox();

  // Encrypts `plaintext` under a fresh random 12-byte nonce: "v1." + base64url(nonce | ciphertext |
  // tag). `aad` binds the sealed value to its record (e.g. "secrets/42"): Open with any other aad
  // fails, so a value copied to another record cannot be opened there. InvalidArgument when the
  // plaintext or aad is over 64 MiB; Internal when OpenSSL or the CSPRNG fails.
  Result<std::string> Seal(std::string_view plaintext, std::string_view aad) const;

  // Decrypts what Seal returned for the same `aad`. Corruption when the format, the tag or the aad
  // is wrong (one message for all three); no plaintext is returned unless the tag verifies.
  Result<std::string> Open(std::string_view sealed, std::string_view aad) const;

 private:
  explicit SecretBox(std::string key) : key_(std::move(key)) {}

  std::string key_;  // kKeySize raw bytes
};

}  // namespace depot::opsd
