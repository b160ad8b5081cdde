// OpsdServer: depot-opsd's one server object. It owns the HTTP server, the LevelDB store and its
// collections, the secret box, the Depot client and the metrics, and runs every request through
// the same steps: match the route, authenticate the bearer token, check the route's permission,
// run the handler, and audit every mutation (doc/opsd-api.md).
//
// Modules (accounts, audit, secrets, files, runs) add their routes in opsd/modules/*.cc and use
// the shared services below. Threading: Start/Stop from main; everything else is thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/base/status.h"
#include "common/net/http_server.h"
#include "opsd/api.h"
#include "opsd/config.h"
#include "opsd/crypto.h"
#include "opsd/store.h"

namespace prometheus {
class Counter;
class Histogram;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace depot {
class Client;
}

namespace depot::opsd {

// Every permission code a role may grant, with a one-line meaning (GET /api/v1/permissions).
const std::map<std::string, std::string>& PermissionCatalog();

class OpsdServer {
 public:
  explicit OpsdServer(OpsdConfig config);
  ~OpsdServer();

  // Opens the store (creating the first admin on first start), the key file and the cluster
  // client, then starts serving.
  Status Start();
  void Stop();
  int port() const;
  // The generated first-admin password when this start created the admin (else empty).
  const std::string& generated_password() const { return generated_password_; }

  // ---- services for the modules ----
  const OpsdConfig& config() const { return cfg_; }
  Store* store() { return store_.get(); }
  Collection* users() { return users_; }
  Collection* departments() { return departments_; }
  Collection* roles() { return roles_; }
  Collection* delegations() { return delegations_; }
  Collection* sessions() { return sessions_; }
  Collection* api_tokens() { return api_tokens_; }
  Collection* secrets() { return secrets_; }
  Collection* files() { return files_; }
  Collection* runs() { return runs_; }
  const SecretBox& secret_box() const { return *box_; }
  // The Depot cluster client; Unavailable when opsd has no tracker_server.
  Result<Client*> cluster();
  const Router& router() const { return router_; }

  // Commits `t` with the audit event of `ctx` (result "ok"); marks ctx audited. `before` and
  // `after` are the main record's states, for the event's digests.
  Status CommitAudited(Txn& t, Ctx& ctx, const json* before, const json* after);
  // Appends an audit event for a request that changed nothing (refused or failed). With `later`
  // the write happens on the audit thread (callers on an event loop must not sync to disk).
  void AuditFailure(Ctx& ctx, const std::string& result, int status, bool later = false);
  // The caller's identity for a bearer token; nullptr when the token is unknown or expired.
  std::shared_ptr<const Principal> Authenticate(const std::string& token);
  // Effective permissions of a user (own roles, then active delegations), narrowed by an API
  // token's permission list when `token` is one.
  std::shared_ptr<const Principal> PrincipalFor(const json& user, const json* token,
                                                int64_t session_id);
  void CountLogin(const std::string& result);
  void CountAuditEvent();
  void CountFileBytes(const std::string& direction, uint64_t n);

 private:
  net::RouteMode Classify(const net::http::RequestHead& head, const std::string& peer,
                          net::HttpResponse* reject);
  void Handle(const net::HttpRequest& req, net::HttpResponse* resp);
  void HandleStream(net::HttpStream& s);
  // Route lookup, query parsing, authentication and the permission check; nullptr (with the
  // error in *err) when the request must be refused.
  const Route* Admit(const net::http::RequestHead& head, const std::string& ip, Ctx* ctx,
                     ApiError* err);
  void Finish(const Route* route, Ctx& ctx, int status, double seconds);
  Status Bootstrap();
  void AddCoreRoutes();
  void SweepSessions();

  OpsdConfig cfg_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<SecretBox> box_;
  Collection* users_ = nullptr;
  Collection* departments_ = nullptr;
  Collection* roles_ = nullptr;
  Collection* delegations_ = nullptr;
  Collection* sessions_ = nullptr;
  Collection* api_tokens_ = nullptr;
  Collection* secrets_ = nullptr;
  Collection* files_ = nullptr;
  Collection* runs_ = nullptr;
  Router router_;
  std::unique_ptr<net::HttpServer> http_;
  std::string generated_password_;

  std::mutex client_mu_;
  std::unique_ptr<Client> client_;  // GUARDED_BY(client_mu_) until set

  // Principals by (session id, API token?), valid for one second and one accounts generation.
  struct Cached {
    int64_t at_ms;
    uint64_t gen;
    std::shared_ptr<const Principal> p;
  };
  std::mutex cache_mu_;
  std::map<std::pair<int64_t, bool>, Cached> cache_;  // GUARDED_BY(cache_mu_)
  std::atomic<uint64_t> gen_{0};

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* requests_ = nullptr;
  prometheus::Family<prometheus::Histogram>* latency_ = nullptr;
  prometheus::Family<prometheus::Counter>* logins_ = nullptr;
  prometheus::Family<prometheus::Counter>* file_bytes_ = nullptr;
  prometheus::Counter* audit_events_ = nullptr;
  std::mutex metrics_mu_;
  std::map<std::string, prometheus::Counter*> request_counters_;    // GUARDED_BY(metrics_mu_)
  std::map<std::string, prometheus::Histogram*> latency_by_route_;  // GUARDED_BY(metrics_mu_)
  void WriteAudit(json event);
  std::thread sweeper_;
  std::thread audit_thread_;
  std::condition_variable audit_cv_;
  std::deque<json> audit_queue_;  // GUARDED_BY(sweep_mu_)
  bool audit_stop_ = false;       // GUARDED_BY(sweep_mu_)
  static constexpr size_t kMaxAuditQueue = 10000;
  std::atomic<int> streams_{0};  // file transfers in progress (at most half the workers)
  std::mutex sweep_mu_;
  std::condition_variable sweep_cv_;
  bool stopping_ = false;  // GUARDED_BY(sweep_mu_)
};

// Module route tables (opsd/modules/*.cc).
void AddAccountRoutes(OpsdServer* s, Router* r);
void AddAuditRoutes(OpsdServer* s, Router* r);
void AddSecretRoutes(OpsdServer* s, Router* r);
void AddFileRoutes(OpsdServer* s, Router* r);
void AddRunRoutes(OpsdServer* s, Router* r);

}  // namespace depot::opsd
