#include "services/loader/ram_tier.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/model_fixtures.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::loader {
namespace {

namespace fs = std::filesystem;
using ::mm::testing::FixtureByteSize;
using ::mm::testing::FixtureTensor;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::mm::testing::WriteSafetensors;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 random(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(random());
  return out;
}

std::vector<FixtureTensor> Tensors() {
  std::vector<FixtureTensor> tensors = {
      {.name = "big", .dtype = "F32", .shape = {256, 1000}},
      {.name = "odd", .dtype = "F16", .shape = {3, 7}},
      {.name = "ids", .dtype = "I64", .shape = {5}},
  };
  uint32_t seed = 1;
  for (FixtureTensor& t : tensors) {
    t.data = RandomBytes(FixtureByteSize(t), seed++);
  }
  return tensors;
}

// Maps `name` read-only as a client would.
struct ClientMapping {
  explicit ClientMapping(const std::string& name) {
    fd = ::shm_open(name.c_str(), O_RDONLY, 0);
    if (fd < 0) return;
    struct stat st;
    ::fstat(fd, &st);
    size = static_cast<size_t>(st.st_size);
    mode = st.st_mode & 0777;
    gid = st.st_gid;
    data = static_cast<const char*>(
        ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0));
  }
  ~ClientMapping() {
    if (data != nullptr && data != MAP_FAILED) {
      ::munmap(const_cast<char*>(data), size);
    }
    if (fd >= 0) ::close(fd);
  }
  int fd = -1;
  size_t size = 0;
  mode_t mode = 0;
  gid_t gid = 0;
  const char* data = nullptr;
};

TEST(RamTierTest, ClientSeesEveryTensorsBytesAtAlignedOffsets) {
  TempDir dir;
  std::vector<FixtureTensor> tensors = Tensors();
  WriteSafetensors(dir.path() / "m.safetensors", tensors);
  ASSERT_OK_AND_ASSIGN(LoadPlan plan,
                       PlanLoad({.path = dir.path() / "m.safetensors"}));
  // Small chunks and several threads: the big tensor is read in pieces by
  // different threads.
  uint64_t last_progress = 0;
  ASSERT_OK_AND_ASSIGN(
      std::shared_ptr<const RamModel> model,
      LoadIntoShm(plan, {},
                  {.threads = 4,
                   .chunk_bytes = 4096,
                   .progress = [&](uint64_t done, uint64_t total) {
                     EXPECT_GT(done, last_progress);
                     EXPECT_EQ(total, plan.data_bytes);
                     last_progress = done;
                   }}));
  EXPECT_EQ(last_progress, plan.data_bytes);
  EXPECT_TRUE(IsLoaderShmName(model->region().name()))
      << model->region().name();
  ClientMapping client(model->region().name());
  ASSERT_GE(client.fd, 0) << std::strerror(errno);
  EXPECT_EQ(client.mode, 0600u);
  EXPECT_EQ(client.size, plan.total_bytes);
  ASSERT_EQ(model->plan().tensors.size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const PlannedTensor& t = model->plan().tensors[i];
    EXPECT_EQ(t.region_offset % kTensorAlignment, 0u);
    EXPECT_EQ(std::string(client.data + t.region_offset, t.byte_size),
              tensors[i].data)
        << t.name;
  }
  std::string name = model->region().name();
  std::string first_bytes(client.data, 64);
  model.reset();
  // Unlinked at once; an existing mapping keeps its pages.
  EXPECT_LT(::shm_open(name.c_str(), O_RDONLY, 0), 0);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(std::string(client.data, 64), first_bytes);
}

TEST(RegionReaderTest, WithoutADescriptorPreadFillsTheBuffer) {
  TempDir dir;
  std::vector<FixtureTensor> tensors = Tensors();
  WriteSafetensors(dir.path() / "m.safetensors", tensors);
  ASSERT_OK_AND_ASSIGN(LoadPlan plan,
                       PlanLoad({.path = dir.path() / "m.safetensors"}));
  std::string buffer(plan.total_bytes, '\0');
  ASSERT_OK(
      ReadIntoRegion(plan, buffer.data(), {.threads = 3, .chunk_bytes = 4096}));
  for (size_t i = 0; i < tensors.size(); ++i) {
    const PlannedTensor& t = plan.tensors[i];
    EXPECT_EQ(buffer.substr(t.region_offset, t.byte_size), tensors[i].data);
  }
}

