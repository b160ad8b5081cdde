// ClusterMap: the tracker's view of the cluster: groups, their storage members, each member's
// state (FastDFS status values), capacity and counters; and the store/fetch choices made from it.
// Domain code: no sockets, no disk. Thread-safe (one mutex); every method takes `now` (unix
// seconds) so tests drive time.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/proto/internal.h"
#include "common/proto/protocol.h"
#include "common/proto/stat_records.h"

namespace depot::tracker {

using proto::HeartbeatInfo;
using proto::JoinInfo;
using proto::StorePathSpace;

struct Member {
  std::string id;  // "ip:port"
  JoinInfo info;
  proto::StorageState state = proto::StorageState::kOffline;
  HeartbeatInfo hb;
  int64_t last_heartbeat = 0;
  uint64_t path_rr = 0;
  uint64_t join_seq = 0;
  bool joined = false;  // has joined since this tracker started (not merely restored)
  bool Writable() const;
  int64_t TotalMb() const;
  int64_t FreeMb() const;
};

struct Target {
  std::string group;
  std::string ip;
  int port = 0;
  int store_path = 0;
};

struct Policies {
  std::string store_lookup = "round_robin";
  std::string store_group;
  std::string store_server = "round_robin";
  std::string store_path = "round_robin";
  int storage_timeout = 30;
};

class ClusterMap {
 public:
  explicit ClusterMap(Policies policies) : policies_(std::move(policies)) {}

  // The tracker started at `now`: for storage_timeout seconds, a file's source that has not
  // joined yet is taken to be reconnecting, not down (see PickFetch).
  void Started(int64_t now);

  // Adds a member known from persisted state (OFFLINE until it heartbeats).
  void Restore(const JoinInfo& info);
  // A storage joins (or re-joins). Returns its id; `join_seq` (optional) receives the join's
  // sequence number for ConnectionLost. InvalidArgument on a bad group.
  Result<std::string> Join(const JoinInfo& info, int64_t now, uint64_t* join_seq = nullptr);
  // A heartbeat from a joined member. NotFound when the id is unknown (it must join again).
  Status Heartbeat(const std::string& id, const HeartbeatInfo& hb, int64_t now);
  // The connection that joined as `id` with `join_seq` closed: the storage is gone (or
  // reconnecting). Ignored when the member has joined again since.
  void ConnectionLost(const std::string& id, uint64_t join_seq);
  // Marks members OFFLINE whose last heartbeat is older than storage_timeout.
  void ExpireStale(int64_t now);

  // Where to upload: in `group` when given, else by store_lookup. NotFound when the group is
  // unknown; ResourceExhausted (ENOSPC) when no member can take a file.
  Result<Target> PickStore(const std::optional<std::string>& group);
  // Every writable member of the chosen group (query store ALL).
  Result<std::vector<Target>> PickStoreAll(const std::optional<std::string>& group);
  // Where to read a file of `group` whose ID says it was created at `create_time` on the member
  // at `source_ip`: only ACTIVE members that hold it - the source, and members whose sync
  // position (reported by the source) covers `create_time`. When the source is not ACTIVE (or
  // unknown) nothing is known for sure and every ACTIVE member is offered (FastDFS's fallback).
  // One target rotates over the holders; all lists the source first. Within the start-up grace
  // (Started, `now`), a source that has not joined this tracker yet gives NotFound instead of
  // the fallback: the client asks another tracker, which knows where the file is.
  Result<std::vector<Target>> PickFetch(const std::string& group, uint32_t source_ip, bool all,
                                        uint32_t create_time = 0, int64_t now = 0);
  // Where to change a file (delete, metadata): its source when ACTIVE, else a member holding it.
  Result<Target> PickUpdate(const std::string& group, uint32_t source_ip,
                            uint32_t create_time = 0, int64_t now = 0);

  Result<proto::GroupStat> GroupStat(const std::string& group);
  std::vector<proto::GroupStat> AllGroupStats();
  Result<std::vector<proto::StorageStat>> StorageStats(const std::string& group,
                                                       const std::string& only_id);
  // Active member ids of a group (for the storages' view of their peers).
  std::vector<Member> Members(const std::string& group);

 private:
  using Group = std::map<std::string, Member>;  // by id
  proto::GroupStat GroupStatLocked(const std::string& name, const Group& g);
  Result<std::string> ChooseGroupLocked();
  Member* ChooseMemberLocked(Group& g);
  int ChoosePathLocked(Member& m);

  Policies policies_;
  std::mutex mu_;
  std::map<std::string, Group> groups_;  // GUARDED_BY(mu_)
  uint64_t group_rr_ = 0;                // GUARDED_BY(mu_)
  uint64_t join_seq_ = 0;                // GUARDED_BY(mu_)
  int64_t grace_until_ = 0;              // GUARDED_BY(mu_)
  std::map<std::string, uint64_t> member_rr_;  // GUARDED_BY(mu_)
};

std::string MemberId(const std::string& ip, int port);

}  // namespace depot::tracker
