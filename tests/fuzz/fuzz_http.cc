// libFuzzer target: storaged's HTTP request parsing (storage/http/http_util). Every parser of a
// request's bytes must refuse bad input without crashing, and what it accepts must be safe to use:
// a parsed target is a well-formed file ID (no "..", nothing but file-ID characters), ranges lie
// inside the file, and a Content-Disposition built from any name has no control bytes (no header
// injection).
#include <cstdint>
#include <cstring>
#include <string>

#include "storage/http/http_util.h"

namespace http = depot::storage::http;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 9) return 0;
  uint8_t which = data[0] % 6;
  uint64_t file_size = 0;
  std::memcpy(&file_size, data + 1, 8);
  file_size %= (1ULL << 40);
  std::string_view in(reinterpret_cast<const char*>(data) + 9, size - 9);
  switch (which) {
    case 0: {
      auto t = http::ParseTarget(in, "group1");
      if (t.ok()) {
        std::string path = t->id.RelativePath();
        if (path.find("..") != std::string::npos || path.find("//") != std::string::npos) {
          __builtin_trap();
        }
        for (char c : path) {
          if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '.' || c == '-' ||
                c == '_')) {
            __builtin_trap();
          }
        }
      }
      break;
    }
    case 1: {
      auto r = http::ParseRange(in, file_size, 64);
      if (r.ok()) {
        if (r->size() > 64) __builtin_trap();
        for (const auto& b : *r) {
          if (b.first > b.last || b.last >= file_size) __builtin_trap();
        }
      }
      break;
    }
    case 2: (void)http::IfNoneMatchHits(in, "\"6b09154a-c\""); break;
    case 3: {
      auto t = http::ParseHttpDate(in);
      if (t && http::ParseHttpDate(http::HttpDate(*t)) != t) __builtin_trap();
      break;
    }
    case 4: (void)http::MimeTable::Parse(in).TypeFor("jpg"); break;
    case 5: {
      auto name = http::PercentDecode(in);
      std::string cd = http::ContentDisposition(name.ok() ? *name : std::string(in));
      for (unsigned char c : cd) {
        if (c < 0x20 || c >= 0x7F) __builtin_trap();
      }
      break;
    }
  }
  return 0;
}
