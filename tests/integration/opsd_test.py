#!/usr/bin/python3
"""depot-opsd core against a real local cluster (issue 6): scripts/cluster.sh --opsd starts
trackers, a storage group and opsd, as a user gets them; the tests speak HTTP to opsd.

What is checked:
  - login, wrong password, lockout and unlock, logout, expired tokens, API tokens;
  - CRUD on users, departments, roles and delegations, If-Match / version conflicts (409);
  - the route table: a user without permissions gets 403 on every route that needs one, and
    every route but the public ones answers 401 without a token;
  - scoped roles: a scoped user sees only in-scope runs and secrets, and is refused others;
  - every mutation (and every refused one) lands in the audit log with its actor and result;
  - a 500 MiB file posted to /api/v1/files downloads byte-identical with `depot download` and
    through the API (with ranges), while opsd's peak RSS stays under 64 MiB;
  - run records and their logs (an appender file in the cluster) read back by offset;
  - kill -9 of opsd during a burst of writes loses no acknowledged write;
  - malformed, mistyped, oversized and hostile input gets a 4xx with the error shape and changes
    nothing;
  - password hashes, tokens and secret values never appear in the LevelDB files.

Run by ctest with DEPOT_BIN_DIR set; by hand: /usr/bin/python3 tests/integration/opsd_test.py -v.
Ports: DEPOT_OPSD_TEST_PORT (default 32000) to +599, on 127.0.0.x: clear of nginx_test (25000-27999)
and nginx_njs_test (28000-30999), which ctest may run at the same time.
"""
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import depot_cluster

BASE_PORT = int(os.environ.get("DEPOT_OPSD_TEST_PORT", "32000"))

CLUSTER = None
# Every change the tests asked for and got an answer to: (method, path, status, actor, code).
# The last test checks that each one is in the audit log.
MUTATIONS = []


class Cluster(depot_cluster.Cluster):
    """One tracker, one storage, opsd (cluster.sh --opsd), no nginx."""

    def __init__(self):
        super().__init__(BASE_PORT, "--groups", "1", "--per-group", "1", "--no-nginx", "--opsd",
                         prefix="depot-opsd-test-")

    def load_env(self):
        super().load_env()
        url = self.vars["DEPOT_OPSD"]
        assert url.startswith("http://"), url
        host, port = url[len("http://"):].rstrip("/").rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.user = self.vars["DEPOT_OPSD_USER"]
        self.password = self.vars["DEPOT_OPSD_PASSWORD"]

    def opsd_dir(self):
        return os.path.join(self.dir, "opsd-1")

    def opsd_pid(self):
        with open(os.path.join(self.opsd_dir(), "pid")) as f:
            return int(f.read().strip())


def setUpModule():
    global CLUSTER
    CLUSTER = Cluster()


def tearDownModule():
    if CLUSTER is not None:
        CLUSTER.down()


class Api:
    """A client of opsd: JSON in, (status, headers, parsed body or bytes) out."""

    def __init__(self, token=None, username=""):
        self.token = token
        self.username = username

    def call(self, method, path, body=None, headers=None, raw=None, timeout=60):
        c = http.client.HTTPConnection(CLUSTER.host, CLUSTER.port, timeout=timeout)
        try:
            h = dict(headers or {})
            if self.token:
                h["Authorization"] = "Bearer " + self.token
            data = raw
            if body is not None:
                data = json.dumps(body).encode()
                h.setdefault("Content-Type", "application/json")
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            payload = r.read()
            hdrs = {k.lower(): v for k, v in r.getheaders()}
            out = payload
            if hdrs.get("content-type", "").startswith("application/json") and payload:
                out = json.loads(payload)
            if method not in ("GET", "HEAD"):
                code = out["error"]["code"] if isinstance(out, dict) and "error" in out else ""
                MUTATIONS.append((method, path.split("?")[0], r.status, self.username, code))
            return r.status, hdrs, out
        finally:
            c.close()

    def ok(self, method, path, body=None, expect=(200, 201, 204), **kw):
        status, hdrs, out = self.call(method, path, body, **kw)
        if status not in expect:
            raise AssertionError(f"{method} {path}: {status} {out}")
        return out


def login(username, password, **extra):
    status, _, out = Api(None, "login:" + username).call(
        "POST", "/api/v1/auth/login", dict(username=username, password=password, **extra))
    return status, out


def admin():
    status, out = login(CLUSTER.user, CLUSTER.password)
    assert status == 200, out
    return Api(out["token"], CLUSTER.user)


def unique(prefix):
    return f"{prefix}{random.randrange(1 << 30):x}"


def make_user(a, permissions=(), scopes=None, password="password-123"):
    """A user holding one role with `permissions` (and `scopes`); returns (user, token api)."""
    role_ids = []
    if permissions:
        role = a.ok("POST", "/api/v1/roles", {"name": unique("role-"),
                                               "permissions": list(permissions),
                                               "scopes": scopes or {}})
        role_ids = [role["id"]]
    name = unique("u")
    user = a.ok("POST", "/api/v1/users", {"username": name, "password": password,
                                          "role_ids": role_ids})
    status, out = login(name, password)
    assert status == 200, out
    return user, Api(out["token"], name)


def assert_error_shape(t, out, code=None):
    t.assertIsInstance(out, dict, out)
    t.assertIn("error", out)
    t.assertIsInstance(out["error"].get("code"), str)
    t.assertIsInstance(out["error"].get("message"), str)
    if code:
        t.assertEqual(out["error"]["code"], code, out)


def audit_events(a, **filters):
    q = "&".join(f"{k}={v}" for k, v in filters.items())
    return a.ok("GET", "/api/v1/audit-events?size=500" + ("&" + q if q else ""))["items"]


