#include "common/base/status.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

namespace depot {
namespace {

TEST(StatusTest, DefaultIsOk) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kOk);
  EXPECT_EQ(s.message(), "");
  EXPECT_EQ(s.ToString(), "OK");
  EXPECT_TRUE(Status::OK().ok());
}

TEST(StatusTest, OkCodeDropsTheMessage) {
  Status s(StatusCode::kOk, "ignored", "too");
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.message(), "");
}

TEST(StatusTest, FactoriesSetCodeAndJoinDetail) {
  struct Case {
    Status status;
    StatusCode code;
    const char* name;
  };
  const Case cases[] = {
      {Status::NotFound("a"), StatusCode::kNotFound, "NotFound"},
      {Status::AlreadyExists("a"), StatusCode::kAlreadyExists, "AlreadyExists"},
      {Status::InvalidArgument("a"), StatusCode::kInvalidArgument, "InvalidArgument"},
      {Status::Corruption("a"), StatusCode::kCorruption, "Corruption"},
      {Status::IOError("a"), StatusCode::kIOError, "IOError"},
      {Status::Unavailable("a"), StatusCode::kUnavailable, "Unavailable"},
      {Status::TimedOut("a"), StatusCode::kTimedOut, "TimedOut"},
      {Status::PermissionDenied("a"), StatusCode::kPermissionDenied, "PermissionDenied"},
      {Status::ResourceExhausted("a"), StatusCode::kResourceExhausted, "ResourceExhausted"},
      {Status::NotSupported("a"), StatusCode::kNotSupported, "NotSupported"},
      {Status::Internal("a"), StatusCode::kInternal, "Internal"},
      {Status::Busy("a"), StatusCode::kBusy, "Busy"},
  };
  for (const auto& c : cases) {
    EXPECT_FALSE(c.status.ok()) << c.name;
    EXPECT_EQ(c.status.code(), c.code) << c.name;
    EXPECT_STREQ(StatusCodeName(c.code), c.name);
    EXPECT_EQ(c.status.ToString(), std::string(c.name) + ": a");
  }
  EXPECT_STREQ(StatusCodeName(StatusCode::kOk), "OK");

  Status s = Status::IOError("open", "/data/x");
  EXPECT_EQ(s.message(), "open /data/x");
  EXPECT_EQ(s.ToString(), "IOError: open /data/x");
  EXPECT_TRUE(Status::NotFound("x").IsNotFound());
  EXPECT_FALSE(Status::NotFound("x").IsInvalidArgument());
  EXPECT_TRUE(Status::InvalidArgument("x").IsInvalidArgument());
}

TEST(StatusTest, CopyIsDeepAndMoveTransfers) {
  Status a = Status::Corruption("bad block", "7");
  Status b = a;
  EXPECT_EQ(b.code(), StatusCode::kCorruption);
  EXPECT_EQ(b.message(), "bad block 7");
  b = Status::OK();
  EXPECT_TRUE(b.ok());
  EXPECT_EQ(a.message(), "bad block 7");  // a is untouched by changes to its copy

  Status c = std::move(a);
  EXPECT_EQ(c.message(), "bad block 7");
  Status d;
  d = c;
  const Status& alias = d;
  d = alias;  // self-assignment keeps the value
  EXPECT_EQ(d.ToString(), "Corruption: bad block 7");
}

TEST(StatusTest, FromErrnoMapsCodesAndNamesTheObject) {
  struct Case {
    int err;
    StatusCode code;
  };
  const Case cases[] = {
      {ENOENT, StatusCode::kNotFound},
      {ENOTDIR, StatusCode::kNotFound},
      {ENOSPC, StatusCode::kResourceExhausted},
      {EDQUOT, StatusCode::kResourceExhausted},
      {EMFILE, StatusCode::kResourceExhausted},
      {EACCES, StatusCode::kPermissionDenied},
      {EPERM, StatusCode::kPermissionDenied},
      {EEXIST, StatusCode::kAlreadyExists},
      {EINVAL, StatusCode::kInvalidArgument},
      {ETIMEDOUT, StatusCode::kTimedOut},
      {ECONNREFUSED, StatusCode::kUnavailable},
      {ECONNRESET, StatusCode::kUnavailable},
      {EIO, StatusCode::kIOError},
      {EBADF, StatusCode::kIOError},
  };
  for (const auto& c : cases) {
    Status s = Status::FromErrno(c.err, "open", "/x/y");
    EXPECT_EQ(s.code(), c.code) << std::strerror(c.err);
    EXPECT_EQ(s.message(), std::string("open /x/y: ") + std::strerror(c.err));
  }
  EXPECT_EQ(Status::FromErrno(ENOENT, "open", "/x/y").message(),
            "open /x/y: No such file or directory");
  // Without an object there is no stray space.
  EXPECT_EQ(Status::FromErrno(EIO, "fsync").message(), std::string("fsync: ") + std::strerror(EIO));
}

