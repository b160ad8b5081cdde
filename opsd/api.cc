#include "opsd/api.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "opsd/crypto.h"

namespace depot::opsd {

// ---- scopes and principals ----

Scope Scope::FromJson(const json& j) {
  Scope s;
  if (!j.is_object()) return s;
  auto take = [&](const char* k, std::set<std::string>* out) {
    auto it = j.find(k);
    if (it == j.end() || !it->is_array()) return;
    for (const auto& v : *it) {
      if (v.is_string()) out->insert(v.get<std::string>());
    }
  };
  take("host_groups", &s.host_groups);
  take("apps", &s.apps);
  take("envs", &s.envs);
  return s;
}

bool Scope::Intersect(const Scope& a, const Scope& b, Scope* out) {
  auto dim = [](const std::set<std::string>& x, const std::set<std::string>& y,
                std::set<std::string>* o) {
    if (x.empty()) {
      *o = y;
      return true;
    }
    if (y.empty()) {
      *o = x;
      return true;
    }
    std::set<std::string> both;
    for (const auto& v : x) {
      if (y.count(v)) both.insert(v);
    }
    *o = std::move(both);
    return !o->empty();
  };
  // Built aside: `out` may be `a` or `b`.
  Scope r;
  bool ok = dim(a.host_groups, b.host_groups, &r.host_groups) && dim(a.apps, b.apps, &r.apps) &&
            dim(a.envs, b.envs, &r.envs);
  if (ok) *out = std::move(r);
  return ok;
}

json Scope::ToJson() const {
  return json{{"host_groups", host_groups}, {"apps", apps}, {"envs", envs}};
}

bool Principal::Has(const std::string& perm) const {
  return superuser || grants.count(perm) > 0;
}

bool Principal::InScope(const std::string& perm, const json& record_scope) const {
  if (superuser) return true;
  auto it = grants.find(perm);
  if (it == grants.end()) return false;
  Scope rec = Scope::FromJson(record_scope);
  auto overlap = [](const std::set<std::string>& grant, const std::set<std::string>& have) {
    if (grant.empty()) return true;
    for (const auto& v : have) {
      if (grant.count(v)) return true;
    }
    return false;
  };
  for (const Scope& g : it->second) {
    if (overlap(g.host_groups, rec.host_groups) && overlap(g.apps, rec.apps) &&
        overlap(g.envs, rec.envs)) {
      return true;
    }
  }
  return false;
}

bool Principal::Covers(const std::string& perm, const Scope& scope) const {
  if (superuser) return true;
  auto it = grants.find(perm);
  if (it == grants.end()) return false;
  auto within = [](const std::set<std::string>& grant, const std::set<std::string>& want) {
    if (grant.empty()) return true;
    if (want.empty()) return false;  // unrestricted in a dimension the grant restricts
    for (const auto& v : want) {
      if (!grant.count(v)) return false;
    }
    return true;
  };
  for (const Scope& g : it->second) {
    if (within(g.host_groups, scope.host_groups) && within(g.apps, scope.apps) &&
        within(g.envs, scope.envs)) {
      return true;
    }
  }
  return false;
}

bool Principal::CoversAll(const Principal& other) const {
  if (superuser) return true;
  if (other.superuser) return false;
  for (const auto& [perm, scopes] : other.grants) {
    for (const Scope& sc : scopes) {
      if (!Covers(perm, sc)) return false;
    }
  }
  return true;
}

bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1f) : n == 3 ? (c & 0x0f) : (c & 0x07);
    for (size_t k = 1; k < n; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc >> 6) != 0x2) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) {
      return false;
    }
    i += n;
  }
  return true;
}

json Principal::PermissionsJson() const {
  json out = json::object();
  for (const auto& [perm, scopes] : grants) {
    json arr = json::array();
    for (const auto& s : scopes) arr.push_back(s.ToJson());
    out[perm] = arr;
  }
  return out;
}

