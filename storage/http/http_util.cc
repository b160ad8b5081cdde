#include "storage/http/http_util.h"

#include <ctime>

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "common/base/fs.h"
#include "common/base/hash.h"

namespace depot::storage::http {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t p = s.find(sep, start);
    out.push_back(s.substr(start, p == std::string_view::npos ? std::string_view::npos : p - start));
    if (p == std::string_view::npos) return out;
    start = p + 1;
  }
}

// Digits only, at most 18 of them (no overflow), nullopt otherwise.
std::optional<uint64_t> Number(std::string_view s) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

}  // namespace

Result<std::string> PercentDecode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%') {
      if (i + 2 >= in.size()) return Status::InvalidArgument("bad percent escape");
      int hi = HexValue(in[i + 1]);
      int lo = HexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return Status::InvalidArgument("bad percent escape");
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

Result<Target> ParseTarget(std::string_view uri, std::string_view group) {
  if (uri.size() > 4096) return Status::InvalidArgument("request target too long");
  size_t q = uri.find('?');
  std::string_view path = uri.substr(0, q);
  std::string_view query = q == std::string_view::npos ? std::string_view() : uri.substr(q + 1);
  if (path.size() < 2 || path[0] != '/') return Status::InvalidArgument("path must start with /");
  for (char c : path) {
    // A file ID is [A-Za-z0-9-_./] only: no escapes, no control bytes, nothing to decode.
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
              c == '/';
    if (!ok) return Status::InvalidArgument("character not allowed in a file ID path");
  }
  path.remove_prefix(1);
  size_t slash = path.find('/');
  if (slash == std::string_view::npos) return Status::InvalidArgument("no file ID in the path");
  std::string_view g = path.substr(0, slash);
  if (!group.empty() && g != group) return Status::NotFound("file of another group");
  Target t;
  DEPOT_ASSIGN_OR_RETURN(t.id, proto::ParseRemoteName(g, path.substr(slash + 1)));
  if (!query.empty()) {
    if (query.size() > 2048) return Status::InvalidArgument("query too long");
    for (char c : query) {
      // Control bytes could end up in a Location header (redirects carry the query on).
      auto u = static_cast<unsigned char>(c);
      if (u < 0x20 || u == 0x7F) return Status::InvalidArgument("control character in the query");
    }
    t.query = std::string(query);
    for (std::string_view kv : Split(query, '&')) {
      size_t eq = kv.find('=');
      std::string_view key = kv.substr(0, eq);
      std::string_view raw = eq == std::string_view::npos ? std::string_view() : kv.substr(eq + 1);
      if (key == "token") {
        if (raw.size() > 64) return Status::InvalidArgument("token too long");
        t.token = std::string(raw);
      } else if (key == "ts") {
        auto v = Number(raw);
        if (!v) return Status::InvalidArgument("ts must be a unix time");
        t.ts = static_cast<int64_t>(*v);
      } else if (key == "depot_hop") {
        t.hop = true;
      } else if (key == "filename") {
        DEPOT_ASSIGN_OR_RETURN(t.filename, PercentDecode(raw));
        if (t.filename.size() > 255 || t.filename.find('\0') != std::string::npos) {
          return Status::InvalidArgument("bad filename");
        }
      }
    }
  }
  return t;
}

Result<std::vector<ByteRange>> ParseRange(std::string_view header, uint64_t size,
                                          size_t max_ranges) {
  std::vector<ByteRange> out;
  header = Trim(header);
  if (header.size() < 6 || Lower(header.substr(0, 6)) != "bytes=") return out;  // not ours
  auto specs = Split(header.substr(6), ',');
  if (specs.size() > max_ranges) {
    return Status::InvalidArgument("too many ranges:", std::to_string(specs.size()));
  }
  bool any_spec = false;
  for (std::string_view spec : specs) {
    spec = Trim(spec);
    if (spec.empty()) continue;  // "bytes=0-1,,2-3": empty elements are allowed
    size_t dash = spec.find('-');
    if (dash == std::string_view::npos) return std::vector<ByteRange>();  // malformed: ignore
    std::string_view a = spec.substr(0, dash), b = spec.substr(dash + 1);
    any_spec = true;
    if (a.empty()) {  // suffix: the last n bytes
      auto n = Number(b);
      if (!n) return std::vector<ByteRange>();
      if (*n == 0 || size == 0) continue;  // unsatisfiable
      uint64_t len = std::min(*n, size);
      out.push_back({size - len, size - 1});
      continue;
    }
    auto first = Number(a);
    if (!first) return std::vector<ByteRange>();
    std::optional<uint64_t> last;
    if (!b.empty()) {
      last = Number(b);
      if (!last || *last < *first) return std::vector<ByteRange>();
    }
    if (*first >= size) continue;  // unsatisfiable
    out.push_back({*first, last ? std::min(*last, size - 1) : size - 1});
  }
  if (!any_spec) return std::vector<ByteRange>();
  if (out.empty()) return Status::ResourceExhausted("no satisfiable range");
  return out;
}

