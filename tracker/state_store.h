// StateStore: what the tracker must not forget across restarts, in LevelDB
// (base_path/data/tracker.db). Key schema (doc/tracker-state.md):
//   "member/<group>/<id>" -> JSON of the storage's JoinInfo (common/proto/internal.h)
// Members restored at start are OFFLINE until they heartbeat. Thread-safe (LevelDB is).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/proto/internal.h"

namespace leveldb {
class DB;
}

namespace depot::tracker {

class StateStore {
 public:
  static Result<std::unique_ptr<StateStore>> Open(const std::string& dir);
  ~StateStore();

  Status PutMember(const proto::JoinInfo& info);
  Result<std::vector<proto::JoinInfo>> LoadMembers();

 private:
  explicit StateStore(leveldb::DB* db) : db_(db) {}
  leveldb::DB* db_;  // owned
};

}  // namespace depot::tracker