// ---- errors ----

ApiError ErrorFromStatus(const Status& s) {
  ApiError e;
  e.message = s.message();
  switch (s.code()) {
    case StatusCode::kNotFound: e.status = 404; e.code = "not_found"; break;
    case StatusCode::kAlreadyExists: e.status = 409; e.code = "conflict"; break;
    case StatusCode::kBusy: e.status = 409; e.code = "version_conflict"; break;
    case StatusCode::kInvalidArgument: e.status = 400; e.code = "invalid_argument"; break;
    case StatusCode::kPermissionDenied: e.status = 403; e.code = "forbidden"; break;
    case StatusCode::kResourceExhausted: e.status = 413; e.code = "too_large"; break;
    case StatusCode::kUnavailable: e.status = 503; e.code = "unavailable"; break;
    case StatusCode::kTimedOut: e.status = 504; e.code = "timeout"; break;
    case StatusCode::kNotSupported: e.status = 501; e.code = "not_supported"; break;
    default: e.status = 500; e.code = "internal"; break;
  }
  return e;
}

ApiError ClusterError(const Status& s) {
  switch (s.code()) {
    case StatusCode::kNotFound: return ApiError{404, "not_found", s.message()};
    case StatusCode::kUnavailable: return ApiError{503, "unavailable", s.message()};
    case StatusCode::kResourceExhausted:
      return ApiError{507, "insufficient_storage", s.message()};
    default: return ApiError{502, "cluster_error", s.ToString()};
  }
}

std::string ErrorBody(const std::string& code, const std::string& message) {
  json j = {{"error", {{"code", code}, {"message", message}}}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

void JsonReply(net::HttpResponse* r, int status, const json& body) {
  r->Set(status, "application/json",
         body.dump(-1, ' ', false, json::error_handler_t::replace));
}

void ErrorReply(net::HttpResponse* r, const ApiError& e) {
  r->headers.clear();
  if (e.status == 401) r->headers.emplace_back("WWW-Authenticate", "Bearer realm=\"depot-opsd\"");
  r->Set(e.status, "application/json", ErrorBody(e.code, e.message));
}

void ErrorReply(net::HttpResponse* r, const Status& s) { ErrorReply(r, ErrorFromStatus(s)); }

json Public(const json& doc) {
  json out = json::object();
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    if (!it.key().empty() && it.key()[0] == '_') continue;
    out[it.key()] = it.value();
  }
  return out;
}

void RecordReply(net::HttpResponse* r, int status, const json& doc) {
  if (doc.contains("version")) {
    r->headers.emplace_back("ETag", "\"v" + std::to_string(doc["version"].get<int64_t>()) + "\"");
  }
  JsonReply(r, status, Public(doc));
}

std::string Digest(const json* doc) {
  if (doc == nullptr) return "";
  return Sha256Hex(doc->dump(-1, ' ', false, json::error_handler_t::replace)).substr(0, 16);
}

// ---- context ----

const std::string* Ctx::Query(const std::string& name) const {
  for (const auto& [k, v] : query) {
    if (k == name) return &v;
  }
  return nullptr;
}

namespace {

// Deepest nesting of arrays and objects in JSON text (strings skipped), stopping past `limit`.
int NestingDepth(std::string_view text, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char ch : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (ch == '\\') {
        escaped = true;
      } else if (ch == '"') {
        in_string = false;
      }
      continue;
    }
    if (ch == '"') {
      in_string = true;
    } else if (ch == '[' || ch == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) return deepest;
    } else if (ch == ']' || ch == '}') {
      --depth;
    }
  }
  return deepest;
}

}  // namespace