std::string ETagFor(int64_t mtime, uint64_t size) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "\"%llx-%llx\"", static_cast<unsigned long long>(mtime),
                static_cast<unsigned long long>(size));
  return buf;
}

bool IfNoneMatchHits(std::string_view header, const std::string& etag) {
  header = Trim(header);
  if (header == "*") return true;
  for (std::string_view tag : Split(header, ',')) {
    tag = Trim(tag);
    if (tag.size() > 2 && tag.substr(0, 2) == "W/") tag.remove_prefix(2);
    if (tag == etag) return true;
  }
  return false;
}

std::string HttpDate(int64_t unix_seconds) {
  time_t t = static_cast<time_t>(unix_seconds);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday],
                tm.tm_mday, kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                tm.tm_sec);
  return buf;
}

std::optional<int64_t> ParseHttpDate(std::string_view text) {
  std::string s(Trim(text));
  if (s.size() != 29) return std::nullopt;
  char day[4] = {}, mon[4] = {};
  int d = 0, y = 0, hh = 0, mm = 0, ss = 0;
  if (std::sscanf(s.c_str(), "%3s, %2d %3s %4d %2d:%2d:%2d GMT", day, &d, mon, &y, &hh, &mm,
                  &ss) != 7) {
    return std::nullopt;
  }
  int m = -1;
  for (int i = 0; i < 12; ++i) {
    if (std::string_view(mon) == kMonths[i]) m = i;
  }
  if (m < 0 || d < 1 || d > 31 || hh > 23 || mm > 59 || ss > 60 || y < 1970) return std::nullopt;
  struct tm tm = {};
  tm.tm_year = y - 1900;
  tm.tm_mon = m;
  tm.tm_mday = d;
  tm.tm_hour = hh;
  tm.tm_min = mm;
  tm.tm_sec = ss;
  return static_cast<int64_t>(timegm(&tm));
}

MimeTable MimeTable::Parse(std::string_view text) {
  MimeTable t;
  for (std::string_view line : Split(text, '\n')) {
    size_t hash = line.find('#');
    if (hash != std::string_view::npos) line = line.substr(0, hash);
    std::string clean;
    for (char c : line) clean.push_back(c == ';' || c == '{' || c == '}' || c == '\t' ? ' ' : c);
    std::vector<std::string> words;
    for (std::string_view w : Split(clean, ' ')) {
      if (!w.empty() && !(words.empty() && w == "types")) words.emplace_back(w);  // nginx form
    }
    if (words.size() < 2 || words[0].find('/') == std::string::npos) continue;
    for (size_t i = 1; i < words.size(); ++i) t.types_[Lower(words[i])] = words[0];
  }
  return t;
}

Result<MimeTable> MimeTable::Load(const std::string& path) {
  DEPOT_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path, 1 << 20));
  return Parse(text);
}

const std::string& MimeTable::TypeFor(std::string_view ext) const {
  auto it = types_.find(Lower(ext));
  return it == types_.end() ? fallback_ : it->second;
}

std::string ContentDisposition(std::string_view filename) {
  std::string ascii, encoded;
  for (unsigned char c : filename) {
    bool plain = c >= 0x20 && c < 0x7F && c != '"' && c != '\\' && c != '%' && c != ';';
    ascii.push_back(plain ? static_cast<char>(c) : '_');
    bool attr = std::isalnum(c) || std::string_view("!#$&+-.^_`|~").find(static_cast<char>(c)) !=
                                       std::string_view::npos;
    if (attr) {
      encoded.push_back(static_cast<char>(c));
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      encoded += buf;
    }
  }
  return "attachment; filename=\"" + ascii + "\"; filename*=UTF-8''" + encoded;
}

std::string MakeToken(std::string_view remote_name, std::string_view secret, int64_t ts) {
  return proto::MakeHttpToken(remote_name, secret, ts);
}

Status CheckToken(const Target& t, std::string_view secret, int64_t ttl, int64_t now) {
  if (t.token.empty() || t.ts < 0) return Status::PermissionDenied("token and ts are required");
  if (t.ts + ttl < now || t.ts - ttl > now) return Status::PermissionDenied("token expired");
  std::string want = MakeToken(t.id.RemoteName(), secret, t.ts);
  if (!ConstantTimeEquals(want, Lower(t.token))) return Status::PermissionDenied("wrong token");
  return Status::OK();
}

}  // namespace depot::storage::http
