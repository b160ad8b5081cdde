// libFuzzer target: file ID parsing must never crash, and a parsed ID must print back to the
// same text and never name a path outside data/.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/proto/file_id.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto id = depot::proto::ParseFileId(text);
  if (id.ok()) {
    if (id->ToString() != text) std::abort();
    std::string rel = id->RelativePath();
    if (rel.find("..") != std::string::npos || rel.find("//") != std::string::npos) std::abort();
  }
  (void)depot::proto::Base64Decode(text);
  return 0;
}