Result<json> Ctx::JsonBody() const {
  if (body == nullptr || body->empty()) return Status::InvalidArgument("a JSON object body is required");
  // Deep nesting is refused before parsing: serialising and copying such a document recurse.
  constexpr int kMaxDepth = 32;
  if (NestingDepth(*body, kMaxDepth) > kMaxDepth) {
    return Status::InvalidArgument("JSON nested deeper than", std::to_string(kMaxDepth));
  }
  json j = json::parse(*body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::InvalidArgument("malformed JSON body");
  if (!j.is_object()) return Status::InvalidArgument("the body must be a JSON object");
  return j;
}

namespace {

bool ParseInt64(std::string_view s, int64_t* out) {
  if (s.empty() || s.size() > 18) return false;
  int64_t v = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return false;
    v = v * 10 + (ch - '0');
  }
  *out = v;
  return true;
}

}  // namespace

Result<int64_t> Ctx::IdParam(const std::string& name) const {
  auto it = params.find(name);
  int64_t id = 0;
  if (it == params.end() || !ParseInt64(it->second, &id) || id <= 0) {
    return Status::InvalidArgument("not a valid id:", it == params.end() ? "" : it->second);
  }
  return id;
}

Result<std::optional<int64_t>> Ctx::ExpectedVersion(const json* b) const {
  std::optional<int64_t> v;
  if (const std::string* m = Header("if-match")) {
    std::string_view t = *m;
    if (t.starts_with("W/")) t.remove_prefix(2);
    if (t.size() >= 2 && t.front() == '"' && t.back() == '"') t = t.substr(1, t.size() - 2);
    if (t.starts_with("v")) t.remove_prefix(1);
    int64_t n = 0;
    if (!ParseInt64(t, &n)) return Status::InvalidArgument("If-Match must name a version:", *m);
    v = n;
  }
  if (b != nullptr && b->contains("version")) {
    const json& jv = (*b)["version"];
    if (!jv.is_number_integer()) return Status::InvalidArgument("field version must be an integer");
    if (v && *v != jv.get<int64_t>()) {
      return Status::InvalidArgument("If-Match and version disagree");
    }
    v = jv.get<int64_t>();
  }
  return v;
}

// ---- router ----

namespace {

std::vector<std::string_view> Split(std::string_view path) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    out.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

}  // namespace

void Router::Add(Route r) {
  // A route without a permission, or a mutation without an audit action, is a programming error
  // caught at start-up: no endpoint can skip the checks.
  bool mutation = r.method != "GET" && r.method != "HEAD";
  if (r.permission.empty() || (mutation && r.action.empty()) ||
      (r.mode == net::RouteMode::kStream ? !r.stream : !r.handler)) {
    fprintf(stderr, "route %s %s lacks a permission, an audit action or a handler\n",
            r.method.c_str(), r.pattern.c_str());
    std::abort();
  }
  std::vector<std::string> pat;
  for (std::string_view seg : Split(r.pattern)) pat.emplace_back(seg);
  patterns_.push_back(std::move(pat));
  routes_.push_back(std::move(r));
}

const Route* Router::Match(std::string_view method, std::string_view path,
                           std::map<std::string, std::string>* params, bool* path_known) const {
  *path_known = false;
  auto segs = Split(path);
  for (size_t ri = 0; ri < routes_.size(); ++ri) {
    const Route& r = routes_[ri];
    const std::vector<std::string>& pat = patterns_[ri];
    bool rest = !pat.empty() && pat.back().ends_with("+}");
    if (rest ? segs.size() < pat.size() : segs.size() != pat.size()) continue;
    std::map<std::string, std::string> got;
    bool ok = true;
    for (size_t i = 0; i < pat.size() && ok; ++i) {
      const std::string& p = pat[i];
      if (p.size() > 2 && p.front() == '{' && p.back() == '}') {
        std::string name = p.substr(1, p.size() - 2);
        if (name.back() == '+') {  // the rest of the path, at least one segment
          name.pop_back();
          std::string tail;
          for (size_t k = i; k < segs.size(); ++k) {
            if (k > i) tail += '/';
            tail += segs[k];
          }
          got[name] = std::move(tail);
        } else if (segs[i].empty()) {
          ok = false;
        } else {
          got[name] = std::string(segs[i]);
        }
      } else if (segs[i] != p) {
        ok = false;
      }
    }
    if (!ok) continue;
    if (r.method != method && !(method == "HEAD" && r.method == "GET")) {
      *path_known = true;
      continue;
    }
    *params = std::move(got);
    return &r;
  }
  return nullptr;
}

