#include "storage/trunk.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "common/base/fs.h"
#include "common/base/hash.h"
#include "common/base/logging.h"
#include "common/proto/protocol.h"

namespace depot::storage {
namespace {

constexpr uint32_t kAlign = 64;

uint32_t RoundUp(uint64_t v) { return static_cast<uint32_t>((v + kAlign - 1) / kAlign * kAlign); }

// The suffix of a trunk file name: what follows the 27 + 16 encoded characters.
std::string_view SuffixOf(const proto::FileId& id) {
  return std::string_view(id.name).substr(proto::kFileNameB64Len + proto::kTrunkInfoB64Len);
}

bool SameFile(const proto::FileNameFields& a, const proto::FileNameFields& b) {
  return a.source_ip == b.source_ip && a.create_time == b.create_time &&
         a.size_word == b.size_word && a.crc32 == b.crc32;
}

Status PwriteAll(int fd, const char* p, size_t n, uint64_t off) {
  while (n > 0) {
    ssize_t w = pwrite(fd, p, n, static_cast<off_t>(off));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return Status::FromErrno(errno, "pwrite trunk");
    p += w;
    n -= static_cast<size_t>(w);
    off += static_cast<uint64_t>(w);
  }
  return Status::OK();
}

}  // namespace

// What Locate hands out: while it lives, its slot counts one more reader.
struct TrunkStore::PinToken {
  PinToken(std::shared_ptr<Pins> p, PinKey k) : pins(std::move(p)), key(k) {
    std::lock_guard<std::mutex> l(pins->mu);
    pins->count[key]++;
  }
  ~PinToken() {
    std::lock_guard<std::mutex> l(pins->mu);
    if (--pins->count[key] <= 0) pins->count.erase(key);
  }
  std::shared_ptr<Pins> pins;
  PinKey key;
};

TrunkStore::TrunkStore(std::string root, Options options)
    : root_(std::move(root)), options_(std::move(options)) {
  uint32_t c = RoundUp(std::max<uint64_t>(options_.slot_min_size, kHeaderSize + 16));
  uint32_t last = RoundUp(uint64_t{options_.slot_max_size} + kHeaderSize);
  // Sizes grow by about 19% (2^(1/4)): at most that much of a slot is left unused.
  while (c < last) {
    classes_.push_back(c);
    c = std::max(c + kAlign, RoundUp(uint64_t{c} * 119 / 100));
  }
  classes_.push_back(last);
  commit_thread_ = std::thread([this] { CommitLoop(); });
}

TrunkStore::~TrunkStore() {
  Stop();
  // A clean stop: the trunk files are synced and the marker says so, so that the next start
  // trusts every slot (after an unclean stop each is checked when first read).
  // Slots never read since an unclean start are still unchecked: no marker then either.
  bool synced = initialized_;  // a failed Init may have left trunks unscanned
  for (auto& [k, t] : trunks_) {
    if (t->fd >= 0 && fdatasync(t->fd) != 0) synced = false;
    for (const auto& [off, s] : t->live) synced = synced && s.verified && !s.bad;
  }
  if (synced && !trunks_.empty()) {
    std::string marker = root_ + "/trunk/clean";
    int fd = open(marker.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
      if (fsync(fd) == 0) (void)FsyncDir(root_ + "/trunk");
      close(fd);
    }
  }
  for (auto& [k, t] : trunks_) {
    if (t->fd >= 0) close(t->fd);
  }
}

void TrunkStore::Stop() {
  {
    std::lock_guard<std::mutex> l(commit_mu_);
    if (commit_stop_) return;
    commit_stop_ = true;
  }
  commit_cv_.notify_all();
  if (commit_thread_.joinable()) commit_thread_.join();
}

uint32_t TrunkStore::SlotSizeFor(uint64_t size) const {
  for (uint32_t c : classes_) {
    if (c >= size + kHeaderSize) return c;
  }
  return classes_.back();
}

std::string TrunkStore::TrunkPath(uint32_t ip, uint32_t id, uint32_t alloc) const {
  char buf[48];
  std::snprintf(buf, sizeof buf, "/trunk/%08x/%08x.%u", ip, id, alloc);
  return root_ + buf;
}

std::string TrunkStore::RemoteName(const Trunk& t, uint32_t offset, const LiveSlot& s) const {
  char dirs[16];
  std::snprintf(dirs, sizeof dirs, "M%02X/%02X/%02X/", options_.store_path & 0xFF, t.id & 0xFF,
                (t.id >> 8) & 0xFF);
  return dirs + proto::EncodeNameFields(s.fields) +
         proto::EncodeTrunkInfo({t.id, offset, t.alloc}) + s.suffix;
}

Status TrunkStore::Init() {
  std::string top = root_ + "/trunk";
  if (mkdir(top.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::FromErrno(errno, "mkdir", top);
  }
  // The clean marker is consumed: from now on a crash must be noticed again.
  std::string marker = top + "/clean";
  bool clean = access(marker.c_str(), F_OK) == 0;
  if (clean) {
    if (unlink(marker.c_str()) != 0) return Status::FromErrno(errno, "unlink", marker);
    DEPOT_RETURN_IF_ERROR(FsyncDir(top));
  }
  DIR* d = opendir(top.c_str());
  if (d == nullptr) return Status::FromErrno(errno, "opendir", top);
  std::vector<std::pair<uint32_t, std::string>> ip_dirs;
  while (dirent* e = readdir(d)) {
    unsigned ip = 0;
    char tail = 0;
    if (std::strlen(e->d_name) == 8 && std::sscanf(e->d_name, "%8x%c", &ip, &tail) == 1) {
      ip_dirs.emplace_back(ip, top + "/" + e->d_name);
    }
  }
  closedir(d);
  std::lock_guard<std::mutex> l(mu_);
  for (const auto& [ip, dir] : ip_dirs) {
    DIR* td = opendir(dir.c_str());
    if (td == nullptr) return Status::FromErrno(errno, "opendir", dir);
    std::vector<std::pair<uint32_t, uint32_t>> found;
    while (dirent* e = readdir(td)) {
      unsigned id = 0, alloc = 0;
      char tail = 0;
      if (std::sscanf(e->d_name, "%8x.%u%c", &id, &alloc, &tail) == 2 && alloc >= kHeaderSize) {
        found.emplace_back(id, alloc);
      }
    }
    closedir(td);
    for (auto [id, alloc] : found) {
      DEPOT_ASSIGN_OR_RETURN(Trunk * t, OpenTrunk(ip, id, alloc, false));
      DEPOT_RETURN_IF_ERROR(ScanTrunk(t, clean));
    }
  }
  // A file deleted just before a crash (its tombstone written, its header not yet marked).
  uint64_t deleted = 0;
  for (auto& [k, t] : trunks_) {
    for (auto it = t->live.begin(); it != t->live.end();) {
      auto next = std::next(it);
      if (options_.deleted && options_.deleted(RemoteName(*t, it->first, it->second))) {
        DEPOT_RETURN_IF_ERROR(FreeLocked(t.get(), it));
        ++deleted;
      }
      it = next;
    }
  }
  freed_.clear();  // the free lists are built from the index on the first allocation
  initialized_ = true;
  if (!trunks_.empty()) {
    DEPOT_LOG_INFO("trunk files of {}: {} files, {} live slots, {} deleted ones freed; {}",
                   root_, trunks_.size(), live_files_, deleted,
                   clean ? "clean stop" : "unclean stop: each slot is checked when first read");
  }
  return Status::OK();
}

Result<TrunkStore::Trunk*> TrunkStore::OpenTrunk(uint32_t ip, uint32_t id, uint32_t alloc,
                                                 bool create) {
  auto it = trunks_.find(Key(ip, id));
  if (it != trunks_.end()) {
    if (it->second->alloc != alloc) return Status::NotFound("trunk slot size differs");
    return it->second.get();
  }
  std::string path = TrunkPath(ip, id, alloc);
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT && create) {
    std::string dir = DirName(path);
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return Status::FromErrno(errno, "mkdir", dir);
    }
    fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0 && options_.durable) {
      Status s = FsyncDir(dir);
      if (!s.ok()) {
        close(fd);
        return s;
      }
    }
  }
  if (fd < 0) {
    return errno == ENOENT ? Status::NotFound("no trunk file", path)
                           : Status::FromErrno(errno, "open", path);
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    Status s = Status::FromErrno(errno, "fstat", path);
    close(fd);
    return s;
  }
  auto t = std::make_unique<Trunk>();
  t->ip = ip;
  t->id = id;
  t->alloc = alloc;
  t->fd = fd;
  t->size = static_cast<uint64_t>(st.st_size);
  Trunk* raw = t.get();
  trunks_[Key(ip, id)] = std::move(t);
  // One of our own trunk files come back (a dump after a wipe): new ids must not reuse its id.
  if (ip == owner_ip_ && id >= next_id_) next_id_ = id + 1;
  return raw;
}

