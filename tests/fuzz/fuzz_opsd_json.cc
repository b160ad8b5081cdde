// libFuzzer target: opsd's handling of untrusted JSON bodies. The body is parsed as opsd parses
// it (nlohmann, non-throwing), checked against field specs like the handlers' (CheckFields), and
// what passes is used as handlers use it (scopes, the public view, the audit digest). Nothing may
// throw, crash or accept a value of the wrong type.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "opsd/api.h"

using depot::opsd::FieldSpec;
using depot::opsd::FieldType;
using depot::opsd::json;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  json body = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return 0;
  static const std::vector<FieldSpec> spec = {
      {"name", FieldType::kString, true, 64, 1},     {"n", FieldType::kInt, false, 1000, -5},
      {"on", FieldType::kBool},                      {"ids", FieldType::kIntArray, false, 8},
      {"tags", FieldType::kStringArray, false, 8},   {"scope", FieldType::kScope},
      {"params", FieldType::kObject, false, 4096}};
  for (bool partial : {false, true}) {
    if (!depot::opsd::CheckFields(body, spec, partial).ok()) continue;
    // Accepted: every present field has its declared type.
    if (body.contains("name") && !body["name"].is_string()) __builtin_trap();
    if (body.contains("n") && !body["n"].is_number_integer()) __builtin_trap();
    if (body.contains("ids")) {
      for (const auto& v : body["ids"]) {
        if (!v.is_number_integer() || v.get<int64_t>() <= 0) __builtin_trap();
      }
    }
    std::string name = body.value("name", "");
    depot::opsd::Scope s = depot::opsd::Scope::FromJson(body.value("scope", json::object()));
    json shown = depot::opsd::Public(body);
    static_cast<void>(s.ToJson().dump());
    static_cast<void>(depot::opsd::Digest(&shown));
  }
  return 0;
}