// ---- validation ----

namespace {

bool CleanString(const std::string& s) {
  for (unsigned char ch : s) {
    if (ch < 0x20 || ch == 0x7f) return false;
  }
  return true;
}

Status CheckStringArray(const json& v, const std::string& name, int64_t max) {
  if (!v.is_array()) return Status::InvalidArgument("field " + name + " must be an array of strings");
  if (static_cast<int64_t>(v.size()) > max) {
    return Status::InvalidArgument("field " + name + " has more than", std::to_string(max) + " items");
  }
  for (const auto& e : v) {
    if (!e.is_string() || e.get<std::string>().empty() || e.get<std::string>().size() > 128 ||
        !CleanString(e.get<std::string>())) {
      return Status::InvalidArgument("field " + name + " must hold non-empty strings of at most 128 bytes");
    }
  }
  return Status::OK();
}

}  // namespace

Status CheckFields(const json& body, const std::vector<FieldSpec>& spec, bool partial) {
  if (!body.is_object()) return Status::InvalidArgument("the body must be a JSON object");
  for (auto it = body.begin(); it != body.end(); ++it) {
    if (it.key() == "version") continue;  // optimistic concurrency, checked by ExpectedVersion
    auto f = std::find_if(spec.begin(), spec.end(),
                          [&](const FieldSpec& s) { return s.name == it.key(); });
    if (f == spec.end()) return Status::InvalidArgument("unknown field:", it.key());
    const json& v = it.value();
    const std::string& n = f->name;
    switch (f->type) {
      case FieldType::kString:
        if (!v.is_string()) return Status::InvalidArgument("field " + n + " must be a string");
        if (static_cast<int64_t>(v.get<std::string>().size()) > f->max ||
            static_cast<int64_t>(v.get<std::string>().size()) < f->min) {
          return Status::InvalidArgument("field " + n + " must have " + std::to_string(f->min) +
                                         " to " + std::to_string(f->max) + " bytes");
        }
        if (!CleanString(v.get<std::string>())) {
          return Status::InvalidArgument("field " + n + " holds control characters");
        }
        break;
      case FieldType::kInt:
        if (!v.is_number_integer()) return Status::InvalidArgument("field " + n + " must be an integer");
        if (v.get<int64_t>() < f->min || v.get<int64_t>() > f->max) {
          return Status::InvalidArgument("field " + n + " must be in", std::to_string(f->min) + ".." + std::to_string(f->max));
        }
        break;
      case FieldType::kBool:
        if (!v.is_boolean()) return Status::InvalidArgument("field " + n + " must be true or false");
        break;
      case FieldType::kIntArray:
        if (!v.is_array() || static_cast<int64_t>(v.size()) > f->max) {
          return Status::InvalidArgument("field " + n + " must be an array of at most", std::to_string(f->max) + " ids");
        }
        for (const auto& e : v) {
          if (!e.is_number_integer() || e.get<int64_t>() <= 0) {
            return Status::InvalidArgument("field " + n + " must hold positive integer ids");
          }
        }
        break;
      case FieldType::kStringArray:
        DEPOT_RETURN_IF_ERROR(CheckStringArray(v, n, f->max));
        break;
      case FieldType::kScope: {
        if (!v.is_object()) return Status::InvalidArgument("field " + n + " must be an object");
        for (auto s = v.begin(); s != v.end(); ++s) {
          if (s.key() != "host_groups" && s.key() != "apps" && s.key() != "envs") {
            return Status::InvalidArgument("unknown field:", n + "." + s.key());
          }
          DEPOT_RETURN_IF_ERROR(CheckStringArray(s.value(), n + "." + s.key(), 256));
        }
        break;
      }
      case FieldType::kObject:
        if (!v.is_object()) return Status::InvalidArgument("field " + n + " must be an object");
        if (static_cast<int64_t>(v.dump().size()) > f->max) {
          return Status::InvalidArgument("field " + n + " is larger than", std::to_string(f->max) + " bytes");
        }
        break;
    }
  }
  if (!partial) {
    for (const auto& f : spec) {
      if (f.required && !body.contains(f.name)) {
        return Status::InvalidArgument("missing field:", f.name);
      }
    }
  }
  return Status::OK();
}

