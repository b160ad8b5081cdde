// Unit tests of TrunkStore (storage/trunk.{h,cc}) on real files in a mkdtemp directory: slot
// sizes, the header codec, allocation and reuse, the start-up scan (torn and deleted slots are
// freed, neighbours untouched) and the replica rule (a newer file in a slot wins).
#include "storage/trunk.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <thread>

#include "common/base/hash.h"

namespace depot::storage {
namespace {

constexpr uint32_t kIp = 0x7f000001;

class TrunkStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/depot-trunk-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }
  std::unique_ptr<TrunkStore> Open(std::set<std::string>* deleted = nullptr, bool durable = false) {
    TrunkStore::Options o;
    o.durable = durable;
    o.trunk_file_size = 1 << 20;
    o.slot_min_size = 256;
    o.slot_max_size = 64 << 10;
    if (deleted != nullptr) {
      o.deleted = [deleted](const std::string& n) { return deleted->count(n) > 0; };
    }
    auto t = std::make_unique<TrunkStore>(root_, o);
    Status s = t->Init();
    EXPECT_TRUE(s.ok()) << s.ToString();
    return t;
  }
  // Allocates, names and writes a file the way an upload does.
  proto::FileId Store(TrunkStore* t, const std::string& data, uint32_t ctime = 0) {
    if (ctime == 0) ctime = static_cast<uint32_t>(UnixSeconds());
    auto slot = t->Allocate(kIp, data.size(), ctime);
    EXPECT_TRUE(slot.ok()) << slot.status().ToString();
    proto::FileId id;
    id.group = "group1";
    id.trunk = *slot;
    id.dir1 = static_cast<int>(slot->trunk_id & 0xFF);
    id.dir2 = static_cast<int>((slot->trunk_id >> 8) & 0xFF);
    id.fields = {kIp, ctime, proto::MakeTrunkSizeWord(data.size(), RandomU64()), Crc32(data)};
    id.name = proto::EncodeNameFields(id.fields) + proto::EncodeTrunkInfo(*slot) + "123.jpg";
    auto back = proto::ParseRemoteName("group1", id.RemoteName());
    EXPECT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_TRUE(t->Write(id, data).ok());
    return *back;
  }
  // Overwrites `bytes` at `at` in the file's content on disk (a write cut by a crash).
  void Tear(const proto::FileId& id, uint64_t at, const std::string& bytes) {
    char name[48];
    std::snprintf(name, sizeof name, "/trunk/%08x/%08x.%u", id.fields.source_ip,
                  id.trunk.trunk_id, id.trunk.alloc);
    int fd = open((root_ + name).c_str(), O_WRONLY);
    ASSERT_GE(fd, 0) << name;
    EXPECT_EQ(pwrite(fd, bytes.data(), bytes.size(), id.trunk.offset + TrunkStore::kHeaderSize + at),
              static_cast<ssize_t>(bytes.size()));
    close(fd);
  }
  std::string Read(TrunkStore* t, const proto::FileId& id) {
    auto loc = t->Locate(id);
    if (!loc.ok()) return "<" + loc.status().ToString() + ">";
    std::string out(loc->size, '\0');
    EXPECT_EQ(pread(loc->fd, out.data(), out.size(), static_cast<off_t>(loc->offset)),
              static_cast<ssize_t>(out.size()));
    close(loc->fd);
    return out;
  }
  std::string root_;
};

TEST_F(TrunkStoreTest, SlotSizesGrowByAtMostAFifthAndHoldTheHeader) {
  auto t = Open();
  uint32_t prev = 0;
  for (uint64_t size : {0, 1, 100, 208, 209, 1000, 4096, 16384, 65536}) {
    uint32_t s = t->SlotSizeFor(size);
    EXPECT_GE(s, size + TrunkStore::kHeaderSize) << size;
    EXPECT_EQ(s % 64, 0u);
    EXPECT_GE(s, prev);
    if (size > 1000) {
      EXPECT_LE(s, (size + TrunkStore::kHeaderSize) * 125 / 100 + 64) << size;
    }
    prev = s;
  }
  EXPECT_EQ(t->SlotSizeFor(0), 256u);
  EXPECT_TRUE(t->Fits(65536));
  EXPECT_FALSE(t->Fits(65537));
  EXPECT_FALSE(t->Allocate(kIp, 65537, 1).ok());
  // Another address than the first allocation's: no slot (the upload becomes a file of its own).
  ASSERT_TRUE(t->Allocate(kIp, 100, 1).ok());
  EXPECT_EQ(t->Allocate(kIp + 1, 100, 1).status().code(), StatusCode::kUnavailable);
}