class AuthTest(unittest.TestCase):
    def test_login_wrong_password_lockout_logout_expiry(self):
        a = admin()
        user, _ = make_user(a)
        name = user["username"]
        status, out = login(name, "wrong-password")
        self.assertEqual(status, 401)
        assert_error_shape(self, out, "bad_credentials")
        status, out = login("nobody-" + name, "whatever-123")
        self.assertEqual(status, 401)
        # Four more failures lock the account (lockout_threshold = 5); then even the right
        # password is refused until an admin unlocks it.
        for _ in range(4):
            self.assertEqual(login(name, "wrong-password")[0], 401)
        status, out = login(name, "password-123")
        self.assertEqual(status, 423)
        assert_error_shape(self, out, "locked")
        a.ok("POST", f"/api/v1/users/{user['id']}/unlock")
        status, out = login(name, "password-123")
        self.assertEqual(status, 200, out)
        me = Api(out["token"], name)
        self.assertEqual(me.ok("GET", "/api/v1/me")["user"]["username"], name)
        # Logout kills the token.
        me.ok("POST", "/api/v1/auth/logout")
        status, _, out = me.call("GET", "/api/v1/me")
        self.assertEqual(status, 401)
        assert_error_shape(self, out, "unauthenticated")
        # An expired token is refused.
        # (Expiry has one-second resolution: 3 s leave at least 2 for the first call.)
        status, out = login(name, "password-123", ttl_seconds=3)
        self.assertEqual(status, 200)
        self.assertLessEqual(out["expires_at"], time.time() + 4)
        short = Api(out["token"], name)
        self.assertEqual(short.call("GET", "/api/v1/me")[0], 200)
        time.sleep(4.1)
        self.assertEqual(short.call("GET", "/api/v1/me")[0], 401)
        # A made-up token, a malformed header.
        self.assertEqual(Api("dps_" + "A" * 43).call("GET", "/api/v1/me")[0], 401)
        self.assertEqual(Api().call("GET", "/api/v1/me", headers={"Authorization": "Basic x"})[0],
                         401)
        # Lockout and logins are audited with their results.
        events = audit_events(a, resource=f"users/{user['id']}")
        results = [e["result"] for e in events if e["action"].startswith("auth.")]
        self.assertIn("locked", results)
        self.assertIn("bad_credentials", results)
        self.assertIn("ok", results)

    def test_password_change_revokes_tokens_and_api_tokens_are_narrow(self):
        a = admin()
        user, me = make_user(a, ["accounts.user.view", "accounts.role.view"])
        # An API token limited to one permission.
        status, _, tok = me.call("POST", "/api/v1/api-tokens",
                                 {"name": "ci", "permissions": ["accounts.user.view"]})
        self.assertEqual(status, 201, tok)
        self.assertTrue(tok["token"].startswith("dpa_"))
        self.assertNotIn("_token_hash", tok)
        auto = Api(tok["token"], user["username"])
        self.assertEqual(auto.call("GET", "/api/v1/users")[0], 200)
        self.assertEqual(auto.call("GET", "/api/v1/roles")[0], 403)
        # A token cannot grant what its user lacks.
        status, _, out = me.call("POST", "/api/v1/api-tokens",
                                 {"name": "x", "permissions": ["accounts.user.delete"]})
        self.assertEqual(status, 403, out)
        listed = me.ok("GET", "/api/v1/api-tokens")["items"]
        self.assertEqual([t["name"] for t in listed], ["ci"])
        # Changing the password ends every session and token of the user.
        status, _, out = me.call("POST", "/api/v1/me/password",
                                 {"old_password": "wrong", "new_password": "another-pass-1"})
        self.assertEqual(status, 403)
        me.ok("POST", "/api/v1/me/password",
              {"old_password": "password-123", "new_password": "another-pass-1"})
        self.assertEqual(me.call("GET", "/api/v1/me")[0], 401)
        self.assertEqual(auto.call("GET", "/api/v1/users")[0], 401)
        self.assertEqual(login(user["username"], "password-123")[0], 401)
        self.assertEqual(login(user["username"], "another-pass-1")[0], 200)