Status TrunkStore::ScanTrunk(Trunk* t, bool verified) {
  std::string buf(kHeaderSize, '\0');
  for (uint64_t off = 0; off + t->alloc <= t->size; off += t->alloc) {
    if (!PreadFull(t->fd, buf.data(), kHeaderSize, off)) {
      return Status::IOError("trunk: short read at", std::to_string(off));
    }
    auto h = DecodeHeader(buf);
    if (!h.ok() || h->alloc != t->alloc) continue;  // torn or never used: free
    if (!h->live) {
      // Freed: its next file must be newer than the one it held.
      t->next_ctime[static_cast<uint32_t>(off)] = h->fields.create_time + 1;
      continue;
    }
    SetLive(t, static_cast<uint32_t>(off), LiveSlot{h->fields, h->suffix, verified, false});
  }
  return Status::OK();
}

void TrunkStore::BuildFreeLists(uint32_t owner_ip) {
  owner_ip_ = owner_ip;
  free_.clear();
  freed_.clear();
  next_id_ = 1;
  for (auto& [k, t] : trunks_) {
    if (t->ip != owner_ip) continue;
    next_id_ = std::max(next_id_, t->id + 1);
    auto& list = free_[t->alloc];
    uint64_t slots = t->size / t->alloc;
    for (uint64_t i = slots; i-- > 0;) {
      uint32_t off = static_cast<uint32_t>(i * t->alloc);
      if (t->live.count(off) != 0 || reserved_.count(SlotKey(t->id, off)) != 0) continue;
      auto next = t->next_ctime.find(off);
      FreeSlot f{t->id, off, next == t->next_ctime.end() ? 0 : next->second};
      // A slot still being read (freed before the lists existed) waits in freed_.
      if (Pinned(t->ip, t->id, off)) {
        freed_.push_back(f);
      } else {
        list.push_back(f);
      }
    }
  }
}