TEST_F(TrunkStoreTest, HeaderRoundTripsAndDamageIsRefused) {
  TrunkStore::Header h{true, {kIp, 1795757457, proto::MakeTrunkSizeWord(100, 5), 0xdeadbeef},
                       256, "1234567.jpg"};
  std::string b = TrunkStore::EncodeHeader(h);
  ASSERT_EQ(b.size(), TrunkStore::kHeaderSize);
  auto d = TrunkStore::DecodeHeader(b);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->live);
  EXPECT_EQ(d->fields.crc32, 0xdeadbeefu);
  EXPECT_EQ(d->alloc, 256u);
  EXPECT_EQ(d->suffix, "1234567.jpg");
  for (size_t i = 0; i < b.size(); ++i) {
    std::string bad = b;
    bad[i] = static_cast<char>(bad[i] ^ 0x20);
    EXPECT_FALSE(TrunkStore::DecodeHeader(bad).ok()) << "byte " << i;
  }
  EXPECT_EQ(TrunkStore::DecodeHeader(std::string(48, '\0')).status().code(), StatusCode::kNotFound);
  // Bytes after the suffix must be zero (one encoding per header), CRC32 fixed up.
  std::string padded = b;
  padded[32 + 11] = 'x';
  uint32_t crc = Crc32(std::string_view(padded.data(), 44));
  for (int i = 0; i < 4; ++i) padded[44 + i] = static_cast<char>(crc >> (24 - 8 * i));
  EXPECT_FALSE(TrunkStore::DecodeHeader(padded).ok());
  // A size that does not fit the slot.
  h.fields.size_word = proto::MakeTrunkSizeWord(300, 5);
  EXPECT_FALSE(TrunkStore::DecodeHeader(TrunkStore::EncodeHeader(h)).ok());
}

