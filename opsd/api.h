// The pieces every opsd endpoint shares: the route table with its permissions, the request
// context, the one error shape, body validation and list paging. doc/opsd-api.md lists the routes.
//
// Every route declares its permission in the table (Route::permission): a code
// `module.resource.action`, or kPublic (no token) or kAuthenticated (any valid token). The router
// checks it before the handler runs, so no handler can forget it; tests walk the whole table.
//
// Threading: the Router is built at start-up and read-only afterwards. A Ctx belongs to one request.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/base/status.h"
#include "common/net/http_server.h"

namespace depot::opsd {

using json = nlohmann::json;

inline constexpr const char* kPublic = "public";
inline constexpr const char* kAuthenticated = "authenticated";
// PBKDF2-HMAC-SHA256 iterations of new password hashes (OWASP's 2023 figure).
inline constexpr int kPasswordIterations = 600000;

// What a role grants a permission for. An empty dimension is unrestricted.
struct Scope {
  std::set<std::string> host_groups, apps, envs;
  bool unrestricted() const { return host_groups.empty() && apps.empty() && envs.empty(); }
  static Scope FromJson(const json& j);  // j validated by ValidScope
  json ToJson() const;
  // What both allow: per dimension the values in both (an unrestricted side takes the other's).
  // False when some dimension is left with nothing.
  static bool Intersect(const Scope& a, const Scope& b, Scope* out);
};

// Who is calling, with the permissions in effect (own roles plus active delegations, narrowed
// by an API token's permissions).
struct Principal {
  int64_t user_id = 0;
  std::string username;
  bool superuser = false;
  int64_t session_id = 0;  // the session or API token used
  bool api_token = false;
  std::map<std::string, std::vector<Scope>> grants;  // in effect: own roles and delegations
  std::map<std::string, std::vector<Scope>> own;     // from the user's own roles only
  bool Has(const std::string& perm) const;
  // The same principal with only its own grants: what it may hand on (grant, delegate) or use
  // to take charge of another account. Rights held by delegation are for acting, not for
  // granting, or a delegate could make them outlive the delegation.
  Principal OwnOnly() const {
    Principal p = *this;
    p.grants = own;
    return p;
  }
  // True when some grant of `perm` covers a record with `scope` (a JSON object with optional
  // host_groups / apps / envs arrays). A restricted dimension needs an overlap.
  bool InScope(const std::string& perm, const json& record_scope) const;
  // Stricter, for writes and grants: some grant of `perm` contains `scope` whole (each
  // restricted dimension of the grant holds every value of that dimension of `scope`, and the
  // scope names at least one).
  bool Covers(const std::string& perm, const Scope& scope) const;
  bool Covers(const std::string& perm, const json& record_scope) const {
    return Covers(perm, Scope::FromJson(record_scope));
  }
  // Everything `other` may do, this principal may do too (for changes of another account).
  bool CoversAll(const Principal& other) const;
  json PermissionsJson() const;
};

// An error answered to the client: HTTP status, a stable code, a message.
struct ApiError {
  int status = 500;
  std::string code = "internal";
  std::string message;
};
// The one mapping from a Status to an HTTP error.
ApiError ErrorFromStatus(const Status& s);
std::string ErrorBody(const std::string& code, const std::string& message);
// A failure of a call into the Depot cluster: its statuses say what the cluster felt, not what
// the client did (a full cluster is 507, not 413; a busy storage 502, not a version conflict).
ApiError ClusterError(const Status& s);

struct Ctx {
  const net::http::RequestHead* head = nullptr;
  const std::string* body = nullptr;  // buffered routes only
  std::string ip;
  std::map<std::string, std::string> params;               // from the path pattern
  std::vector<std::pair<std::string, std::string>> query;  // decoded
  std::shared_ptr<const Principal> who;
  // Audit of this request (filled by handlers, written with the change or by the router).
  std::string action;
  std::string resource;
  std::string before_digest, after_digest;
  bool audited = false;
  std::string result;  // the audit result of a refusal, when more precise than its HTTP status
  int status = 0;  // stream handlers: the status they answered (for metrics and the audit)