bool TrunkStore::Pinned(uint32_t ip, uint32_t id, uint32_t offset) {
  std::lock_guard<std::mutex> l(pins_->mu);
  auto it = pins_->count.find(PinKey{ip, id, offset});
  return it != pins_->count.end() && it->second > 0;
}

Result<int> TrunkStore::CreateTrunkFile(uint32_t owner_ip, uint32_t id, uint32_t alloc,
                                        uint64_t* size) const {
  uint64_t slots = std::max<uint64_t>(1, options_.trunk_file_size / alloc);
  slots = std::min<uint64_t>(slots, (uint64_t{UINT32_MAX} - alloc) / alloc);  // 32-bit offsets
  *size = slots * alloc;
  std::string path = TrunkPath(owner_ip, id, alloc);
  std::string dir = DirName(path);
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return Status::FromErrno(errno, "mkdir", dir);
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno(errno, "create", path);
  // Written with zeros (not fallocated): later writes into it change no file metadata, so that
  // their sync is cheap.
  std::string zeros(std::min<uint64_t>(*size, 1 << 20), '\0');
  Status s;
  for (uint64_t off = 0; s.ok() && off < *size; off += zeros.size()) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(zeros.size(), *size - off));
    s = PwriteAll(fd, zeros.data(), n, off);
  }
  if (s.ok() && options_.durable && fdatasync(fd) != 0) s = Status::FromErrno(errno, "fdatasync", path);
  if (s.ok() && options_.durable) s = FsyncDir(dir);
  if (!s.ok()) {
    close(fd);
    unlink(path.c_str());
    return s;
  }
  return fd;
}