class CrudTest(unittest.TestCase):
    def test_users_departments_roles_delegations(self):
        a = admin()
        # Departments: a tree; cycles refused; in-use ones not deleted.
        root = a.ok("POST", "/api/v1/departments", {"name": unique("Ops-")})
        child = a.ok("POST", "/api/v1/departments", {"name": unique("SRE-"),
                                                     "parent_id": root["id"]})
        status, _, out = a.call("PATCH", f"/api/v1/departments/{root['id']}",
                                {"parent_id": child["id"]})
        self.assertEqual(status, 400, out)
        self.assertEqual(a.call("DELETE", f"/api/v1/departments/{root['id']}")[0], 409)
        # Roles: codes checked against the catalog.
        status, _, out = a.call("POST", "/api/v1/roles", {"name": unique("r"),
                                                           "permissions": ["no.such.perm"]})
        self.assertEqual(status, 400, out)
        role = a.ok("POST", "/api/v1/roles", {"name": unique("dev-"),
                                               "permissions": ["runs.run.view"],
                                               "scopes": {"envs": ["dev"]}})
        self.assertEqual(role["scopes"]["envs"], ["dev"])
        # Users: create, read, list, filter, patch with versions, verbs, delete.
        name = unique("dave")
        u = a.ok("POST", "/api/v1/users", {"username": name, "password": "dave-pass-1",
                                           "name": "Dave", "email": "dave@example.com",
                                           "department_ids": [child["id"]],
                                           "role_ids": [role["id"]]})
        self.assertNotIn("_password", u)
        self.assertNotIn("password", u)
        status, hdrs, got = a.call("GET", f"/api/v1/users/{u['id']}")
        self.assertEqual(status, 200)
        self.assertEqual(hdrs["etag"], '"v1"')
        self.assertEqual(got["email"], "dave@example.com")
        listed = a.ok("GET", f"/api/v1/users?username={name}")
        self.assertEqual(listed["total"], 1)
        self.assertEqual(a.call("POST", "/api/v1/users", {"username": name.upper(),
                                                          "password": "x-pass-123"})[0], 409)
        status, _, out = a.call("PATCH", f"/api/v1/users/{u['id']}", {"name": "D"},
                                headers={"If-Match": '"v9"'})
        self.assertEqual(status, 409)
        assert_error_shape(self, out, "version_conflict")
        u2 = a.ok("PATCH", f"/api/v1/users/{u['id']}", {"name": "D", "version": 1})
        self.assertEqual((u2["name"], u2["version"]), ("D", 2))
        self.assertFalse(a.ok("POST", f"/api/v1/users/{u['id']}/disable")["active"])
        self.assertEqual(login(name, "dave-pass-1")[0], 403)
        self.assertTrue(a.ok("POST", f"/api/v1/users/{u['id']}/enable")["active"])
        self.assertEqual(login(name, "dave-pass-1")[0], 200)
        self.assertEqual(a.call("DELETE", f"/api/v1/roles/{role['id']}")[0], 409)  # held by dave
        # Delegations: dave stands in for a runs viewer in prod for an hour.
        boss, _ = make_user(a, ["runs.run.view", "runs.run.update"], {"envs": ["prod", "stage"]})
        now = int(time.time())
        d = a.ok("POST", "/api/v1/delegations", {"principal_id": boss["id"],
                                                 "delegate_id": u["id"],
                                                 "starts_at": now - 5, "ends_at": now + 3600,
                                                 "permissions": ["runs.run.update"],
                                                 "scope": {"envs": ["prod"]},
                                                 "reason": "holiday"})
        self.assertEqual(d["permissions"], ["runs.run.update"])
        status, out = login(name, "dave-pass-1")
        dave = Api(out["token"], name)
        perms = dave.ok("GET", "/api/v1/me")["permissions"]
        self.assertIn("runs.run.update", perms)
        self.assertEqual(perms["runs.run.update"][0]["envs"], ["prod"])
        self.assertIn("runs.run.view", perms)  # his own role
        self.assertEqual(a.call("POST", "/api/v1/delegations",
                                {"principal_id": u["id"], "delegate_id": u["id"],
                                 "starts_at": now, "ends_at": now + 5})[0], 400)
        self.assertTrue(a.ok("POST", f"/api/v1/delegations/{d['id']}/revoke")["revoked"])
        time.sleep(1.1)  # permissions are cached for at most a second
        self.assertNotIn("runs.run.update", dave.ok("GET", "/api/v1/me")["permissions"])
        a.ok("DELETE", f"/api/v1/delegations/{d['id']}")
        a.ok("DELETE", f"/api/v1/users/{u['id']}")
        self.assertEqual(a.call("GET", f"/api/v1/users/{u['id']}")[0], 404)
        self.assertEqual(dave.call("GET", "/api/v1/me")[0], 401)  # his sessions went with him
        a.ok("DELETE", f"/api/v1/roles/{role['id']}")
        a.ok("DELETE", f"/api/v1/departments/{child['id']}")
        a.ok("DELETE", f"/api/v1/departments/{root['id']}")

    def test_no_privilege_escalation(self):
        a = admin()
        _, mgr = make_user(a, ["accounts.role.create", "accounts.role.update",
                               "accounts.user.update", "accounts.user.view"])
        status, _, out = mgr.call("POST", "/api/v1/roles",
                                  {"name": unique("x"), "permissions": ["audit.event.view"]})
        self.assertEqual(status, 403, out)
        me = mgr.ok("GET", "/api/v1/me")["user"]
        status, _, out = mgr.call("PATCH", f"/api/v1/users/{me['id']}", {"superuser": True})
        self.assertEqual(status, 403, out)
        status, _, out = mgr.call("POST", "/api/v1/users/1/disable")  # the superuser admin
        self.assertEqual(status, 403, out)

    def test_account_changes_need_all_the_target_rights(self):
        a = admin()
        _, helpdesk = make_user(a, ["accounts.user.update", "accounts.user.delete",
                                    "accounts.user.view"])
        rich, _ = make_user(a, ["secrets.secret.view"])
        plain, _ = make_user(a)
        # A reset of a richer account's password would borrow its rights: refused.
        status, _, out = helpdesk.call("POST", f"/api/v1/users/{rich['id']}/password",
                                       {"password": "taken-over-1"})
        self.assertEqual(status, 403, out)
        self.assertEqual(login(rich["username"], "taken-over-1")[0], 401)
        self.assertEqual(helpdesk.call("POST", f"/api/v1/users/{rich['id']}/disable")[0], 403)
        self.assertEqual(helpdesk.call("DELETE", f"/api/v1/users/{rich['id']}")[0], 403)
        # An account with nothing the helpdesk lacks: allowed.
        helpdesk.ok("POST", f"/api/v1/users/{plain['id']}/password", {"password": "reset-pass-1"})
        self.assertEqual(login(plain["username"], "reset-pass-1")[0], 200)
        # A second superuser cannot be deleted by a non-superuser (it is not the last one).
        sup = a.ok("POST", "/api/v1/users", {"username": unique("root"), "password": "root-pass-1",
                                             "superuser": True})
        self.assertEqual(helpdesk.call("DELETE", f"/api/v1/users/{sup['id']}")[0], 403)
        self.assertEqual(a.ok("GET", f"/api/v1/users/{sup['id']}")["superuser"], True)
        a.ok("DELETE", f"/api/v1/users/{sup['id']}")

    def test_rights_held_by_delegation_cannot_be_handed_on(self):
        a = admin()
        alice, _ = make_user(a, ["secrets.secret.view", "accounts.user.update",
                                 "accounts.delegation.create", "accounts.user.view"])
        bob, bob_api = make_user(a, ["accounts.user.update", "accounts.user.view",
                                     "accounts.delegation.create"])
        alice_roles = a.ok("GET", f"/api/v1/users/{alice['id']}")["role_ids"]
        now = int(time.time())
        a.ok("POST", "/api/v1/delegations", {"principal_id": alice["id"], "delegate_id": bob["id"],
                                             "starts_at": now - 5, "ends_at": now + 3600})
        time.sleep(1.1)  # permissions are cached for at most a second
        self.assertIn("secrets.secret.view", bob_api.ok("GET", "/api/v1/me")["permissions"])
        # (a) Alice's roles on his own account: they would outlive the delegation.
        status, _, out = bob_api.call("PATCH", f"/api/v1/users/{bob['id']}",
                                      {"role_ids": alice_roles})
        self.assertEqual(status, 403, out)
        # (b) a new, longer delegation from Alice to himself.
        status, _, out = bob_api.call("POST", "/api/v1/delegations",
                                      {"principal_id": alice["id"], "delegate_id": bob["id"],
                                       "starts_at": now, "ends_at": now + 10 * 365 * 86400})
        self.assertEqual(status, 403, out)
        # (c) Alice's password.
        status, _, out = bob_api.call("POST", f"/api/v1/users/{alice['id']}/password",
                                      {"password": "taken-over-2"})
        self.assertEqual(status, 403, out)
        # Nor his own through the admin route (that needs the old one: /me/password).
        status, _, out = bob_api.call("POST", f"/api/v1/users/{bob['id']}/password",
                                      {"password": "new-pass-123"})
        self.assertEqual(status, 400, out)

    def test_scopes_cannot_be_widened(self):
        a = admin()
        dev = {"envs": ["dev"]}
        _, scoped = make_user(a, ["runs.run.view", "runs.run.create", "secrets.secret.create",
                                  "accounts.role.create", "accounts.delegation.create"], dev)
        # A role with the same permission and no scope (or a wider one): refused.
        for scopes in ({}, {"envs": ["dev", "prod"]}, {"apps": ["x"]}):
            status, _, out = scoped.call("POST", "/api/v1/roles",
                                         {"name": unique("w"), "permissions": ["runs.run.view"],
                                          "scopes": scopes})
            self.assertEqual(status, 403, (scopes, out))
        scoped.ok("POST", "/api/v1/roles", {"name": unique("ok"), "permissions": ["runs.run.view"],
                                             "scopes": {"envs": ["dev"], "apps": ["x"]}})
        # Records written with a scope beyond the writer's.
        for scope in ({}, {"envs": ["dev", "prod"]}):
            self.assertEqual(scoped.call("POST", "/api/v1/runs",
                                         {"kind": "x", "scope": scope})[0], 403, scope)
            self.assertEqual(scoped.call("POST", "/api/v1/secrets",
                                         {"name": unique("s"), "value": "v", "scope": scope})[0],
                             403, scope)
        scoped.ok("POST", "/api/v1/runs", {"kind": "x", "scope": dev})
        # Delegating an unrestricted user's rights to oneself.
        boss, _ = make_user(a, ["runs.run.view"])
        me = scoped.ok("GET", "/api/v1/me")["user"]
        now = int(time.time())
        status, _, out = scoped.call("POST", "/api/v1/delegations",
                                     {"principal_id": boss["id"], "delegate_id": me["id"],
                                      "starts_at": now, "ends_at": now + 60})
        self.assertEqual(status, 403, out)


