#include "tracker/cluster_map.h"

#include <algorithm>

#include "common/proto/file_id.h"

namespace depot::tracker {

using proto::StorageState;

std::string MemberId(const std::string& ip, int port) { return ip + ":" + std::to_string(port); }

bool Member::Writable() const {
  if (state != StorageState::kActive) return false;
  for (const auto& p : hb.paths) {
    if (p.free_mb > hb.reserved_mb) return true;
  }
  return false;
}

int64_t Member::TotalMb() const {
  int64_t t = 0;
  for (const auto& p : hb.paths) t += p.total_mb;
  return t;
}

int64_t Member::FreeMb() const {
  int64_t t = 0;
  for (const auto& p : hb.paths) t += p.free_mb;
  return t;
}

void ClusterMap::Restore(const JoinInfo& info) {
  std::lock_guard<std::mutex> l(mu_);
  Member& m = groups_[info.group][MemberId(info.ip, info.port)];
  m.id = MemberId(info.ip, info.port);
  m.info = info;
  m.state = StorageState::kOffline;
}

void ClusterMap::Started(int64_t now) {
  std::lock_guard<std::mutex> l(mu_);
  grace_until_ = now + policies_.storage_timeout;
}

Result<std::string> ClusterMap::Join(const JoinInfo& info, int64_t now, uint64_t* join_seq) {
  DEPOT_RETURN_IF_ERROR(proto::ValidateGroupName(info.group));
  if (info.port <= 0 || info.port > 65535) return Status::InvalidArgument("bad storage port");
  if (info.store_path_count < 1 || info.store_path_count > 256) {
    return Status::InvalidArgument("bad store path count");
  }
  std::lock_guard<std::mutex> l(mu_);
  std::string id = MemberId(info.ip, info.port);
  // A server that changed its group leaves its old one: Heartbeat() finds members by id alone,
  // and a stale entry in another group would take its heartbeats.
  for (auto it = groups_.begin(); it != groups_.end();) {
    if (it->first != info.group && it->second.erase(id) > 0 && it->second.empty()) {
      it = groups_.erase(it);
    } else {
      ++it;
    }
  }
  Member& m = groups_[info.group][id];
  m.id = id;
  m.info = info;
  m.state = StorageState::kOnline;
  m.joined = true;
  m.last_heartbeat = now;
  m.join_seq = ++join_seq_;
  if (join_seq != nullptr) *join_seq = m.join_seq;
  return id;
}

Status ClusterMap::Heartbeat(const std::string& id, const HeartbeatInfo& hb, int64_t now) {
  std::lock_guard<std::mutex> l(mu_);
  for (auto& [name, g] : groups_) {
    auto it = g.find(id);
    if (it == g.end()) continue;
    Member& m = it->second;
    if (m.state == StorageState::kOffline) {
      return Status::NotFound("storage went offline; join again:", id);
    }
    m.hb = hb;
    m.last_heartbeat = now;
    // A member still catching up is neither read from nor written to.
    if (hb.repl_state == "wait_sync") {
      m.state = StorageState::kWaitSync;
    } else if (hb.repl_state == "syncing") {
      m.state = StorageState::kSyncing;
    } else {
      m.state = StorageState::kActive;
    }
    return Status::OK();
  }
  return Status::NotFound("unknown storage; join first:", id);
}

void ClusterMap::ConnectionLost(const std::string& id, uint64_t join_seq) {
  std::lock_guard<std::mutex> l(mu_);
  for (auto& [name, g] : groups_) {
    auto it = g.find(id);
    if (it != g.end() && it->second.join_seq == join_seq) {
      it->second.state = StorageState::kOffline;
    }
  }
}

void ClusterMap::ExpireStale(int64_t now) {
  std::lock_guard<std::mutex> l(mu_);
  for (auto& [name, g] : groups_) {
    for (auto& [id, m] : g) {
      if (m.state != StorageState::kOffline && now - m.last_heartbeat > policies_.storage_timeout) {
        m.state = StorageState::kOffline;
      }
    }
  }
}

Result<std::string> ClusterMap::ChooseGroupLocked() {
  if (policies_.store_lookup == "specified") {
    auto it = groups_.find(policies_.store_group);
    if (it == groups_.end()) return Status::NotFound("store_group has no storage:", policies_.store_group);
    return it->first;
  }
  std::vector<std::pair<std::string, int64_t>> writable;  // group, free MB of its best member
  for (auto& [name, g] : groups_) {
    int64_t best = -1;
    for (auto& [id, m] : g) {
      if (m.Writable()) best = std::max(best, m.FreeMb());
    }
    if (best >= 0) writable.emplace_back(name, best);
  }
  if (writable.empty()) return Status::ResourceExhausted("no group can take an upload");
  if (policies_.store_lookup == "most_free") {
    return std::max_element(writable.begin(), writable.end(),
                            [](auto& a, auto& b) { return a.second < b.second; })
        ->first;
  }
  return writable[group_rr_++ % writable.size()].first;
}

Member* ClusterMap::ChooseMemberLocked(Group& g) {
  std::vector<Member*> w;
  for (auto& [id, m] : g) {
    if (m.Writable()) w.push_back(&m);
  }
  if (w.empty()) return nullptr;
  if (policies_.store_server == "most_free") {
    return *std::max_element(w.begin(), w.end(),
                             [](Member* a, Member* b) { return a->FreeMb() < b->FreeMb(); });
  }
  if (policies_.store_server == "first_by_priority") {
    // FastDFS: the smallest upload_priority value wins.
    return *std::min_element(w.begin(), w.end(), [](Member* a, Member* b) {
      return a->info.upload_priority < b->info.upload_priority;
    });
  }
  uint64_t& rr = member_rr_[w.front()->info.group];
  return w[rr++ % w.size()];
}

int ClusterMap::ChoosePathLocked(Member& m) {
  const auto& paths = m.hb.paths;
  std::vector<int> ok;
  for (size_t i = 0; i < paths.size(); ++i) {
    if (paths[i].free_mb > m.hb.reserved_mb) ok.push_back(static_cast<int>(i));
  }
  if (ok.empty()) return 0;
  if (policies_.store_path == "most_free") {
    return *std::max_element(ok.begin(), ok.end(),
                             [&](int a, int b) { return paths[a].free_mb < paths[b].free_mb; });
  }
  return ok[m.path_rr++ % ok.size()];
}

Result<Target> ClusterMap::PickStore(const std::optional<std::string>& group) {
  std::lock_guard<std::mutex> l(mu_);
  std::string name;
  if (group) {
    name = *group;
  } else {
    DEPOT_ASSIGN_OR_RETURN(name, ChooseGroupLocked());
  }
  auto it = groups_.find(name);
  if (it == groups_.end()) return Status::NotFound("no such group:", name);
  Member* m = ChooseMemberLocked(it->second);
  if (m == nullptr) return Status::ResourceExhausted("no member of the group can take a file:", name);
  return Target{name, m->info.ip, m->info.port, ChoosePathLocked(*m)};
}

Result<std::vector<Target>> ClusterMap::PickStoreAll(const std::optional<std::string>& group) {
  std::lock_guard<std::mutex> l(mu_);
  std::string name;
  if (group) {
    name = *group;
  } else {
    DEPOT_ASSIGN_OR_RETURN(name, ChooseGroupLocked());
  }
  auto it = groups_.find(name);
  if (it == groups_.end()) return Status::NotFound("no such group:", name);
  std::vector<Target> out;
  for (auto& [id, m] : it->second) {
    if (m.Writable()) out.push_back(Target{name, m.info.ip, m.info.port, ChoosePathLocked(m)});
  }
  if (out.empty()) return Status::ResourceExhausted("no member of the group can take a file:", name);
  return out;
}

Result<std::vector<Target>> ClusterMap::PickFetch(const std::string& group, uint32_t source_ip,
                                                  bool all, uint32_t create_time, int64_t now) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = groups_.find(group);
  if (it == groups_.end()) return Status::NotFound("no such group:", group);
  std::string src = proto::IpToString(source_ip);
  std::vector<const Member*> sources;
  bool source_active = false;
  bool source_joined = false;
  bool source_online = false;  // joined, first heartbeat (and so its state) not in yet
  for (auto& [id, m] : it->second) {
    if (m.info.ip == src) {
      sources.push_back(&m);
      source_active = source_active || m.state == StorageState::kActive;
      source_joined = source_joined || m.joined;
      source_online = source_online || m.state == StorageState::kOnline;
    }
  }
  // A source that has just joined is about to report its state (its first heartbeat follows the
  // join at once): it is reconnecting, not down, and the other members may lack its latest
  // files. Found under load by TrackerKillAndRestartUnderTraffic: between the join and that
  // heartbeat every ACTIVE member was offered.
  if (!source_active && source_online) {
    return Status::NotFound("the file's source has just joined; its state is not known yet:", src);
  }
  // Right after this tracker (re)started, a source that has not joined it yet is most likely
  // reconnecting, not down: offering the other members would send readers to members that may
  // lack its latest files. "No storage" sends the client to another tracker instead.
  if (!source_active && !source_joined && now > 0 && now < grace_until_) {
    return Status::NotFound("the file's source has not joined this tracker yet:", src);
  }
  auto holds = [&](const Member& m) {
    if (m.info.ip == src) return true;
    if (!source_active) return true;  // nothing reliable is known: offer every ACTIVE member
    for (const Member* x : sources) {
      for (const auto& rep : x->hb.sync) {
        if (rep.peer == m.id && rep.synced_until >= static_cast<int64_t>(create_time)) return true;
      }
    }
    return false;
  };
  std::vector<Target> source, others;
  for (auto& [id, m] : it->second) {
    if (m.state != StorageState::kActive || !holds(m)) continue;
    Target t{group, m.info.ip, m.info.port, 0};
    (m.info.ip == src ? source : others).push_back(t);
  }
  std::vector<Target> out = source;
  out.insert(out.end(), others.begin(), others.end());
  if (out.empty()) return Status::NotFound("no active storage in group:", group);
  if (!all) {
    uint64_t& rr = member_rr_["fetch/" + group];
    Target one = out[rr++ % out.size()];
    out.assign(1, one);
  }
  return out;
}

