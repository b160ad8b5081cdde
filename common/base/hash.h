// Checksums and randomness used across Depot.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace depot {

// Incremental zlib/IEEE CRC-32 (the one FastDFS puts in file IDs). Start with crc = 0.
uint32_t Crc32Update(uint32_t crc, const void* data, size_t len);
inline uint32_t Crc32(std::string_view s) { return Crc32Update(0, s.data(), s.size()); }

// A thread-local, well-seeded 64-bit random number (not for cryptography).
uint64_t RandomU64();
// `n` bytes from the OpenSSL CSPRNG, for nonces and secrets.
std::string SecureRandomBytes(size_t n);

// MD5, raw 16 bytes. Only where a compatible format demands it (FastDFS's HTTP token).
std::string Md5(std::string_view data);
// HMAC-SHA256(key, data), raw 32 bytes.
std::string HmacSha256(std::string_view key, std::string_view data);
// Constant-time equality.
bool ConstantTimeEquals(std::string_view a, std::string_view b);
// Lowercase hex.
std::string HexEncode(std::string_view bytes);

// Monotonic clock in nanoseconds; wall clock in unix seconds.
int64_t MonotonicNanos();
int64_t UnixSeconds();
int64_t UnixNanos();

}  // namespace depot
