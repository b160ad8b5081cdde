// Runs: the record and log of any long job (a deploy, a remote command, a scheduled task). The
// log is an appender file in the Depot cluster; the record keeps its file ID and the length that
// is committed. Appends write at that length (a modify at the offset), so a crash between the
// cluster write and the record leaves bytes past the length that the next append overwrites:
// readers never see them.
#include <array>
#include <mutex>

#include "client/include/depot/client.h"
#include "opsd/modules/common.h"

namespace depot::opsd {

namespace {

constexpr const char* kView = "runs.run.view";
constexpr const char* kUpdate = "runs.run.update";
constexpr uint64_t kMaxLogRead = 1 << 20;

bool Final(const std::string& state) {
  return state == "succeeded" || state == "failed" || state == "timed_out" || state == "cancelled";
}

// One lock per run (striped): appends to one log are applied one at a time, in order.
std::mutex& RunLock(int64_t id) {
  static std::array<std::mutex, 64> locks;
  return locks[static_cast<size_t>(id) % locks.size()];
}

struct Transition {
  const char* verb;
  std::vector<std::string> from;
  const char* to;
};

const std::vector<Transition>& Transitions() {
  static const std::vector<Transition> t = {
      {"start", {"queued"}, "running"},
      {"succeed", {"running"}, "succeeded"},
      {"fail", {"queued", "running"}, "failed"},
      {"cancel", {"queued", "running"}, "cancelled"},
      {"timeout", {"running"}, "timed_out"},
  };
  return t;
}

// The run of {id}, if the caller may act on it with `perm`: reads need a grant that overlaps the
// run's scope, changes one that contains it.
Result<Doc> ScopedRun(OpsdServer* s, const Ctx& ctx, const std::string& perm) {
  DEPOT_ASSIGN_OR_RETURN(int64_t id, ctx.IdParam());
  Doc d = s->runs()->Get(id);
  if (!d) return Status::NotFound("run not found:", std::to_string(id));
  bool write = perm != kView;
  if (write ? !ctx.who->Covers(perm, (*d)["scope"]) : !ctx.who->InScope(perm, (*d)["scope"])) {
    return Status::PermissionDenied("run outside your scope:", std::to_string(id));
  }
  return d;
}

void ScopeError(net::HttpResponse* r, const Status& st) {
  if (st.code() == StatusCode::kPermissionDenied) {
    return ErrorReply(r, ApiError{403, "out_of_scope", st.message()});
  }
  ErrorReply(r, st);
}

}  // namespace

void AddRunRoutes(OpsdServer* s, Router* r) {
  r->Add({"GET", "/api/v1/runs", kView, net::RouteMode::kInline, "",
          ListHandler(s->runs(), {"id", "created_at", "updated_at", "kind", "state"},
                      {"kind", "state", "created_by"}, {"kind", "title"}, kView),
          nullptr});
  r->Add({"GET", "/api/v1/runs/{id}", kView, net::RouteMode::kInline, "", GetHandler(s->runs(), kView),
          nullptr});
  static const std::vector<FieldSpec> create_spec = {
      {"kind", FieldType::kString, true, 64, 1},
      {"title", FieldType::kString, false, 256},
      {"targets", FieldType::kStringArray, false, 1024},
      {"scope", FieldType::kScope},
      {"params", FieldType::kObject, false, 16 << 10}};
  r->Add({"POST", "/api/v1/runs", "runs.run.create", net::RouteMode::kInline, "runs.create",
          CreateHandler(s, s->runs(), &create_spec,
                        [](Txn&, const Ctx& ctx, const json& body) -> Result<json> {
                          json scope = Scope::FromJson(body.value("scope", json::object())).ToJson();
                          if (!ctx.who->Covers("runs.run.create", scope)) {
                            return Status::PermissionDenied("scope outside your own");
                          }
                          return json{{"kind", body["kind"]},
                                      {"title", body.value("title", "")},
                                      {"targets", body.value("targets", json::array())},
                                      {"scope", scope},
                                      {"params", body.value("params", json::object())},
                                      {"state", "queued"},
                                      {"created_by", ctx.who->username},
                                      {"started_at", 0},
                                      {"finished_at", 0},
                                      {"message", ""},
                                      {"log_file_id", ""},
                                      {"log_size", 0}};
                        }),
          nullptr});
  for (const Transition& tr : Transitions()) {
    r->Add({"POST", std::string("/api/v1/runs/{id}/") + tr.verb, kUpdate, net::RouteMode::kInline,
            std::string("runs.") + tr.verb, [s, tr](Ctx& ctx, net::HttpResponse* resp) {
              std::string message;
              if (ctx.body && !ctx.body->empty()) {
                auto body = ctx.JsonBody();
                if (!Ok(resp, body.status())) return;
                static const std::vector<FieldSpec> spec = {
                    {"message", FieldType::kString, false, 4096}};
                if (!Ok(resp, CheckFields(*body, spec, false))) return;
                message = body->value("message", "");
              }
              auto run = ScopedRun(s, ctx, kUpdate);
              if (!run.ok()) return ScopeError(resp, run.status());
              int64_t id = (**run)["id"].get<int64_t>();
              ctx.resource = "runs/" + std::to_string(id);
              std::lock_guard<std::mutex> l(RunLock(id));
              Txn t(s->store());
              Doc cur = t.Get(s->runs(), id);
              if (!cur) return ErrorReply(resp, Status::NotFound("run not found"));
              std::string state = (*cur)["state"];
              if (std::find(tr.from.begin(), tr.from.end(), state) == tr.from.end()) {
                return ErrorReply(resp, ApiError{409, "invalid_state",
                                                 "cannot " + std::string(tr.verb) + " a run that is " + state});
              }
              json next = *cur;
              next["state"] = tr.to;
              int64_t now = UnixSeconds();
              if (std::string(tr.to) == "running") next["started_at"] = now;
              if (Final(tr.to)) next["finished_at"] = now;
              if (!message.empty()) next["message"] = message;
              auto rep = t.Replace(s->runs(), id, next, std::nullopt);
              if (!Ok(resp, rep.status())) return;
              if (!Ok(resp, s->CommitAudited(t, ctx, cur.get(), rep->get()))) return;
              RecordReply(resp, 200, **rep);
            },
            nullptr});
  }
  r->Add({"POST", "/api/v1/runs/{id}/log", kUpdate, net::RouteMode::kWorker, "runs.log",
          [s](Ctx& ctx, net::HttpResponse* resp) {
            auto run = ScopedRun(s, ctx, kUpdate);
            if (!run.ok()) return ScopeError(resp, run.status());
            int64_t id = (**run)["id"].get<int64_t>();
            ctx.resource = "runs/" + std::to_string(id);
            if (ctx.body == nullptr || ctx.body->empty()) {
              return ErrorReply(resp, Status::InvalidArgument("the body holds the log bytes to append"));
            }
            auto cluster = s->cluster();
            if (!Ok(resp, cluster.status())) return;
            std::lock_guard<std::mutex> l(RunLock(id));
            Doc cur = s->runs()->Get(id);
            if (!cur) return ErrorReply(resp, Status::NotFound("run not found"));
            if (Final((*cur)["state"])) {
              return ErrorReply(resp, ApiError{409, "invalid_state", "the run is over: its log is closed"});
            }
            std::string fid = (*cur)["log_file_id"];
            uint64_t size = (*cur)["log_size"].get<uint64_t>();
            if (fid.empty()) {
              UploadOptions o;
              o.group = s->config().upload_group;
              o.ext = "log";
              auto up = (*cluster)->UploadAppenderBuffer(*ctx.body, o);
              if (!up.ok()) return ErrorReply(resp, ClusterError(up.status()));
              fid = *up;
            } else if (Status m = (*cluster)->ModifyBuffer(fid, size, *ctx.body); !m.ok()) {
              return ErrorReply(resp, ClusterError(m));
            }
            Txn t(s->store());
            json next = *cur;
            next["log_file_id"] = fid;
            next["log_size"] = size + ctx.body->size();
            auto rep = t.Replace(s->runs(), id, next, std::nullopt);
            if (!Ok(resp, rep.status())) return;
            if (!Ok(resp, s->CommitAudited(t, ctx, cur.get(), rep->get()))) return;
            JsonReply(resp, 200, json{{"log_size", next["log_size"]}, {"log_file_id", fid}});
          },
          nullptr});
  r->Add({"GET", "/api/v1/runs/{id}/log", kView, net::RouteMode::kWorker, "",
          [s](Ctx& ctx, net::HttpResponse* resp) {
            for (const auto& [k, v] : ctx.query) {
              if (k != "offset" && k != "limit") {
                return ErrorReply(resp, Status::InvalidArgument("unknown query parameter:", k));
              }
            }
            auto num = [&](const char* k, uint64_t def, uint64_t* out) -> Status {
              const std::string* v = ctx.Query(k);
              if (!v) {
                *out = def;
                return Status::OK();
              }
              char* end = nullptr;
              unsigned long long n = strtoull(v->c_str(), &end, 10);
              if (v->empty() || *end != '\0' || (*v)[0] == '-') {
                return Status::InvalidArgument(std::string(k) + " must be a non-negative integer");
              }
              *out = n;
              return Status::OK();
            };
            uint64_t offset = 0, limit = 0;
            if (!Ok(resp, num("offset", 0, &offset)) || !Ok(resp, num("limit", 64 << 10, &limit))) return;
            limit = std::min<uint64_t>(limit, kMaxLogRead);
            auto run = ScopedRun(s, ctx, kView);
            if (!run.ok()) return ScopeError(resp, run.status());
            uint64_t size = (**run)["log_size"].get<uint64_t>();
            std::string fid = (**run)["log_file_id"];
            if (offset > size) {
              return ErrorReply(resp, Status::InvalidArgument("offset past the end of the log:",
                                                              std::to_string(size)));
            }
            uint64_t n = std::min(limit, size - offset);
            std::string data;
            if (n > 0) {
              auto cluster = s->cluster();
              if (!Ok(resp, cluster.status())) return;
              auto got = (*cluster)->DownloadToBuffer(fid, offset, n);
              if (!got.ok()) return ErrorReply(resp, ClusterError(got.status()));
              data = std::move(*got);
              data.resize(std::min<size_t>(data.size(), n));
            }
            std::string state = (**run)["state"];
            resp->headers.emplace_back("X-Log-Offset", std::to_string(offset));
            resp->headers.emplace_back("X-Next-Offset", std::to_string(offset + data.size()));
            resp->headers.emplace_back("X-Log-Size", std::to_string(size));
            resp->headers.emplace_back("X-Run-State", state);
            resp->headers.emplace_back("X-Log-Complete",
                                       Final(state) && offset + data.size() == size ? "true" : "false");
            resp->Set(200, "text/plain; charset=utf-8", std::move(data));
          },
          nullptr});
}

}  // namespace depot::opsd
