// The audit log: read-only over the API (no route deletes or changes an event).
#include "opsd/modules/common.h"

namespace depot::opsd {

void AddAuditRoutes(OpsdServer* s, Router* r) {
  r->Add({"GET", "/api/v1/audit-events", "audit.event.view", net::RouteMode::kInline, "",
          [s](Ctx& ctx, net::HttpResponse* resp) {
            auto q = ParseListQuery(ctx, {"id"}, {"actor", "action", "result", "resource", "ip"},
                                    {"since", "until", "before_id"});
            if (!Ok(resp, q.status())) return;
            if (q->sort != "id" || !q->desc) {
              // Events are kept in id order; the list is newest first.
              if (ctx.Query("sort") && *ctx.Query("sort") != "-id") {
                return ErrorReply(resp, Status::InvalidArgument("audit events sort by -id only"));
              }
            }
            auto num = [&](const char* name, int64_t* out) -> Status {
              const std::string* v = ctx.Query(name);
              if (!v) return Status::OK();
              char* end = nullptr;
              long long n = strtoll(v->c_str(), &end, 10);
              if (v->empty() || *end != '\0' || n < 0) {
                return Status::InvalidArgument(std::string(name) + " must be a non-negative integer");
              }
              *out = n;
              return Status::OK();
            };
            int64_t since = 0, until = INT64_MAX, before_id = 0;
            if (!Ok(resp, num("since", &since)) || !Ok(resp, num("until", &until)) ||
                !Ok(resp, num("before_id", &before_id))) {
              return;
            }
            std::string before;
            if (before_id > 0) {
              char buf[40];
              snprintf(buf, sizeof buf, "audit/%016lld", static_cast<long long>(before_id));
              before = buf;
            }
            json items = json::array();
            int64_t skip = (q->page - 1) * q->size, matched = 0;
            bool more = false;
            Status st = s->store()->ScanBackward("audit/", before, [&](const std::string&,
                                                                       const std::string& v) {
              json e = json::parse(v, nullptr, false);
              if (e.is_discarded()) return true;
              int64_t t = e.value("time", int64_t{0});
              if (t < since) return false;  // older from here on
              if (t > until) return true;
              for (const auto& [f, want] : q->filters) {
                auto it = e.find(f);
                if (it == e.end() || !it->is_string() || it->get<std::string>() != want) return true;
              }
              if (!q->q.empty() && e.value("resource", "").find(q->q) == std::string::npos &&
                  e.value("action", "").find(q->q) == std::string::npos) {
                return true;
              }
              if (matched++ < skip) return true;
              if (static_cast<int64_t>(items.size()) == q->size) {
                more = true;
                return false;
              }
              items.push_back(std::move(e));
              return true;
            });
            if (!Ok(resp, st)) return;
            JsonReply(resp, 200, json{{"items", items}, {"page", q->page}, {"size", q->size},
                                      {"more", more}});
          },
          nullptr});
}

}  // namespace depot::opsd
