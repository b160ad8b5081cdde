// Accounts: login and tokens, users, departments, roles and delegations (doc/opsd-api.md).
#include <algorithm>
#include <set>

#include "opsd/crypto.h"
#include "opsd/modules/common.h"

namespace depot::opsd {

namespace {

using net::RouteMode;

constexpr int64_t kMaxId = int64_t{1} << 40;
constexpr int64_t kMaxTime = int64_t{1} << 40;
// A hash of a random password, verified when the username does not exist, so that a wrong
// username and a wrong password take the same time.
const std::string& DummyHash() {
  static const std::string h = *HashPassword(RandomToken(16), kPasswordIterations);
  return h;
}

bool ValidUsername(const std::string& u) {
  if (u.size() < 2 || u.size() > 32) return false;
  for (char ch : u) {
    if (!isalnum(static_cast<unsigned char>(ch)) && ch != '_' && ch != '.' && ch != '-' && ch != '@') {
      return false;
    }
  }
  return true;
}

Status CheckPassword(const std::string& p) {
  if (p.size() < 8 || p.size() > 256) {
    return Status::InvalidArgument("a password must have 8 to 256 bytes");
  }
  return Status::OK();
}

int ActiveSuperusers(OpsdServer* s) {
  int n = 0;
  for (const Doc& d : s->users()->All()) {
    n += (*d).value("superuser", false) && (*d).value("active", false);
  }
  return n;
}

Status CheckIdsExist(Txn& t, Collection* c, const json& ids, const std::string& field) {
  for (const auto& id : ids) {
    if (!t.Get(c, id.get<int64_t>())) {
      return Status::InvalidArgument(field + " names a missing " + c->name() + ":",
                                     std::to_string(id.get<int64_t>()));
    }
  }
  return Status::OK();
}

Status CheckPermissionCodes(const json& codes) {
  for (const auto& c : codes) {
    if (!PermissionCatalog().count(c.get<std::string>())) {
      return Status::InvalidArgument("unknown permission:", c.get<std::string>());
    }
  }
  return Status::OK();
}

// Nobody hands out more than they hold: a non-superuser may grant a permission only within a
// scope one of their own grants of it contains.
Status CheckGrantable(const Principal& caller, const std::vector<std::string>& perms,
                      const Scope& scope) {
  if (caller.superuser) return Status::OK();
  Principal who = caller.OwnOnly();
  for (const auto& p : perms) {
    if (!who.Covers(p, scope)) {
      return Status::PermissionDenied("you cannot grant what you lack (permission and scope):", p);
    }
  }
  return Status::OK();
}

// The roles' grants, each with its role's scope.
Status CheckRolesGrantable(const Principal& who, Txn& t, Collection* roles, const json& role_ids) {
  for (const auto& rid : role_ids) {
    Doc role = t.Get(roles, rid.get<int64_t>());
    if (!role) continue;
    DEPOT_RETURN_IF_ERROR(CheckGrantable(
        who, (*role)["permissions"].get<std::vector<std::string>>(), Scope::FromJson((*role)["scopes"])));
  }
  return Status::OK();
}

// A change of another account (its fields, state, password, existence) needs a caller who may do
// everything that account may: otherwise resetting a password would be a way to borrow rights.
Status CheckMayManage(OpsdServer* s, const Ctx& ctx, const json& target) {
  if (ctx.who->superuser) return Status::OK();
  if (target.value("superuser", false)) {
    return Status::PermissionDenied("only a superuser can change a superuser");
  }
  auto theirs = s->PrincipalFor(target, nullptr, 0);
  if (!ctx.who->OwnOnly().CoversAll(*theirs)) {
    return Status::PermissionDenied("the account holds permissions or scopes you do not");
  }
  return Status::OK();
}

// Removes every session and API token of a user (password change, disable, delete).
void RevokeTokens(OpsdServer* s, Txn& t, int64_t user_id) {
  for (Collection* c : {s->sessions(), s->api_tokens()}) {
    for (const Doc& d : c->All()) {
      if ((*d)["user_id"].get<int64_t>() == user_id) {
        static_cast<void>(t.Remove(c, (*d)["id"].get<int64_t>(), std::nullopt));
      }
    }
  }
}

const std::vector<FieldSpec>& UserSpec() {
  static const std::vector<FieldSpec> spec = {
      {"username", FieldType::kString, true, 32, 2},
      {"name", FieldType::kString, false, 64},
      {"email", FieldType::kString, false, 254},
      {"phone", FieldType::kString, false, 32},
      {"wecom_id", FieldType::kString, false, 64},
      {"active", FieldType::kBool},
      {"superuser", FieldType::kBool},
      {"department_ids", FieldType::kIntArray, false, 64},
      {"role_ids", FieldType::kIntArray, false, 64},
      // Optional: a user without one cannot log in with a password until an admin sets it
      // (POST /users/{id}/password), e.g. an account kept for approvals and notifications.
      {"password", FieldType::kString, false, 256, 8},
  };
  return spec;
}

// Checks a user record (new or changed) against the rest of the accounts data.
Status CheckUser(OpsdServer* s, Txn& t, const Principal& who, const json& before,
                 const json& after) {
  if (!ValidUsername(after["username"].get<std::string>())) {
    return Status::InvalidArgument("username: 2-32 characters of A-Z a-z 0-9 _ . - @");
  }
  const std::string& email = after["email"].get_ref<const std::string&>();
  if (!email.empty() && email.find('@') == std::string::npos) {
    return Status::InvalidArgument("email is not an address:", email);
  }
  DEPOT_RETURN_IF_ERROR(CheckIdsExist(t, s->departments(), after["department_ids"], "department_ids"));
  DEPOT_RETURN_IF_ERROR(CheckIdsExist(t, s->roles(), after["role_ids"], "role_ids"));
  bool was_super = before.is_object() && before.value("superuser", false);
  if (was_super && before.value("active", false) &&
      (!after.value("superuser", false) || !after.value("active", false)) &&
      ActiveSuperusers(s) <= 1) {
    return Status::AlreadyExists("the last active superuser cannot be demoted or disabled");
  }
  if (after.value("superuser", false) != was_super && !who.superuser) {
    return Status::PermissionDenied("only a superuser can grant or remove superuser");
  }
  if (was_super && !who.superuser) {
    return Status::PermissionDenied("only a superuser can change a superuser");
  }
  // Roles added by this change must not hand out more than the caller holds.
  std::set<int64_t> old_roles;
  if (before.is_object()) {
    for (const auto& r : before["role_ids"]) old_roles.insert(r.get<int64_t>());
  }
  json added = json::array();
  for (const auto& r : after["role_ids"]) {
    if (!old_roles.count(r.get<int64_t>())) added.push_back(r);
  }
  return CheckRolesGrantable(who, t, s->roles(), added);
}

void AddAuthRoutes(OpsdServer* s, Router* r) {
  // Login runs the password KDF (hundreds of milliseconds): on a worker, never on a loop.
  r->Add({"POST", "/api/v1/auth/login", kPublic, RouteMode::kWorker, "auth.login",
          [s](Ctx& ctx, net::HttpResponse* resp) {
            auto body = ctx.JsonBody();
            if (!Ok(resp, body.status())) return;
            static const std::vector<FieldSpec> spec = {
                {"username", FieldType::kString, true, 64, 1},
                {"password", FieldType::kString, true, 1024, 1},
                {"ttl_seconds", FieldType::kInt, false, 30 * 86400, 1}};
            if (!Ok(resp, CheckFields(*body, spec, false))) return;
            std::string username = (*body)["username"];
            std::string password = (*body)["password"];
            // Refusals are audited by the router after the handler (ctx.result names why);
            // the event names the attempted account, and ctx.who stays empty.
            auto deny = [&](int status, const std::string& code, const std::string& msg) {
              s->CountLogin(code);
              ctx.result = code;
              ErrorReply(resp, ApiError{status, code, msg});
            };
            Doc user = s->users()->FindUnique("username", username);
            if (!user) {
              // The attempted name is not logged: it may be a password typed in the wrong box.
              ctx.resource = "users/unknown";
              static_cast<void>(VerifyPassword(password, DummyHash()));
              return deny(401, "bad_credentials", "wrong username or password");
            }
            int64_t uid = (*user)["id"].get<int64_t>();
            ctx.resource = "users/" + std::to_string(uid);
            int64_t now = UnixSeconds();
            if ((*user).value("_locked_until", int64_t{0}) > now) {
              static_cast<void>(VerifyPassword(password, DummyHash()));  // same time as any refusal
              return deny(423, "locked", "too many failed logins: the account is locked");
            }
            std::string stored = (*user).value("_password", std::string());
            // A user without a password takes as long to refuse as any other.
            bool good = VerifyPassword(password, stored.empty() ? DummyHash() : stored) &&
                        !stored.empty();
            if (good && !(*user).value("active", false)) {
              return deny(403, "inactive", "the account is disabled");
            }
            Txn t(s->store());
            Doc cur = t.Get(s->users(), uid);
            if (!cur) return deny(401, "bad_credentials", "wrong username or password");
            if ((*cur).value("_locked_until", int64_t{0}) > now) {
              // Locked by a parallel attempt meanwhile: this one does not count, or succeed.
              return deny(423, "locked", "too many failed logins: the account is locked");
            }
            json u = *cur;
            if (!good) {
              int failed = u.value("_failed", 0) + 1;
              std::string code = "bad_credentials";
              if (failed >= s->config().lockout_threshold) {
                u["_locked_until"] = now + s->config().lockout_seconds;
                failed = 0;
                code = "locked";
              }
              u["_failed"] = failed;
              auto rep = t.ReplaceQuietly(s->users(), uid, u);
              if (!Ok(resp, rep.status())) return;
              ctx.action = code == "locked" ? "auth.lockout" : "auth.login";
              // The failure count and its audit event are one write.
              ctx.audited = false;
              int64_t eid = t.NextId("audit");
              json event = {{"id", eid}, {"time", now}, {"actor", ""}, {"actor_id", 0},
                            {"action", ctx.action}, {"resource", ctx.resource},
                            {"method", "POST"}, {"path", "/api/v1/auth/login"},
                            {"result", code}, {"status", 401}, {"ip", ctx.ip},
                            {"before", ""}, {"after", ""}};
              char key[40];
              snprintf(key, sizeof key, "audit/%016lld", static_cast<long long>(eid));
              t.PutRaw(key, event.dump());
              if (!Ok(resp, t.Commit())) return;
              ctx.audited = true;
              s->CountAuditEvent();
              s->CountLogin(code);
              return ErrorReply(resp, ApiError{401, "bad_credentials", "wrong username or password"});
            }
            if (!u.value("active", false)) {  // disabled meanwhile
              return deny(403, "inactive", "the account is disabled");
            }
            u["_failed"] = 0;
            u["_locked_until"] = 0;
            u["last_login_at"] = now;
            auto rep = t.ReplaceQuietly(s->users(), uid, u);
            if (!Ok(resp, rep.status())) return;
            int64_t ttl = body->value("ttl_seconds", int64_t{s->config().session_ttl});
            ttl = std::min<int64_t>(ttl, s->config().session_ttl);
            std::string token = "dps_" + RandomToken(32);
            json sess = {{"user_id", uid}, {"_token_hash", Sha256Hex(token)},
                         {"expires_at", now + ttl}, {"ip", ctx.ip}};
            auto ins = t.Insert(s->sessions(), sess);
            if (!Ok(resp, ins.status())) return;
            ctx.who = s->PrincipalFor(**rep, nullptr, (**ins)["id"].get<int64_t>());
            if (!Ok(resp, s->CommitAudited(t, ctx, nullptr, nullptr))) return;
            s->CountLogin("ok");
            JsonReply(resp, 200,
                      json{{"token", token}, {"expires_at", now + ttl}, {"user", Public(**rep)}});
          },
          nullptr});

  r->Add({"POST", "/api/v1/auth/logout", kAuthenticated, RouteMode::kInline, "auth.logout",
          [s](Ctx& ctx, net::HttpResponse* resp) {
            Collection* c = ctx.who->api_token ? s->api_tokens() : s->sessions();
            ctx.resource = (ctx.who->api_token ? "api-tokens/" : "sessions/") +
                           std::to_string(ctx.who->session_id);
            Txn t(s->store());
            Doc d = t.Get(c, ctx.who->session_id);
            if (d && !Ok(resp, t.Remove(c, ctx.who->session_id, std::nullopt))) return;
            if (!Ok(resp, s->CommitAudited(t, ctx, d.get(), nullptr))) return;
            resp->status = 204;
          },
          nullptr});

  r->Add({"GET", "/api/v1/me", kAuthenticated, RouteMode::kInline, "",
          [s](Ctx& ctx, net::HttpResponse* resp) {
            Doc u = s->users()->Get(ctx.who->user_id);
            if (!u) return ErrorReply(resp, Status::NotFound("user gone"));
            JsonReply(resp, 200,
                      json{{"user", Public(*u)},
                           {"superuser", ctx.who->superuser},
                           {"api_token", ctx.who->api_token},
                           {"permissions", ctx.who->PermissionsJson()}});
          },
          nullptr});

  r->Add({"POST", "/api/v1/me/password", kAuthenticated, RouteMode::kWorker, "users.password",
          [s](Ctx& ctx, net::HttpResponse* resp) {
            auto body = ctx.JsonBody();
            if (!Ok(resp, body.status())) return;
            static const std::vector<FieldSpec> spec = {
                {"old_password", FieldType::kString, true, 1024, 1},
                {"new_password", FieldType::kString, true, 256, 8}};
            if (!Ok(resp, CheckFields(*body, spec, false))) return;
            ctx.resource = "users/" + std::to_string(ctx.who->user_id);
            Doc u = s->users()->Get(ctx.who->user_id);
            if (!u || !VerifyPassword((*body)["old_password"].get<std::string>(),
                                      (*u).value("_password", std::string()))) {
              return ErrorReply(resp, ApiError{403, "bad_credentials", "the old password is wrong"});
            }
            auto hash = HashPassword((*body)["new_password"].get<std::string>(), kPasswordIterations);
            if (!Ok(resp, hash.status())) return;
            Txn t(s->store());
            Doc cur = t.Get(s->users(), ctx.who->user_id);
            if (!cur) return ErrorReply(resp, Status::NotFound("user gone"));
            json next = *cur;
            next["_password"] = *hash;
            RevokeTokens(s, t, ctx.who->user_id);
            auto rep = t.Replace(s->users(), ctx.who->user_id, next, std::nullopt);
            if (!Ok(resp, rep.status())) return;
            if (!Ok(resp, s->CommitAudited(t, ctx, cur.get(), rep->get()))) return;
            resp->status = 204;
          },
          nullptr});

  // API tokens for automation: always the caller's own, never wider than the caller.
  r->Add({"GET", "/api/v1/api-tokens", kAuthenticated, RouteMode::kInline, "",
          [s](Ctx& ctx, net::HttpResponse* resp) {
            auto q = ParseListQuery(ctx, {"id", "name", "created_at"}, {});
            if (!Ok(resp, q.status())) return;
            int64_t me = ctx.who->user_id;
            // A session sees all of the user's tokens; a token only those it made.
            int64_t parent = ctx.who->api_token ? ctx.who->session_id : -1;
            JsonReply(resp, 200, ListReply(*s->api_tokens()->Sorted(q->sort, q->desc), *q, {"name"},
                                           [me, parent](const json& d) {
                                             return d["user_id"] == me &&
                                                    (parent < 0 || d.value("parent_token_id", int64_t{0}) == parent);
                                           }));
          },
          nullptr});
  r->Add({"POST", "/api/v1/api-tokens", kAuthenticated, RouteMode::kInline, "api_tokens.create",
          [s](Ctx& ctx, net::HttpResponse* resp) {
            auto body = ctx.JsonBody();
            if (!Ok(resp, body.status())) return;
            static const std::vector<FieldSpec> spec = {
                {"name", FieldType::kString, true, 64, 1},
                {"permissions", FieldType::kStringArray, false, 256},
                {"ttl_seconds", FieldType::kInt, false, 3650LL * 86400, 0}};
            if (!Ok(resp, CheckFields(*body, spec, false))) return;
            json perms = body->value("permissions", json::array());
            if (!Ok(resp, CheckPermissionCodes(perms))) return;
            if (ctx.who->api_token && perms.empty()) {
              return ErrorReply(resp, ApiError{403, "forbidden",
                                               "an API token may only create narrower tokens: "
                                               "list the permissions"});
            }
            for (const auto& p : perms) {
              if (!ctx.who->Has(p.get<std::string>())) {
                return ErrorReply(resp, Status::PermissionDenied(
                                            "a token cannot hold a permission you lack:", p.get<std::string>()));
              }
            }
            int64_t ttl = body->value("ttl_seconds", int64_t{0});
            int64_t expires = ttl == 0 ? 0 : UnixSeconds() + ttl;
            int64_t parent = 0;
            if (ctx.who->api_token) {
              // A token made by a token lives no longer than its parent.
              Doc p = s->api_tokens()->Get(ctx.who->session_id);
              int64_t pexp = p ? (*p).value("expires_at", int64_t{0}) : 0;
              if (pexp != 0 && (expires == 0 || expires > pexp)) expires = pexp;
              parent = ctx.who->session_id;
            }
            std::string token = "dpa_" + RandomToken(32);
            json rec = {{"user_id", ctx.who->user_id}, {"name", (*body)["name"]},
                        {"permissions", perms}, {"_token_hash", Sha256Hex(token)},
                        {"expires_at", expires}, {"parent_token_id", parent}};
            Txn t(s->store());
            auto ins = t.Insert(s->api_tokens(), rec);
            if (!Ok(resp, ins.status())) return;
            ctx.resource = "api-tokens/" + std::to_string((**ins)["id"].get<int64_t>());
            if (!Ok(resp, s->CommitAudited(t, ctx, nullptr, ins->get()))) return;
            json out = Public(**ins);
            out["token"] = token;  // shown once
            JsonReply(resp, 201, out);
          },
          nullptr});
  r->Add({"DELETE", "/api/v1/api-tokens/{id}", kAuthenticated, RouteMode::kInline,
          "api_tokens.delete",
          [s](Ctx& ctx, net::HttpResponse* resp) {
            auto id = ctx.IdParam();
            if (!Ok(resp, id.status())) return;
            ctx.resource = "api-tokens/" + std::to_string(*id);
            Txn t(s->store());
            Doc d = t.Get(s->api_tokens(), *id);
            bool mine = d && (*d)["user_id"].get<int64_t>() == ctx.who->user_id;
            if (mine && ctx.who->api_token) {
              mine = *id == ctx.who->session_id ||
                     (*d).value("parent_token_id", int64_t{0}) == ctx.who->session_id;
            }
            if (!mine) {
              return ErrorReply(resp, Status::NotFound("api token not found:", std::to_string(*id)));
            }
            if (!Ok(resp, t.Remove(s->api_tokens(), *id, std::nullopt))) return;
            if (!Ok(resp, s->CommitAudited(t, ctx, d.get(), nullptr))) return;
            resp->status = 204;
          },
          nullptr});
}

void AddUserRoutes(OpsdServer* s, Router* r) {
  r->Add({"GET", "/api/v1/users", "accounts.user.view", RouteMode::kInline, "",
          ListHandler(s->users(), {"id", "username", "name", "created_at", "updated_at"},
                      {"username", "active", "superuser", "department_ids", "role_ids", "email"},
                      {"username", "name", "email", "phone"}),
          nullptr});
  r->Add({"GET", "/api/v1/users/{id}", "accounts.user.view", RouteMode::kInline, "",
          GetHandler(s->users()), nullptr});
  r->Add({"POST", "/api/v1/users", "accounts.user.create", RouteMode::kWorker, "users.create",
          [s](Ctx& ctx, net::HttpResponse* resp) {
            auto body = ctx.JsonBody();
            if (!Ok(resp, body.status())) return;
            if (!Ok(resp, CheckFields(*body, UserSpec(), false))) return;
            std::string hash;
            if (body->contains("password")) {
              if (!Ok(resp, CheckPassword((*body)["password"]))) return;
              auto h = HashPassword((*body)["password"].get<std::string>(), kPasswordIterations);
              if (!Ok(resp, h.status())) return;
              hash = std::move(*h);
            }
            json u = {{"username", (*body)["username"]},
                      {"name", body->value("name", "")},
                      {"email", body->value("email", "")},
                      {"phone", body->value("phone", "")},
                      {"wecom_id", body->value("wecom_id", "")},
                      {"active", body->value("active", true)},
                      {"superuser", body->value("superuser", false)},
                      {"department_ids", body->value("department_ids", json::array())},
                      {"role_ids", body->value("role_ids", json::array())},
                      {"_password", hash},
                      {"_failed", 0},
                      {"_locked_until", 0}};
            Txn t(s->store());
            if (!Ok(resp, CheckUser(s, t, *ctx.who, json(), u))) return;
            auto ins = t.Insert(s->users(), u);
            if (!Ok(resp, ins.status())) return;
            ctx.resource = "users/" + std::to_string((**ins)["id"].get<int64_t>());
            if (!Ok(resp, s->CommitAudited(t, ctx, nullptr, ins->get()))) return;
            RecordReply(resp, 201, **ins);
          },
          nullptr});
  r->Add({"PATCH", "/api/v1/users/{id}", "accounts.user.update", RouteMode::kInline,
          "users.update",
          PatchHandler(s, s->users(), &UserSpec(),
                       [s](Txn& t, const Ctx& ctx, const json& body, const json& cur,
                           json* next) -> Status {
                         int64_t id = cur["id"].get<int64_t>();
                         if (body.contains("password")) {
                           return Status::InvalidArgument(
                               "set passwords with POST /api/v1/users/{id}/password");
                         }
                         if (id != ctx.who->user_id) DEPOT_RETURN_IF_ERROR(CheckMayManage(s, ctx, cur));
                         DEPOT_RETURN_IF_ERROR(CheckUser(s, t, *ctx.who, cur, *next));
                         if (!next->value("active", true)) {
                           if (id == ctx.who->user_id) {
                             return Status::InvalidArgument("you cannot disable yourself");
                           }
                           RevokeTokens(s, t, id);
                         }
                         return Status::OK();
                       }),
          nullptr});
  r->Add({"DELETE", "/api/v1/users/{id}", "accounts.user.delete", RouteMode::kInline,
          "users.delete",
          DeleteHandler(s, s->users(), [s](Txn& t, const json& u, const Ctx& ctx) -> Status {
            if (u["id"].get<int64_t>() == ctx.who->user_id) {
              return Status::InvalidArgument("you cannot delete yourself");
            }
            DEPOT_RETURN_IF_ERROR(CheckMayManage(s, ctx, u));
            if (u.value("superuser", false)) {
              // Keep at least one superuser, or nobody could ever administer opsd again.
              int supers = 0;
              for (const Doc& d : s->users()->All()) supers += (*d).value("superuser", false);
              if (supers <= 1) return Status::AlreadyExists("the last superuser cannot be deleted");
            }
            int64_t uid = u["id"].get<int64_t>();
            RevokeTokens(s, t, uid);
            // Nothing keeps pointing at a deleted account: its delegations go, and departments
            // lose it as leader or approver (in the same change as the delete).
            for (const Doc& d : s->delegations()->All()) {
              if ((*d)["principal_id"] == uid || (*d)["delegate_id"] == uid) {
                DEPOT_RETURN_IF_ERROR(t.Remove(s->delegations(), (*d)["id"].get<int64_t>(), std::nullopt));
              }
            }
            for (const Doc& d : s->departments()->All()) {
              json next = *d;
              bool changed = false;
              if (next["leader_id"] == uid) {
                next["leader_id"] = 0;
                changed = true;
              }
              json approvers = json::array();
              for (const auto& a : next["approver_ids"]) {
                if (a == uid) {
                  changed = true;
                } else {
                  approvers.push_back(a);
                }
              }
              next["approver_ids"] = approvers;
              if (changed) {
                DEPOT_RETURN_IF_ERROR(
                    t.Replace(s->departments(), (*d)["id"].get<int64_t>(), next, std::nullopt).status());
              }
            }
            return Status::OK();
          }),
          nullptr});
  // State changes as verbs.
  auto verb = [s, r](const std::string& name, const std::string& action,
                     std::function<Status(const Ctx&, json&)> change, bool revoke) {
    r->Add({"POST", "/api/v1/users/{id}/" + name, "accounts.user.update", RouteMode::kInline,
            action, [s, change, revoke](Ctx& ctx, net::HttpResponse* resp) {
              auto id = ctx.IdParam();
              if (!Ok(resp, id.status())) return;
              ctx.resource = "users/" + std::to_string(*id);
              Txn t(s->store());
              Doc cur = t.Get(s->users(), *id);
              if (!cur) return ErrorReply(resp, Status::NotFound("user not found:", std::to_string(*id)));
              if (!Ok(resp, CheckMayManage(s, ctx, *cur))) return;
              json next = *cur;
              if (!Ok(resp, change(ctx, next))) return;
              if (revoke) RevokeTokens(s, t, *id);
              auto rep = t.Replace(s->users(), *id, next, std::nullopt);
              if (!Ok(resp, rep.status())) return;
              if (!Ok(resp, s->CommitAudited(t, ctx, cur.get(), rep->get()))) return;
              RecordReply(resp, 200, **rep);
            },
            nullptr});
  };
  verb("disable", "users.disable", [s](const Ctx& ctx, json& u) {
    if (u["id"].get<int64_t>() == ctx.who->user_id) {
      return Status::InvalidArgument("you cannot disable yourself");
    }
    if (u.value("superuser", false) && u.value("active", false) && ActiveSuperusers(s) <= 1) {
      return Status::AlreadyExists("the last active superuser cannot be disabled");
    }
    u["active"] = false;
    return Status::OK();
  }, true);
  verb("enable", "users.enable", [](const Ctx&, json& u) {
    u["active"] = true;
    return Status::OK();
  }, false);
  verb("unlock", "users.unlock", [](const Ctx&, json& u) {
    u["_failed"] = 0;
    u["_locked_until"] = 0;
    return Status::OK();
  }, false);
  r->Add({"POST", "/api/v1/users/{id}/password", "accounts.user.update", RouteMode::kWorker,
          "users.password", [s](Ctx& ctx, net::HttpResponse* resp) {
            auto id = ctx.IdParam();
            if (!Ok(resp, id.status())) return;
            ctx.resource = "users/" + std::to_string(*id);
            auto body = ctx.JsonBody();
            if (!Ok(resp, body.status())) return;
            static const std::vector<FieldSpec> spec = {{"password", FieldType::kString, true, 256, 8}};
            if (!Ok(resp, CheckFields(*body, spec, false))) return;
            if (*id == ctx.who->user_id) {
              // Setting one's own password needs the old one: a token alone must not do it.
              return ErrorReply(resp, Status::InvalidArgument(
                                          "change your own password with POST /api/v1/me/password"));
            }
            auto hash = HashPassword((*body)["password"].get<std::string>(), kPasswordIterations);
            if (!Ok(resp, hash.status())) return;
            Txn t(s->store());
            Doc cur = t.Get(s->users(), *id);
            if (!cur) return ErrorReply(resp, Status::NotFound("user not found:", std::to_string(*id)));
            if (!Ok(resp, CheckMayManage(s, ctx, *cur))) return;
            json next = *cur;
            next["_password"] = *hash;
            next["_failed"] = 0;
            next["_locked_until"] = 0;
            RevokeTokens(s, t, *id);
            auto rep = t.Replace(s->users(), *id, next, std::nullopt);
            if (!Ok(resp, rep.status())) return;
            if (!Ok(resp, s->CommitAudited(t, ctx, cur.get(), rep->get()))) return;
            resp->status = 204;
          },
          nullptr});
}

void AddDepartmentRoutes(OpsdServer* s, Router* r) {
  static const std::vector<FieldSpec> spec = {
      {"name", FieldType::kString, true, 64, 1},
      {"description", FieldType::kString, false, 1024},
      {"parent_id", FieldType::kInt, false, kMaxId, 0},
      {"leader_id", FieldType::kInt, false, kMaxId, 0},
      {"approver_ids", FieldType::kIntArray, false, 64}};
  auto check = [s](Txn& t, const json& d) -> Status {
    int64_t parent = d["parent_id"].get<int64_t>();
    int64_t self = d.value("id", int64_t{0});
    for (int64_t p = parent, hops = 0; p != 0; ++hops) {
      if (p == self) return Status::InvalidArgument("parent_id would make a cycle");
      Doc pd = t.Get(s->departments(), p);
      if (!pd) return Status::InvalidArgument("parent_id names a missing department:", std::to_string(p));
      if (hops > 1000) return Status::InvalidArgument("department tree too deep");
      p = (*pd)["parent_id"].get<int64_t>();
    }
    int64_t leader = d["leader_id"].get<int64_t>();
    if (leader != 0 && !t.Get(s->users(), leader)) {
      return Status::InvalidArgument("leader_id names a missing user:", std::to_string(leader));
    }
    return CheckIdsExist(t, s->users(), d["approver_ids"], "approver_ids");
  };
  r->Add({"GET", "/api/v1/departments", "accounts.department.view", RouteMode::kInline, "",
          ListHandler(s->departments(), {"id", "name", "created_at"}, {"parent_id", "leader_id"},
                      {"name", "description"}),
          nullptr});
  r->Add({"GET", "/api/v1/departments/{id}", "accounts.department.view", RouteMode::kInline, "",
          GetHandler(s->departments()), nullptr});
  r->Add({"POST", "/api/v1/departments", "accounts.department.create", RouteMode::kInline,
          "departments.create",
          CreateHandler(s, s->departments(), &spec,
                        [check](Txn& t, const Ctx&, const json& body) -> Result<json> {
                          json d = {{"name", body["name"]},
                                    {"description", body.value("description", "")},
                                    {"parent_id", body.value("parent_id", int64_t{0})},
                                    {"leader_id", body.value("leader_id", int64_t{0})},
                                    {"approver_ids", body.value("approver_ids", json::array())}};
                          DEPOT_RETURN_IF_ERROR(check(t, d));
                          return d;
                        }),
          nullptr});
  r->Add({"PATCH", "/api/v1/departments/{id}", "accounts.department.update", RouteMode::kInline,
          "departments.update",
          PatchHandler(s, s->departments(), &spec,
                       [check](Txn& t, const Ctx&, const json&, const json&, json* next) {
                         return check(t, *next);
                       }),
          nullptr});
  r->Add({"DELETE", "/api/v1/departments/{id}", "accounts.department.delete", RouteMode::kInline,
          "departments.delete",
          DeleteHandler(s, s->departments(), [s](Txn&, const json& d, const Ctx&) -> Status {
            int64_t id = d["id"].get<int64_t>();
            for (const Doc& o : s->departments()->All()) {
              if ((*o)["parent_id"].get<int64_t>() == id) {
                return Status::AlreadyExists("the department has sub-departments");
              }
            }
            for (const Doc& u : s->users()->All()) {
              for (const auto& did : (*u)["department_ids"]) {
                if (did.get<int64_t>() == id) return Status::AlreadyExists("the department has members");
              }
            }
            return Status::OK();
          }),
          nullptr});
}

void AddRoleRoutes(OpsdServer* s, Router* r) {
  static const std::vector<FieldSpec> spec = {
      {"name", FieldType::kString, true, 64, 1},
      {"description", FieldType::kString, false, 1024},
      {"permissions", FieldType::kStringArray, false, 256},
      {"scopes", FieldType::kScope}};
  r->Add({"GET", "/api/v1/roles", "accounts.role.view", RouteMode::kInline, "",
          ListHandler(s->roles(), {"id", "name", "created_at"}, {"permissions"},
                      {"name", "description"}),
          nullptr});
  r->Add({"GET", "/api/v1/roles/{id}", "accounts.role.view", RouteMode::kInline, "",
          GetHandler(s->roles()), nullptr});
  r->Add({"POST", "/api/v1/roles", "accounts.role.create", RouteMode::kInline, "roles.create",
          CreateHandler(s, s->roles(), &spec,
                        [](Txn&, const Ctx& ctx, const json& body) -> Result<json> {
                          json perms = body.value("permissions", json::array());
                          Scope scope = Scope::FromJson(body.value("scopes", json::object()));
                          DEPOT_RETURN_IF_ERROR(CheckPermissionCodes(perms));
                          DEPOT_RETURN_IF_ERROR(CheckGrantable(
                              *ctx.who, perms.get<std::vector<std::string>>(), scope));
                          return json{{"name", body["name"]},
                                      {"description", body.value("description", "")},
                                      {"permissions", perms},
                                      {"scopes", scope.ToJson()}};
                        }),
          nullptr});
  r->Add({"PATCH", "/api/v1/roles/{id}", "accounts.role.update", RouteMode::kInline,
          "roles.update",
          PatchHandler(s, s->roles(), &spec,
                       [](Txn&, const Ctx& ctx, const json& body, const json& cur,
                          json* next) -> Status {
                         if (body.contains("scopes")) {
                           (*next)["scopes"] = Scope::FromJson(body["scopes"]).ToJson();
                         }
                         DEPOT_RETURN_IF_ERROR(CheckPermissionCodes((*next)["permissions"]));
                         // A permission added, or every permission when the scope changes,
                         // needs the caller to cover it with the role's new scope.
                         std::vector<std::string> added;
                         const json& had = cur["permissions"];
                         for (const auto& p : (*next)["permissions"]) {
                           if (body.contains("scopes") ||
                               std::find(had.begin(), had.end(), p) == had.end()) {
                             added.push_back(p.get<std::string>());
                           }
                         }
                         return CheckGrantable(*ctx.who, added, Scope::FromJson((*next)["scopes"]));
                       }),
          nullptr});
  r->Add({"DELETE", "/api/v1/roles/{id}", "accounts.role.delete", RouteMode::kInline,
          "roles.delete",
          DeleteHandler(s, s->roles(), [s](Txn&, const json& role, const Ctx&) -> Status {
            int64_t id = role["id"].get<int64_t>();
            for (const Doc& u : s->users()->All()) {
              for (const auto& rid : (*u)["role_ids"]) {
                if (rid.get<int64_t>() == id) {
                  return Status::AlreadyExists("the role is held by user", (*u)["username"].get<std::string>());
                }
              }
            }
            return Status::OK();
          }),
          nullptr});
}

void AddDelegationRoutes(OpsdServer* s, Router* r) {
  static const std::vector<FieldSpec> spec = {
      {"principal_id", FieldType::kInt, true, kMaxId, 1},
      {"delegate_id", FieldType::kInt, true, kMaxId, 1},
      {"starts_at", FieldType::kInt, true, kMaxTime, 0},
      {"ends_at", FieldType::kInt, true, kMaxTime, 1},
      {"permissions", FieldType::kStringArray, false, 256},
      {"scope", FieldType::kScope},
      {"reason", FieldType::kString, false, 1024}};
  r->Add({"GET", "/api/v1/delegations", "accounts.delegation.view", RouteMode::kInline, "",
          ListHandler(s->delegations(), {"id", "starts_at", "ends_at", "created_at"},
                      {"principal_id", "delegate_id", "revoked"}, {"reason"}),
          nullptr});
  r->Add({"GET", "/api/v1/delegations/{id}", "accounts.delegation.view", RouteMode::kInline, "",
          GetHandler(s->delegations()), nullptr});
  r->Add({"POST", "/api/v1/delegations", "accounts.delegation.create", RouteMode::kInline,
          "delegations.create", [s](Ctx& ctx, net::HttpResponse* resp) {
            auto body = ctx.JsonBody();
            if (!Ok(resp, body.status())) return;
            if (!Ok(resp, CheckFields(*body, spec, false))) return;
            json d = {{"principal_id", (*body)["principal_id"]},
                      {"delegate_id", (*body)["delegate_id"]},
                      {"starts_at", (*body)["starts_at"]},
                      {"ends_at", (*body)["ends_at"]},
                      {"permissions", body->value("permissions", json::array())},
                      {"scope", Scope::FromJson(body->value("scope", json::object())).ToJson()},
                      {"reason", body->value("reason", "")},
                      {"revoked", false}};
            if (d["principal_id"] == d["delegate_id"]) {
              return ErrorReply(resp, Status::InvalidArgument("a user cannot delegate to themselves"));
            }
            if (d["ends_at"].get<int64_t>() <= d["starts_at"].get<int64_t>()) {
              return ErrorReply(resp, Status::InvalidArgument("ends_at must be after starts_at"));
            }
            if (!Ok(resp, CheckPermissionCodes(d["permissions"]))) return;
            Txn t(s->store());
            Doc principal = t.Get(s->users(), d["principal_id"].get<int64_t>());
            if (!principal || !t.Get(s->users(), d["delegate_id"].get<int64_t>())) {
              return ErrorReply(resp, Status::InvalidArgument("principal_id and delegate_id must name users"));
            }
            // What is delegated is fixed now: the listed permissions (all of the principal's when
            // none are listed) that the principal holds today. Delegating is granting, so the
            // caller must cover each of them with its scope.
            // Only the principal, or someone who may take charge of the principal's account,
            // hands the principal's rights on.
            if ((*principal)["id"].get<int64_t>() != ctx.who->user_id &&
                !Ok(resp, CheckMayManage(s, ctx, *principal))) {
              return;
            }
            auto theirs = s->PrincipalFor(*principal, nullptr, 0);
            Principal mine = ctx.who->OwnOnly();
            std::set<std::string> wanted;
            for (const auto& p : d["permissions"]) wanted.insert(p.get<std::string>());
            json resolved = json::array();
            Scope narrow = Scope::FromJson(d["scope"]);
            for (const auto& [perm, scopes] : theirs->grants) {
              if (!wanted.empty() && !wanted.count(perm)) continue;
              bool any = false;
              for (const Scope& full : scopes) {
                Scope sc;
                if (!Scope::Intersect(full, narrow, &sc)) continue;
                any = true;
                if (!mine.Covers(perm, sc)) {
                  return ErrorReply(resp, Status::PermissionDenied(
                                              "you cannot delegate what you lack (permission and scope):", perm));
                }
              }
              if (any) resolved.push_back(perm);
            }
            if (theirs->superuser) {
              return ErrorReply(resp, Status::InvalidArgument("a superuser's rights cannot be delegated"));
            }
            if (resolved.empty()) {
              return ErrorReply(resp, Status::InvalidArgument("the principal holds none of these permissions"));
            }
            d["permissions"] = resolved;
            auto ins = t.Insert(s->delegations(), d);
            if (!Ok(resp, ins.status())) return;
            ctx.resource = "delegations/" + std::to_string((**ins)["id"].get<int64_t>());
            if (!Ok(resp, s->CommitAudited(t, ctx, nullptr, ins->get()))) return;
            RecordReply(resp, 201, **ins);
          },
          nullptr});
  r->Add({"POST", "/api/v1/delegations/{id}/revoke", "accounts.delegation.update",
          RouteMode::kInline, "delegations.revoke", [s](Ctx& ctx, net::HttpResponse* resp) {
            auto id = ctx.IdParam();
            if (!Ok(resp, id.status())) return;
            ctx.resource = "delegations/" + std::to_string(*id);
            Txn t(s->store());
            Doc cur = t.Get(s->delegations(), *id);
            if (!cur) return ErrorReply(resp, Status::NotFound("delegation not found:", std::to_string(*id)));
            json next = *cur;
            next["revoked"] = true;
            next["revoked_at"] = UnixSeconds();
            auto rep = t.Replace(s->delegations(), *id, next, std::nullopt);
            if (!Ok(resp, rep.status())) return;
            if (!Ok(resp, s->CommitAudited(t, ctx, cur.get(), rep->get()))) return;
            RecordReply(resp, 200, **rep);
          },
          nullptr});
  r->Add({"DELETE", "/api/v1/delegations/{id}", "accounts.delegation.delete", RouteMode::kInline,
          "delegations.delete", DeleteHandler(s, s->delegations()), nullptr});
}

}  // namespace

void AddAccountRoutes(OpsdServer* s, Router* r) {
  AddAuthRoutes(s, r);
  AddUserRoutes(s, r);
  AddDepartmentRoutes(s, r);
  AddRoleRoutes(s, r);
  AddDelegationRoutes(s, r);
}

}  // namespace depot::opsd
