// TrunkStore: small files packed into large trunk files on one store path (doc/trunk.md).
//
// A trunk file holds slots of one size (a size class); slot k starts at k * slot size. Each slot
// begins with a 48-byte header (magic, state, the file's 20 name bytes, its slot size and name
// suffix, a CRC32 of the header) followed by the content. A file ID of a trunk file names the
// slot (trunk id, offset, slot size) after its 20 name bytes, as FastDFS's trunk IDs do.
//
// Trunk files live in `<store path>/trunk/<source IPv4, 8 hex>/<trunk id, 8 hex>.<slot size>`:
// every member allocates slots only in the trunk files under its own address, and holds copies
// of its peers' trunk files (replication writes the same bytes at the same offsets). One
// allocator per trunk file, so two members never hand out the same slot.
//
// Rules that keep a file ID from ever reading another file's bytes:
//   - a slot answers only for the file its header (and the index) names;
//   - a freed slot is handed out again only when no reader has it open (pins), and only to a
//     file created later than the slot's previous file (so a replica can tell old from new);
//   - a replica write, a free and the index change of a slot happen under one lock.
// Crash safety: a slot is written with one pwrite of header and content, never touching another
// slot; a file is acknowledged only after its slot is written (and synced, with durable writes).
// A clean stop leaves a marker; after an unclean one every slot is checked against its CRC32 the
// first time it is read, so a write cut by the crash (never acknowledged) is freed, not served.
//
// Thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
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
  ~TrunkStore();  // a clean stop: syncs the trunk files and leaves the clean marker

  // Scans the trunk files and builds the index of live slots.
  Status Init();
  // Stops the commit thread (pending commits finish first).
  void Stop();

  // True when a file of `size` bytes goes into a trunk.
  bool Fits(uint64_t size) const { return size <= options_.slot_max_size; }

  // Allocates a slot for `size` bytes in a trunk file of `owner_ip` (this member's address) for
  // a file created at `ctime`; creates a trunk file when no slot of the size is free.
  // Unavailable when this member's address changed since the first allocation (the upload is
  // then stored as a file of its own).
  Result<proto::TrunkInfo> Allocate(uint32_t owner_ip, uint64_t size, uint32_t ctime);
  // Gives back a slot that was not written (an upload that failed before its write).
  void Release(uint32_t owner_ip, const proto::TrunkInfo& slot);
  // Writes an allocated slot: header and content in one write, then indexes it. `id` is the
  // file's ID (InTrunk()), `data` its content.
  Status Write(const proto::FileId& id, std::string_view data);
  // Durable writes: runs `named` (the binlog record) and then `done` once the slot's trunk file
  // and the record are on disk; concurrent commits share one sync.
  void Commit(const proto::FileId& id, std::function<Status()> named,
              std::function<void(Status)> done);
  // A replicated or repaired file: written unless its slot holds a newer file already (a later
  // file reuses a slot only after the earlier one was deleted) or, in this member's own trunks,
  // an upload holds the slot. Creates the peer's trunk file when needed.
  Status WriteReplica(const proto::FileId& id, std::string_view data);

  // Where a file's content is: a descriptor of its own, with its own file offset (the caller
  // closes it), the offset and size of the content, and a pin that keeps the slot from being
  // reused while it is held (keep it until the bytes are sent). NotFound when the slot does not
  // hold this file (or its content failed its first check after an unclean stop).
  struct Located {
    int fd = -1;
    uint64_t offset = 0;
    uint64_t size = 0;
    std::shared_ptr<void> pin;
  };
  Result<Located> Locate(const proto::FileId& id);
  // True when the file's slot holds it (the index only: no descriptor, no content check).
  bool Holds(const proto::FileId& id);
  // Marks the file's slot free (when it holds this file); the owner reuses it later. NotFound
  // when the slot does not hold the file.
  Status Free(const proto::FileId& id);

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
    std::string suffix;  // the name's digits and extension (at most 12 characters)
  };
  static std::string EncodeHeader(const Header& h);
  static Result<Header> DecodeHeader(std::string_view bytes);

 private:
  struct LiveSlot {
    proto::FileNameFields fields;
    std::string suffix;
    bool verified = true;  // false after an unclean stop, until its CRC32 is checked
    // Failed that check with durable writes off: it may be an acknowledged file whose copy a
    // peer still holds, so the slot is kept for a repair, not reused. Reads answer not found.
    bool bad = false;
  };
  struct Trunk {
    uint32_t ip = 0;
    uint32_t id = 0;
    uint32_t alloc = 0;
    int fd = -1;
    uint64_t size = 0;                  // file size on disk
    std::map<uint32_t, LiveSlot> live;  // slot offset -> the file in it
    // Free slots that held a file: offset -> the earliest creation time of their next file.
    std::map<uint32_t, uint32_t> next_ctime;
  };
  struct FreeSlot {
    uint32_t trunk_id;
    uint32_t offset;
    uint32_t min_ctime;  // a file for it must be created at or after this (previous + 1)
  };
  struct PendingCommit {
    int fd;
    std::function<Status()> named;
    std::function<void(Status)> done;
  };
  // Open readers per slot, shared with the pins (which may outlive a moment of the store).
  using PinKey = std::tuple<uint32_t, uint32_t, uint32_t>;  // ip, trunk id, offset
  struct Pins {
    std::mutex mu;
    std::map<PinKey, int> count;  // GUARDED_BY(mu): open readers
  };

  std::string TrunkPath(uint32_t ip, uint32_t id, uint32_t alloc) const;
  static uint64_t Key(uint32_t ip, uint32_t id) { return (uint64_t{ip} << 32) | id; }
  static uint64_t SlotKey(uint32_t id, uint32_t offset) { return (uint64_t{id} << 32) | offset; }
  // mu_ held.
  Result<Trunk*> OpenTrunk(uint32_t ip, uint32_t id, uint32_t alloc, bool create);
  Status ScanTrunk(Trunk* t, bool verified);
  void BuildFreeLists(uint32_t owner_ip);
  bool Pinned(uint32_t ip, uint32_t id, uint32_t offset);
  struct PinToken;
  void SetLive(Trunk* t, uint32_t offset, LiveSlot slot);
  // mu_ held: writes a free header over the slot and drops it from the index; the owner's slot
  // goes to freed_ (reused once unpinned).
  using LiveIter = std::map<uint32_t, LiveSlot>::iterator;
  Status FreeLocked(Trunk* t, LiveIter live);
  // mu_ held: the trunk holding exactly this file in its slot (and the slot's entry), or nullptr.
  Trunk* FindLive(const proto::FileId& id, LiveIter* live);
  Status WriteSlot(Trunk* t, const proto::FileId& id, std::string_view data);
  std::string RemoteName(const Trunk& t, uint32_t offset, const LiveSlot& s) const;
  Result<int> CreateTrunkFile(uint32_t owner_ip, uint32_t id, uint32_t alloc, uint64_t* size) const;
  void CommitLoop();
  Stats GetStatsLocked();

  std::string root_;
  Options options_;
  std::vector<uint32_t> classes_;  // slot sizes, ascending
  std::shared_ptr<Pins> pins_ = std::make_shared<Pins>();

  std::mutex mu_;
  std::map<uint64_t, std::unique_ptr<Trunk>> trunks_;  // GUARDED_BY(mu_)
  uint32_t owner_ip_ = 0;  // GUARDED_BY(mu_): the free lists are this address's (0: not built)
  std::map<uint32_t, std::vector<FreeSlot>> free_;  // GUARDED_BY(mu_): slot size -> slots
  std::vector<FreeSlot> freed_;     // GUARDED_BY(mu_): freed, waiting for their readers
  // GUARDED_BY(mu_): slots allocated, not yet written (SlotKey -> the slot's min_ctime).
  std::map<uint64_t, uint32_t> reserved_;
  std::set<uint32_t> creating_ids_;  // GUARDED_BY(mu_): trunk ids being created and zero-filled
  bool initialized_ = false;          // Init succeeded: the clean marker may be written
  uint32_t next_id_ = 1;            // GUARDED_BY(mu_): the next trunk id of the owner
  std::set<uint32_t> creating_;     // GUARDED_BY(mu_): slot sizes whose new trunk is being made
  std::condition_variable created_cv_;
  uint64_t live_files_ = 0;  // GUARDED_BY(mu_)
  uint64_t live_bytes_ = 0;  // GUARDED_BY(mu_)

  std::mutex commit_mu_;
  std::condition_variable commit_cv_;
  std::vector<PendingCommit> commits_;  // GUARDED_BY(commit_mu_)
  bool commit_stop_ = false;            // GUARDED_BY(commit_mu_)
  std::thread commit_thread_;
  std::function<Status()> sync_log_;
};

}  // namespace depot::storage
