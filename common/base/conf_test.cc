#include "common/base/conf.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace depot {
namespace {

ConfFile MustParse(const std::string& text) {
  auto r = ConfFile::Parse(text, "test.conf");
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : ConfFile();
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST(ConfFileTest, ParsesKeysValuesCommentsAndBlankLines) {
  ConfFile f = MustParse(
      "# storage.conf\n"
      "\n"
      "   \t\n"
      "group_name = group1\n"
      "  # indented comment\n"
      "port=23000\n"
      "  base_path   =  /data/depot  \n"
      "empty =\n"
      "url = http://h/a=b\n");
  const auto& e = f.entries();
  ASSERT_EQ(e.size(), 5u);
  EXPECT_EQ(f.name(), "test.conf");
  EXPECT_EQ(e[0].key, "group_name");
  EXPECT_EQ(e[0].value, "group1");
  EXPECT_EQ(e[0].line, 4);
  EXPECT_EQ(e[1].key, "port");
  EXPECT_EQ(e[1].value, "23000");
  EXPECT_EQ(e[1].line, 6);
  EXPECT_EQ(e[2].key, "base_path");
  EXPECT_EQ(e[2].value, "/data/depot");
  EXPECT_EQ(e[3].key, "empty");
  EXPECT_EQ(e[3].value, "");
  // Only the first '=' splits.
  EXPECT_EQ(e[4].key, "url");
  EXPECT_EQ(e[4].value, "http://h/a=b");
  EXPECT_EQ(e[4].line, 9);
}

TEST(ConfFileTest, LineWithoutEqualsNamesFileAndLine) {
  auto r = ConfFile::Parse("a = 1\n# c\nthis line is wrong\n", "storage.conf");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsInvalidArgument());
  EXPECT_TRUE(Contains(r.status().message(), "storage.conf:3")) << r.status().message();
  EXPECT_TRUE(Contains(r.status().message(), "this line is wrong")) << r.status().message();
}

TEST(ConfFileTest, EmptyKeyIsAnError) {
  auto r = ConfFile::Parse("a = 1\n = 2\n", "x.conf");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.status().message(), "x.conf:2")) << r.status().message();
}

TEST(ConfFileTest, LoadReadsAFileAndReportsAMissingOne) {
  char path[] = "/tmp/depot_conf_testXXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  std::ofstream(path) << "k = v\n";
  auto r = ConfFile::Load(path);
  std::remove(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->name(), path);
  ASSERT_EQ(r->entries().size(), 1u);
  EXPECT_EQ(r->entries()[0].value, "v");

  auto missing = ConfFile::Load("/nonexistent/depot/x.conf");
  EXPECT_TRUE(missing.status().IsNotFound()) << missing.status().ToString();
  EXPECT_TRUE(Contains(missing.status().message(), "/nonexistent/depot/x.conf"));
}

TEST(ConfBinderTest, BindsEveryKindOfValue) {
  ConfFile f = MustParse(
      "port = 23000\n"
      "max_connections = 10000000000\n"
      "disabled = false\n"
      "log_level = warn\n"
      "base_path = /data\n"
      "reserved = 10G\n"
      "timeout = 5m\n");
  int port = 0;
  int64_t max_conn = 0;
  bool disabled = true;
  std::string level, base;
  uint64_t reserved = 0;
  int timeout = 0;
  int untouched = 77;
  ConfBinder b(f);
  b.Int("port", &port, 1, 65535);
  b.Int("max_connections", &max_conn, 1, INT64_MAX);
  b.Bool("disabled", &disabled);
  b.Enum("log_level", &level, {"debug", "info", "warn", "error"});
  b.String("base_path", &base);
  b.Bytes("reserved", &reserved, 0, UINT64_MAX);
  b.Seconds("timeout", &timeout, 1, 3600);
  b.Int("absent", &untouched, 0, 100);
  ASSERT_TRUE(b.Finish().ok()) << b.Finish().ToString();
  EXPECT_EQ(port, 23000);
  EXPECT_EQ(max_conn, 10000000000);
  EXPECT_FALSE(disabled);
  EXPECT_EQ(level, "warn");
  EXPECT_EQ(base, "/data");
  EXPECT_EQ(reserved, 10ULL << 30);
  EXPECT_EQ(timeout, 300);
  EXPECT_EQ(untouched, 77);  // absent keys keep their default
}

// Binds one key with `bind` and returns Finish()'s status.
template <typename Fn>
Status BindOne(const std::string& text, Fn bind) {
  ConfFile f = MustParse(text);
  ConfBinder b(f);
  bind(b);
  return b.Finish();
}