TEST(RamTierTest, GroupMakesTheObjectGroupReadable) {
  TempDir dir;
  WriteSafetensors(dir.path() / "m.safetensors", Tensors());
  ASSERT_OK_AND_ASSIGN(LoadPlan plan,
                       PlanLoad({.path = dir.path() / "m.safetensors"}));
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<const RamModel> model,
                       LoadIntoShm(plan, {.group = ::getgid()}, {}));
  ClientMapping client(model->region().name());
  ASSERT_GE(client.fd, 0);
  EXPECT_EQ(client.mode, 0640u);
  EXPECT_EQ(client.gid, ::getgid());
}

TEST(RamTierTest, FileTruncatedAfterPlanningIsDataLossAndLeavesNoObject) {
  TempDir dir;
  fs::path file = dir.path() / "m.safetensors";
  WriteSafetensors(file, Tensors());
  ASSERT_OK_AND_ASSIGN(LoadPlan plan, PlanLoad({.path = file}));
  fs::resize_file(file, fs::file_size(file) - 100);
  ASSERT_OK_AND_ASSIGN(auto log, ShmNameLog::Open(dir.path() / "shm.list"));
  EXPECT_THAT(LoadIntoShm(plan, {.name_log = log.get()}, {}),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("changed size since its header was read")));
  // The object it created is gone already: the log names nothing to remove.
  log.reset();
  int removed = -1;
  ASSERT_OK(ShmNameLog::Open(dir.path() / "shm.list", &removed).status());
  EXPECT_EQ(removed, 0);
}

TEST(RamTierTest, ShortReadIsDataLoss) {
  TempDir dir;
  fs::path file = dir.path() / "m.safetensors";
  WriteSafetensors(file, Tensors());
  ASSERT_OK_AND_ASSIGN(LoadPlan plan, PlanLoad({.path = file}));
  // Keep the recorded size equal to the file's, but claim bytes past it.
  plan.tensors.back().byte_size += 1000;
  plan.total_bytes += 1024;
  EXPECT_THAT(LoadIntoShm(plan, {}, {}),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("the file is truncated")));
}

TEST(RamTierTest, NameLogRemovesObjectsOfAKilledRun) {
  TempDir dir;
  std::string leaked_name;
  {
    ASSERT_OK_AND_ASSIGN(auto log, ShmNameLog::Open(dir.path() / "shm.list"));
    ASSERT_OK_AND_ASSIGN(
        std::unique_ptr<ShmRegion> region,
        ShmRegion::Create({.bytes = 4096, .name_log = log.get()}));
    leaked_name = region->name();
    // Simulate kill -9: the destructor never runs. The C++ object is left
    // behind on purpose (LeakSanitizer is told so).
    ShmRegion* leaked = region.release();
    ::munmap(leaked->data(), leaked->size());
#if defined(__SANITIZE_ADDRESS__)
    __lsan_ignore_object(leaked);
#endif
  }
  // Someone else's object with our name shape, not in the log, survives.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ShmRegion> other,
                       ShmRegion::Create({.bytes = 4096}));
  {
    std::ofstream(dir.path() / "shm.list", std::ios::app)
        << "/etc-passwd\n../x\n";
  }
  int removed = -1;
  ASSERT_OK(ShmNameLog::Open(dir.path() / "shm.list", &removed).status());
  EXPECT_EQ(removed, 1);
  EXPECT_LT(::shm_open(leaked_name.c_str(), O_RDONLY, 0), 0);
  ClientMapping still_there(other->name());
  EXPECT_GE(still_there.fd, 0);
  // The log was emptied: a second start removes nothing.
  ASSERT_OK(ShmNameLog::Open(dir.path() / "shm.list", &removed).status());
  EXPECT_EQ(removed, 0);
}