TEST_F(TrunkStoreTest, StoreReadFreeAndReuse) {
  auto t = Open();
  std::vector<std::pair<proto::FileId, std::string>> files;
  for (int i = 0; i < 50; ++i) {
    std::string data = std::string(1000 + i, static_cast<char>('a' + i % 26));
    files.emplace_back(Store(t.get(), data, 1000), data);
  }
  std::set<std::pair<uint32_t, uint32_t>> slots;
  for (const auto& [id, data] : files) {
    EXPECT_EQ(Read(t.get(), id), data);
    EXPECT_TRUE(slots.insert({id.trunk.trunk_id, id.trunk.offset}).second) << "slot handed twice";
  }
  auto st = t->GetStats();
  EXPECT_EQ(st.live_files, 50u);
  EXPECT_GE(st.trunk_files, 1u);
  // Free one; its ID no longer reads; a wrong ID (another CRC) never reads a slot.
  proto::FileId gone = files[7].first;
  ASSERT_TRUE(t->Free(gone).ok());
  EXPECT_EQ(t->Locate(gone).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(t->Free(gone).code(), StatusCode::kNotFound);
  proto::FileId wrong = files[8].first;
  wrong.fields.crc32 ^= 1;
  EXPECT_EQ(t->Locate(wrong).status().code(), StatusCode::kNotFound);
  auto same_slot = [&](const proto::FileId& a) {
    return a.trunk.trunk_id == gone.trunk.trunk_id && a.trunk.offset == gone.trunk.offset;
  };
  // A file created in the same second as the freed one (or earlier: a clock step back) never
  // gets its slot: a replica could not tell which of the two is newer.
  for (int i = 0; i < 20; ++i) EXPECT_FALSE(same_slot(Store(t.get(), std::string(1007, 'z'), 1000)));
  // A later one does.
  proto::FileId later = Store(t.get(), std::string(1007, 'y'), 1001);
  EXPECT_TRUE(same_slot(later));
  EXPECT_EQ(Read(t.get(), later), std::string(1007, 'y'));
  EXPECT_EQ(t->Locate(gone).status().code(), StatusCode::kNotFound);
  for (size_t i = 0; i < files.size(); ++i) {
    if (i != 7) {
      EXPECT_EQ(Read(t.get(), files[i].first), files[i].second);
    }
  }
}

// A reader that located a file keeps its slot until it is done: a delete meanwhile frees the
// slot for nobody else until the pin is released (the bytes sent are never another file's).
TEST_F(TrunkStoreTest, APinnedSlotIsNotReusedUntilItsReaderIsDone) {
  auto t = Open();
  proto::FileId a = Store(t.get(), std::string(3000, 'a'), 1000);
  auto loc = t->Locate(a);
  ASSERT_TRUE(loc.ok());
  // The senders keep the pin only when it tests true (ReplyFile's `keep`, the HTTP segments):
  // a null pointer with a deleter (as it once was) was dropped before the bytes went out.
  ASSERT_TRUE(static_cast<bool>(loc->pin));
  ASSERT_TRUE(t->Free(a).ok());
  for (int i = 0; i < 40; ++i) {
    proto::FileId b = Store(t.get(), std::string(3000, 'b'), 2000 + i);
    EXPECT_FALSE(b.trunk.trunk_id == a.trunk.trunk_id && b.trunk.offset == a.trunk.offset);
  }
  std::string bytes(3000, '\0');
  ASSERT_EQ(pread(loc->fd, bytes.data(), bytes.size(), static_cast<off_t>(loc->offset)), 3000);
  EXPECT_EQ(bytes, std::string(3000, 'a'));
  close(loc->fd);
  loc->pin.reset();
  bool reused = false;
  for (int i = 0; i < 400 && !reused; ++i) {
    proto::FileId c = Store(t.get(), std::string(3000, 'c'), 5000);
    reused = c.trunk.trunk_id == a.trunk.trunk_id && c.trunk.offset == a.trunk.offset;
  }
  EXPECT_TRUE(reused) << "the slot was never handed out again after its reader finished";
}

TEST_F(TrunkStoreTest, RestartRebuildsTheIndexAndFreesTornAndDeletedSlots) {
  std::vector<std::pair<proto::FileId, std::string>> files;
  {
    auto t = Open();
    for (int i = 0; i < 30; ++i) {
      std::string data = std::string(3000, static_cast<char>('A' + i));
      files.emplace_back(Store(t.get(), data), data);
    }
  }
  // The stop above was clean (it left a marker); this test is about a crash: no marker.
  ASSERT_EQ(unlink((root_ + "/trunk/clean").c_str()), 0);
  // Slot 10's content torn (a write cut by a crash), slot 20 deleted with its header still live.
  const proto::FileId& torn = files[10].first;
  Tear(torn, 100, "XXXX");
  std::set<std::string> deleted{files[20].first.RemoteName()};
  auto t = Open(&deleted, /*durable=*/true);
  EXPECT_EQ(t->Locate(torn).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(t->Locate(files[20].first).status().code(), StatusCode::kNotFound);
  for (size_t i = 0; i < files.size(); ++i) {
    if (i == 10 || i == 20) continue;
    EXPECT_EQ(Read(t.get(), files[i].first), files[i].second) << i;
  }
  EXPECT_EQ(t->GetStats().live_files, 28u);  // the torn one freed when it was first read
  // The freed slots are handed out again, to files created later.
  uint32_t later = static_cast<uint32_t>(UnixSeconds()) + 10;
  std::set<uint32_t> offsets;
  for (int i = 0; i < 40; ++i) {
    offsets.insert(Store(t.get(), std::string(3000, 'n'), later).trunk.offset);
  }
  EXPECT_TRUE(offsets.count(torn.trunk.offset) || offsets.count(files[20].first.trunk.offset));
  // fsck's listing names every live file by its remote name.
  size_t listed = 0;
  for (int d = 0; d < 256; ++d) listed += t->List(d).size();
  EXPECT_EQ(listed, 68u);
}

// Without durable writes a slot that fails its check after a crash may hold an acknowledged
// file a peer still has: it is kept (reads as missing, never reused) until a repair rewrites it.
TEST_F(TrunkStoreTest, WithoutDurableWritesATornSlotIsKeptForRepair) {
  proto::FileId a;
  std::string data(3000, 'q');
  {
    auto t = Open();
    a = Store(t.get(), data);
  }
  ASSERT_EQ(unlink((root_ + "/trunk/clean").c_str()), 0);
  Tear(a, 7, "XX");
  auto t = Open();
  EXPECT_EQ(t->Locate(a).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(t->Locate(a).status().code(), StatusCode::kNotFound);
  uint32_t later = static_cast<uint32_t>(UnixSeconds()) + 10;
  for (int i = 0; i < 40; ++i) {
    proto::FileId b = Store(t.get(), std::string(3000, 'b'), later);
    EXPECT_FALSE(b.trunk.trunk_id == a.trunk.trunk_id && b.trunk.offset == a.trunk.offset);
  }
  ASSERT_TRUE(t->WriteReplica(a, data).ok());  // fsck --repair from a peer's good copy
  EXPECT_EQ(Read(t.get(), a), data);
}

TEST_F(TrunkStoreTest, ReplicaWritesKeepTheNewerFileOfASlot) {
  auto owner = Open();
  proto::FileId old_id = Store(owner.get(), "old bytes", 1000);
  std::string replica_root = root_ + "/replica";
  std::filesystem::create_directories(replica_root);
  TrunkStore::Options o;
  o.trunk_file_size = 1 << 20;
  o.slot_max_size = 64 << 10;
  TrunkStore replica(replica_root, o);
  ASSERT_TRUE(replica.Init().ok());
  // A newer file of the same slot arrives first, then the older one's late copy: the older one
  // must not overwrite it.
  proto::FileId new_id = old_id;
  new_id.fields.create_time = 2000;
  new_id.fields.crc32 = Crc32("new bytes");
  new_id.fields.size_word = proto::MakeTrunkSizeWord(9, 1);
  new_id.name = proto::EncodeNameFields(new_id.fields) + proto::EncodeTrunkInfo(new_id.trunk) +
                "456.jpg";
  ASSERT_TRUE(replica.WriteReplica(new_id, "new bytes").ok());
  ASSERT_TRUE(replica.WriteReplica(old_id, "old bytes").ok());
  EXPECT_EQ(Read(&replica, new_id), "new bytes");
  EXPECT_EQ(replica.Locate(old_id).status().code(), StatusCode::kNotFound);
  // The other way round: the newer one replaces the older.
  TrunkStore replica2(root_ + "/replica2", o);
  std::filesystem::create_directories(root_ + "/replica2");
  ASSERT_TRUE(replica2.Init().ok());
  ASSERT_TRUE(replica2.WriteReplica(old_id, "old bytes").ok());
  EXPECT_EQ(Read(&replica2, old_id), "old bytes");
  ASSERT_TRUE(replica2.WriteReplica(new_id, "new bytes").ok());
  EXPECT_EQ(Read(&replica2, new_id), "new bytes");
  EXPECT_EQ(replica2.Locate(old_id).status().code(), StatusCode::kNotFound);
  // A delete of the old one does not free the new one's slot.
  EXPECT_EQ(replica2.Free(old_id).code(), StatusCode::kNotFound);
  EXPECT_EQ(Read(&replica2, new_id), "new bytes");
  // A newer file for a slot a reader is still sending from waits (Busy: the sender retries).
  auto loc = replica2.Locate(new_id);
  ASSERT_TRUE(loc.ok());
  ASSERT_TRUE(replica2.Free(new_id).ok());
  proto::FileId newer = new_id;
  newer.fields.create_time = 3000;
  newer.name = proto::EncodeNameFields(newer.fields) + proto::EncodeTrunkInfo(newer.trunk) +
               "789.jpg";
  EXPECT_EQ(replica2.WriteReplica(newer, "new bytes").code(), StatusCode::kBusy);
  close(loc->fd);
  loc->pin.reset();
  EXPECT_TRUE(replica2.WriteReplica(newer, "new bytes").ok());
  EXPECT_EQ(Read(&replica2, newer), "new bytes");
}

}  // namespace
}  // namespace depot::storage