Result<proto::TrunkInfo> TrunkStore::Allocate(uint32_t owner_ip, uint64_t size, uint32_t ctime) {
  if (!Fits(size)) return Status::InvalidArgument("file too large for a trunk");
  uint32_t alloc = SlotSizeFor(size);
  std::unique_lock<std::mutex> l(mu_);
  if (owner_ip_ == 0) {
    BuildFreeLists(owner_ip);
  } else if (owner_ip_ != owner_ip) {
    // The free lists (and the slots handed out) are the first address's: this run packs no more.
    return Status::Unavailable("this member's address changed: no trunk slots until a restart");
  }
  // Freed slots whose last reader is gone, and which a file created now may take, are free again.
  for (size_t i = 0; i < freed_.size();) {
    if (freed_[i].min_ctime <= ctime && !Pinned(owner_ip, freed_[i].trunk_id, freed_[i].offset)) {
      auto t = trunks_.find(Key(owner_ip, freed_[i].trunk_id));
      if (t != trunks_.end()) free_[t->second->alloc].push_back(freed_[i]);
      freed_[i] = freed_.back();
      freed_.pop_back();
    } else {
      ++i;
    }
  }
  for (;;) {
    auto& list = free_[alloc];
    // The last slots of the list (a slot freed this second, or before a clock step back, waits
    // for a later file).
    for (size_t k = 0; k < list.size() && k < 64; ++k) {
      size_t i = list.size() - 1 - k;
      if (list[i].min_ctime > ctime) continue;
      FreeSlot f = list[i];
      list[i] = list.back();
      list.pop_back();
      reserved_[SlotKey(f.trunk_id, f.offset)] = f.min_ctime;
      return proto::TrunkInfo{f.trunk_id, f.offset, alloc};
    }
    if (creating_.count(alloc)) {  // another upload is creating a trunk of this size: wait
      created_cv_.wait(l);
      continue;
    }
    // A new trunk file, created and zero-filled without the lock: reads and other sizes go on.
    creating_.insert(alloc);
    uint32_t id = next_id_++;
    creating_ids_.insert(id);
    l.unlock();
    uint64_t trunk_size = 0;
    Result<int> fd = CreateTrunkFile(owner_ip, id, alloc, &trunk_size);
    l.lock();
    creating_.erase(alloc);
    creating_ids_.erase(id);
    created_cv_.notify_all();
    if (!fd.ok()) return fd.status();
    auto t = std::make_unique<Trunk>();
    t->ip = owner_ip;
    t->id = id;
    t->alloc = alloc;
    t->fd = *fd;
    t->size = trunk_size;
    for (uint64_t i = trunk_size / alloc; i-- > 0;) {
      free_[alloc].push_back({id, static_cast<uint32_t>(i * alloc), 0});
    }
    trunks_[Key(owner_ip, id)] = std::move(t);
  }
}

void TrunkStore::Release(uint32_t owner_ip, const proto::TrunkInfo& slot) {
  std::lock_guard<std::mutex> l(mu_);
  auto r = reserved_.find(SlotKey(slot.trunk_id, slot.offset));
  if (r == reserved_.end() || owner_ip_ != owner_ip) return;
  uint32_t min_ctime = r->second;  // the slot's rule stays: a later file than its last one
  reserved_.erase(r);
  auto it = trunks_.find(Key(owner_ip, slot.trunk_id));
  if (it == trunks_.end() || it->second->live.count(slot.offset)) return;
  free_[slot.alloc].push_back({slot.trunk_id, slot.offset, min_ctime});
}

