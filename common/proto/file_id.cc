#include "common/proto/file_id.h"

#include <arpa/inet.h>

#include <cstdio>

#include "common/base/hash.h"
#include "common/proto/protocol.h"

namespace depot::proto {
namespace {

constexpr char kAlphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int B64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

bool IsNameChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;  // FastDFS writes upper-case hex only
}

bool ParseHex2(std::string_view s, int* out) {
  if (s.size() != 2) return false;
  int hi = HexDigit(s[0]), lo = HexDigit(s[1]);
  if (hi < 0 || lo < 0) return false;
  *out = hi * 16 + lo;
  return true;
}

}  // namespace

uint64_t MakeSizeWord(uint64_t size, bool appender, uint64_t random) {
  if (appender) return kSizeMarker | kAppenderBit | ((random & 0x007FFFFFULL) << 32);
  if (size >= (1ULL << 32)) return size;
  return kSizeMarker | ((random & 0x007FFFFFULL) << 32) | size;
}

uint64_t SizeFromWord(uint64_t w) {
  if (w & kSizeMarker) return w & 0xFFFFFFFFULL;
  return w;
}

uint64_t MakeTrunkSizeWord(uint64_t size, uint64_t random) {
  return MakeSizeWord(size, false, random) | kTrunkBit;
}

std::string EncodeTrunkInfo(const TrunkInfo& t) {
  char raw[12];
  PutU32(raw, t.trunk_id);
  PutU32(raw + 4, t.offset);
  PutU32(raw + 8, t.alloc);
  return Base64Encode(std::string_view(raw, 12));
}

std::string Base64Encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(acc >> bits) & 63]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 63]);
  return out;
}

Result<std::string> Base64Decode(std::string_view text) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = B64Value(c);
    if (v < 0) return Status::InvalidArgument("bad base64 character in file name");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

std::string EncodeNameFields(const FileNameFields& f) {
  char raw[20];
  PutU32(raw, f.source_ip);
  PutU32(raw + 4, f.create_time);
  PutU64(raw + 8, f.size_word);
  PutU32(raw + 16, f.crc32);
  return Base64Encode(std::string_view(raw, 20));
}

std::string MakeFileName(const FileNameFields& f, std::string_view ext, uint64_t random) {
  std::string name = EncodeNameFields(f);
  size_t digits = ext.empty() ? kFileSuffixLen : kFileSuffixLen - 1 - ext.size();
  for (size_t i = 0; i < digits; ++i) {
    name.push_back(static_cast<char>('0' + random % 10));
    random /= 10;
  }
  if (!ext.empty()) {
    name.push_back('.');
    name.append(ext);
  }
  return name;
}

std::string FileId::RemoteName() const {
  char buf[16];
  std::snprintf(buf, sizeof buf, "M%02X/%02X/%02X/", store_path, dir1, dir2);
  return buf + name;
}

std::string FileId::ToString() const { return group + "/" + RemoteName(); }

std::string FileId::RelativePath() const {
  char buf[16];
  std::snprintf(buf, sizeof buf, "data/%02X/%02X/", dir1, dir2);
  return buf + name;
}

Status ValidateGroupName(std::string_view group) {
  if (group.empty() || group.size() > kMaxGroupLen) {
    return Status::InvalidArgument("group name must be 1..16 characters");
  }
  for (char c : group) {
    if (!IsNameChar(c)) return Status::InvalidArgument("bad character in group name");
  }
  return Status::OK();
}

Status ValidateExt(std::string_view ext) {
  if (ext.size() > kExtLen) return Status::InvalidArgument("extension longer than 6 characters");
  for (char c : ext) {
    if (!IsNameChar(c)) return Status::InvalidArgument("bad character in extension");
  }
  return Status::OK();
}

Status ValidatePrefix(std::string_view prefix) {
  if (prefix.empty() || prefix.size() > kPrefixLen) {
    return Status::InvalidArgument("slave prefix must be 1..16 characters");
  }
  for (char c : prefix) {
    if (!IsNameChar(c)) return Status::InvalidArgument("bad character in slave prefix");
  }
  return Status::OK();
}

Result<std::string> MakeSlaveName(const FileId& master, std::string_view prefix,
                                  std::string_view ext) {
  DEPOT_RETURN_IF_ERROR(ValidatePrefix(prefix));
  DEPOT_RETURN_IF_ERROR(ValidateExt(ext));
  if (master.IsSlave()) return Status::InvalidArgument("the master is itself a slave file");
  std::string_view base = master.name;
  std::string_view master_ext;
  size_t dot = base.find('.', kFileNameB64Len);
  if (dot != std::string_view::npos) {
    master_ext = base.substr(dot + 1);
    base = base.substr(0, dot);
  }
  std::string out(base);
  out.append(prefix);
  std::string_view e = ext.empty() ? master_ext : ext;
  if (!e.empty()) {
    out.push_back('.');
    out.append(e);
  }
  return out;
}

