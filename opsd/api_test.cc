#include "opsd/api.h"

#include "opsd/store.h"

#include <gtest/gtest.h>

namespace depot::opsd {
namespace {

void Noop(Ctx&, net::HttpResponse*) {}
void NoopStream(Ctx&, net::HttpStream&) {}

TEST(RouterTest, MatchesParamsRestAndMethods) {
  Router r;
  r.Add({"GET", "/api/v1/users", "p", net::RouteMode::kInline, "", Noop, nullptr});
  r.Add({"GET", "/api/v1/users/{id}", "p", net::RouteMode::kInline, "", Noop, nullptr});
  r.Add({"POST", "/api/v1/users/{id}/disable", "p", net::RouteMode::kInline, "users.disable", Noop,
         nullptr});
  r.Add({"GET", "/api/v1/files/{file_id+}", "p", net::RouteMode::kStream, "", nullptr, NoopStream});
  std::map<std::string, std::string> params;
  bool known = false;
  const Route* m = r.Match("GET", "/api/v1/users/42", &params, &known);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->pattern, "/api/v1/users/{id}");
  EXPECT_EQ(params["id"], "42");
  m = r.Match("GET", "/api/v1/files/group1/M00/00/01/abc.txt", &params, &known);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(params["file_id"], "group1/M00/00/01/abc.txt");
  EXPECT_EQ(r.Match("GET", "/api/v1/files", &params, &known), nullptr);
  EXPECT_NE(r.Match("HEAD", "/api/v1/users", &params, &known), nullptr);
  EXPECT_EQ(r.Match("DELETE", "/api/v1/users/1/disable", &params, &known), nullptr);
  EXPECT_TRUE(known);  // 405, not 404
  EXPECT_EQ(r.Match("GET", "/api/v1/users/1/2", &params, &known), nullptr);
  EXPECT_FALSE(known);
  EXPECT_EQ(r.Match("GET", "/api/v1/users/", &params, &known), nullptr);
}

TEST(RouterDeathTest, RoutesWithoutPermissionOrAuditActionAreRefused) {
  Router r;
  EXPECT_DEATH(r.Add({"GET", "/x", "", net::RouteMode::kInline, "", Noop, nullptr}), "permission");
  EXPECT_DEATH(r.Add({"POST", "/x", "p", net::RouteMode::kInline, "", Noop, nullptr}), "audit");
  EXPECT_DEATH(r.Add({"GET", "/x", "p", net::RouteMode::kStream, "", Noop, nullptr}), "handler");
}

TEST(CheckFieldsTest, TypesBoundsUnknownAndRequired) {
  std::vector<FieldSpec> spec = {{"name", FieldType::kString, true, 8, 1},
                                 {"n", FieldType::kInt, false, 10, 0},
                                 {"on", FieldType::kBool},
                                 {"ids", FieldType::kIntArray, false, 2},
                                 {"tags", FieldType::kStringArray, false, 2},
                                 {"scope", FieldType::kScope}};
  EXPECT_TRUE(CheckFields(json{{"name", "a"}}, spec, false).ok());
  EXPECT_FALSE(CheckFields(json::object(), spec, false).ok());
  EXPECT_TRUE(CheckFields(json::object(), spec, true).ok());
  EXPECT_FALSE(CheckFields(json{{"name", "a"}, {"x", 1}}, spec, false).ok());
  EXPECT_FALSE(CheckFields(json{{"name", 5}}, spec, false).ok());
  EXPECT_FALSE(CheckFields(json{{"name", "123456789"}}, spec, false).ok());
  EXPECT_FALSE(CheckFields(json{{"name", "a\nb"}}, spec, false).ok());
  EXPECT_FALSE(CheckFields(json{{"name", "a"}, {"n", 11}}, spec, false).ok());
  EXPECT_FALSE(CheckFields(json{{"name", "a"}, {"n", "1"}}, spec, false).ok());
  EXPECT_FALSE(CheckFields(json{{"name", "a"}, {"on", 1}}, spec, false).ok());
  EXPECT_FALSE(CheckFields(json{{"name", "a"}, {"ids", {1, 2, 3}}}, spec, false).ok());
  EXPECT_FALSE(CheckFields(json{{"name", "a"}, {"ids", {0}}}, spec, false).ok());
  EXPECT_FALSE(CheckFields(json{{"name", "a"}, {"tags", {""}}}, spec, false).ok());
  EXPECT_FALSE(CheckFields(json{{"name", "a"}, {"scope", {{"hosts", {"x"}}}}}, spec, false).ok());
  EXPECT_TRUE(CheckFields(json{{"name", "a"}, {"scope", {{"envs", {"prod"}}}}}, spec, false).ok());
  EXPECT_FALSE(CheckFields(json::array(), spec, false).ok());
}

TEST(PrincipalTest, ScopesNeedOverlapInEveryRestrictedDimension) {
  Principal p;
  Scope prod;
  prod.envs = {"prod"};
  p.grants["runs.run.view"] = {prod};
  EXPECT_TRUE(p.Has("runs.run.view"));
  EXPECT_FALSE(p.Has("runs.run.update"));
  EXPECT_TRUE(p.InScope("runs.run.view", json{{"envs", {"prod", "dev"}}}));
  EXPECT_FALSE(p.InScope("runs.run.view", json{{"envs", {"dev"}}}));
  EXPECT_FALSE(p.InScope("runs.run.view", json::object()));  // unscoped record: not in a scope
  EXPECT_FALSE(p.InScope("runs.run.update", json{{"envs", {"prod"}}}));
  p.grants["runs.run.view"].push_back(Scope());  // a second, unrestricted grant
  EXPECT_TRUE(p.InScope("runs.run.view", json::object()));
  Principal root;
  root.superuser = true;
  EXPECT_TRUE(root.Has("anything"));
  EXPECT_TRUE(root.InScope("anything", json{{"apps", {"x"}}}));
}

TEST(ScopeTest, IntersectNarrowsEachDimension) {
  Scope a = Scope::FromJson(json{{"envs", {"prod", "stage"}}});
  Scope b = Scope::FromJson(json{{"envs", {"prod", "dev"}}, {"apps", {"web"}}});
  Scope out;
  ASSERT_TRUE(Scope::Intersect(a, b, &out));
  EXPECT_EQ(out.envs, (std::set<std::string>{"prod"}));
  EXPECT_EQ(out.apps, (std::set<std::string>{"web"}));
  EXPECT_TRUE(out.host_groups.empty());
  EXPECT_FALSE(Scope::Intersect(a, Scope::FromJson(json{{"envs", {"dev"}}}), &out));
  ASSERT_TRUE(Scope::Intersect(Scope(), a, &out));
  EXPECT_EQ(out.envs, a.envs);
  // Regression: the result may be one of the inputs (it was cleared before it was read).
  Scope in_place = a;
  ASSERT_TRUE(Scope::Intersect(in_place, Scope::FromJson(json{{"envs", {"prod"}}}), &in_place));
  EXPECT_EQ(in_place.envs, (std::set<std::string>{"prod"}));
  // Covers: a grant contains a scope only when every restricted dimension holds it whole.
  Principal p;
  p.grants["x"] = {a};
  EXPECT_TRUE(p.Covers("x", Scope::FromJson(json{{"envs", {"prod"}}})));
  EXPECT_FALSE(p.Covers("x", Scope::FromJson(json{{"envs", {"prod", "dev"}}})));
  EXPECT_FALSE(p.Covers("x", Scope()));  // unrestricted is wider than the grant
  EXPECT_TRUE(p.Covers("x", Scope::FromJson(json{{"envs", {"stage"}}, {"apps", {"any"}}})));
  Principal wide;
  wide.grants["x"] = {Scope()};
  EXPECT_TRUE(wide.CoversAll(p));
  EXPECT_FALSE(p.CoversAll(wide));
}

TEST(ListTest, FiltersSortsPagesAndHidesInternalFields) {
  std::vector<std::shared_ptr<const json>> docs;
  for (int i = 1; i <= 25; ++i) {
    docs.push_back(std::make_shared<const json>(
        json{{"id", i}, {"name", "u" + std::to_string(100 - i)}, {"even", i % 2 == 0}, {"_secret", "x"}}));
  }
  ListQuery q;
  q.size = 10;
  q.page = 3;
  json out = ListReply(docs, q, {"name"}, nullptr);
  EXPECT_EQ(out["total"], 25);
  ASSERT_EQ(out["items"].size(), 5u);
  EXPECT_EQ(out["items"][0]["id"], 21);
  EXPECT_FALSE(out["items"][0].contains("_secret"));
  q = ListQuery();
  q.filters["even"] = "true";
  q.sort = "name";
  auto by_name = docs;
  SortDocs(&by_name, "name", false);
  out = ListReply(by_name, q, {"name"}, nullptr);
  EXPECT_EQ(out["total"], 12);
  EXPECT_EQ(out["items"][0]["name"], "u76");
  q = ListQuery();
  q.q = "u9";
  q.desc = true;
  auto by_id_desc = docs;
  SortDocs(&by_id_desc, "id", true);
  out = ListReply(by_id_desc, q, {"name"}, [](const json& d) { return d["id"].get<int>() != 5; });
  EXPECT_EQ(out["total"], 9);  // u90..u99 are ids 1..10; id 5 is dropped by `keep`
  EXPECT_EQ(out["items"][0]["id"], 10);
}

TEST(ErrorTest, OneShapeAndStatusMapping) {
  json e = json::parse(ErrorBody("not_found", "no such user"));
  EXPECT_EQ(e["error"]["code"], "not_found");
  EXPECT_EQ(e["error"]["message"], "no such user");
  EXPECT_EQ(ErrorFromStatus(Status::NotFound("x")).status, 404);
  EXPECT_EQ(ErrorFromStatus(Status::Busy("x")).status, 409);
  EXPECT_EQ(ErrorFromStatus(Status::AlreadyExists("x")).status, 409);
  EXPECT_EQ(ErrorFromStatus(Status::InvalidArgument("x")).status, 400);
  EXPECT_EQ(ErrorFromStatus(Status::PermissionDenied("x")).status, 403);
  EXPECT_EQ(ErrorFromStatus(Status::IOError("x")).status, 500);
}

}  // namespace
}  // namespace depot::opsd
