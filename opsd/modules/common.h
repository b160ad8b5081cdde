// Small helpers the opsd modules share: the generic list / get / delete handlers of a collection
// and the one way a handler answers an error. Not a public API: included by opsd/modules/*.cc.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "opsd/api.h"
#include "opsd/opsd_server.h"

namespace depot::opsd {

// Answers `s` as an error when it is not OK; true when it was OK.
inline bool Ok(net::HttpResponse* r, const Status& s) {
  if (s.ok()) return true;
  ErrorReply(r, s);
  return false;
}

// Scope filter for records with a "scope" field: nullptr when the caller sees everything.
inline std::function<bool(const json&)> ScopeFilter(const Ctx& ctx, const std::string& perm) {
  if (ctx.who->superuser) return nullptr;
  auto who = ctx.who;
  return [who, perm](const json& d) {
    static const json kNone = json::object();
    auto it = d.find("scope");
    return who->InScope(perm, it == d.end() ? kNone : *it);
  };
}

// GET list of a collection with paging, sorting, filters and an optional scope check.
inline Handler ListHandler(Collection* c, std::vector<std::string> sortable,
                           std::vector<std::string> filterable, std::vector<std::string> search,
                           std::string scoped_perm = "") {
  return [=](Ctx& ctx, net::HttpResponse* r) {
    auto q = ParseListQuery(ctx, sortable, filterable);
    if (!Ok(r, q.status())) return;
    auto keep = scoped_perm.empty() ? nullptr : ScopeFilter(ctx, scoped_perm);
    JsonReply(r, 200, ListReply(*c->Sorted(q->sort, q->desc), *q, search, keep));
  };
}

// GET one record by {id}; out-of-scope records are refused with 403.
inline Handler GetHandler(Collection* c, std::string scoped_perm = "") {
  return [=](Ctx& ctx, net::HttpResponse* r) {
    auto id = ctx.IdParam();
    if (!Ok(r, id.status())) return;
    Doc d = c->Get(*id);
    if (!d) return ErrorReply(r, Status::NotFound(c->name() + " not found:", std::to_string(*id)));
    if (!scoped_perm.empty()) {
      auto keep = ScopeFilter(ctx, scoped_perm);
      if (keep && !keep(*d)) {
        return ErrorReply(r, ApiError{403, "out_of_scope", "record outside your scope"});
      }
    }
    RecordReply(r, 200, *d);
  };
}

// Applies a JSON patch of checked fields onto a copy of `base`.
inline json Merge(const json& base, const json& patch) {
  json out = base;
  for (auto it = patch.begin(); it != patch.end(); ++it) {
    if (it.key() != "version") out[it.key()] = it.value();
  }
  return out;
}

// POST a new record: the body is checked against `spec`, `build` makes the record (and checks
// it against the store, under the transaction), then it is inserted and audited: 201.
using BuildFn = std::function<Result<json>(Txn&, const Ctx&, const json& body)>;
inline Handler CreateHandler(OpsdServer* s, Collection* c, const std::vector<FieldSpec>* spec,
                             BuildFn build) {
  return [=](Ctx& ctx, net::HttpResponse* r) {
    auto body = ctx.JsonBody();
    if (!Ok(r, body.status())) return;
    if (!Ok(r, CheckFields(*body, *spec, false))) return;
    Txn t(s->store());
    auto doc = build(t, ctx, *body);
    if (!Ok(r, doc.status())) return;
    auto ins = t.Insert(c, std::move(*doc));
    if (!Ok(r, ins.status())) return;
    ctx.resource = c->name() + "/" + std::to_string((**ins)["id"].get<int64_t>());
    if (!Ok(r, s->CommitAudited(t, ctx, nullptr, ins->get()))) return;
    RecordReply(r, 201, **ins);
  };
}

// PATCH the record {id}: the body's fields (checked against `spec`, none required) are merged
// into it, `prepare` (may be null) checks and completes the result, the version is checked
// (If-Match or "version"), and the change is audited: 200.
using PrepareFn = std::function<Status(Txn&, const Ctx&, const json& body, const json& cur,
                                       json* next)>;
inline Handler PatchHandler(OpsdServer* s, Collection* c, const std::vector<FieldSpec>* spec,
                            PrepareFn prepare) {
  return [=](Ctx& ctx, net::HttpResponse* r) {
    auto id = ctx.IdParam();
    if (!Ok(r, id.status())) return;
    ctx.resource = c->name() + "/" + std::to_string(*id);
    auto body = ctx.JsonBody();
    if (!Ok(r, body.status())) return;
    if (!Ok(r, CheckFields(*body, *spec, true))) return;
    auto ver = ctx.ExpectedVersion(&*body);
    if (!Ok(r, ver.status())) return;
    Txn t(s->store());
    Doc cur = t.Get(c, *id);
    if (!cur) return ErrorReply(r, Status::NotFound(c->name() + " not found:", std::to_string(*id)));
    json next = Merge(*cur, *body);
    if (prepare && !Ok(r, prepare(t, ctx, *body, *cur, &next))) return;
    auto rep = t.Replace(c, *id, std::move(next), *ver);
    if (!Ok(r, rep.status())) return;
    if (!Ok(r, s->CommitAudited(t, ctx, cur.get(), rep->get()))) return;
    RecordReply(r, 200, **rep);
  };
}

// DELETE one record by {id} (If-Match honoured), after `check` (may be null) allows it. With
// `scoped_perm`, the caller's grant of it must contain the record's whole scope.
inline Handler DeleteHandler(OpsdServer* s, Collection* c,
                             std::function<Status(Txn&, const json&, const Ctx&)> check = nullptr,
                             std::string scoped_perm = "") {
  return [=](Ctx& ctx, net::HttpResponse* r) {
    auto id = ctx.IdParam();
    if (!Ok(r, id.status())) return;
    ctx.resource = c->name() + "/" + std::to_string(*id);
    auto ver = ctx.ExpectedVersion(nullptr);
    if (!Ok(r, ver.status())) return;
    Txn t(s->store());
    Doc d = t.Get(c, *id);
    if (!d) return ErrorReply(r, Status::NotFound(c->name() + " not found:", std::to_string(*id)));
    if (!scoped_perm.empty() && !ctx.who->Covers(scoped_perm, (*d)["scope"])) {
      return ErrorReply(r, ApiError{403, "out_of_scope", "record outside your scope"});
    }
    if (check && !Ok(r, check(t, *d, ctx))) return;
    if (!Ok(r, t.Remove(c, *id, *ver))) return;
    if (!Ok(r, s->CommitAudited(t, ctx, d.get(), nullptr))) return;
    r->status = 204;
  };
}

}  // namespace depot::opsd