Result<FileId> ParseRemoteName(std::string_view group, std::string_view remote) {
  DEPOT_RETURN_IF_ERROR(ValidateGroupName(group));
  if (remote.size() > kMaxRemoteNameLen) return Status::InvalidArgument("file name too long");
  // M00/XX/YY/ is 10 characters.
  if (remote.size() < 10 + kFileNameB64Len + kFileSuffixLen) {
    return Status::InvalidArgument("file name too short");
  }
  if (remote[0] != 'M' || remote[3] != '/' || remote[6] != '/' || remote[9] != '/') {
    return Status::InvalidArgument("file name must look like M00/XX/YY/name");
  }
  FileId id;
  id.group = std::string(group);
  if (!ParseHex2(remote.substr(1, 2), &id.store_path) ||
      !ParseHex2(remote.substr(4, 2), &id.dir1) || !ParseHex2(remote.substr(7, 2), &id.dir2)) {
    return Status::InvalidArgument("bad store path or directory in file name");
  }
  std::string_view name = remote.substr(10);
  // Name: 27 base64 chars, then [0-9A-Za-z_-] with at most one '.', never first or last.
  for (char c : name.substr(0, kFileNameB64Len)) {
    if (B64Value(c) < 0) return Status::InvalidArgument("bad character in file name");
  }
  std::string_view suffix = name.substr(kFileNameB64Len);
  size_t dots = 0;
  for (size_t i = 0; i < suffix.size(); ++i) {
    char c = suffix[i];
    if (c == '.') {
      ++dots;
      if (i + 1 == suffix.size()) return Status::InvalidArgument("file name ends with '.'");
      if (suffix.size() - i - 1 > kExtLen) return Status::InvalidArgument("extension too long");
    } else if (!IsNameChar(c)) {
      return Status::InvalidArgument("bad character in file name");
    }
  }
  if (dots > 1) return Status::InvalidArgument("more than one '.' in file name");
  DEPOT_ASSIGN_OR_RETURN(id.fields, DecodeNameFields(name));
  id.name = std::string(name);
  if (id.IsTrunk()) {
    if (name.size() < kFileNameB64Len + kTrunkInfoB64Len + kFileSuffixLen) {
      return Status::InvalidArgument("trunk file name too short");
    }
    std::string_view info = name.substr(kFileNameB64Len, kTrunkInfoB64Len);
    for (char c : info) {
      if (B64Value(c) < 0) return Status::InvalidArgument("bad trunk position in file name");
    }
    auto raw = Base64Decode(info);
    if (!raw.ok() || raw->size() != 12) return Status::InvalidArgument("bad trunk position");
    id.trunk.trunk_id = GetU32(raw->data());
    id.trunk.offset = GetU32(raw->data() + 4);
    id.trunk.alloc = GetU32(raw->data() + 8);
    if (id.trunk.alloc == 0 || id.trunk.offset % id.trunk.alloc != 0 ||
        SizeFromWord(id.fields.size_word) >= id.trunk.alloc) {
      return Status::InvalidArgument("trunk position does not hold the file");
    }
    // The directories of a trunk file ID are its trunk id's two low bytes: one name per file
    // (no alias could dodge its tombstone, metadata or lock).
    if (id.dir1 != static_cast<int>(id.trunk.trunk_id & 0xFF) ||
        id.dir2 != static_cast<int>((id.trunk.trunk_id >> 8) & 0xFF)) {
      return Status::InvalidArgument("trunk file ID with directories other than its trunk's");
    }
  }
  return id;
}

std::string MakeHttpToken(std::string_view remote_name, std::string_view secret, int64_t ts) {
  std::string input(remote_name);
  input.append(secret);
  input += std::to_string(ts);
  return HexEncode(Md5(input));
}

Result<FileNameFields> DecodeNameFields(std::string_view name) {
  if (name.size() < kFileNameB64Len) return Status::InvalidArgument("file name too short");
  auto raw = Base64Decode(name.substr(0, kFileNameB64Len));
  if (!raw.ok()) return std::move(raw).TakeStatus();
  if (raw->size() != 20) return Status::InvalidArgument("bad encoded file name length");
  const char* p = raw->data();
  FileNameFields f;
  f.source_ip = GetU32(p);
  f.create_time = GetU32(p + 4);
  f.size_word = GetU64(p + 8);
  f.crc32 = GetU32(p + 16);
  return f;
}

Result<FileId> ParseFileId(std::string_view full) {
  size_t slash = full.find('/');
  if (slash == std::string_view::npos) return Status::InvalidArgument("file ID has no group");
  return ParseRemoteName(full.substr(0, slash), full.substr(slash + 1));
}

std::string IpToString(uint32_t ip) {
  char buf[INET_ADDRSTRLEN];
  uint32_t n = htonl(ip);
  inet_ntop(AF_INET, &n, buf, sizeof buf);
  return buf;
}

Result<uint32_t> ParseIpv4(std::string_view text) {
  std::string s(text);
  in_addr a;
  if (inet_pton(AF_INET, s.c_str(), &a) != 1) return Status::InvalidArgument("not an IPv4:", s);
  return ntohl(a.s_addr);
}

}  // namespace depot::proto