Result<Target> ClusterMap::PickUpdate(const std::string& group, uint32_t source_ip,
                                      uint32_t create_time, int64_t now) {
  DEPOT_ASSIGN_OR_RETURN(auto v, PickFetch(group, source_ip, true, create_time, now));
  return v.front();  // the source when it is ACTIVE
}

proto::GroupStat ClusterMap::GroupStatLocked(const std::string& name, const Group& g) {
  proto::GroupStat s;
  s.group_name = name;
  s.storage_count = static_cast<int64_t>(g.size());
  bool first = true;
  int64_t idx = 0;
  for (const auto& [id, m] : g) {
    if (m.state == StorageState::kActive) {
      s.readable_count++;
      // Members of a group mirror each other: the group holds what its smallest member holds.
      if (first || m.TotalMb() < s.total_mb) s.total_mb = m.TotalMb();
      if (first || m.FreeMb() < s.free_mb) s.free_mb = m.FreeMb();
      s.reserved_mb = std::max(s.reserved_mb, m.hb.reserved_mb);
      first = false;
    }
    if (m.Writable()) s.writable_count++;
    if (s.storage_port == 0) s.storage_port = m.info.port;
    s.store_path_count = std::max<int64_t>(s.store_path_count, m.info.store_path_count);
    s.subdir_count_per_path = m.info.subdir_count;
    ++idx;
  }
  auto rr = member_rr_.find(name);
  if (rr != member_rr_.end() && s.writable_count > 0) {
    s.current_write_server = static_cast<int64_t>(rr->second % s.writable_count);
  }
  s.current_trunk_file_id = -1;
  return s;
}

