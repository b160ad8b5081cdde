#include "opsd/opsd_server.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <strings.h>

#include <chrono>
#include <cstdio>

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "client/include/depot/client.h"
#include "common/base/fs.h"
#include "common/base/logging.h"

namespace depot::opsd {

namespace {

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string AuditKey(int64_t id) {
  char buf[40];
  snprintf(buf, sizeof buf, "audit/%016lld", static_cast<long long>(id));
  return buf;
}

bool IsMutation(const std::string& method) { return method != "GET" && method != "HEAD"; }

}  // namespace

const std::map<std::string, std::string>& PermissionCatalog() {
  static const std::map<std::string, std::string> kCatalog = {
      {"accounts.user.view", "list and read users"},
      {"accounts.user.create", "create users"},
      {"accounts.user.update", "change users, their roles, passwords and state"},
      {"accounts.user.delete", "delete users"},
      {"accounts.department.view", "list and read departments"},
      {"accounts.department.create", "create departments"},
      {"accounts.department.update", "change departments"},
      {"accounts.department.delete", "delete departments"},
      {"accounts.role.view", "list and read roles and the permission catalog"},
      {"accounts.role.create", "create roles"},
      {"accounts.role.update", "change roles"},
      {"accounts.role.delete", "delete roles"},
      {"accounts.delegation.view", "list and read delegations"},
      {"accounts.delegation.create", "create delegations"},
      {"accounts.delegation.update", "revoke delegations"},
      {"accounts.delegation.delete", "delete delegations"},
      {"audit.event.view", "read the audit log"},
      {"secrets.secret.view", "list secrets (never their values)"},
      {"secrets.secret.create", "create secrets"},
      {"secrets.secret.update", "change secrets"},
      {"secrets.secret.delete", "delete secrets"},
      {"files.file.view", "list and download files"},
      {"files.file.upload", "upload files"},
      {"files.file.delete", "delete files"},
      {"runs.run.view", "list runs and read their logs"},
      {"runs.run.create", "record runs"},
      {"runs.run.update", "change run states and append to run logs"},
  };
  return kCatalog;
}

OpsdServer::OpsdServer(OpsdConfig config)
    : cfg_(std::move(config)), registry_(std::make_shared<prometheus::Registry>()) {}

OpsdServer::~OpsdServer() { Stop(); }

int OpsdServer::port() const { return http_ ? http_->port() : 0; }

Result<Client*> OpsdServer::cluster() {
  std::lock_guard<std::mutex> l(client_mu_);
  if (client_) return client_.get();
  if (cfg_.tracker_servers.empty()) {
    return Status::Unavailable("opsd has no tracker_server: files and run logs are off");
  }
  ClientOptions o;
  o.trackers = cfg_.tracker_servers;
  o.network_timeout_ms = cfg_.io_timeout * 1000;
  DEPOT_ASSIGN_OR_RETURN(client_, Client::Create(o));
  return client_.get();
}

Status OpsdServer::Start() {
  DEPOT_RETURN_IF_ERROR(MakeDirs(cfg_.base_path));
  DEPOT_ASSIGN_OR_RETURN(SecretBox box, SecretBox::LoadOrCreate(cfg_.secret_key_file));
  box_ = std::make_unique<SecretBox>(std::move(box));
  DEPOT_ASSIGN_OR_RETURN(store_, Store::Open(cfg_.db_path, cfg_.durable_writes));
  DEPOT_ASSIGN_OR_RETURN(users_, store_->AddCollection("users", {"username"}, {"username"}));
  DEPOT_ASSIGN_OR_RETURN(departments_, store_->AddCollection("departments", {"name"}, {"name"}));
  DEPOT_ASSIGN_OR_RETURN(roles_, store_->AddCollection("roles", {"name"}, {"name"}));
  DEPOT_ASSIGN_OR_RETURN(delegations_, store_->AddCollection("delegations", {}));
  DEPOT_ASSIGN_OR_RETURN(sessions_, store_->AddCollection("sessions", {"_token_hash"}));
  DEPOT_ASSIGN_OR_RETURN(api_tokens_, store_->AddCollection("api_tokens", {"_token_hash"}));
  DEPOT_ASSIGN_OR_RETURN(secrets_, store_->AddCollection("secrets", {"name"}, {"name"}));
  DEPOT_ASSIGN_OR_RETURN(files_, store_->AddCollection("files", {"file_id"}));
  DEPOT_ASSIGN_OR_RETURN(runs_, store_->AddCollection("runs", {}));
  DEPOT_RETURN_IF_ERROR(Bootstrap());

  requests_ = &prometheus::BuildCounter()
                   .Name("depot_opsd_requests_total")
                   .Help("API requests by route and HTTP status")
                   .Register(*registry_);
  latency_ = &prometheus::BuildHistogram()
                  .Name("depot_opsd_request_seconds")
                  .Help("API request latency by route")
                  .Register(*registry_);
  logins_ = &prometheus::BuildCounter()
                 .Name("depot_opsd_logins_total")
                 .Help("Login attempts by result")
                 .Register(*registry_);
  file_bytes_ = &prometheus::BuildCounter()
                     .Name("depot_opsd_file_bytes_total")
                     .Help("Bytes of files streamed through opsd, by direction")
                     .Register(*registry_);
  audit_events_ = &prometheus::BuildCounter()
                       .Name("depot_opsd_audit_events_total")
                       .Help("Audit events written")
                       .Register(*registry_)
                       .Add({});

  AddCoreRoutes();
  AddAccountRoutes(this, &router_);
  AddAuditRoutes(this, &router_);
  AddSecretRoutes(this, &router_);
  AddFileRoutes(this, &router_);
  AddRunRoutes(this, &router_);

  net::HttpServerOptions ho;
  ho.bind_addr = cfg_.bind_addr;
  ho.port = cfg_.port;
  ho.loop_threads = cfg_.loop_threads;
  ho.worker_threads = cfg_.worker_threads;
  ho.max_body = cfg_.max_body_size;
  ho.idle_timeout = cfg_.idle_timeout;
  ho.io_timeout = cfg_.io_timeout;
  ho.max_connections = cfg_.max_connections;
  http_ = std::make_unique<net::HttpServer>(
      ho,
      [this](const net::http::RequestHead& h, const std::string& peer,
             net::HttpResponse* reject) { return Classify(h, peer, reject); },
      [this](const net::HttpRequest& q, net::HttpResponse* r) { Handle(q, r); },
      [this](net::HttpStream& s) { HandleStream(s); },
      [](int status, const std::string& message) {
        // Refusals by the HTTP layer itself, before any route: the same codes as the handlers'.
        std::string code = status == 413   ? "too_large"
                           : status == 431 ? "headers_too_large"
                           : status == 417 ? "expectation_failed"
                           : status == 501 ? "not_supported"
                           : status == 505 ? "http_version_not_supported"
                           : status == 503 ? "unavailable"
                           : status >= 500 ? "internal"
                                           : "invalid_argument";
        return std::make_pair(std::string("application/json"), ErrorBody(code, message));
      });
  DEPOT_RETURN_IF_ERROR(http_->Start());
  audit_thread_ = std::thread([this] {
    std::unique_lock<std::mutex> l(sweep_mu_);
    for (;;) {
      audit_cv_.wait(l, [this] { return audit_stop_ || !audit_queue_.empty(); });
      if (audit_queue_.empty()) return;  // stopping, and everything written
      json e = std::move(audit_queue_.front());
      audit_queue_.pop_front();
      l.unlock();
      WriteAudit(std::move(e));
      l.lock();
    }
  });
  sweeper_ = std::thread([this] {
    std::unique_lock<std::mutex> l(sweep_mu_);
    while (!stopping_) {
      sweep_cv_.wait_for(l, std::chrono::seconds(60));
      if (stopping_) break;
      l.unlock();
      SweepSessions();
      l.lock();
    }
  });
  DEPOT_LOG_INFO("opsd serving on {}:{}", cfg_.bind_addr, http_->port());
  return Status::OK();
}

void OpsdServer::Stop() {
  {
    std::lock_guard<std::mutex> l(sweep_mu_);
    stopping_ = true;
  }
  sweep_cv_.notify_all();
  if (sweeper_.joinable()) sweeper_.join();
  if (http_) http_->Stop();
  {
    std::lock_guard<std::mutex> l(sweep_mu_);
    audit_stop_ = true;  // after the loops: nothing more is queued
  }
  audit_cv_.notify_all();
  if (audit_thread_.joinable()) audit_thread_.join();
}

Status OpsdServer::Bootstrap() {
  if (users_->size() > 0) return Status::OK();
  std::string password = cfg_.admin_password;
  if (password.empty()) {
    password = RandomToken(18);
    generated_password_ = password;
    // Written once, readable by the owner only; never logged.
    std::string path = cfg_.base_path + "/initial-admin-password";
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return Status::FromErrno(errno, "create", path);
    std::string line = password + "\n";
    Status w = WriteAll(fd, line.data(), line.size(), path);
    if (w.ok() && (fchmod(fd, 0600) != 0 || fsync(fd) != 0)) w = Status::FromErrno(errno, "sync", path);
    close(fd);
    DEPOT_RETURN_IF_ERROR(w);
  }
  DEPOT_ASSIGN_OR_RETURN(std::string hash, HashPassword(password, kPasswordIterations));
  Txn t(store_.get());
  json admin = {{"username", cfg_.admin_user}, {"name", "Administrator"},
                {"email", ""},                 {"phone", ""},
                {"wecom_id", ""},              {"active", true},
                {"superuser", true},           {"department_ids", json::array()},
                {"role_ids", json::array()},   {"_password", hash},
                {"_failed", 0},                {"_locked_until", 0}};
  DEPOT_ASSIGN_OR_RETURN(Doc d, t.Insert(users_, admin));
  json event = {{"id", t.NextId("audit")}, {"time", UnixSeconds()},  {"actor", "opsd"},
                {"actor_id", 0},           {"action", "users.bootstrap"},
                {"resource", "users/" + std::to_string((*d)["id"].get<int64_t>())},
                {"result", "ok"},          {"status", 201}, {"ip", ""},
                {"before", ""},            {"after", Digest(d.get())}};
  t.PutRaw(AuditKey(event["id"].get<int64_t>()), event.dump());
  DEPOT_RETURN_IF_ERROR(t.Commit());
  DEPOT_LOG_INFO("created the first superuser '{}'", cfg_.admin_user);
  return Status::OK();
}

// ---- audit ----

Status OpsdServer::CommitAudited(Txn& t, Ctx& ctx, const json* before, const json* after) {
  int64_t id = t.NextId("audit");
  json event = {{"id", id},
                {"time", UnixSeconds()},
                {"actor", ctx.who ? ctx.who->username : ""},
                {"actor_id", ctx.who ? ctx.who->user_id : 0},
                {"action", ctx.action},
                {"resource", ctx.resource},
                {"method", ctx.head ? ctx.head->method : ""},
                {"path", ctx.head ? ctx.head->path : ""},
                {"result", "ok"},
                {"ip", ctx.ip},
                {"before", Digest(before)},
                {"after", Digest(after)}};
  t.PutRaw(AuditKey(id), event.dump(-1, ' ', false, json::error_handler_t::replace));
  DEPOT_RETURN_IF_ERROR(t.Commit());
  ctx.audited = true;
  ++gen_;
  audit_events_->Increment();
  return Status::OK();
}

void OpsdServer::AuditFailure(Ctx& ctx, const std::string& result, int status, bool later) {
  json event = {{"time", UnixSeconds()},
                {"actor", ctx.who ? ctx.who->username : ""},
                {"actor_id", ctx.who ? ctx.who->user_id : 0},
                {"action", ctx.action},
                {"resource", ctx.resource},
                {"method", ctx.head ? ctx.head->method : ""},
                {"path", ctx.head ? ctx.head->path : ""},
                {"result", result},
                {"status", status},
                {"ip", ctx.ip},
                {"before", ""},
                {"after", ""}};
  ctx.audited = true;
  if (!later) return WriteAudit(std::move(event));
  {
    std::lock_guard<std::mutex> l(sweep_mu_);
    if (audit_queue_.size() >= kMaxAuditQueue) {
      DEPOT_LOG_WARN("audit queue full: a refusal by {} is not recorded", event["actor"].get<std::string>());
      return;
    }
    audit_queue_.push_back(std::move(event));
  }
  audit_cv_.notify_all();
}

void OpsdServer::WriteAudit(json event) {
  Txn t(store_.get());
  int64_t id = t.NextId("audit");
  event["id"] = id;
  t.PutRaw(AuditKey(id), event.dump(-1, ' ', false, json::error_handler_t::replace));
  Status s = t.Commit();
  if (!s.ok()) {
    DEPOT_LOG_ERROR("audit write failed: {}", s.ToString());
    return;
  }
  audit_events_->Increment();
}

// ---- identity ----

std::shared_ptr<const Principal> OpsdServer::PrincipalFor(const json& user, const json* token,
                                                          int64_t session_id) {
  auto p = std::make_shared<Principal>();
  p->user_id = user["id"].get<int64_t>();
  p->username = user["username"].get<std::string>();
  p->superuser = user.value("superuser", false);
  p->session_id = session_id;
  p->api_token = token != nullptr;
  // A delegation passes on the permissions it lists, narrowed to its scope.
  auto add_roles = [&](const json& u, const std::set<std::string>* only, const Scope* narrow) {
    for (const auto& rid : u["role_ids"]) {
      Doc role = roles_->Get(rid.get<int64_t>());
      if (!role) continue;
      Scope scope = Scope::FromJson((*role)["scopes"]);
      if (narrow && !Scope::Intersect(scope, *narrow, &scope)) continue;
      for (const auto& perm : (*role)["permissions"]) {
        std::string code = perm.get<std::string>();
        if (only && !only->count(code)) continue;
        p->grants[code].push_back(scope);
      }
    }
  };
  add_roles(user, nullptr, nullptr);
  p->own = p->grants;
  int64_t now = UnixSeconds();
  for (const Doc& d : delegations_->All()) {
    const json& g = *d;
    if (g["delegate_id"].get<int64_t>() != p->user_id || g.value("revoked", false)) continue;
    if (g["starts_at"].get<int64_t>() > now || g["ends_at"].get<int64_t>() <= now) continue;
    Doc principal = users_->Get(g["principal_id"].get<int64_t>());
    if (!principal || !(*principal).value("active", false)) continue;
    std::set<std::string> only;
    for (const auto& c : g["permissions"]) only.insert(c.get<std::string>());
    Scope narrow = Scope::FromJson(g.value("scope", json::object()));
    add_roles(*principal, &only, &narrow);
  }
  if (token != nullptr && !(*token)["permissions"].empty()) {
    std::map<std::string, std::vector<Scope>> narrowed;
    for (const auto& c : (*token)["permissions"]) {
      std::string code = c.get<std::string>();
      if (p->superuser) {
        narrowed[code].push_back(Scope());
      } else if (auto it = p->grants.find(code); it != p->grants.end()) {
        narrowed[code] = it->second;
      }
    }
    p->grants = std::move(narrowed);
    std::map<std::string, std::vector<Scope>> own;
    for (const auto& [code, scopes] : p->grants) {
      if (auto it = p->own.find(code); it != p->own.end()) own[code] = it->second;
      if (p->superuser) own[code] = {Scope()};
    }
    p->own = std::move(own);
    p->superuser = false;
  }
  return p;
}

std::shared_ptr<const Principal> OpsdServer::Authenticate(const std::string& token) {
  if (token.size() < 8 || token.size() > 256) return nullptr;
  std::string hash = Sha256Hex(token);
  bool api = token.starts_with("dpa_");
  Doc rec = (api ? api_tokens_ : sessions_)->FindUnique("_token_hash", hash);
  if (!rec) return nullptr;
  int64_t exp = (*rec).value("expires_at", int64_t{0});
  if (exp != 0 && exp <= UnixSeconds()) return nullptr;
  // A token made by a token lives only while every token above it does.
  for (Doc up = rec; api && (*up).value("parent_token_id", int64_t{0}) != 0;) {
    up = api_tokens_->Get((*up)["parent_token_id"].get<int64_t>());
    if (!up) return nullptr;
    int64_t pexp = (*up).value("expires_at", int64_t{0});
    if (pexp != 0 && pexp <= UnixSeconds()) return nullptr;
  }
  int64_t sid = (*rec)["id"].get<int64_t>();
  int64_t now_ms = SteadyMs();
  uint64_t gen = gen_.load();
  {
    std::lock_guard<std::mutex> l(cache_mu_);
    auto it = cache_.find({sid, api});
    if (it != cache_.end() && it->second.gen == gen && now_ms - it->second.at_ms < 1000) {
      return it->second.p;
    }
  }
  Doc user = users_->Get((*rec)["user_id"].get<int64_t>());
  if (!user || !(*user).value("active", false)) return nullptr;
  auto p = PrincipalFor(*user, api ? rec.get() : nullptr, sid);
  std::lock_guard<std::mutex> l(cache_mu_);
  if (cache_.size() > 10000) cache_.clear();
  cache_[{sid, api}] = Cached{now_ms, gen, p};
  return p;
}

void OpsdServer::SweepSessions() {
  int64_t now = UnixSeconds();
  std::vector<std::pair<Collection*, int64_t>> expired;
  for (Collection* c : {sessions_, api_tokens_}) {
    for (const Doc& d : c->All()) {
      int64_t exp = (*d).value("expires_at", int64_t{0});
      if (exp != 0 && exp <= now) expired.emplace_back(c, (*d)["id"].get<int64_t>());
    }
  }
  if (expired.empty()) return;
  Txn t(store_.get());
  for (auto [c, id] : expired) static_cast<void>(t.Remove(c, id, std::nullopt));
  Status s = t.Commit();
  if (!s.ok()) DEPOT_LOG_WARN("expired sessions not removed: {}", s.ToString());
}

void OpsdServer::CountAuditEvent() { audit_events_->Increment(); }

void OpsdServer::CountLogin(const std::string& result) { logins_->Add({{"result", result}}).Increment(); }

void OpsdServer::CountFileBytes(const std::string& direction, uint64_t n) {
  file_bytes_->Add({{"direction", direction}}).Increment(static_cast<double>(n));
}

// ---- request flow ----

net::RouteMode OpsdServer::Classify(const net::http::RequestHead& head, const std::string& peer,
                                     net::HttpResponse* reject) {
  std::map<std::string, std::string> params;
  bool known = false;
  const Route* r = router_.Match(head.method, head.path, &params, &known);
  if (r == nullptr) return net::RouteMode::kInline;  // answered 404/405 by Handle
  if (r->mode == net::RouteMode::kStream) {
    // Streams are checked here, on the loop, from the head alone: a client without the right
    // token never gets a worker, and its body is never read.
    Ctx ctx;
    ApiError err;
    const Route* route = Admit(head, peer, &ctx, &err);
    if (err.status != 0) {
      ErrorReply(reject, err);
      // The refusal of a change by a known caller is audited like any other (not on this loop:
      // later); one without a valid token is not (see Finish).
      if (route && IsMutation(route->method) && !route->action.empty() && ctx.who) {
        AuditFailure(ctx, err.code, err.status, /*later=*/true);
      }
      return net::RouteMode::kReject;
    }
    return net::RouteMode::kStream;
  }
  // Changes are synced to disk (and may wait for the store's write lock): never on a loop.
  if (IsMutation(r->method)) return net::RouteMode::kWorker;
  return r->mode;
}

const Route* OpsdServer::Admit(const net::http::RequestHead& head, const std::string& ip, Ctx* ctx,
                               ApiError* err) {
  ctx->head = &head;
  ctx->ip = ip;
  err->status = 0;  // admitted unless a check below says otherwise
  bool known = false;
  const Route* r = router_.Match(head.method, head.path, &ctx->params, &known);
  if (r == nullptr) {
    *err = known ? ApiError{405, "method_not_allowed", "method not allowed on " + head.path}
                 : ApiError{404, "not_found", "no such endpoint: " + head.path};
    return nullptr;
  }
  ctx->action = r->action;
  // The audited resource until the handler names it: "<collection>/<id>" of the path.
  {
    std::string_view rest = head.path;
    if (rest.starts_with("/api/v1/")) rest.remove_prefix(8);
    size_t first = rest.find('/');
    size_t second = first == std::string_view::npos ? first : rest.find('/', first + 1);
    ctx->resource = std::string(rest.substr(0, second));
  }
  auto q = net::http::ParseQuery(head.query);
  if (!q.ok()) {
    *err = ApiError{400, "invalid_argument", q.status().message()};
    return r;
  }
  ctx->query = std::move(*q);
  if (r->permission == kPublic) return r;
  const std::string* auth = head.Header("authorization");
  if (auth != nullptr && auth->size() > 7 && strncasecmp(auth->c_str(), "Bearer ", 7) == 0) {
    ctx->who = Authenticate(auth->substr(7));
  }
  if (!ctx->who) {
    *err = ApiError{401, "unauthenticated", "a valid bearer token is required"};
    return r;
  }
  if (r->permission != kAuthenticated && !ctx->who->Has(r->permission)) {
    *err = ApiError{403, "forbidden", "permission required: " + r->permission};
    return r;
  }
  return r;
}

void OpsdServer::Finish(const Route* route, Ctx& ctx, int status, double seconds) {
  std::string label = route ? route->method + " " + route->pattern : "unmatched";
  std::string key = label + " " + std::to_string(status);
  prometheus::Counter* c = nullptr;
  prometheus::Histogram* h = nullptr;
  {
    std::lock_guard<std::mutex> l(metrics_mu_);
    auto& slot = request_counters_[key];
    if (slot == nullptr) {
      slot = &requests_->Add({{"route", label}, {"code", std::to_string(status)}});
    }
    c = slot;
    auto& hs = latency_by_route_[label];
    if (hs == nullptr) {
      hs = &latency_->Add({{"route", label}},
                          prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005,
                                                                  0.01, 0.025, 0.05, 0.1, 0.25,
                                                                  0.5, 1, 2.5, 10});
    }
    h = hs;
  }
  c->Increment();
  h->Observe(seconds);
  // Every mutation leaves an audit event; handlers that committed wrote theirs with the change.
  // A request without a valid token has no actor: it is counted (metrics), not written, so that
  // anonymous clients cannot fill the audit log. Failed logins are written.
  bool anonymous = !ctx.who && ctx.result.empty();
  if (route && IsMutation(route->method) && !ctx.audited && !route->action.empty() && !anonymous) {
    std::string result = !ctx.result.empty() ? ctx.result
                         : status < 400    ? "ok"
                         : status == 401   ? "unauthenticated"
                                          : status == 403   ? "forbidden"
                                          : status == 404   ? "not_found"
                                          : status == 409   ? "conflict"
                                          : status < 500    ? "invalid"
                                                            : "error";
    AuditFailure(ctx, result, status);
  }
}

