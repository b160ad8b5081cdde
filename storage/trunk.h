// TrunkStore: small files packed into large trunk files on one store path (doc/trunk.md).
//
// A trunk file holds slots of one size (a size class); slot k starts at k * slot size. Each slot
// begins with a 48-byte header (magic, state, the file's 20 name bytes, its size and name suffix,
// a CRC32 of the header) followed by the content. A file ID of a trunk file names the slot
// (trunk id, offset, slot size) after its 20 name bytes, as FastDFS's trunk IDs do.
//
// Trunk files live in `<store path>/trunk/<source IPv4, 8 hex>/<trunk id, 8 hex>.<slot size>`:
// every member allocates slots only in the trunk files under its own address, and holds copies
// of its peers' trunk files (replication writes the same bytes at the same offsets). One
// allocator per trunk file, so two members never hand out the same slot.
//
// Crash safety: a slot is written with one pwrite of header and content, never touching another
// slot; a file is acknowledged only after its slot is written (and synced, with durable writes).
// At start-up the headers are scanned: a slot whose header is torn is free; a recent slot whose
// content does not match the CRC32 in its header (a write cut by a crash, never acknowledged) is
// freed; a slot of a file with a tombstone (deleted, the header not yet marked) is freed.
//
// Thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/base/status.h"
#include "common/proto/file_id.h"

namespace depot::storage {

class TrunkStore {
 public:
  static constexpr uint32_t kHeaderSize = 48;

  struct Options {
    int store_path = 0;
    uint64_t trunk_file_size = 64ULL << 20;
    uint32_t slot_min_size = 256;
    uint32_t slot_max_size = 1 << 20;  // largest content stored in a trunk
    bool durable = false;
    // Called with a remote name at start-up: true when the file was deleted (tombstone).
    std::function<bool(const std::string&)> deleted;
  };
  TrunkStore(std::string root, Options options);
  ~TrunkStore();

  // Scans the trunk files and builds the index of live slots.
  Status Init();
  // Stops the commit thread (pending commits fail).
  void Stop();

  // True when a file of `size` bytes goes into a trunk.
  bool Fits(uint64_t size) const { return size <= options_.slot_max_size; }

  // An allocated slot of this member's own trunk files.
  struct Slot {
    proto::TrunkInfo info;
    int fd = -1;  // the trunk file (owned by the store)
  };
  // Allocates a slot for `size` bytes in a trunk file of `owner_ip` (this member's address);
  // creates a trunk file when every slot of the size class is taken.
  Result<Slot> Allocate(uint32_t owner_ip, uint64_t size);
  // Gives back a slot that was not written (an upload that failed before its write).
  void Release(uint32_t owner_ip, const proto::TrunkInfo& slot);
  // Writes the file into its slot (header and content in one write) and indexes it. `id` is
  // the file's ID (InTrunk()); `data` its content.
  Status Write(const proto::FileId& id, std::string_view data);
  // Durable writes: runs `named` (the binlog record) and then `done` once the slot's trunk file
  // is synced; concurrent commits share one fdatasync per trunk file.
  void Commit(const proto::FileId& id, std::function<Status()> named,
              std::function<void(Status)> done);
  // A replicated file: written unless its slot holds a newer file already (a later file reuses a
  // slot only after the earlier one was deleted). Creates the peer's trunk file when needed.
  Status WriteReplica(const proto::FileId& id, std::string_view data);

  // Where a file's content is: a descriptor of its own, with its own file offset (the caller
  // closes it), the offset and size of the content. NotFound when the slot does not hold this
  // file.
  struct Located {
    int fd = -1;
    uint64_t offset = 0;
    uint64_t size = 0;
  };
  Result<Located> Locate(const proto::FileId& id);
  // Marks the file's slot free (when it holds this file); the owner reuses it later. NotFound
  // when the slot does not hold the file.
  Status Free(const proto::FileId& id, uint32_t self_ip);

  // Live trunk files whose directory XX is `dir1`: remote name and size.
  std::vector<std::pair<std::string, uint64_t>> List(int dir1);
  // The remote names of the live trunk files created at or after `since` (unix seconds).
  std::vector<std::string> CreatedSince(uint32_t since);