  const std::string* Query(const std::string& name) const;
  const std::string* Header(const std::string& lower_name) const { return head->Header(lower_name); }
  // The request body as a JSON object. InvalidArgument when malformed or not an object.
  Result<json> JsonBody() const;
  // Path parameter as a positive id. InvalidArgument otherwise.
  Result<int64_t> IdParam(const std::string& name = "id") const;
  // The version a client expects (If-Match: "v3" / 3, or a "version" field): nullopt when none.
  Result<std::optional<int64_t>> ExpectedVersion(const json* body) const;
};

using Handler = std::function<void(Ctx&, net::HttpResponse*)>;
using StreamHandler = std::function<void(Ctx&, net::HttpStream&)>;

struct Route {
  std::string method;
  std::string pattern;     // "/api/v1/users/{id}", "{name+}" takes the rest of the path
  std::string permission;  // a code, kPublic or kAuthenticated
  net::RouteMode mode = net::RouteMode::kInline;
  std::string action;      // audit action of a mutation ("users.create"); empty for reads
  Handler handler;
  StreamHandler stream;
};

class Router {
 public:
  void Add(Route r);
  // The route for (method, path), filling params. nullptr with *path_known set when the path
  // exists for another method (405).
  const Route* Match(std::string_view method, std::string_view path,
                     std::map<std::string, std::string>* params, bool* path_known) const;
  const std::vector<Route>& routes() const { return routes_; }

 private:
  std::vector<Route> routes_;
  // Each route's pattern split into segments once, at Add: matching runs on every request.
  std::vector<std::vector<std::string>> patterns_;
};

// ---- responses ----
void JsonReply(net::HttpResponse* r, int status, const json& body);
void ErrorReply(net::HttpResponse* r, const ApiError& e);
void ErrorReply(net::HttpResponse* r, const Status& s);
// A record for clients: internal fields (names starting with '_') removed.
json Public(const json& doc);
// A single record with its ETag ("v<version>").
void RecordReply(net::HttpResponse* r, int status, const json& doc);

// ---- body validation ----
enum class FieldType { kString, kInt, kBool, kIntArray, kStringArray, kScope, kObject };
struct FieldSpec {
  std::string name;
  FieldType type;
  bool required = false;
  int64_t max = 256;  // string bytes, array elements, or the largest int
  int64_t min = 0;    // smallest int, shortest string
};
// Checks that `body` is an object whose keys are all in `spec` with the right types and bounds,
// and (unless `partial`, for PATCH) that required fields are present. Strings may not hold control
// characters. InvalidArgument naming the field otherwise.
Status CheckFields(const json& body, const std::vector<FieldSpec>& spec, bool partial);

// ---- lists ----
struct ListQuery {
  int64_t page = 1;
  int64_t size = 20;
  std::string sort = "id";
  bool desc = false;
  std::map<std::string, std::string> filters;  // exact match on these fields
  std::string q;                               // substring search on `search` fields
};
// Parses page, size (1..500), sort (one of `sortable`, '-' prefix for descending), q, and exact
// filters on `filterable` fields. Any other parameter is InvalidArgument.
Result<ListQuery> ParseListQuery(const Ctx& ctx, const std::vector<std::string>& sortable,
                                 const std::vector<std::string>& filterable,
                                 const std::vector<std::string>& extra = {});
// Filters and pages `docs`, which are already in the order the query asks for (Collection::Sorted
// or SortDocs); `keep` (may be null) drops records the caller may not see.
json ListReply(const std::vector<std::shared_ptr<const json>>& docs, const ListQuery& q,
               const std::vector<std::string>& search,
               const std::function<bool(const json&)>& keep);

// True when `s` is well-formed UTF-8 (what JSON strings and the audit log can hold).
bool ValidUtf8(std::string_view s);

// Short digest of a record for the audit log ("" for none).
std::string Digest(const json* doc);

}  // namespace depot::opsd