Status TrunkStore::WriteSlot(Trunk* t, const proto::FileId& id, std::string_view data) {
  if (data.size() + kHeaderSize > t->alloc) return Status::InvalidArgument("file larger than slot");
  Header h{true, id.fields, t->alloc, std::string(SuffixOf(id))};
  std::string buf = EncodeHeader(h);
  buf.append(data);
  return PwriteAll(t->fd, buf.data(), buf.size(), id.trunk.offset);
}

Status TrunkStore::Write(const proto::FileId& id, std::string_view data) {
  Trunk* t;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = trunks_.find(Key(id.fields.source_ip, id.trunk.trunk_id));
    if (it == trunks_.end() || it->second->alloc != id.trunk.alloc ||
        reserved_.count(SlotKey(id.trunk.trunk_id, id.trunk.offset)) == 0) {
      return Status::NotFound("no such allocated trunk slot");
    }
    t = it->second.get();  // trunks are never removed: the pointer stays valid
  }
  // The slot is reserved for this upload: nothing else writes it meanwhile.
  DEPOT_RETURN_IF_ERROR(WriteSlot(t, id, data));
  std::lock_guard<std::mutex> l(mu_);
  reserved_.erase(SlotKey(id.trunk.trunk_id, id.trunk.offset));
  t->next_ctime.erase(id.trunk.offset);
  SetLive(t, id.trunk.offset, LiveSlot{id.fields, std::string(SuffixOf(id)), true, false});
  return Status::OK();
}

Status TrunkStore::WriteReplica(const proto::FileId& id, std::string_view data) {
  // Check, write and index under one lock: a free or another replica write of the slot cannot
  // come in between (a slot is at most slot_max_size: the write is short).
  std::lock_guard<std::mutex> l(mu_);
  if (id.fields.source_ip == owner_ip_ && creating_ids_.count(id.trunk.trunk_id)) {
    return Status::Busy("trunk file being created; try again");
  }
  DEPOT_ASSIGN_OR_RETURN(Trunk * t, OpenTrunk(id.fields.source_ip, id.trunk.trunk_id,
                                              id.trunk.alloc, true));
  bool own = t->ip == owner_ip_;
  if (own && reserved_.count(SlotKey(t->id, id.trunk.offset))) {
    // An upload here holds the slot: it was free here, so this older file was deleted.
    DEPOT_LOG_WARN("trunk: {} not written: its slot is taken by a newer upload",
                   id.RemoteName());
    return Status::OK();
  }
  auto live = t->live.find(id.trunk.offset);
  bool same = live != t->live.end() && SameFile(live->second.fields, id.fields);
  if (live != t->live.end() && !same &&
      live->second.fields.create_time > id.fields.create_time) {
    return Status::OK();  // a newer file took the slot: this one was deleted since
  }
  if (!same && Pinned(t->ip, t->id, id.trunk.offset)) {
    // A reader is still sending the slot's previous file: the sender tries again later.
    return Status::Busy("trunk slot still being read; try again");
  }
  uint64_t end = uint64_t{id.trunk.offset} + id.trunk.alloc;
  if (t->size < end) {
    uint64_t slots = std::max<uint64_t>(1, options_.trunk_file_size / id.trunk.alloc);
    uint64_t want = std::max<uint64_t>(end, slots * id.trunk.alloc);
    if (ftruncate(t->fd, static_cast<off_t>(want)) != 0) {
      return Status::FromErrno(errno, "ftruncate trunk");
    }
    t->size = want;
  }
  if (own) {
    // Our own trunk (a repair or a dump of our own files): take the slot off the free lists.
    auto drop = [&](std::vector<FreeSlot>& v) {
      v.erase(std::remove_if(v.begin(), v.end(),
                             [&](const FreeSlot& f) {
                               return f.trunk_id == t->id && f.offset == id.trunk.offset;
                             }),
              v.end());
    };
    drop(free_[t->alloc]);
    drop(freed_);
  }
  DEPOT_RETURN_IF_ERROR(WriteSlot(t, id, data));
  t->next_ctime.erase(id.trunk.offset);
  SetLive(t, id.trunk.offset, LiveSlot{id.fields, std::string(SuffixOf(id)), true, false});
  return Status::OK();
}

