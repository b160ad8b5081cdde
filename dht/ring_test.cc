#include "dht/ring.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

namespace depot::dht {
namespace {

const std::vector<std::string> kThree = {"10.0.0.1:11411", "10.0.0.2:11411", "10.0.0.3:11411"};

std::string Key(int i) { return "group1/fp-" + std::to_string(i); }

TEST(RingTest, NodesAreSortedAndUnique) {
  Ring r({"b:1", "a:1", "b:1", "c:1"});
  EXPECT_EQ(r.nodes(), (std::vector<std::string>{"a:1", "b:1", "c:1"}));
  EXPECT_TRUE(Ring().nodes().empty());
  EXPECT_TRUE(Ring().Preference("k", 2).empty());
}

TEST(RingTest, BalancedWithinAQuarterOverThreeNodes) {
  Ring r(kThree);
  std::map<std::string, int> primary;
  const int kKeys = 30000;
  for (int i = 0; i < kKeys; ++i) ++primary[r.Preference(Key(i), 1)[0]];
  ASSERT_EQ(primary.size(), 3u);
  for (const auto& [node, n] : primary) {
    EXPECT_GT(n, kKeys / 3 * 0.75) << node;
    EXPECT_LT(n, kKeys / 3 * 1.25) << node;
  }
}

TEST(RingTest, PreferenceIsDeterministicDistinctAndCapped) {
  Ring a(kThree);
  Ring b({kThree[2], kThree[0], kThree[1]});  // order of construction does not matter
  for (int i = 0; i < 2000; ++i) {
    auto p = a.Preference(Key(i), 2);
    ASSERT_EQ(p.size(), 2u);
    EXPECT_NE(p[0], p[1]);
    EXPECT_EQ(p, b.Preference(Key(i), 2));
    EXPECT_EQ(p, a.Preference(Key(i), 2));
    // Longer lists extend shorter ones; more replicas than nodes gives every node once.
    auto all = a.Preference(Key(i), 5);
    ASSERT_EQ(all.size(), 3u);
    EXPECT_EQ(std::set<std::string>(all.begin(), all.end()).size(), 3u);
    EXPECT_EQ(all[0], p[0]);
    EXPECT_EQ(all[1], p[1]);
    EXPECT_TRUE(a.Owns(p[0], Key(i), 2));
    EXPECT_TRUE(a.Owns(p[1], Key(i), 2));
    EXPECT_FALSE(a.Owns(all[2], Key(i), 2));
  }
  EXPECT_EQ(Ring({"solo:1"}).Preference("x", 2), (std::vector<std::string>{"solo:1"}));
}

TEST(RingTest, AddingAFourthNodeMovesOnlyItsShare) {
  Ring before(kThree);
  std::vector<std::string> four = kThree;
  four.push_back("10.0.0.4:11411");
  Ring after(four);
  const int kKeys = 30000;
  int moved = 0;
  for (int i = 0; i < kKeys; ++i) {
    std::string b = before.Preference(Key(i), 1)[0];
    std::string a = after.Preference(Key(i), 1)[0];
    if (a != b) {
      ++moved;
      // A key changes owner only to the new node.
      EXPECT_EQ(a, four[3]) << Key(i);
    }
    // With replicas: every owner in the new ring was an owner before, or is the new node.
    auto pb = before.Preference(Key(i), 2);
    for (const auto& n : after.Preference(Key(i), 2)) {
      if (n == four[3]) continue;
      EXPECT_TRUE(n == pb[0] || n == pb[1]) << Key(i);
    }
  }
  EXPECT_GT(moved, kKeys / 4 * 0.75);
  EXPECT_LT(moved, kKeys / 4 * 1.25);
}

}  // namespace
}  // namespace depot::dht