TEST(ConfBinderTest, IntRangeAndSyntaxErrorsNameTheKey) {
  int v = 5;
  Status s = BindOne("# c\nport = 70000\n", [&](ConfBinder& b) { b.Int("port", &v, 1, 65535); });
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_TRUE(Contains(s.message(), "test.conf:2")) << s.message();
  EXPECT_TRUE(Contains(s.message(), "`port`")) << s.message();
  EXPECT_TRUE(Contains(s.message(), "[1, 65535]")) << s.message();
  EXPECT_EQ(v, 5);  // not assigned on error

  for (const char* bad : {"0", "-1", "12abc", "", "1.5", "99999999999999999999"}) {
    Status e = BindOne(std::string("port = ") + bad + "\n",
                       [&](ConfBinder& b) { b.Int("port", &v, 1, 65535); });
    EXPECT_FALSE(e.ok()) << bad;
    EXPECT_TRUE(Contains(e.message(), "port")) << e.message();
  }
  EXPECT_TRUE(BindOne("port = 65535\n", [&](ConfBinder& b) { b.Int("port", &v, 1, 65535); }).ok());
  EXPECT_EQ(v, 65535);
  EXPECT_TRUE(BindOne("n = -3\n", [&](ConfBinder& b) { b.Int("n", &v, -5, 5); }).ok());
  EXPECT_EQ(v, -3);
}

TEST(ConfBinderTest, BoolForms) {
  for (const char* t : {"true", "TRUE", "on", "Yes", "1"}) {
    bool v = false;
    ASSERT_TRUE(BindOne(std::string("k = ") + t, [&](ConfBinder& b) { b.Bool("k", &v); }).ok());
    EXPECT_TRUE(v) << t;
  }
  for (const char* t : {"false", "Off", "no", "0"}) {
    bool v = true;
    ASSERT_TRUE(BindOne(std::string("k = ") + t, [&](ConfBinder& b) { b.Bool("k", &v); }).ok());
    EXPECT_FALSE(v) << t;
  }
  bool v = true;
  Status s = BindOne("use_trunk = maybe\n", [&](ConfBinder& b) { b.Bool("use_trunk", &v); });
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_TRUE(Contains(s.message(), "use_trunk")) << s.message();
  EXPECT_TRUE(v);
}

TEST(ConfBinderTest, EnumAcceptsOnlyListedValues) {
  std::string v = "info";
  const std::vector<std::string> allowed = {"debug", "info"};
  EXPECT_TRUE(BindOne("lvl = debug", [&](ConfBinder& b) { b.Enum("lvl", &v, allowed); }).ok());
  EXPECT_EQ(v, "debug");
  Status s = BindOne("lvl = DEBUG", [&](ConfBinder& b) { b.Enum("lvl", &v, allowed); });
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(Contains(s.message(), "lvl")) << s.message();
  EXPECT_TRUE(Contains(s.message(), "debug, info")) << s.message();
  EXPECT_EQ(v, "debug");
}

TEST(ConfBinderTest, BytesSuffixesAndErrors) {
  struct Case {
    const char* text;
    uint64_t want;
  };
  for (const Case& c : {Case{"4096", 4096}, Case{"512M", 512ULL << 20}, Case{"10G", 10ULL << 30},
                        Case{"2k", 2048}, Case{"1T", 1ULL << 40}, Case{"10GB", 10ULL << 30}}) {
    uint64_t v = 0;
    Status s = BindOne(std::string("sz = ") + c.text,
                       [&](ConfBinder& b) { b.Bytes("sz", &v, 0, UINT64_MAX); });
    ASSERT_TRUE(s.ok()) << c.text << ": " << s.ToString();
    EXPECT_EQ(v, c.want) << c.text;
  }
  for (const char* bad : {"bad", "10X", "G", "-1G", "1.5G", ""}) {
    uint64_t v = 1;
    Status s = BindOne(std::string("reserved_storage_space = ") + bad, [&](ConfBinder& b) {
      b.Bytes("reserved_storage_space", &v, 0, UINT64_MAX);
    });
    EXPECT_TRUE(s.IsInvalidArgument()) << bad;
    EXPECT_TRUE(Contains(s.message(), "reserved_storage_space")) << s.message();
    EXPECT_EQ(v, 1u) << bad;
  }
  uint64_t v = 0;
  Status s = BindOne("sz = 2G", [&](ConfBinder& b) { b.Bytes("sz", &v, 0, 1ULL << 30); });
  EXPECT_TRUE(Contains(s.message(), "out of range")) << s.message();
}

