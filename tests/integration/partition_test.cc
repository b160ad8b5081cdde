// Network partition (issue 7, Done means 3): each member of a 3-member group runs in its own
// network namespace, joined to the tracker and to the others by veth pairs on a bridge that this
// test creates. The link to one member is cut for a while (uploads and deletes go on elsewhere)
// and restored; the group must converge.
//
// Needs root (CAP_NET_ADMIN) and iproute2. Without them the test prints why and returns.
#include <gtest/gtest.h>
#include <unistd.h>

#include <random>

#include "tests/harness/harness.h"
#include "tests/integration/replication_util.h"

namespace depot::testing {
namespace {

constexpr const char* kIp = "/usr/sbin/ip";

// The namespaces, bridge and links of one test run; removed by the destructor.
class Network {
 public:
  explicit Network(int members) : members_(members) {
    int tag = static_cast<int>(getpid() % 100000);
    prefix_ = "dp" + std::to_string(tag);
    subnet_ = "10.213." + std::to_string(tag % 250) + ".";
  }
  ~Network() {
    for (int i = 0; i < members_; ++i) Ip({"netns", "del", Ns(i)});
    Ip({"link", "del", Bridge()});
  }

  Status Create() {
    std::vector<std::vector<std::string>> steps = {
        {"link", "add", Bridge(), "type", "bridge"},
        {"addr", "add", HostIp() + "/24", "dev", Bridge()},
        {"link", "set", Bridge(), "up"}};
    for (int i = 0; i < members_; ++i) {
      std::string h = prefix_ + "h" + std::to_string(i), p = prefix_ + "p" + std::to_string(i);
      steps.push_back({"netns", "add", Ns(i)});
      steps.push_back({"link", "add", h, "type", "veth", "peer", "name", p});
      steps.push_back({"link", "set", p, "netns", Ns(i)});
      steps.push_back({"link", "set", h, "master", Bridge()});
      steps.push_back({"link", "set", h, "up"});
      steps.push_back({"-n", Ns(i), "addr", "add", MemberIp(i) + "/24", "dev", p});
      steps.push_back({"-n", Ns(i), "link", "set", p, "up"});
      steps.push_back({"-n", Ns(i), "link", "set", "lo", "up"});
    }
    for (const auto& s : steps) {
      RunResult r = Ip(s);
      if (r.exit_code != 0) return Status::IOError("ip " + s[0] + " " + s[1] + " failed:", r.err);
    }
    return Status::OK();
  }
  // Cuts / restores the member's link (the host side of its veth pair).
  Status SetLink(int i, bool up) {
    RunResult r = Ip({"link", "set", prefix_ + "h" + std::to_string(i), up ? "up" : "down"});
    return r.exit_code == 0 ? Status::OK() : Status::IOError("ip link set failed:", r.err);
  }

  std::string Ns(int i) const { return prefix_ + "n" + std::to_string(i); }
  std::string Bridge() const { return prefix_ + "b"; }
  std::string HostIp() const { return subnet_ + "1"; }
  std::string MemberIp(int i) const { return subnet_ + std::to_string(10 + i); }