Result<proto::GroupStat> ClusterMap::GroupStat(const std::string& group) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = groups_.find(group);
  if (it == groups_.end()) return Status::NotFound("no such group:", group);
  return GroupStatLocked(it->first, it->second);
}

std::vector<proto::GroupStat> ClusterMap::AllGroupStats() {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<proto::GroupStat> out;
  for (const auto& [name, g] : groups_) out.push_back(GroupStatLocked(name, g));
  return out;
}

Result<std::vector<proto::StorageStat>> ClusterMap::StorageStats(const std::string& group,
                                                                 const std::string& only_id) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = groups_.find(group);
  if (it == groups_.end()) return Status::NotFound("no such group:", group);
  std::vector<proto::StorageStat> out;
  for (const auto& [id, m] : it->second) {
    if (!only_id.empty() && id != only_id && m.info.ip != only_id) continue;
    proto::StorageStat s;
    s.status = static_cast<uint8_t>(m.state);
    s.rw_mode = m.Writable() ? 6 : (m.state == StorageState::kActive ? 4 : 0);
    s.id = id.size() <= 16 ? id : m.info.ip;
    s.ip = m.info.ip;
    s.version = m.info.version;
    s.join_time = m.info.join_time;
    s.up_time = m.info.up_time;
    s.total_mb = m.TotalMb();
    s.free_mb = m.FreeMb();
    s.reserved_mb = m.hb.reserved_mb;
    s.upload_priority = m.info.upload_priority;
    s.store_path_count = m.info.store_path_count;
    s.subdir_count_per_path = m.info.subdir_count;
    s.current_write_path = m.hb.current_write_path;
    s.storage_port = m.info.port;
    s.conn_alloc = m.hb.conn_alloc;
    s.conn_current = m.hb.conn_current;
    s.conn_max = m.hb.conn_max;
    std::copy(std::begin(m.hb.counters), std::end(m.hb.counters), std::begin(s.counters));
    s.last_source_update = m.hb.last_source_update;
    s.last_heartbeat_time = m.last_heartbeat;
    out.push_back(std::move(s));
  }
  if (!only_id.empty() && out.empty()) return Status::NotFound("no such storage:", only_id);
  return out;
}

std::vector<Member> ClusterMap::Members(const std::string& group) {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<Member> out;
  auto it = groups_.find(group);
  if (it == groups_.end()) return out;
  for (const auto& [id, m] : it->second) out.push_back(m);
  return out;
}

}  // namespace depot::tracker
