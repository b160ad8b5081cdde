#include "common/base/conf.h"

#include <cctype>
#include <charconv>
#include <fstream>
#include <sstream>

namespace depot {
namespace {

std::string Trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

bool ParseInt64(const std::string& s, int64_t* out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

Result<ConfFile> ConfFile::Parse(const std::string& text, const std::string& name) {
  ConfFile f;
  f.name_ = name;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    std::string t = Trim(line);
    if (t.empty() || t[0] == '#') continue;
    size_t eq = t.find('=');
    if (eq == std::string::npos) {
      return Status::InvalidArgument(name + ":" + std::to_string(n) + ": expected `key = value`",
                                     "got `" + t + "`");
    }
    ConfEntry e;
    e.key = Trim(t.substr(0, eq));
    e.value = Trim(t.substr(eq + 1));
    e.line = n;
    if (e.key.empty()) {
      return Status::InvalidArgument(name + ":" + std::to_string(n) + ": empty key");
    }
    f.entries_.push_back(std::move(e));
  }
  return f;
}

Result<ConfFile> ConfFile::Load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::FromErrno(errno, "cannot read config", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return Parse(ss.str(), path);
}

ConfBinder::ConfBinder(const ConfFile& file) : file_(file) {
  for (const auto& e : file_.entries()) by_key_[e.key].push_back(&e);
}

void ConfBinder::Error(const ConfEntry& e, const std::string& why) {
  if (!first_error_.ok()) return;
  first_error_ = Status::InvalidArgument(file_.name() + ":" + std::to_string(e.line) + ": key `" +
                                         e.key + "`: " + why);
}

void ConfBinder::Fail(const std::string& key, const std::string& why) {
  if (!first_error_.ok()) return;
  auto it = by_key_.find(key);
  if (it != by_key_.end()) {
    Error(*it->second.back(), why);
  } else {
    first_error_ = Status::InvalidArgument(file_.name() + ": key `" + key + "`: " + why);
  }
}

const ConfEntry* ConfBinder::Find(const std::string& key) {
  known_[key] = true;
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return nullptr;
  if (it->second.size() > 1) {
    Error(*it->second[1], "given more than once");
    return nullptr;
  }
  return it->second.front();
}

void ConfBinder::Int(const std::string& key, int64_t* out, int64_t min, int64_t max) {
  const ConfEntry* e = Find(key);
  if (!e) return;
  int64_t v;
  if (!ParseInt64(e->value, &v)) return Error(*e, "not an integer: `" + e->value + "`");
  if (v < min || v > max) {
    return Error(*e, std::to_string(v) + " is out of range [" + std::to_string(min) + ", " +
                         std::to_string(max) + "]");
  }
  *out = v;
}

void ConfBinder::Int(const std::string& key, int* out, int min, int max) {
  int64_t v = *out;
  Int(key, &v, min, max);
  *out = static_cast<int>(v);
}

void ConfBinder::Bool(const std::string& key, bool* out) {
  const ConfEntry* e = Find(key);
  if (!e) return;
  std::string v = e->value;
  for (auto& c : v) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (v == "true" || v == "on" || v == "yes" || v == "1") {
    *out = true;
  } else if (v == "false" || v == "off" || v == "no" || v == "0") {
    *out = false;
  } else {
    Error(*e, "not a boolean (true/false/on/off/yes/no/1/0): `" + e->value + "`");
  }
}

void ConfBinder::String(const std::string& key, std::string* out) {
  const ConfEntry* e = Find(key);
  if (e) *out = e->value;
}

void ConfBinder::Enum(const std::string& key, std::string* out,
                      const std::vector<std::string>& allowed) {
  const ConfEntry* e = Find(key);
  if (!e) return;
  for (const auto& a : allowed) {
    if (a == e->value) {
      *out = e->value;
      return;
    }
  }
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  Error(*e, "`" + e->value + "` is not one of: " + list);
}

Result<uint64_t> ParseByteSize(const std::string& text) {
  std::string t = Trim(text);
  if (t.empty()) return Status::InvalidArgument("empty size");
  uint64_t mult = 1;
  char last = static_cast<char>(std::toupper(static_cast<unsigned char>(t.back())));
  if (last == 'B' && t.size() > 1 && std::isalpha(static_cast<unsigned char>(t[t.size() - 2]))) {
    t.pop_back();
    last = static_cast<char>(std::toupper(static_cast<unsigned char>(t.back())));
  }
  switch (last) {
    case 'K': mult = 1ULL << 10; break;
    case 'M': mult = 1ULL << 20; break;
    case 'G': mult = 1ULL << 30; break;
    case 'T': mult = 1ULL << 40; break;
    default: break;
  }
  if (mult != 1) t.pop_back();
  int64_t v;
  if (!ParseInt64(t, &v) || v < 0) return Status::InvalidArgument("not a size: `" + text + "`");
  if (static_cast<uint64_t>(v) > UINT64_MAX / mult) {
    return Status::InvalidArgument("size too large: `" + text + "`");
  }
  return static_cast<uint64_t>(v) * mult;
}

void ConfBinder::Bytes(const std::string& key, uint64_t* out, uint64_t min, uint64_t max) {
  const ConfEntry* e = Find(key);
  if (!e) return;
  auto r = ParseByteSize(e->value);
  if (!r.ok()) return Error(*e, r.status().message() + " (use bytes or a K/M/G/T suffix)");
  if (*r < min || *r > max) {
    return Error(*e, "size out of range [" + std::to_string(min) + ", " + std::to_string(max) +
                         "] bytes");
  }
  *out = *r;
}

void ConfBinder::Seconds(const std::string& key, int* out, int min, int max) {
  const ConfEntry* e = Find(key);
  if (!e) return;
  std::string t = e->value;
  int64_t mult = 1;
  if (!t.empty() && std::isalpha(static_cast<unsigned char>(t.back()))) {
    char u = t.back();
    t.pop_back();
    if (u == 's') mult = 1;
    else if (u == 'm') mult = 60;
    else if (u == 'h') mult = 3600;
    else return Error(*e, "unknown duration unit (s, m, h): `" + e->value + "`");
  }
  int64_t v;
  if (!ParseInt64(t, &v)) return Error(*e, "not a duration: `" + e->value + "`");
  // Range-check before multiplying: a huge value must not overflow into the allowed range.
  if (v < min / mult || v > max / mult) {
    return Error(*e, "`" + e->value + "` is out of range [" + std::to_string(min) + ", " +
                         std::to_string(max) + "] seconds");
  }
  v *= mult;
  if (v < min || v > max) {
    return Error(*e, std::to_string(v) + "s is out of range [" + std::to_string(min) + ", " +
                         std::to_string(max) + "] seconds");
  }
  *out = static_cast<int>(v);
}

void ConfBinder::Repeated(const std::string& key, std::vector<std::string>* out) {
  known_[key] = true;
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return;
  out->clear();
  for (const ConfEntry* e : it->second) {
    if (e->value.empty()) return Error(*e, "empty value");
    out->push_back(e->value);
  }
}

void ConfBinder::Indexed(const std::string& prefix, std::vector<std::string>* out,
                         int max_count) {
  indexed_prefixes_.push_back(prefix);
  std::map<int, const ConfEntry*> found;
  for (const auto& e : file_.entries()) {
    if (e.key.size() <= prefix.size() || e.key.compare(0, prefix.size(), prefix) != 0) continue;
    std::string idx = e.key.substr(prefix.size());
    // Only `prefix<digits>` belongs to the family: store_path_count is a key of its own.
    if (!std::isdigit(static_cast<unsigned char>(idx[0]))) continue;
    int64_t i;
    if (!ParseInt64(idx, &i) || i < 0 || i >= max_count || std::to_string(i) != idx) {
      Error(e, "index must be 0.." + std::to_string(max_count - 1));
      continue;
    }
    if (found.count(static_cast<int>(i))) {
      Error(e, "given more than once");
      continue;
    }
    known_[e.key] = true;
    found[static_cast<int>(i)] = &e;
  }
  if (found.empty()) return;
  out->clear();
  int expect = 0;
  for (const auto& [i, e] : found) {
    if (i != expect) return Error(*e, "indexes must be contiguous from 0 (missing " + prefix +
                                          std::to_string(expect) + ")");
    if (e->value.empty()) return Error(*e, "empty value");
    out->push_back(e->value);
    ++expect;
  }
}

Status ConfBinder::Finish() {
  if (!first_error_.ok()) return first_error_;
  for (const auto& e : file_.entries()) {
    if (!known_.count(e.key)) {
      return Status::InvalidArgument(file_.name() + ":" + std::to_string(e.line) +
                                     ": unknown key `" + e.key + "`");
    }
  }
  return Status::OK();
}

Status ParseHostPort(const std::string& text, std::string* host, int* port) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return Status::InvalidArgument("expected host:port, got", "`" + text + "`");
  }
  int64_t p;
  if (!ParseInt64(text.substr(colon + 1), &p) || p <= 0 || p > 65535) {
    return Status::InvalidArgument("bad port in", "`" + text + "`");
  }
  *host = text.substr(0, colon);
  *port = static_cast<int>(p);
  return Status::OK();
}

}  // namespace depot