Result<TrunkStore::Located> TrunkStore::Locate(const proto::FileId& id) {
  std::string path;
  bool verified;
  uint32_t slot_id = id.trunk.trunk_id, offset = id.trunk.offset;
  Located out;
  {
    std::lock_guard<std::mutex> l(mu_);
    LiveIter live;
    Trunk* t = FindLive(id, &live);
    if (t == nullptr) return Status::NotFound("the trunk slot does not hold this file");
    if (live->second.bad) return Status::NotFound("the trunk slot's content is damaged");
    verified = live->second.verified;
    path = TrunkPath(t->ip, slot_id, t->alloc);
    // Pinned before the lock goes: a free now cannot hand the slot to another file until the
    // caller has sent these bytes.
    out.pin = std::make_shared<PinToken>(pins_, PinKey{t->ip, slot_id, offset});
  }
  out.offset = uint64_t{offset} + kHeaderSize;
  out.size = proto::SizeFromWord(id.fields.size_word);
  // A descriptor of its own (not a dup): readers that move the file offset (sendfile without
  // an offset) must not share it.
  out.fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (out.fd < 0) return Status::FromErrno(errno, "open", path);
  if (!verified) {
    // The first read after an unclean stop: the content must match the CRC32 of its name.
    std::string data(out.size, '\0');
    bool good = PreadFull(out.fd, data.data(), data.size(), out.offset) &&
                Crc32(data) == id.fields.crc32;
    std::lock_guard<std::mutex> l(mu_);
    Trunk* t = trunks_[Key(id.fields.source_ip, slot_id)].get();
    auto live = t->live.find(offset);
    // Only if nothing rewrote the slot meanwhile (a repair marks it verified).
    if (live != t->live.end() && SameFile(live->second.fields, id.fields) &&
        !live->second.verified) {
      if (good) {
        live->second.verified = true;
      } else if (options_.durable) {
        // With durable writes an acknowledged file's slot was synced: this one never was.
        DEPOT_LOG_WARN("trunk: {} is torn (a write cut by a crash): slot freed", id.RemoteName());
        (void)FreeLocked(t, live);
      } else {
        // Without them it may be an acknowledged file that a peer holds intact: kept for
        // `depot fsck --repair` (it reads as missing here), never handed to another file.
        DEPOT_LOG_ERROR("trunk: {} is damaged (lost in a crash): run depot fsck --repair",
                        id.RemoteName());
        live->second.bad = true;
      }
    }
    if (!good) {
      close(out.fd);
      return Status::NotFound("the trunk slot's content is torn");
    }
  }
  return out;
}

bool TrunkStore::Holds(const proto::FileId& id) {
  std::lock_guard<std::mutex> l(mu_);
  LiveIter live;
  return FindLive(id, &live) != nullptr && !live->second.bad;
}

Status TrunkStore::FreeLocked(Trunk* t, LiveIter live) {
  Header h{false, live->second.fields, t->alloc, live->second.suffix};
  std::string hdr = EncodeHeader(h);
  DEPOT_RETURN_IF_ERROR(PwriteAll(t->fd, hdr.data(), hdr.size(), live->first));
  t->next_ctime[live->first] = live->second.fields.create_time + 1;
  if (owner_ip_ != 0 && t->ip == owner_ip_) {
    freed_.push_back({t->id, live->first, live->second.fields.create_time + 1});
  }
  live_files_--;
  live_bytes_ -= proto::SizeFromWord(live->second.fields.size_word);
  t->live.erase(live);
  return Status::OK();
}

Status TrunkStore::Free(const proto::FileId& id) {
  std::lock_guard<std::mutex> l(mu_);
  LiveIter live;
  Trunk* t = FindLive(id, &live);
  if (t == nullptr) return Status::NotFound("the trunk slot does not hold this file");
  return FreeLocked(t, live);
}