TEST(StatusTest, WithContextPrefixesAndKeepsCode) {
  Status s = Status::NotFound("open /a").WithContext("while loading binlog");
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "while loading binlog: open /a");
  Status twice = s.WithContext("start-up");
  EXPECT_EQ(twice.message(), "start-up: while loading binlog: open /a");
  EXPECT_TRUE(Status::OK().WithContext("anything").ok());
}

TEST(ResultTest, HoldsValueOrStatus) {
  Result<int> v = 42;
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 42);
  EXPECT_EQ(v.value(), 42);
  EXPECT_TRUE(v.status().ok());

  Result<int> e = Status::NotFound("key", "k1");
  EXPECT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(e.status().message(), "key k1");
  EXPECT_EQ(std::move(e).TakeStatus().message(), "key k1");

  Result<std::string> s = std::string("abc");
  EXPECT_EQ(s->size(), 3u);
  EXPECT_TRUE(std::move(s).TakeStatus().ok());
}

TEST(ResultTest, MoveOnlyValue) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(7);
  ASSERT_TRUE(r.ok());
  std::unique_ptr<int> p = std::move(r).value();
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(*p, 7);
}

Result<int> ParsePositive(int x) {
  if (x <= 0) return Status::InvalidArgument("not positive:", std::to_string(x));
  return x;
}

Status Check(bool fail) { return fail ? Status::Busy("check") : Status::OK(); }

// Counts how far the function got, so the tests see that an error returns early.
Result<int> AddTwo(int a, int b, int* reached) {
  DEPOT_ASSIGN_OR_RETURN(int x, ParsePositive(a));
  *reached = 1;
  DEPOT_ASSIGN_OR_RETURN(int y, ParsePositive(b));
  *reached = 2;
  return x + y;
}

Status CheckBoth(bool first, bool second, int* reached) {
  DEPOT_RETURN_IF_ERROR(Check(first));
  *reached = 1;
  DEPOT_RETURN_IF_ERROR(Check(second));
  *reached = 2;
  return Status::OK();
}

Status AssignIntoExisting(int a, int* out) {
  int v = -1;
  DEPOT_ASSIGN_OR_RETURN(v, ParsePositive(a));
  *out = v;
  return Status::OK();
}

Result<std::unique_ptr<int>> MakeBox(int v) { return std::make_unique<int>(v); }

Result<int> Unbox(int v) {
  DEPOT_ASSIGN_OR_RETURN(std::unique_ptr<int> box, MakeBox(v));
  return *box + 1;
}

TEST(ResultTest, AssignOrReturn) {
  int reached = 0;
  Result<int> ok = AddTwo(2, 3, &reached);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 5);
  EXPECT_EQ(reached, 2);

  reached = 0;
  Result<int> first = AddTwo(-1, 3, &reached);
  EXPECT_EQ(first.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(first.status().message(), "not positive: -1");
  EXPECT_EQ(reached, 0);

  reached = 0;
  Result<int> second = AddTwo(1, 0, &reached);
  EXPECT_EQ(second.status().message(), "not positive: 0");
  EXPECT_EQ(reached, 1);

  int out = 0;
  EXPECT_TRUE(AssignIntoExisting(9, &out).ok());
  EXPECT_EQ(out, 9);
  out = 0;
  EXPECT_TRUE(AssignIntoExisting(-9, &out).IsInvalidArgument());
  EXPECT_EQ(out, 0);

  Result<int> boxed = Unbox(41);
  ASSERT_TRUE(boxed.ok());
  EXPECT_EQ(*boxed, 42);
}

TEST(ResultTest, ReturnIfError) {
  int reached = 0;
  EXPECT_TRUE(CheckBoth(false, false, &reached).ok());
  EXPECT_EQ(reached, 2);

  reached = 0;
  Status s = CheckBoth(true, false, &reached);
  EXPECT_EQ(s.code(), StatusCode::kBusy);
  EXPECT_EQ(s.message(), "check");
  EXPECT_EQ(reached, 0);

  reached = 0;
  EXPECT_EQ(CheckBoth(false, true, &reached).code(), StatusCode::kBusy);
  EXPECT_EQ(reached, 1);
}

}  // namespace
}  // namespace depot