 private:
  RunResult Ip(std::vector<std::string> args) {
    args.insert(args.begin(), kIp);
    return RunProgram(args);
  }
  int members_;
  std::string prefix_, subnet_;
};

std::string WhyNoNamespaces() {
  if (geteuid() != 0) return "needs root to create network namespaces";
  if (access(kIp, X_OK) != 0) return std::string("needs ") + kIp + " (iproute2)";
  return "";
}

TEST(PartitionTest, GroupConvergesAfterALinkIsCutAndRestored) {
  if (std::string why = WhyNoNamespaces(); !why.empty()) {
    std::cout << "PartitionTest not run: " << why << std::endl;
    return;
  }
  constexpr int kMembers = 3;
  Network net(kMembers);
  Status made = net.Create();
  ASSERT_TRUE(made.ok()) << made.ToString();

  TempDir tmp;
  const std::string secret = "partition-test-secret";
  Daemon tracker("depot-trackerd", tmp.path() + "/tracker", "tracker");
  tracker.set_host(net.HostIp());
  tracker.set_config("bind_addr = " + net.HostIp() + "\nport = 0\nmetrics_port = 0\nbase_path = " +
                     tmp.path() + "/tracker\nlog_file = " + tmp.path() +
                     "/tracker/tracker.log\nlog_level = debug\ncluster_secret = " + secret +
                     "\nstorage_timeout = 3\n");
  ASSERT_TRUE(tracker.Start().ok());
  std::string tracker_addr = net.HostIp() + ":" + std::to_string(tracker.port());

  std::vector<std::unique_ptr<Daemon>> storages;
  std::vector<Daemon*> members;
  for (int i = 0; i < kMembers; ++i) {
    std::string base = tmp.path() + "/storage-" + std::to_string(i + 1);
    auto d = std::make_unique<Daemon>("depot-storaged", base, "storage");
    d->set_host(net.MemberIp(i));
    d->set_wrapper({kIp, "netns", "exec", net.Ns(i)});
    auto conf = [&, base](int port) {
      return "group_name = group1\nbind_addr = " + net.MemberIp(i) + "\nadvertise_address = " +
             net.MemberIp(i) + "\nport = " + std::to_string(port) +
             "\nmetrics_port = 0\nbase_path = " + base + "\nlog_file = " + base +
             "/storage.log\nlog_level = debug\ncluster_secret = " + secret +
             "\nheartbeat_interval = 1\nnetwork_timeout = 5\nreserved_space = 64M\n"
             "tracker_server = " + tracker_addr + "\n";
    };
    d->set_config(conf(0));
    Status s = d->Start();
    ASSERT_TRUE(s.ok()) << s.ToString();
    d->set_config(conf(d->port()));
    members.push_back(d.get());
    storages.push_back(std::move(d));
  }
  ClientOptions co;
  co.trackers = {tracker_addr};
  co.connect_timeout_ms = 1000;
  co.network_timeout_ms = 3000;
  auto client = Client::Create(co);
  ASSERT_TRUE(client.ok());
  auto all_active = [&] {
    auto st = (*client)->ClusterStatus();
    if (!st.ok() || st->empty()) return false;
    int active = 0;
    for (const auto& m : (*st)[0].members) active += m.state_name == "ACTIVE" ? 1 : 0;
    return active == kMembers;
  };
  ASSERT_TRUE(WaitFor(all_active, 20000));

  Expected want;
  std::vector<std::string> ids;
  auto upload = [&](int n, uint64_t seed) {
    int ok = 0;
    for (int i = 0; i < n; ++i) {
      std::string data = PatternBytes(1000 + (seed + static_cast<uint64_t>(i)) * 131 % 70000,
                                      seed + static_cast<uint64_t>(i));
      auto id = (*client)->UploadBuffer(data, {});
      if (!id.ok()) continue;  // routed to the cut member before the tracker noticed
      want.live[*id] = data;
      ids.push_back(*id);
      ++ok;
    }
    return ok;
  };
  ASSERT_EQ(upload(60, 1), 60);
  ASSERT_EQ(WaitConverged(members, want, 30000), "");

  // Cut member 3 off. The tracker takes it out of service; the others go on.
  ASSERT_TRUE(net.SetLink(2, false).ok());
  ASSERT_TRUE(WaitFor(
      [&] {
        auto st = (*client)->ClusterStatus();
        if (!st.ok()) return false;
        for (const auto& m : (*st)[0].members) {
          if (m.ip == net.MemberIp(2)) return m.state_name != "ACTIVE";
        }
        return false;
      },
      20000));
  EXPECT_GE(upload(60, 1000), 55);
  // Deletes while it is away, of files it holds.
  for (size_t i = 0; i < 20; ++i) {
    const std::string id = ids[i * 3];
    Status s = (*client)->Delete(id);
    if (!s.ok()) continue;
    want.live.erase(id);
    want.deleted.insert(id);
  }
  EXPECT_GE(want.deleted.size(), 15u);
  // The cut member cannot be reached meanwhile.
  auto unreachable = DirectDownload(net.MemberIp(2), members[2]->port(), ids[1]);
  EXPECT_FALSE(unreachable.ok);

  ASSERT_TRUE(net.SetLink(2, true).ok());
  ASSERT_TRUE(WaitFor(all_active, 30000));
  EXPECT_GE(upload(30, 5000), 30);
  EXPECT_EQ(WaitConverged(members, want, 60000), "");
  for (auto* d : members) EXPECT_TRUE(d->Running());
  if (::testing::Test::HasFailure()) {
    for (auto* d : members) std::cerr << d->LogTail(30) << "\n";
    std::cerr << tracker.LogTail(30) << "\n";
  }
}

}  // namespace
}  // namespace depot::testing