TEST(RamTierTest, GgufTensorsAreLoadedAsRawBlocks) {
  TempDir dir;
  fs::path file = dir.path() / "m.gguf";
  using ::mm::testing::GgmlFixtureType;
  mm::testing::WriteGguf(
      file, {.metadata = {{"general.architecture", std::string("llama")}},
             .tensors = {{.name = "blk.0.attn_q.weight",
                          .type = static_cast<uint32_t>(GgmlFixtureType::kQ4_0),
                          .shape = {64, 64}},
                         {.name = "output_norm.weight",
                          .type = static_cast<uint32_t>(GgmlFixtureType::kF32),
                          .shape = {10}}}});
  ASSERT_OK_AND_ASSIGN(LoadPlan plan, PlanLoad({.path = file}));
  ASSERT_EQ(plan.tensors.size(), 2u);
  EXPECT_EQ(plan.tensors[0].dtype, "Q4_0");
  EXPECT_EQ(plan.tensors[0].byte_size, 64u * 64 / 32 * 18);
  EXPECT_EQ(plan.tensors[1].dtype, "F32");
  // The fixture writes zero data: fill each tensor's bytes in the file with
  // something recognisable.
  std::string contents = mm::testing::ReadFile(file);
  uint32_t seed = 5;
  for (const PlannedTensor& t : plan.tensors) {
    contents.replace(t.file_offset, t.byte_size,
                     RandomBytes(t.byte_size, seed++));
  }
  mm::testing::WriteFile(file, contents);
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<const RamModel> model,
                       LoadIntoShm(plan, {}, {}));
  for (const PlannedTensor& t : plan.tensors) {
    EXPECT_EQ(
        std::string(model->region().data() + t.region_offset, t.byte_size),
        contents.substr(t.file_offset, t.byte_size))
        << t.name;
  }
}

TEST(RamTierTest, PytorchZipCheckpointTensorsAreLoaded) {
  TempDir dir;
  fs::path file = dir.path() / "m.ckpt";
  std::vector<FixtureTensor> tensors = Tensors();
  mm::testing::WriteTorchCheckpoint(file, tensors,
                                    {.wrap_in_state_dict = true});
  ASSERT_OK_AND_ASSIGN(LoadPlan plan, PlanLoad({.path = file}));
  ASSERT_EQ(plan.tensors.size(), tensors.size());
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<const RamModel> model,
                       LoadIntoShm(plan, {}, {}));
  for (size_t i = 0; i < tensors.size(); ++i) {
    const PlannedTensor& t = model->plan().tensors[i];
    EXPECT_EQ(t.name, tensors[i].name);
    EXPECT_EQ(
        std::string(model->region().data() + t.region_offset, t.byte_size),
        tensors[i].data)
        << t.name;
  }
}

TEST(RamTierTest, HostilePickleLoadsNothingAndRunsNothing) {
  TempDir dir;
  const fs::path pwned = dir.path() / "pwned";
  // {"hack": os.system("touch <dir>/pwned")}
  mm::testing::PickleWriter p;
  p.Proto(2).EmptyDict().Mark();
  p.Unicode("hack").Global("os", "system");
  p.Mark().Unicode("touch " + pwned.string()).Tuple().Reduce();
  p.SetItems().Stop();
  fs::path file = dir.path() / "evil.ckpt";
  mm::testing::WriteFile(
      file,
      mm::testing::ZipBytes({{.name = "archive/data.pkl", .data = p.bytes()},
                             {.name = "archive/version", .data = "3\n"}}));
  EXPECT_THAT(PlanLoad({.path = file}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("evil.ckpt: no tensors to load ("),
                             HasSubstr("refused global os.system"))));
  EXPECT_FALSE(fs::exists(pwned));
}

TEST(ShmNameTest, OnlyOurShape) {
  EXPECT_TRUE(IsLoaderShmName("/mm-0123456789abcdef0123456789abcdef"));
  EXPECT_FALSE(IsLoaderShmName("/mm-0123456789ABCDEF0123456789abcdef"));
  EXPECT_FALSE(IsLoaderShmName("/mm-0123456789abcdef0123456789abcde"));
  EXPECT_FALSE(IsLoaderShmName("mm-0123456789abcdef0123456789abcdef0"));
  EXPECT_FALSE(IsLoaderShmName("/mm-../../etc/passwd0123456789abcde"));
}

TEST(ShmRegionTest, ZeroBytesIsRefused) {
  EXPECT_THAT(ShmRegion::Create({.bytes = 0}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "a shared-memory region of 0 bytes"));
}

}  // namespace
}  // namespace mm::loader