def fill_path(path):
    return (path.replace("{id}", "1")
            .replace("{file_id+}", "group1/M00/00/00/wKgAAWQ3MzWAAAAAAAAAAAAAAAA.txt"))


class PermissionTableTest(unittest.TestCase):
    def test_every_route_checks_its_permission(self):
        a = admin()
        routes = a.ok("GET", "/api/v1/routes")["items"]
        self.assertGreater(len(routes), 40)
        nobody_user, nobody = make_user(a)  # a user with no role at all
        anonymous = Api()
        checked = 0
        for r in routes:
            method, path, perm = r["method"], fill_path(r["path"]), r["permission"]
            self.assertTrue(perm, r)
            if method not in ("GET", "HEAD", "DELETE"):
                body = {}
            else:
                body = None
            status, _, out = anonymous.call(method, path, body)
            if perm == "public":
                self.assertNotIn(status, (401, 403), f"{method} {path}: {status}")
                continue
            self.assertEqual(status, 401, f"{method} {path} without a token: {status} {out}")
            assert_error_shape(self, out, "unauthenticated")
            status, _, out = nobody.call(method, path, body)
            if perm == "authenticated":
                self.assertNotIn(status, (401, 403), f"{method} {path}: {status} {out}")
                if path == "/api/v1/auth/logout":  # that worked: log in again for the rest
                    nobody = Api(login(nobody_user["username"], "password-123")[1]["token"],
                                 nobody_user["username"])
            else:
                self.assertEqual(status, 403, f"{method} {path} with no permission: {status}")
                assert_error_shape(self, out, "forbidden")
                self.assertIn(perm, out["error"]["message"])
            checked += 1
        self.assertGreater(checked, 35)
        # Nothing answers outside the table.
        for path in ("/api/v1/nothing", "/api/v1/users/1/2/3", "/api/v2/users", "/admin"):
            self.assertEqual(nobody.call("GET", path)[0], 404, path)
        self.assertEqual(nobody.call("PUT", "/api/v1/users")[0], 405)


class ScopeTest(unittest.TestCase):
    def test_scoped_user_sees_only_in_scope_records(self):
        a = admin()
        kind = unique("scoped-")
        prod = a.ok("POST", "/api/v1/runs", {"kind": kind, "scope": {"envs": ["prod"]}})
        dev = a.ok("POST", "/api/v1/runs", {"kind": kind, "scope": {"envs": ["dev"]}})
        a.ok("POST", "/api/v1/runs", {"kind": kind})  # unscoped: only unrestricted users
        s_prod = a.ok("POST", "/api/v1/secrets", {"name": unique("p-"), "value": "v",
                                                  "scope": {"envs": ["prod"]}})
        s_dev = a.ok("POST", "/api/v1/secrets", {"name": unique("d-"), "value": "v",
                                                 "scope": {"envs": ["dev"]}})
        _, viewer = make_user(a, ["runs.run.view", "runs.run.update", "secrets.secret.view"],
                              {"envs": ["prod"]})
        items = viewer.ok("GET", f"/api/v1/runs?kind={kind}")["items"]
        self.assertEqual([r["id"] for r in items], [prod["id"]])
        self.assertEqual(viewer.call("GET", f"/api/v1/runs/{prod['id']}")[0], 200)
        status, _, out = viewer.call("GET", f"/api/v1/runs/{dev['id']}")
        self.assertEqual(status, 403)
        assert_error_shape(self, out, "out_of_scope")
        self.assertEqual(viewer.call("POST", f"/api/v1/runs/{dev['id']}/start")[0], 403)
        self.assertEqual(a.ok("GET", f"/api/v1/runs/{dev['id']}")["state"], "queued")
        self.assertEqual(viewer.call("POST", f"/api/v1/runs/{prod['id']}/start")[0], 200)
        ids = [s["id"] for s in viewer.ok("GET", "/api/v1/secrets?size=500")["items"]]
        self.assertIn(s_prod["id"], ids)
        self.assertNotIn(s_dev["id"], ids)
        self.assertEqual(viewer.call("GET", f"/api/v1/secrets/{s_dev['id']}")[0], 403)
        # The admin sees all three runs.
        self.assertEqual(a.ok("GET", f"/api/v1/runs?kind={kind}")["total"], 3)