TEST(ConfBinderTest, SecondsUnits) {
  struct Case {
    const char* text;
    int want;
  };
  for (const Case& c : {Case{"30", 30}, Case{"30s", 30}, Case{"5m", 300}, Case{"1h", 3600}}) {
    int v = 0;
    Status s =
        BindOne(std::string("t = ") + c.text, [&](ConfBinder& b) { b.Seconds("t", &v, 0, 86400); });
    ASSERT_TRUE(s.ok()) << c.text << ": " << s.ToString();
    EXPECT_EQ(v, c.want) << c.text;
  }
  for (const char* bad : {"5x", "m", "abc", "2h", "-1"}) {
    int v = 9;
    Status s = BindOne(std::string("network_timeout = ") + bad,
                       [&](ConfBinder& b) { b.Seconds("network_timeout", &v, 0, 3600); });
    EXPECT_TRUE(s.IsInvalidArgument()) << bad;
    EXPECT_TRUE(Contains(s.message(), "network_timeout")) << s.message();
    EXPECT_EQ(v, 9) << bad;
  }
}

// Regression: the unit multiplication used to overflow (undefined behaviour); 2^60 hours wrapped
// to 0 seconds and was accepted.
TEST(ConfBinderTest, SecondsOverflowIsOutOfRange) {
  for (const char* huge : {"1152921504606846976h", "4611686018427387904m"}) {
    int v = 9;
    Status s =
        BindOne(std::string("t = ") + huge, [&](ConfBinder& b) { b.Seconds("t", &v, 0, 3600); });
    EXPECT_TRUE(s.IsInvalidArgument()) << huge;
    EXPECT_EQ(v, 9) << huge;
  }
}

TEST(ConfBinderTest, RepeatedCollectsEveryOccurrence) {
  std::vector<std::string> trackers = {"default:1"};
  ConfFile f = MustParse("tracker_server = a:22122\nport = 1\ntracker_server = b:22122\n");
  ConfBinder b(f);
  int port = 0;
  b.Repeated("tracker_server", &trackers);
  b.Int("port", &port, 1, 10);
  ASSERT_TRUE(b.Finish().ok());
  EXPECT_EQ(trackers, (std::vector<std::string>{"a:22122", "b:22122"}));

  std::vector<std::string> none = {"keep"};
  EXPECT_TRUE(BindOne("", [&](ConfBinder& b) { b.Repeated("tracker_server", &none); }).ok());
  EXPECT_EQ(none, std::vector<std::string>{"keep"});

  Status s =
      BindOne("tracker_server =\n", [&](ConfBinder& b) { b.Repeated("tracker_server", &none); });
  EXPECT_TRUE(Contains(s.message(), "tracker_server")) << s.message();
}

TEST(ConfBinderTest, IndexedFamily) {
  std::vector<std::string> paths;
  Status ok = BindOne("store_path1 = /b\nstore_path0 = /a\nstore_path2 = /c\n",
                      [&](ConfBinder& b) { b.Indexed("store_path", &paths, 256); });
  ASSERT_TRUE(ok.ok()) << ok.ToString();
  EXPECT_EQ(paths, (std::vector<std::string>{"/a", "/b", "/c"}));

  Status gap = BindOne("store_path0 = /a\nstore_path2 = /c\n",
                       [&](ConfBinder& b) { b.Indexed("store_path", &paths, 256); });
  ASSERT_FALSE(gap.ok());
  EXPECT_TRUE(Contains(gap.message(), "store_path2")) << gap.message();
  EXPECT_TRUE(Contains(gap.message(), "missing store_path1")) << gap.message();

  Status no_zero =
      BindOne("store_path1 = /b\n", [&](ConfBinder& b) { b.Indexed("store_path", &paths, 256); });
  EXPECT_TRUE(Contains(no_zero.message(), "missing store_path0")) << no_zero.message();

  for (const char* bad : {"store_path4 = /x\n", "store_path01 = /x\n",
                          "store_path0 = /a\nstore_path0 = /b\n", "store_path0 =\n"}) {
    Status s = BindOne(bad, [&](ConfBinder& b) { b.Indexed("store_path", &paths, 4); });
    EXPECT_TRUE(s.IsInvalidArgument()) << bad;
  }
}

