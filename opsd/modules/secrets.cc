// Secrets: credentials later modules use (SSH keys, Jenkins tokens, SMTP passwords). The value is
// sealed with AES-256-GCM (SecretBox) bound to its record, and is write-only over the API: no
// route returns it. Later modules open it with the server's SecretBox and the AAD "secrets/<id>".
#include "opsd/modules/common.h"

namespace depot::opsd {

namespace {

std::string Aad(int64_t id) { return "secrets/" + std::to_string(id); }

const std::vector<FieldSpec>& Spec() {
  static const std::vector<FieldSpec> spec = {
      {"name", FieldType::kString, true, 128, 1},
      {"kind", FieldType::kString, false, 32},
      {"description", FieldType::kString, false, 1024},
      {"value", FieldType::kString, true, 64 << 10, 0},
      {"scope", FieldType::kScope}};
  return spec;
}

json Shown(const json& d) {
  json out = Public(d);
  out["has_value"] = d.contains("_sealed");
  return out;
}

}  // namespace

void AddSecretRoutes(OpsdServer* s, Router* r) {
  const std::string view = "secrets.secret.view";
  r->Add({"GET", "/api/v1/secrets", view, net::RouteMode::kInline, "",
          [s, view](Ctx& ctx, net::HttpResponse* resp) {
            auto q = ParseListQuery(ctx, {"id", "name", "created_at"}, {"kind"}, {});
            if (!Ok(resp, q.status())) return;
            json out = ListReply(*s->secrets()->Sorted(q->sort, q->desc), *q, {"name", "description"},
                                 ScopeFilter(ctx, view));
            for (auto& item : out["items"]) item["has_value"] = true;
            JsonReply(resp, 200, out);
          },
          nullptr});
  r->Add({"GET", "/api/v1/secrets/{id}", view, net::RouteMode::kInline, "",
          [s, view](Ctx& ctx, net::HttpResponse* resp) {
            auto id = ctx.IdParam();
            if (!Ok(resp, id.status())) return;
            Doc d = s->secrets()->Get(*id);
            if (!d) return ErrorReply(resp, Status::NotFound("secret not found:", std::to_string(*id)));
            auto keep = ScopeFilter(ctx, view);
            if (keep && !keep(*d)) {
              return ErrorReply(resp, ApiError{403, "out_of_scope", "record outside your scope"});
            }
            resp->headers.emplace_back("ETag", "\"v" + std::to_string((*d)["version"].get<int64_t>()) + "\"");
            JsonReply(resp, 200, Shown(*d));
          },
          nullptr});
  r->Add({"POST", "/api/v1/secrets", "secrets.secret.create", net::RouteMode::kInline,
          "secrets.create", [s](Ctx& ctx, net::HttpResponse* resp) {
            auto body = ctx.JsonBody();
            if (!Ok(resp, body.status())) return;
            if (!Ok(resp, CheckFields(*body, Spec(), false))) return;
            Txn t(s->store());
            int64_t id = t.NextId("secrets");
            auto sealed = s->secret_box().Seal((*body)["value"].get<std::string>(), Aad(id));
            if (!Ok(resp, sealed.status())) return;
            json d = {{"id", id},
                      {"name", (*body)["name"]},
                      {"kind", body->value("kind", "password")},
                      {"description", body->value("description", "")},
                      {"scope", Scope::FromJson(body->value("scope", json::object())).ToJson()},
                      {"_sealed", *sealed}};
            if (!ctx.who->Covers("secrets.secret.create", d["scope"])) {
              return ErrorReply(resp, ApiError{403, "out_of_scope", "scope outside your own"});
            }
            auto ins = t.Insert(s->secrets(), d);
            if (!Ok(resp, ins.status())) return;
            ctx.resource = Aad(id);
            if (!Ok(resp, s->CommitAudited(t, ctx, nullptr, ins->get()))) return;
            resp->headers.emplace_back("ETag", "\"v1\"");
            JsonReply(resp, 201, Shown(**ins));
          },
          nullptr});
  r->Add({"PATCH", "/api/v1/secrets/{id}", "secrets.secret.update", net::RouteMode::kInline,
          "secrets.update", [s](Ctx& ctx, net::HttpResponse* resp) {
            auto id = ctx.IdParam();
            if (!Ok(resp, id.status())) return;
            ctx.resource = Aad(*id);
            auto body = ctx.JsonBody();
            if (!Ok(resp, body.status())) return;
            if (!Ok(resp, CheckFields(*body, Spec(), true))) return;
            auto ver = ctx.ExpectedVersion(&*body);
            if (!Ok(resp, ver.status())) return;
            Txn t(s->store());
            Doc cur = t.Get(s->secrets(), *id);
            if (!cur) return ErrorReply(resp, Status::NotFound("secret not found:", std::to_string(*id)));
            if (!ctx.who->Covers("secrets.secret.update", (*cur)["scope"])) {
              return ErrorReply(resp, ApiError{403, "out_of_scope", "record outside your scope"});
            }
            json next = *cur;
            for (const char* f : {"name", "kind", "description"}) {
              if (body->contains(f)) next[f] = (*body)[f];
            }
            if (body->contains("scope")) {
              next["scope"] = Scope::FromJson((*body)["scope"]).ToJson();
              if (!ctx.who->Covers("secrets.secret.update", next["scope"])) {
                return ErrorReply(resp, ApiError{403, "out_of_scope", "scope outside your own"});
              }
            }
            if (body->contains("value")) {
              auto sealed = s->secret_box().Seal((*body)["value"].get<std::string>(), Aad(*id));
              if (!Ok(resp, sealed.status())) return;
              next["_sealed"] = *sealed;
            }
            auto rep = t.Replace(s->secrets(), *id, next, *ver);
            if (!Ok(resp, rep.status())) return;
            if (!Ok(resp, s->CommitAudited(t, ctx, cur.get(), rep->get()))) return;
            resp->headers.emplace_back("ETag", "\"v" + std::to_string((**rep)["version"].get<int64_t>()) + "\"");
            JsonReply(resp, 200, Shown(**rep));
          },
          nullptr});
  r->Add({"DELETE", "/api/v1/secrets/{id}", "secrets.secret.delete", net::RouteMode::kInline,
          "secrets.delete", DeleteHandler(s, s->secrets(), nullptr, "secrets.secret.delete"),
          nullptr});
}

}  // namespace depot::opsd