// ---- lists ----

Result<ListQuery> ParseListQuery(const Ctx& ctx, const std::vector<std::string>& sortable,
                                 const std::vector<std::string>& filterable,
                                 const std::vector<std::string>& extra) {
  ListQuery q;
  auto in = [](const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
  };
  for (const auto& [k, v] : ctx.query) {
    if (k == "page" || k == "size") {
      int64_t n = 0;
      if (!ParseInt64(v, &n) || n < 1 || (k == "size" && n > 500) || n > 1000000) {
        return Status::InvalidArgument(k + " must be a positive integer" +
                                       (k == "size" ? std::string(" up to 500") : std::string()));
      }
      (k == "page" ? q.page : q.size) = n;
    } else if (k == "sort") {
      std::string f = v;
      q.desc = !f.empty() && f[0] == '-';
      if (q.desc) f.erase(0, 1);
      if (!in(sortable, f)) return Status::InvalidArgument("cannot sort by", v);
      q.sort = f;
    } else if (k == "q") {
      if (v.size() > 128) return Status::InvalidArgument("q is longer than 128 bytes");
      q.q = v;
    } else if (in(filterable, k)) {
      q.filters[k] = v;
    } else if (!in(extra, k)) {
      return Status::InvalidArgument("unknown query parameter:", k);
    }
  }
  return q;
}

namespace {

bool FilterMatches(const json& doc, const std::string& field, const std::string& want) {
  auto it = doc.find(field);
  if (it == doc.end()) return false;
  const json& v = *it;
  if (v.is_string()) return v.get<std::string>() == want;
  if (v.is_boolean()) return (v.get<bool>() ? "true" : "false") == want;
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>()) == want;
  if (v.is_array()) {  // membership: ?role_ids=3
    for (const auto& e : v) {
      if (e.is_string() && e.get<std::string>() == want) return true;
      if (e.is_number_integer() && std::to_string(e.get<int64_t>()) == want) return true;
    }
  }
  return false;
}


}  // namespace

json ListReply(const std::vector<std::shared_ptr<const json>>& docs, const ListQuery& q,
               const std::vector<std::string>& search,
               const std::function<bool(const json&)>& keep) {
  size_t start = static_cast<size_t>((q.page - 1) * q.size);
  size_t total = 0;
  json items = json::array();
  for (const auto& d : docs) {
    bool ok = true;
    for (const auto& [f, v] : q.filters) {
      if (!FilterMatches(*d, f, v)) {
        ok = false;
        break;
      }
    }
    if (ok && !q.q.empty()) {
      ok = false;
      for (const auto& f : search) {
        auto it = d->find(f);
        if (it != d->end() && it->is_string() &&
            it->get_ref<const std::string&>().find(q.q) != std::string::npos) {
          ok = true;
          break;
        }
      }
    }
    if (ok && keep && !keep(*d)) ok = false;
    if (!ok) continue;
    if (total >= start && total < start + static_cast<size_t>(q.size)) items.push_back(Public(*d));
    ++total;
  }
  return json{{"items", std::move(items)}, {"total", total}, {"page", q.page}, {"size", q.size}};
}

}  // namespace depot::opsd
