// Replicator: a storage server's side of group replication (doc/replication.md).
//
// Source side: one pusher thread per peer of the group sends this server's own binlog records to
// that peer, in order, over an authenticated connection (SYNC_HELLO, then SYNC_RECORD frames with
// a window of answers outstanding, and SYNC_FLUSH to make a batch durable on the peer). The peer
// says in its hello how far it has applied each origin, so a restart resumes exactly; the pusher
// also keeps a hint of its position in the binlog (`sync/out/<peer>` in the state LevelDB).
//
// Receiver side: records are applied in the order they arrive (handlers/sync.cc) and the last
// applied number per origin is kept (`sync/applied/<origin>`, persisted on each flush).
//
// Catch-up: a new member (no binlog, no files) is WAIT_SYNC; it asks one ACTIVE peer for a dump of
// that peer's whole binlog (SYNC_DUMP_REQUEST), is SYNCING while it arrives, and ACTIVE after
// SYNC_DUMP_DONE. Until then it refuses ordinary pushes (EBUSY) and the trackers offer it for
// neither reads nor writes.
//
// Quorum: with replication = sync, AwaitQuorum() completes an upload once write_quorum - 1 peers
// hold its record durably (their flush covered it).
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include "common/proto/internal.h"
#include "common/proto/sync.h"
#include "storage/binlog.h"

namespace depot::storage {

class StorageServer;
class PeerPusher;

enum class ReplState { kWaitSync, kSyncing, kActive };
const char* ReplStateName(ReplState s);

class Replicator {
 public:
  explicit Replicator(StorageServer* server);
  ~Replicator();

  // Opens the binlog under base_path/binlog and loads the applied positions.
  Status Open();
  // Starts the coordinator thread (catch-up, pushers, quorum deadlines).
  void Start();
  void Stop();

  Binlog& binlog() { return *binlog_; }
  ReplState state() const { return state_.load(); }

  // --- source side ---
  // The group's members as a tracker sees them (heartbeat reply) and this server's id.
  void UpdatePeers(const std::string& tracker, const std::string& self_id,
                   const std::vector<proto::PeerInfo>& peers);
  void FillHeartbeat(proto::HeartbeatInfo* hb);
  // The HTTP port (its advertised one: nginx or storaged) of the group member serving the binary
  // protocol on ip:port, as the trackers list it; 0 when unknown or not a member.
  int PeerHttpPort(const std::string& ip, int port) const;
  // replication = sync: OK when the upload may start (enough live peers), else Unavailable.
  Status CheckQuorumPossible();
  // Calls done(OK) once write_quorum - 1 peers hold binlog record `seq` durably; done(error) when
  // that cannot happen in time. done runs on a pusher or the coordinator thread.
  void AwaitQuorum(uint64_t seq, std::function<void(Status)> done);
  bool sync_mode() const;

  // --- receiver side (handlers/sync.cc) ---
  // Answers a hello; registers a dump connection (`conn_key`) when accepted.
  proto::SyncHelloReply Hello(const proto::SyncHello& hello, const void* conn_key);
  void ConnectionClosed(const void* conn_key);
  // Whether records from this connection may be applied now.
  bool Accepting(const void* conn_key);
  uint64_t Applied(uint64_t origin);
  // Records that (origin, oseq) has been applied (in memory; persisted by Flush()).
  void MarkApplied(uint64_t origin, uint64_t oseq);
  // Makes everything applied durable (when durable_writes) and persists the positions.
  Status Flush();
  // The dump on `conn_key` is complete: this member has caught up.
  Status DumpDone(const void* conn_key);
  // A peer asks for a dump of this server's binlog (it is catching up).
  Status StartDump(const std::string& to_id);

  // Metrics hooks.
  void CountApplied();
  void CountPushed(const std::string& peer);
  void CountSyncError(const std::string& peer);

 private:
  friend class PeerPusher;
  struct Waiter {
    uint64_t seq;
    int64_t deadline_ns;
    std::function<void(Status)> done;
  };
  struct PeerAddr {
    std::string id, ip;
    int port = 0;
    int state = 0;
    int http_port = 0;
  };
  void Coordinate();
  Status ReannounceRecentFiles(uint32_t last_good);
  void OnDurable();  // a pusher's durable position moved: complete waiters
  int LivePeersLocked() const;
  bool AllPeersNewLocked(int64_t now) const;
  prometheus::Gauge* PeerGauge(prometheus::Family<prometheus::Gauge>* f, const std::string& peer);

  StorageServer* server_;
  std::unique_ptr<Binlog> binlog_;
  std::atomic<ReplState> state_{ReplState::kWaitSync};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;                                       // GUARDED_BY(mu_)
  std::string self_id_;                                     // GUARDED_BY(mu_)
  struct TrackerView {
    int64_t at_ns = 0;
    std::vector<PeerAddr> peers;
  };
  std::map<std::string, TrackerView> views_;                // GUARDED_BY(mu_): by tracker
  std::vector<PeerAddr> peers_;                             // GUARDED_BY(mu_)
  // When each peer was last listed by a tracker: trackers may briefly disagree (one restarted),
  // so a pusher is retired only after its peer has been unlisted for a while.
  std::map<std::string, int64_t> last_listed_ns_;           // GUARDED_BY(mu_)
  std::map<std::string, std::unique_ptr<PeerPusher>> pushers_;  // GUARDED_BY(mu_)
  std::map<std::string, std::unique_ptr<PeerPusher>> dumps_;    // GUARDED_BY(mu_)
  std::vector<Waiter> waiters_;                             // GUARDED_BY(mu_)
  int64_t dump_requested_ns_ = 0;                           // GUARDED_BY(mu_)
  std::string dump_source_;                                 // GUARDED_BY(mu_)
  std::thread coordinator_;

  std::mutex applied_mu_;
  std::map<uint64_t, uint64_t> applied_;  // GUARDED_BY(applied_mu_)
  std::set<uint64_t> dirty_;              // GUARDED_BY(applied_mu_)
  std::set<const void*> dump_conns_;      // GUARDED_BY(applied_mu_)
  std::atomic<int64_t> last_dump_activity_ns_{0};

  prometheus::Family<prometheus::Gauge>* lag_records_ = nullptr;
  prometheus::Family<prometheus::Gauge>* lag_seconds_ = nullptr;
  prometheus::Family<prometheus::Counter>* pushed_ = nullptr;
  prometheus::Family<prometheus::Counter>* errors_ = nullptr;
  prometheus::Counter* applied_total_ = nullptr;
  prometheus::Gauge* binlog_seq_ = nullptr;
  prometheus::Gauge* repl_state_ = nullptr;
};

}  // namespace depot::storage