class AuditTest(unittest.TestCase):
    def test_every_mutation_is_audited_with_actor_and_result(self):
        a = admin()
        user, weak = make_user(a, ["accounts.department.view"])
        dep = a.ok("POST", "/api/v1/departments", {"name": unique("audit-")})
        a.ok("PATCH", f"/api/v1/departments/{dep['id']}", {"description": "x"})
        self.assertEqual(weak.call("DELETE", f"/api/v1/departments/{dep['id']}")[0], 403)
        self.assertEqual(a.call("PATCH", f"/api/v1/departments/{dep['id']}",
                                {"bogus": 1})[0], 400)
        a.ok("DELETE", f"/api/v1/departments/{dep['id']}")
        events = audit_events(a, resource=f"departments/{dep['id']}")
        seen = [(e["action"], e["actor"], e["result"]) for e in reversed(events)]
        self.assertEqual(seen, [
            ("departments.create", CLUSTER.user, "ok"),
            ("departments.update", CLUSTER.user, "ok"),
            ("departments.delete", user["username"], "forbidden"),
            ("departments.update", CLUSTER.user, "invalid"),
            ("departments.delete", CLUSTER.user, "ok"),
        ])
        ok_events = [e for e in events if e["result"] == "ok"]
        self.assertTrue(all(e["ip"] == "127.0.0.1" for e in events))
        self.assertEqual(ok_events[-1]["before"], "")
        self.assertNotEqual(ok_events[-1]["after"], "")  # the create's digest
        # No route deletes or changes events.
        self.assertIn(a.call("DELETE", "/api/v1/audit-events")[0], (404, 405))
        self.assertIn(a.call("DELETE", f"/api/v1/audit-events/{events[0]['id']}")[0], (404, 405))
        # Filters: by actor and action.
        mine = audit_events(a, actor=user["username"])
        self.assertTrue(mine and all(e["actor"] == user["username"] for e in mine))


def pattern_file(path, size):
    """A file of `size` bytes that is not trivially compressible; returns its SHA-256."""
    h = hashlib.sha256()
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        left, n = size, 0
        while left > 0:
            piece = (n.to_bytes(8, "little") + block)[:min(left, 1 << 20)]
            f.write(piece)
            h.update(piece)
            left -= len(piece)
            n += 1
    return h.hexdigest()


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def sanitized(pid):
    """True when the process runs with AddressSanitizer (the ASan build of test.sh)."""
    with open(f"/proc/{pid}/maps") as f:
        return "libasan" in f.read()