TrunkStore::Trunk* TrunkStore::FindLive(const proto::FileId& id, LiveIter* live) {
  auto it = trunks_.find(Key(id.fields.source_ip, id.trunk.trunk_id));
  if (it == trunks_.end() || it->second->alloc != id.trunk.alloc) return nullptr;
  Trunk* t = it->second.get();
  *live = t->live.find(id.trunk.offset);
  if (*live == t->live.end() || !SameFile((*live)->second.fields, id.fields) ||
      (*live)->second.suffix != SuffixOf(id)) {
    return nullptr;
  }
  return t;
}

std::vector<std::pair<std::string, uint64_t>> TrunkStore::List(int dir1) {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<std::pair<std::string, uint64_t>> out;
  for (const auto& [k, t] : trunks_) {
    if (static_cast<int>(t->id & 0xFF) != dir1) continue;
    for (const auto& [off, s] : t->live) {
      if (s.bad) continue;  // damaged: listed as missing, so that fsck --repair restores it
      out.emplace_back(RemoteName(*t, off, s), proto::SizeFromWord(s.fields.size_word));
    }
  }
  return out;
}

std::vector<std::string> TrunkStore::CreatedSince(uint32_t since) {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<std::string> out;
  for (const auto& [k, t] : trunks_) {
    for (const auto& [off, s] : t->live) {
      if (s.fields.create_time >= since) out.push_back(RemoteName(*t, off, s));
    }
  }
  return out;
}

void TrunkStore::SetLive(Trunk* t, uint32_t offset, LiveSlot slot) {
  auto [it, inserted] = t->live.try_emplace(offset);
  if (!inserted) {
    live_files_--;
    live_bytes_ -= proto::SizeFromWord(it->second.fields.size_word);
  }
  live_files_++;
  live_bytes_ += proto::SizeFromWord(slot.fields.size_word);
  it->second = std::move(slot);
}

TrunkStore::Stats TrunkStore::GetStatsLocked() {
  Stats st;
  st.live_files = live_files_;
  st.live_bytes = live_bytes_;
  for (const auto& [k, t] : trunks_) {
    st.trunk_files++;
    st.trunk_bytes += t->size;
  }
  return st;
}

TrunkStore::Stats TrunkStore::GetStats() {
  std::lock_guard<std::mutex> l(mu_);
  return GetStatsLocked();
}

void TrunkStore::Commit(const proto::FileId& id, std::function<Status()> named,
                        std::function<void(Status)> done) {
  int fd = -1;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = trunks_.find(Key(id.fields.source_ip, id.trunk.trunk_id));
    if (it != trunks_.end()) fd = it->second->fd;
  }
  if (fd < 0) return done(Status::NotFound("no such trunk file"));
  {
    std::lock_guard<std::mutex> l(commit_mu_);
    if (!commit_stop_) {
      commits_.push_back({fd, std::move(named), std::move(done)});
      commit_cv_.notify_one();
      return;
    }
  }
  done(Status::Unavailable("trunk store stopping"));
}

// Group commit: the binlog records of every file written meanwhile are appended, then one
// syncfs makes their slots and records durable together (sync_log too when the binlog is on
// another filesystem), then they are acknowledged. A record may reach the disk before its slot's
// bytes: after a crash the slot fails its check when first read (its CRC32 does not match) and
// is freed, and the record's push finds the file gone - it was never acknowledged.
void TrunkStore::CommitLoop() {
  for (;;) {
    std::vector<PendingCommit> batch;
    {
      std::unique_lock<std::mutex> l(commit_mu_);
      commit_cv_.wait(l, [&] { return commit_stop_ || !commits_.empty(); });
      if (commits_.empty() && commit_stop_) return;
      batch.swap(commits_);
    }
    std::vector<Status> results;
    results.reserve(batch.size());
    for (auto& c : batch) results.push_back(c.named());
    Status synced;
    if (syncfs(batch.front().fd) != 0) synced = Status::FromErrno(errno, "syncfs trunk");
    if (synced.ok() && sync_log_) synced = sync_log_();
    for (size_t i = 0; i < batch.size(); ++i) {
      batch[i].done(results[i].ok() ? synced : results[i]);
    }
  }
}

}  // namespace depot::storage