// Regression: FastDFS storage.conf has store_path_count next to store_path0; Indexed used to
// reject store_path_count as a bad index of its family.
TEST(ConfBinderTest, IndexedIgnoresOtherKeysSharingThePrefix) {
  std::vector<std::string> paths;
  int count = 0;
  Status s = BindOne("store_path_count = 1\nstore_path0 = /a\n", [&](ConfBinder& b) {
    b.Int("store_path_count", &count, 1, 256);
    b.Indexed("store_path", &paths, 256);
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(count, 1);
  EXPECT_EQ(paths, std::vector<std::string>{"/a"});

  // Left unbound, such a key is reported as unknown rather than silently accepted.
  Status unknown = BindOne("store_path_count = 1\nstore_path0 = /a\n",
                           [&](ConfBinder& b) { b.Indexed("store_path", &paths, 256); });
  EXPECT_TRUE(Contains(unknown.message(), "unknown key `store_path_count`")) << unknown.message();
}

TEST(ConfBinderTest, UnknownKeyNamesKeyAndLine) {
  int port = 0;
  Status s = BindOne("port = 1\n\nprot = 2\n", [&](ConfBinder& b) { b.Int("port", &port, 0, 9); });
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_TRUE(Contains(s.message(), "test.conf:3")) << s.message();
  EXPECT_TRUE(Contains(s.message(), "unknown key `prot`")) << s.message();
}

TEST(ConfBinderTest, DuplicateKeyIsAnError) {
  std::string v;
  Status s = BindOne("group_name = g1\ngroup_name = g2\n",
                     [&](ConfBinder& b) { b.String("group_name", &v); });
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(Contains(s.message(), "test.conf:2")) << s.message();
  EXPECT_TRUE(Contains(s.message(), "group_name")) << s.message();
  EXPECT_TRUE(Contains(s.message(), "more than once")) << s.message();
}

TEST(ConfBinderTest, FirstErrorWinsAndFailNamesTheKey) {
  int a = 0, b2 = 0;
  Status s = BindOne("a = x\nb = y\n", [&](ConfBinder& b) {
    b.Int("a", &a, 0, 9);
    b.Int("b", &b2, 0, 9);
  });
  EXPECT_TRUE(Contains(s.message(), "`a`")) << s.message();
  EXPECT_FALSE(Contains(s.message(), "`b`")) << s.message();

  Status f = BindOne("min = 5\n", [&](ConfBinder& b) {
    b.Int("min", &a, 0, 9);
    b.Fail("min", "must be below max");
  });
  EXPECT_TRUE(Contains(f.message(), "test.conf:1")) << f.message();
  EXPECT_TRUE(Contains(f.message(), "must be below max")) << f.message();
  Status absent = BindOne("", [&](ConfBinder& b) { b.Fail("max", "is required"); });
  EXPECT_TRUE(Contains(absent.message(), "`max`: is required")) << absent.message();
}

TEST(ConfTest, ParseHostPort) {
  std::string host;
  int port = 0;
  ASSERT_TRUE(ParseHostPort("127.0.0.1:22122", &host, &port).ok());
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 22122);
  ASSERT_TRUE(ParseHostPort("tracker.example:1", &host, &port).ok());
  EXPECT_EQ(host, "tracker.example");
  EXPECT_EQ(port, 1);
  for (const char* bad :
       {"", "host", ":22122", "host:", "host:0", "host:65536", "host:80x", "host:-5"}) {
    host = "unchanged";
    Status s = ParseHostPort(bad, &host, &port);
    EXPECT_TRUE(s.IsInvalidArgument()) << "'" << bad << "'";
    EXPECT_EQ(host, "unchanged") << bad;
  }
}

TEST(ConfTest, ParseByteSize) {
  EXPECT_EQ(*ParseByteSize("0"), 0u);
  EXPECT_EQ(*ParseByteSize("4096"), 4096u);
  EXPECT_EQ(*ParseByteSize(" 512M "), 512ULL << 20);
  EXPECT_EQ(*ParseByteSize("10G"), 10ULL << 30);
  EXPECT_EQ(*ParseByteSize("10g"), 10ULL << 30);
  EXPECT_EQ(*ParseByteSize("3KB"), 3072u);
  EXPECT_EQ(*ParseByteSize("16777215T"), 16777215ULL << 40);
  for (const char* bad : {"", "bad", "M", "1.5G", "-1", "10 G", "10Q", "16777216T"}) {
    auto r = ParseByteSize(bad);
    EXPECT_FALSE(r.ok()) << "'" << bad << "'";
    EXPECT_TRUE(r.status().IsInvalidArgument()) << bad;
  }
}

}  // namespace
}  // namespace depot