void OpsdServer::Handle(const net::HttpRequest& req, net::HttpResponse* resp) {
  auto start = std::chrono::steady_clock::now();
  Ctx ctx;
  ctx.body = &req.body;
  ApiError err;
  const Route* r = Admit(req.head, req.peer_ip, &ctx, &err);
  if (r == nullptr || err.status != 0) {
    ErrorReply(resp, err);
  } else {
    try {
      r->handler(ctx, resp);
    } catch (const std::exception& e) {
      // Our handlers validate before they touch JSON; reaching this is a bug, not bad input.
      DEPOT_LOG_ERROR("{} {}: {}", req.head.method, req.head.path, e.what());
      ErrorReply(resp, ApiError{500, "internal", "internal error"});
    }
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  Finish(r, ctx, resp->status, secs);
}

void OpsdServer::HandleStream(net::HttpStream& s) {
  auto start = std::chrono::steady_clock::now();
  Ctx ctx;
  ApiError err;
  const Route* r = Admit(s.head(), s.peer_ip(), &ctx, &err);
  int status = 0;
  if (r == nullptr || err.status != 0 || !r->stream) {
    if (r != nullptr && err.status == 0) err = ApiError{500, "internal", "route has no stream handler"};
    net::HttpResponse resp;
    ErrorReply(&resp, err);
    static_cast<void>(s.Send(resp));
    status = err.status;
  } else if (streams_.fetch_add(1) >= std::max(1, cfg_.worker_threads / 2)) {
    // File transfers may hold a worker for long: they get at most half of them, so that
    // logins and changes always find one.
    streams_.fetch_sub(1);
    net::HttpResponse resp;
    ErrorReply(&resp, ApiError{503, "busy", "too many file transfers at once: retry later"});
    resp.headers.emplace_back("Retry-After", "1");
    static_cast<void>(s.Send(resp));
    status = 503;
  } else {
    struct Release {
      std::atomic<int>* n;
      ~Release() { n->fetch_sub(1); }
    } release{&streams_};
    try {
      r->stream(ctx, s);
    } catch (const std::exception& e) {
      // As in Handle(): a bug, not bad input. The connection closes if a body was under way.
      DEPOT_LOG_ERROR("{} {}: {}", s.head().method, s.head().path, e.what());
      ctx.status = 500;
    }
    status = ctx.status != 0 ? ctx.status : s.head_sent() ? 200 : 500;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  Finish(r, ctx, status, secs);
}

void OpsdServer::AddCoreRoutes() {
  router_.Add({"GET", "/healthz", kPublic, net::RouteMode::kInline, "",
               [](Ctx&, net::HttpResponse* r) { JsonReply(r, 200, json{{"status", "ok"}}); },
               nullptr});
  router_.Add({"GET", "/metrics", kPublic, net::RouteMode::kInline, "",
               [this](Ctx&, net::HttpResponse* r) {
                 r->Set(200, "text/plain; version=0.0.4",
                        prometheus::TextSerializer().Serialize(registry_->Collect()));
               },
               nullptr});
  // The route table itself, with each route's permission (tests walk it; so can auditors).
  router_.Add({"GET", "/api/v1/routes", "accounts.role.view", net::RouteMode::kInline, "",
               [this](Ctx&, net::HttpResponse* r) {
                 json items = json::array();
                 for (const Route& rt : router_.routes()) {
                   items.push_back({{"method", rt.method},
                                    {"path", rt.pattern},
                                    {"permission", rt.permission},
                                    {"audit_action", rt.action}});
                 }
                 JsonReply(r, 200, json{{"items", items}});
               },
               nullptr});
  router_.Add({"GET", "/api/v1/permissions", "accounts.role.view", net::RouteMode::kInline, "",
               [](Ctx&, net::HttpResponse* r) {
                 json items = json::array();
                 for (const auto& [code, what] : PermissionCatalog()) {
                   items.push_back({{"code", code}, {"description", what}});
                 }
                 JsonReply(r, 200, json{{"items", items}});
               },
               nullptr});
}

}  // namespace depot::opsd
