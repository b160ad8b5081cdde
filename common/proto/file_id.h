// File IDs, byte-compatible with FastDFS: `<group>/M<NN>/<XX>/<YY>/<name>`.
// The format is documented in doc/file-id.md (with a worked example); golden IDs recorded from a
// real FastDFS cluster are decoded in file_id_test.cc.
//
// <name> = 27 characters of base64 (alphabet A-Z a-z 0-9 '-' '_', no padding) of 20 bytes:
//   source IPv4 (network order) 4 | creation unix time 4 | size word 8 | CRC32 4   (big-endian)
// then a suffix: random digits so that digits + ".ext" is 7 characters (7 digits without an
// extension), and for a slave file the slave prefix before the ".ext".
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/base/status.h"

namespace depot::proto {

inline constexpr size_t kFileNameB64Len = 27;
inline constexpr size_t kFileSuffixLen = 7;
inline constexpr size_t kTrunkInfoB64Len = 16;  // base64 of trunk id, offset and size (3 x 4 bytes)
inline constexpr size_t kMaxGroupLen = 16;
inline constexpr uint64_t kSizeMarker = 0x8000000000000000ULL;
inline constexpr uint64_t kAppenderBit = 1ULL << 58;
inline constexpr uint64_t kTrunkBit = 1ULL << 59;

// The 20 bytes encoded at the start of a file name.
struct FileNameFields {
  uint32_t source_ip = 0;    // IPv4 in host order (127.0.0.1 = 0x7f000001)
  uint32_t create_time = 0;  // unix seconds
  uint64_t size_word = 0;    // see MakeSizeWord()
  uint32_t crc32 = 0;
};

// Size word of a new file: marker bit, 23 random bits and flags above 32, size below (files under
// 4 GiB); files of 4 GiB and more store the plain size as FastDFS does. Appender files carry 0.
uint64_t MakeSizeWord(uint64_t size, bool appender, uint64_t random);
// The size recorded in a size word (for appender files it is not meaningful).
uint64_t SizeFromWord(uint64_t size_word);

// Size word of a file stored in a trunk (MakeSizeWord with the trunk bit).
uint64_t MakeTrunkSizeWord(uint64_t size, uint64_t random);

// Where a trunk file ID's content lives: the 12 bytes after the 20 of FileNameFields, as 16
// base64 characters in the name (FastDFS's layout): trunk file id, offset of the slot in it and
// the slot's size, each 4 bytes big-endian.
struct TrunkInfo {
  uint32_t trunk_id = 0;
  uint32_t offset = 0;
  uint32_t alloc = 0;
};
std::string EncodeTrunkInfo(const TrunkInfo& t);

// Base64 with FastDFS's alphabet. Decoding rejects any other character.
std::string Base64Encode(std::string_view bytes);
Result<std::string> Base64Decode(std::string_view text);

// Builds the file-name part: base64(fields) + random digits + ("." + ext if any).
// `ext` must be valid (ValidateExt) and at most 6 characters.
std::string MakeFileName(const FileNameFields& f, std::string_view ext, uint64_t random);
// The 27 base64 characters that start a file name.
std::string EncodeNameFields(const FileNameFields& f);
// FastDFS's anti-leech token for HTTP reads (DESIGN.md section 8): lowercase hex MD5 of
// (remote name, i.e. the file ID without the group, + secret + ts in decimal).
std::string MakeHttpToken(std::string_view remote_name, std::string_view secret, int64_t ts);
// Decodes the fields at the start of a file name (its first 27 characters).
Result<FileNameFields> DecodeNameFields(std::string_view name);

struct FileId {
  std::string group;
  int store_path = 0;  // M<NN>
  int dir1 = 0;        // <XX>
  int dir2 = 0;        // <YY>
  std::string name;    // file-name part, as on disk
  FileNameFields fields;

  // "M00/1F/38/<name>": what FastDFS calls the remote file name.
  std::string RemoteName() const;
  // "<group>/<remote name>".
  std::string ToString() const;
  // Path relative to the store path: "data/1F/38/<name>".
  std::string RelativePath() const;
  bool IsAppender() const { return (fields.size_word & kAppenderBit) != 0 && IsMarked(); }
  bool IsTrunk() const { return (fields.size_word & kTrunkBit) != 0 && IsMarked(); }
  bool IsMarked() const { return (fields.size_word & kSizeMarker) != 0; }
  // True when the name's size and CRC32 are the content's: not an appender file (its content
  // changes) nor a slave (its name carries the master's). Such files are checked by their name.
  bool NamePinsContent() const { return !IsAppender() && !IsSlave(); }
  // For a trunk file ID (IsTrunk() and not a slave): its slot. Set by the parsers.
  TrunkInfo trunk;
  // The content lives in a trunk slot (a slave of a trunk file is a file of its own).
  bool InTrunk() const { return IsTrunk() && !IsSlave(); }
  // True when the name carries more than the 7-character suffix (a slave name); a trunk name
  // has 16 more characters (its trunk position) before the suffix.
  bool IsSlave() const {
    return name.size() > kFileNameB64Len + (IsTrunk() ? kTrunkInfoB64Len : 0) + kFileSuffixLen;
  }
};

// Slave file names (FastDFS rule): the master's name without its ".ext", then the prefix, then
// "." + ext (the master's extension when `ext` is empty; none when both are empty). The slave
// lives in the master's directory. InvalidArgument for a bad prefix or extension, or a master
// that is itself a slave.
Result<std::string> MakeSlaveName(const FileId& master, std::string_view prefix,
                                  std::string_view ext);
// Slave prefixes: 1..16 characters of [A-Za-z0-9_-].
Status ValidatePrefix(std::string_view prefix);

// Parses "group/M00/XX/YY/name". Strict: InvalidArgument for anything that is not exactly a file ID
// (bad group, `..`, bad characters, wrong lengths, non-hex directories).
Result<FileId> ParseFileId(std::string_view full);
// Parses the remote name "M00/XX/YY/name" of `group`.
Result<FileId> ParseRemoteName(std::string_view group, std::string_view remote);

// Group names: 1..16 characters of [A-Za-z0-9_-].
Status ValidateGroupName(std::string_view group);
// Extensions: 0..6 characters of [A-Za-z0-9_-].
Status ValidateExt(std::string_view ext);

std::string IpToString(uint32_t ip_host_order);
// Parses dotted IPv4 into host order; InvalidArgument otherwise.
Result<uint32_t> ParseIpv4(std::string_view text);

}  // namespace depot::proto