  struct Stats {
    uint64_t trunk_files = 0;
    uint64_t trunk_bytes = 0;  // sum of the trunk files' sizes
    uint64_t live_files = 0;
    uint64_t live_bytes = 0;   // content bytes of live files
  };
  Stats GetStats();

  // Makes the binlog durable after a group commit's records (durable writes), when the store
  // path's syncfs does not cover it (another filesystem).
  void set_sync_log(std::function<Status()> fn) { sync_log_ = std::move(fn); }

  // The slot size used for `size` bytes of content.
  uint32_t SlotSizeFor(uint64_t size) const;

  // Header codec (exposed for tests and the fuzz target).
  struct Header {
    bool live = false;
    proto::FileNameFields fields;
    uint32_t alloc = 0;
    std::string suffix;  // the name's digits and extension (at most 15 characters)
  };
  static std::string EncodeHeader(const Header& h);
  static Result<Header> DecodeHeader(std::string_view bytes);

 private:
  struct LiveSlot {
    proto::FileNameFields fields;
    std::string suffix;
  };
  struct Trunk {
    uint32_t ip = 0;
    uint32_t id = 0;
    uint32_t alloc = 0;
    int fd = -1;
    uint64_t size = 0;                  // file size on disk
    std::map<uint32_t, LiveSlot> live;  // slot offset -> the file in it
  };
  struct FreeSlot {
    uint32_t trunk_id;
    uint32_t offset;
  };
  struct PendingCommit {
    int fd;
    std::function<Status()> named;
    std::function<void(Status)> done;
  };

  std::string TrunkPath(uint32_t ip, uint32_t id, uint32_t alloc) const;
  static uint64_t Key(uint32_t ip, uint32_t id) { return (uint64_t{ip} << 32) | id; }
  // mu_ held.
  Result<Trunk*> OpenTrunk(uint32_t ip, uint32_t id, uint32_t alloc, bool create);
  Status ScanTrunk(Trunk* t, uint32_t* newest);
  void BuildFreeLists(uint32_t owner_ip);
  // Creates and zero-fills a trunk file of the owner (no lock held); returns its descriptor.
  Result<int> CreateTrunkFile(uint32_t owner_ip, uint32_t id, uint32_t alloc, uint64_t* size) const;
  Status WriteSlot(Trunk* t, const proto::FileId& id, std::string_view data);
  std::string RemoteName(const Trunk& t, uint32_t offset, const LiveSlot& s) const;
  void CommitLoop();
  Stats GetStatsLocked();
  // mu_ held: indexes the file in a slot (replacing what was there).
  void SetLive(Trunk* t, uint32_t offset, LiveSlot slot);

  std::string root_;
  Options options_;
  std::vector<uint32_t> classes_;  // slot sizes, ascending

  std::mutex mu_;
  std::map<uint64_t, std::unique_ptr<Trunk>> trunks_;  // GUARDED_BY(mu_)
  uint32_t owner_ip_ = 0;                              // GUARDED_BY(mu_): free lists built for it
  std::map<uint32_t, std::vector<FreeSlot>> free_;     // GUARDED_BY(mu_): slot size -> slots
  // Slots freed this second: reused from the next second on, so that a reused slot's file is
  // always newer than the one before it (WriteReplica relies on it).
  std::vector<std::pair<uint32_t, FreeSlot>> cooling_;  // GUARDED_BY(mu_): (free time, slot)
  uint32_t next_id_ = 1;  // GUARDED_BY(mu_): the next trunk id of the owner
  std::set<uint32_t> creating_;  // GUARDED_BY(mu_): slot sizes whose new trunk is being created
  uint64_t live_files_ = 0;      // GUARDED_BY(mu_)
  uint64_t live_bytes_ = 0;      // GUARDED_BY(mu_)
  std::condition_variable created_cv_;

  std::mutex commit_mu_;
  std::condition_variable commit_cv_;
  std::vector<PendingCommit> commits_;  // GUARDED_BY(commit_mu_)
  bool commit_stop_ = false;            // GUARDED_BY(commit_mu_)
  std::thread commit_thread_;
  std::function<Status()> sync_log_;
};

}  // namespace depot::storage
