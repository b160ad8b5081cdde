// FastDFS-style configuration files: `key = value` lines, `#` comments, blank lines ignored.
// A key may repeat only where the schema says so (tracker_server, store_path).
//
// ConfFile is the parsed text; ConfBinder binds keys to the fields of a config struct, checks
// types and ranges, and fails on unknown keys, naming the key and line. Not thread-safe; used once
// at start-up.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/base/status.h"

namespace depot {

struct ConfEntry {
  std::string key;
  std::string value;
  int line = 0;
};

class ConfFile {
 public:
  // Parses `text`; `name` is used in error messages. Returns InvalidArgument on a line without '='
  // or with an empty key.
  static Result<ConfFile> Parse(const std::string& text, const std::string& name);
  // Reads and parses a file. NotFound/IOError when it cannot be read.
  static Result<ConfFile> Load(const std::string& path);

  const std::vector<ConfEntry>& entries() const { return entries_; }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::vector<ConfEntry> entries_;
};

// Binds config keys to variables. Each Bind* records the key as known; the value (when present)
// is parsed and range-checked. Finish() reports the first error, or an unknown/duplicate key.
class ConfBinder {
 public:
  explicit ConfBinder(const ConfFile& file);

  void Int(const std::string& key, int64_t* out, int64_t min, int64_t max);
  void Int(const std::string& key, int* out, int min, int max);
  void Bool(const std::string& key, bool* out);
  void String(const std::string& key, std::string* out);
  // One of `allowed`.
  void Enum(const std::string& key, std::string* out, const std::vector<std::string>& allowed);
  // A byte size: plain bytes or with a K/M/G/T suffix (binary units): "512M", "10G".
  void Bytes(const std::string& key, uint64_t* out, uint64_t min, uint64_t max);
  // A duration in seconds: "30", "30s", "5m", "1h".
  void Seconds(const std::string& key, int* out, int min, int max);
  // A key that may appear several times; every occurrence is appended.
  void Repeated(const std::string& key, std::vector<std::string>* out);
  // A family `prefix0`, `prefix1`, ... (FastDFS store_path0..N); indexes must be contiguous.
  void Indexed(const std::string& prefix, std::vector<std::string>* out, int max_count);
  // Records an error from a cross-key check done by the caller.
  void Fail(const std::string& key, const std::string& why);

  Status Finish();

 private:
  const ConfEntry* Find(const std::string& key);
  void Error(const ConfEntry& e, const std::string& why);

  const ConfFile& file_;
  std::map<std::string, std::vector<const ConfEntry*>> by_key_;
  std::map<std::string, bool> known_;
  std::vector<std::string> indexed_prefixes_;
  Status first_error_;
};

// Parses "10G" / "512M" / "4096" into bytes. InvalidArgument on anything else.
Result<uint64_t> ParseByteSize(const std::string& text);
// Parses "host:port" (port required). InvalidArgument on anything else.
Status ParseHostPort(const std::string& text, std::string* host, int* port);

}  // namespace depot