class RssSampler(threading.Thread):
    """Samples a process's resident size every 20 ms; max_kib is the largest seen."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.max_kib, self.stop = pid, 0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.max_kib = max(self.max_kib, status_kib(self.pid, "VmRSS"))
            time.sleep(0.02)


class FilesTest(unittest.TestCase):
    def test_500mib_file_streams_through_opsd_in_bounded_memory(self):
        a = admin()
        size = 500 << 20
        work = tempfile.mkdtemp(prefix="depot-opsd-files-")
        try:
            src = os.path.join(work, "big.bin")
            digest = pattern_file(src, size)
            pid = CLUSTER.opsd_pid()
            rss_before = status_kib(pid, "VmRSS")
            sampler = RssSampler(pid)
            sampler.start()
            c = http.client.HTTPConnection(CLUSTER.host, CLUSTER.port, timeout=600)
            with open(src, "rb") as f:
                c.request("POST", "/api/v1/files?name=big.bin", body=f,
                          headers={"Authorization": "Bearer " + a.token,
                                   "Content-Length": str(size),
                                   "Content-Type": "application/octet-stream"})
                r = c.getresponse()
                out = json.loads(r.read())
            c.close()
            self.assertEqual(r.status, 201, out)
            self.assertEqual(out["size"], size)
            self.assertEqual(out["sha256"], digest)
            self.assertEqual(out["name"], "big.bin")
            fid = out["file_id"]
            # Byte-identical through the cluster's own client...
            dst = os.path.join(work, "via-depot.bin")
            CLUSTER.depot("download", fid, "-o", dst, timeout=600)
            self.assertEqual(subprocess.run(["cmp", src, dst]).returncode, 0)
            os.unlink(dst)
            # ...and through the API, streamed.
            c = http.client.HTTPConnection(CLUSTER.host, CLUSTER.port, timeout=600)
            c.request("GET", "/api/v1/files/" + fid, headers={"Authorization": "Bearer " + a.token})
            r = c.getresponse()
            self.assertEqual(r.status, 200)
            self.assertEqual(int(r.getheader("Content-Length")), size)
            h = hashlib.sha256()
            got = 0
            while True:
                chunk = r.read(1 << 20)
                if not chunk:
                    break
                h.update(chunk)
                got += len(chunk)
            c.close()
            self.assertEqual(got, size)
            self.assertEqual(h.hexdigest(), digest)
            # Ranges.
            with open(src, "rb") as f:
                for first, last in ((0, 0), (123456789, 123456789 + 1000), (size - 10, size - 1)):
                    status, hdrs, body = a.call("GET", "/api/v1/files/" + fid,
                                                headers={"Range": f"bytes={first}-{last}"})
                    self.assertEqual(status, 206)
                    self.assertEqual(hdrs["content-range"], f"bytes {first}-{last}/{size}")
                    f.seek(first)
                    self.assertEqual(body, f.read(last - first + 1))
                status, hdrs, body = a.call("GET", "/api/v1/files/" + fid,
                                            headers={"Range": "bytes=-5"})
                f.seek(size - 5)
                self.assertEqual((status, body), (206, f.read(5)))
            status, _, _ = a.call("GET", "/api/v1/files/" + fid,
                                  headers={"Range": f"bytes={size}-"})
            self.assertEqual(status, 416)
            sampler.stop.set()
            sampler.join()
            peak = status_kib(pid, "VmHWM")
            print(f"\nopsd RSS: {rss_before / 1024:.1f} MiB before, at most "
                  f"{sampler.max_kib / 1024:.1f} MiB during a 500 MiB upload and download "
                  f"(peak since start {peak / 1024:.1f} MiB)")
            if sanitized(pid):
                # ASan keeps 256 MiB of freed memory in quarantine, filled here by OpenSSL's
                # PBKDF2 (millions of small allocations per login): the release build is measured
                # whole, the ASan build by what the transfer adds.
                self.assertLess(sampler.max_kib - rss_before, 64 * 1024)
            else:
                self.assertLess(peak, 64 * 1024)
                self.assertLess(sampler.max_kib, 64 * 1024)
            a.ok("DELETE", "/api/v1/files/" + fid)
            self.assertEqual(a.call("GET", "/api/v1/files/" + fid)[0], 404)
            with self.assertRaises(RuntimeError):
                CLUSTER.depot("info", fid)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def test_refusals_from_the_head_never_read_the_body(self):
        import socket
        a = admin()
        for token, want in ((None, 401), (a.token, 413)):
            s = socket.create_connection((CLUSTER.host, CLUSTER.port), timeout=10)
            head = (b"POST /api/v1/files?name=x.bin HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Length: 100000000000000\r\n")
            if token:
                head += b"Authorization: Bearer " + token.encode() + b"\r\n"
            s.sendall(head + b"\r\n" + b"x" * 1000)
            t0 = time.time()
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = s.recv(4096)
                if not chunk:
                    break
                answer += chunk
            s.close()
            self.assertTrue(answer.startswith(f"HTTP/1.1 {want}".encode()), answer[:80])
            self.assertIn(b"Connection: close", answer)
            self.assertLess(time.time() - t0, 5)

    def test_names_and_ids_are_checked(self):
        a = admin()
        status, _, out = a.call("POST", "/api/v1/files?name=%FF%FE.txt", raw=b"abc")
        self.assertEqual(status, 400, out)
        assert_error_shape(self, out)
        out = a.ok("POST", "/api/v1/files?name=%E6%97%A5%E6%9C%AC.txt", raw=b"utf-8 name")
        self.assertEqual(out["name"], "\u65e5\u672c.txt")
        fid = out["file_id"]
        group, rest = fid.split("/", 1)
        variant = group + "/" + rest[:-8] + rest[-8:].swapcase()
        self.assertNotEqual(variant, fid)
        self.assertEqual(a.call("GET", "/api/v1/files/" + variant)[0] // 100, 4)
        self.assertIn(a.call("DELETE", "/api/v1/files/" + variant)[0], (400, 404))
        self.assertEqual(a.call("GET", "/api/v1/files/" + fid)[2], b"utf-8 name")

    def test_multipart_and_chunked_uploads(self):
        a = admin()
        data = os.urandom(5 << 20) + b"\r\n--not-the-boundary\r\n" + os.urandom(1000)
        boundary = "depotBoundary" + unique("")
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"report.pdf\"\r\nContent-Type: application/pdf\r\n\r\n").encode()
        body += data + f"\r\n--{boundary}--\r\n".encode()
        status, _, out = a.call("POST", "/api/v1/files", raw=body, headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}"})
        self.assertEqual(status, 201, out)
        self.assertEqual((out["name"], out["size"], out["content_type"]),
                         ("report.pdf", len(data), "application/pdf"))
        self.assertEqual(out["sha256"], hashlib.sha256(data).hexdigest())
        self.assertTrue(out["file_id"].endswith(".pdf"))
        status, hdrs, got = a.call("GET", "/api/v1/files/" + out["file_id"])
        self.assertEqual((status, got), (200, data))
        self.assertIn("report.pdf", hdrs["content-disposition"])
        # A chunked body of unknown length.
        def gen():
            for i in range(10):
                yield bytes([i]) * 300000
        c = http.client.HTTPConnection(CLUSTER.host, CLUSTER.port, timeout=60)
        c.request("POST", "/api/v1/files?name=log.txt", body=gen(),
                  headers={"Authorization": "Bearer " + a.token}, encode_chunked=True)
        r = c.getresponse()
        out = json.loads(r.read())
        c.close()
        self.assertEqual(r.status, 201, out)
        expect = b"".join(gen())
        self.assertEqual(out["size"], len(expect))
        self.assertEqual(a.call("GET", "/api/v1/files/" + out["file_id"])[2], expect)
        listed = a.ok("GET", "/api/v1/files?name=log.txt")["items"]
        self.assertIn(out["file_id"], [f["file_id"] for f in listed])
        # Only recorded files are served: a file stored behind opsd's back is not.
        path = os.path.join(CLUSTER.dir, "other.txt")
        with open(path, "wb") as f:
            f.write(b"not opsd's")
        other = CLUSTER.depot("upload", path)
        self.assertEqual(a.call("GET", "/api/v1/files/" + other)[0], 404)
        self.assertEqual(a.call("DELETE", "/api/v1/files/" + other)[0], 404)
        self.assertEqual(CLUSTER.depot("download", other), "not opsd's")


class RunsTest(unittest.TestCase):
    def test_run_states_and_log_by_offset(self):
        a = admin()
        run = a.ok("POST", "/api/v1/runs", {"kind": "deploy", "title": "release 1.2",
                                            "targets": ["web-1", "web-2"]})
        self.assertEqual(run["state"], "queued")
        self.assertEqual(a.call("POST", f"/api/v1/runs/{run['id']}/succeed")[0], 409)
        a.ok("POST", f"/api/v1/runs/{run['id']}/start")
        lines = [f"step {i}: ok\n".encode() * (i + 1) for i in range(20)]
        for line in lines:
            out = a.ok("POST", f"/api/v1/runs/{run['id']}/log", raw=line,
                       headers={"Content-Type": "text/plain"})
        log = b"".join(lines)
        self.assertEqual(out["log_size"], len(log))
        status, hdrs, body = a.call("GET", f"/api/v1/runs/{run['id']}/log?offset=0&limit=100")
        self.assertEqual((status, body), (200, log[:100]))
        self.assertEqual(int(hdrs["x-next-offset"]), 100)
        got, offset = b"", 0
        while True:
            _, hdrs, body = a.call("GET", f"/api/v1/runs/{run['id']}/log?offset={offset}&limit=333")
            got += body
            offset = int(hdrs["x-next-offset"])
            if not body:
                break
        self.assertEqual(got, log)
        self.assertEqual(hdrs["x-log-complete"], "false")
        a.ok("POST", f"/api/v1/runs/{run['id']}/succeed", {"message": "done"})
        self.assertEqual(a.call("POST", f"/api/v1/runs/{run['id']}/log", raw=b"late")[0], 409)
        _, hdrs, _ = a.call("GET", f"/api/v1/runs/{run['id']}/log?offset={len(log)}")
        self.assertEqual(hdrs["x-log-complete"], "true")
        final = a.ok("GET", f"/api/v1/runs/{run['id']}")
        self.assertEqual((final["state"], final["message"]), ("succeeded", "done"))
        self.assertGreater(final["finished_at"], 0)
        self.assertEqual(CLUSTER.depot("download", final["log_file_id"]).encode(), log.strip())
        self.assertEqual(a.call("GET", f"/api/v1/runs/{run['id']}/log?offset={len(log) + 1}")[0],
                         400)


class BadInputTest(unittest.TestCase):
    def state(self, a):
        return (a.ok("GET", "/api/v1/users?size=1")["total"],
                a.ok("GET", "/api/v1/roles?size=1")["total"],
                a.ok("GET", "/api/v1/departments?size=1")["total"],
                len([e for e in audit_events(a) if e["result"] == "ok"]))

    def test_bad_input_gets_4xx_with_the_error_shape_and_changes_nothing(self):
        a = admin()
        before = self.state(a)
        cases = [
            ("POST", "/api/v1/users", b"{not json"),
            ("POST", "/api/v1/users", b"[1,2,3]"),
            ("POST", "/api/v1/users", b"\xff\xfe\x00"),
            ("POST", "/api/v1/users", json.dumps({"username": 42, "password": "x-pass-123"})),
            ("POST", "/api/v1/users", json.dumps({"username": "ok-name", "password": "x-pass-123",
                                                  "role_ids": ["1"]})),
            ("POST", "/api/v1/users", json.dumps({"username": "ok-name", "password": "x-pass-123",
                                                  "is_admin": True})),
            ("POST", "/api/v1/users", json.dumps({"username": "x'; DROP TABLE users;--",
                                                  "password": "x-pass-123"})),
            ("POST", "/api/v1/users", json.dumps({"username": "$(rm -rf /)",
                                                  "password": "x-pass-123"})),
            ("POST", "/api/v1/users", json.dumps({"username": "ok-name", "password": "short"})),
            ("POST", "/api/v1/roles", json.dumps({"name": "r", "permissions": ["*; rm -rf /"]})),
            ("POST", "/api/v1/roles", json.dumps({"name": "a\x00b"})),
            ("POST", "/api/v1/departments", json.dumps({"name": "x" * 100})),
            ("POST", "/api/v1/departments", json.dumps({"name": "x", "parent_id": -1})),
            ("POST", "/api/v1/departments", json.dumps({"name": "x", "parent_id": 1e300})),
            ("PATCH", "/api/v1/users/1;DROP", json.dumps({"name": "x"})),
            ("PATCH", "/api/v1/users/0", json.dumps({"name": "x"})),
            ("PATCH", "/api/v1/users/99999999999999999999", json.dumps({"name": "x"})),
            ("GET", "/api/v1/users?sort=password", None),
            ("GET", "/api/v1/users?size=100000", None),
            ("GET", "/api/v1/users?page=-1", None),
            ("GET", "/api/v1/users?username=%zz", None),
            ("GET", "/api/v1/users?$where=1", None),
            ("GET", "/api/v1/files/../../../etc/passwd", None),
            ("GET", "/api/v1/files/group1/M00/00/00/..%2F..%2Fetc%2Fpasswd", None),
            ("GET", "/api/v1/files/group1/M00/../../../etc/passwd", None),
            ("DELETE", "/api/v1/files/group1/M00/00/00/;rm%20-rf", None),
            ("POST", "/api/v1/runs", json.dumps({"kind": "x", "targets": "web-1"})),
            ("POST", "/api/v1/runs", json.dumps({"kind": "x", "scope": {"hosts": ["a"]}})),
            ("GET", "/api/v1/runs/1/log?offset=-5", None),
            ("POST", "/api/v1/runs", '{"kind":"x","params":{"a":' + "[" * 5000 + "]" * 5000 + "}}"),
        ]
        for method, path, body in cases:
            status, _, out = a.call(method, path, raw=body.encode() if isinstance(body, str)
                                    else body)
            self.assertTrue(400 <= status < 500, f"{method} {path} {body!r}: {status} {out}")
            assert_error_shape(self, out)
        # An oversized body (max_body_size is 1 MiB).
        status, hdrs, out = a.call("POST", "/api/v1/departments",
                                   raw=b'{"name":"' + b"x" * (2 << 20) + b'"}')
        self.assertEqual(status, 413)
        assert_error_shape(self, out, "too_large")
        # Raw garbage on the socket.
        import socket
        s = socket.create_connection((CLUSTER.host, CLUSTER.port), timeout=10)
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(200) + b"\r\n\r\n")
        answer = s.recv(4096)
        s.close()
        self.assertTrue(answer.startswith(b"HTTP/1.1 400"), answer[:40])
        self.assertEqual(self.state(a), before)
        self.assertEqual(a.call("GET", "/healthz")[0], 200)


class DurabilityTest(unittest.TestCase):
    def test_kill9_during_a_burst_loses_no_acknowledged_write(self):
        a = admin()
        acked = []
        lock = threading.Lock()
        stop = threading.Event()
        tag = unique("burst-")

        def writer(n):
            i = 0
            while not stop.is_set():
                name = f"{tag}-{n}-{i}"
                try:
                    status, _, out = a.call("POST", "/api/v1/departments", {"name": name},
                                            timeout=5)
                except OSError:
                    return
                if status == 201:
                    with lock:
                        acked.append((out["id"], name))
                i += 1

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        deadline = time.time() + 20
        while time.time() < deadline:
            with lock:
                if len(acked) >= 200:
                    break
            time.sleep(0.01)
        os.kill(CLUSTER.opsd_pid(), signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join()
        self.assertGreaterEqual(len(acked), 50)
        CLUSTER.cmd("restart")
        a = admin()
        have = {d["id"]: d["name"] for d in
                a.ok("GET", f"/api/v1/departments?q={tag}&size=500")["items"]}
        for i in range(2, 20):  # more pages, if any
            page = a.ok("GET", f"/api/v1/departments?q={tag}&size=500&page={i}")["items"]
            if not page:
                break
            have.update({d["id"]: d["name"] for d in page})
        missing = [(i, n) for i, n in acked if have.get(i) != n]
        self.assertEqual(missing, [], f"{len(missing)} of {len(acked)} acknowledged writes lost")
        # Each acknowledged create has its audit event.
        audited = {e["resource"] for e in audit_events(a, action="departments.create")}
        for i, _ in acked[-100:]:
            self.assertIn(f"departments/{i}", audited)


class AtRestTest(unittest.TestCase):
    def test_hashes_tokens_and_secrets_are_not_readable_in_the_store(self):
        a = admin()
        password = "pw-" + unique("") + "-secret"
        user, _ = make_user(a, password=password)
        status, out = login(user["username"], password)
        token = out["token"]
        secret_value = "sv-" + unique("") + "-topsecret"
        sec = a.ok("POST", "/api/v1/secrets", {"name": unique("s-"), "value": secret_value})
        self.assertNotIn("value", sec)
        self.assertNotIn("_sealed", sec)
        self.assertTrue(sec["has_value"])
        got = a.ok("GET", f"/api/v1/secrets/{sec['id']}")
        self.assertNotIn(secret_value, json.dumps(got))
        status, _, tok = a.call("POST", "/api/v1/api-tokens", {"name": "t"})
        api_token = tok["token"]
        # Updating the value keeps it write-only.
        new_value = "nv-" + unique("") + "-topsecret"
        a.ok("PATCH", f"/api/v1/secrets/{sec['id']}", {"value": new_value})
        db = os.path.join(CLUSTER.opsd_dir(), "db")
        blobs = b""
        for name in os.listdir(db):
            with open(os.path.join(db, name), "rb") as f:
                blobs += f.read()
        self.assertIn(user["username"].encode(), blobs)  # the grep does see records
        for plain in (password, token, token[4:], secret_value, new_value, api_token,
                      CLUSTER.password):
            self.assertNotIn(plain.encode(), blobs, "found in the LevelDB files")
        self.assertIn(b"pbkdf2-sha256$600000$", blobs)
        key = os.path.join(CLUSTER.opsd_dir(), "secret.key")
        self.assertEqual(os.stat(key).st_mode & 0o777, 0o600)
        self.assertEqual(os.path.getsize(key), 32)
        with open(os.path.join(CLUSTER.opsd_dir(), "opsd.log"), "rb") as f:
            logged = f.read()
        for plain in (password, token, secret_value, new_value, api_token, CLUSTER.password):
            self.assertNotIn(plain.encode(), logged, "found in the log")


class ZzAuditCoverageTest(unittest.TestCase):
    """Runs last (unittest orders classes by name): every change any test made is in the audit
    log with its actor and result."""

    def test_every_mutation_of_the_tests_is_audited(self):
        a = admin()
        events = []
        before = ""
        while True:
            page = a.ok("GET", "/api/v1/audit-events?size=500" + before)["items"]
            events += page
            if len(page) < 500:
                break
            before = f"&before_id={page[-1]['id']}"
        have = {}
        for e in events:
            key = (e.get("method"), e.get("path"), e["actor"], e["result"] == "ok")
            have[key] = have.get(key, 0) + 1
        want = {}
        for method, path, status, username, code in MUTATIONS:
            if username == "" or (status == 401 and path != "/api/v1/auth/login"):
                continue  # no identity: counted in metrics, not written (doc/opsd-api.md)
            if code in ("method_not_allowed",) or (code == "not_found" and status == 404 and
                                                   path.startswith("/api/v1/audit-events")):
                continue  # no such route: nothing to audit
            if code == "too_large" and not path.startswith("/api/v1/files"):
                continue  # refused by the HTTP layer before any route ran
            actor = username
            if username.startswith("login:"):
                actor = username[len("login:"):] if status == 200 else ""
            key = (method, path, actor, status < 400)
            want[key] = want.get(key, 0) + 1
        self.assertGreater(len(want), 50)
        missing = {k: n - have.get(k, 0) for k, n in want.items() if have.get(k, 0) < n}
        self.assertEqual(missing, {}, "changes without their audit event")


class MetricsTest(unittest.TestCase):
    def test_metrics_and_health(self):
        a = admin()
        status, _, body = Api().call("GET", "/metrics")
        self.assertEqual(status, 200)
        text = body.decode()
        for name in ("depot_opsd_requests_total", "depot_opsd_request_seconds_bucket",
                     "depot_opsd_logins_total", "depot_opsd_audit_events_total"):
            self.assertIn(name, text)
        self.assertEqual(Api().call("GET", "/healthz")[2], {"status": "ok"})
        a.ok("GET", "/api/v1/permissions")


if __name__ == "__main__":
    unittest.main()
