#include "services/loader/loader_service.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/client.h"
#include "common/grpc_status.h"
#include "common/server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "modelmanager/v1/loader.grpc.pb.h"
#include "services/loader/loader_metrics.h"
#include "services/loader/model_loader.h"
#include "tests/loader/fake_records.h"
#include "tests/testing/model_fixtures.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::loader {
namespace {

namespace v1 = ::modelmanager::v1;
using ::mm::testing::FixtureByteSize;
using ::mm::testing::FixtureTensor;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::mm::testing::WriteSafetensors;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::Duration kCallTimeout = absl::Seconds(30);

std::vector<FixtureTensor> Tensors(int n_floats, uint32_t seed) {
  std::vector<FixtureTensor> tensors = {
      {.name = "w", .dtype = "F32", .shape = {n_floats}},
      {.name = "b", .dtype = "F16", .shape = {3}},
  };
  std::mt19937 random(seed);
  for (FixtureTensor& t : tensors) {
    t.data.resize(FixtureByteSize(t));
    for (char& c : t.data) c = static_cast<char>(random());
  }
  return tensors;
}

// A Load stream held open by the test.
struct HeldLoad {
  std::unique_ptr<grpc::ClientContext> context =
      std::make_unique<grpc::ClientContext>();
  std::unique_ptr<grpc::ClientReader<v1::LoadResponse>> reader;
  v1::ModelHandle handle;
  int progress_messages = 0;
};

class LoaderServiceTest : public ::testing::Test {
 protected:
  void Start(uint64_t budget) {
    loader_ = std::make_unique<ModelLoader>(
        ModelLoader::Options{.models_dir = dir_.path() / "models",
                             .ram_budget_bytes = budget,
                             .records = &records_});
    service_ = std::make_unique<LoaderService>(loader_.get());
    ServerOptions options;
    options.listen = "unix:" + (dir_.path() / "loader.sock").string();
    options.shutdown_grace = absl::Seconds(5);
    ASSERT_OK_AND_ASSIGN(host_, ServiceHost::Start(options, {service_.get()},
                                                   {kLoaderServiceName}));
    host_->AddShutdownHook([this] { service_->Shutdown(); });
    host_->SetServing(true);
    ASSERT_OK_AND_ASSIGN(auto channel, MakeChannel(host_->address(), {}));
    stub_ = v1::Loader::NewStub(channel);
  }
  void TearDown() override {
    if (host_) host_->Shutdown(absl::Seconds(5));
    host_.reset();
    service_.reset();
    loader_.reset();
  }

  void AddModel(const std::string& key, const std::vector<FixtureTensor>& t) {
    WriteSafetensors(dir_.path() / "models" / (key + ".safetensors"), t);
    v1::Model record =
        TestRecord(key, key + ".safetensors", "vae", "checkpoint");
    record.set_name("model " + key);
    record.set_hash("blake3:" + key);
    records_.Put(record);
  }

  // Opens a Load stream and reads until the handle (or the end).
  absl::StatusOr<std::unique_ptr<HeldLoad>> Load(const std::string& key) {
    auto held = std::make_unique<HeldLoad>();
    held->context->set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
    v1::LoadRequest request;
    request.set_key(key);
    held->reader = stub_->Load(held->context.get(), request);
    v1::LoadResponse response;
    while (held->reader->Read(&response)) {
      if (response.has_handle()) {
        held->handle = response.handle();
        return held;
      }
      ++held->progress_messages;
    }
    grpc::Status status = held->reader->Finish();
    if (status.ok()) return absl::InternalError("stream ended without handle");
    return FromGrpcStatus(status);
  }

  v1::CacheStats Stats() {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
    v1::CacheStats stats;
    EXPECT_TRUE(stub_->GetCacheStats(&context, {}, &stats).ok());
    return stats;
  }

  // Waits, with a deadline, until the entry's lease count is `leases`: the
  // release happens on the server's thread after the client's cancel.
  void AwaitLeases(const std::string& cache_key, int leases) {
    absl::Time deadline = absl::Now() + absl::Seconds(10);
    for (;;) {
      v1::CacheStats stats = Stats();
      for (const v1::CachedModel& m : stats.models()) {
        if (m.cache_key() == cache_key && m.leases() == leases) return;
      }
      ASSERT_LT(absl::Now(), deadline)
          << cache_key << " never had " << leases << " leases";
      absl::SleepFor(absl::Milliseconds(5));
    }
  }

  absl::Status Unload(const std::string& key, int64_t* freed = nullptr) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
    v1::UnloadRequest request;
    request.set_key(key);
    v1::UnloadResponse response;
    grpc::Status status = stub_->Unload(&context, request, &response);
    if (freed != nullptr) *freed = response.freed_bytes();
    return FromGrpcStatus(status);
  }

  TempDir dir_;
  FakeRecords records_;
  std::unique_ptr<ModelLoader> loader_;
  std::unique_ptr<LoaderService> service_;
  std::unique_ptr<ServiceHost> host_;
  std::unique_ptr<v1::Loader::Stub> stub_;
};

TEST_F(LoaderServiceTest, HandleMapsToTheFilesBytes) {
  Start(1 << 20);
  std::vector<FixtureTensor> tensors = Tensors(1000, 7);
  AddModel("k1", tensors);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HeldLoad> held, Load("k1"));
  const v1::ModelHandle& handle = held->handle;
  EXPECT_EQ(handle.key(), "k1");
  EXPECT_EQ(handle.cache_key(), "k1");
  EXPECT_EQ(handle.tier(), v1::TIER_RAM);
  EXPECT_EQ(handle.config().name(), "model k1");
  EXPECT_EQ(handle.lease_id().size(), 32u);
  EXPECT_GE(held->progress_messages, 1);
  int fd = ::shm_open(handle.shm_name().c_str(), O_RDONLY, 0);
  ASSERT_GE(fd, 0) << handle.shm_name();
  struct stat st;
  ASSERT_EQ(::fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, handle.total_bytes());
  void* map = ::mmap(nullptr, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  ASSERT_NE(map, MAP_FAILED);
  ASSERT_EQ(handle.tensors_size(), 2);
  for (int i = 0; i < 2; ++i) {
    const v1::TensorHandle& t = handle.tensors(i);
    EXPECT_EQ(t.name(), tensors[i].name);
    EXPECT_EQ(t.offset() % 64, 0);
    EXPECT_EQ(
        std::string(static_cast<const char*>(map) + t.offset(), t.byte_size()),
        tensors[i].data);
  }
  ::munmap(map, st.st_size);
  v1::CacheStats stats = Stats();
  EXPECT_EQ(stats.misses(), 1);
  ASSERT_EQ(stats.models_size(), 1);
  EXPECT_EQ(stats.models(0).leases(), 1);
  EXPECT_EQ(stats.models(0).name(), "model k1");
}

TEST_F(LoaderServiceTest, CancellingTheStreamReleasesTheLease) {
  Start(1 << 20);
  AddModel("k1", Tensors(100, 1));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HeldLoad> first, Load("k1"));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HeldLoad> second, Load("k1"));
  v1::CacheStats stats = Stats();
  EXPECT_EQ(stats.hits(), 1);
  EXPECT_EQ(stats.models(0).leases(), 2);
  EXPECT_THAT(Unload("k1"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "k1 is held by 2 open Load stream(s); it can be "
                       "unloaded once they end"));
  first->context->TryCancel();
  EXPECT_EQ(first->reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  AwaitLeases("k1", 1);
  second->context->TryCancel();
  second->reader->Finish();
  AwaitLeases("k1", 0);
  int64_t freed = 0;
  EXPECT_OK(Unload("k1", &freed));
  EXPECT_EQ(freed, 512);  // 400 bytes at 0, 6 at 448, rounded up to 64
  EXPECT_EQ(::shm_open(first->handle.shm_name().c_str(), O_RDONLY, 0), -1);
}

TEST_F(LoaderServiceTest, MetricsFollowTheCache) {
  Start(1 << 20);
  metrics::Registry registry;
  metrics::ScopedCollector collector =
      ExportLoaderMetrics(loader_.get(), &registry);
  EXPECT_THAT(registry.Render(),
              HasSubstr("mm_cache_budget_bytes{tier=\"ram\"} 1048576\n"));
  AddModel("k1", Tensors(100, 1));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HeldLoad> first, Load("k1"));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HeldLoad> second, Load("k1"));
  std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("mm_cache_hits_total{tier=\"ram\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("mm_cache_misses_total{tier=\"ram\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("mm_cache_leases{tier=\"ram\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("mm_cache_entries{tier=\"ram\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("mm_cache_bytes{tier=\"ram\"} 512\n"));
  // No device in this test: no VRAM series.
  EXPECT_THAT(text, Not(HasSubstr("tier=\"vram\"")));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HeldLoad> third, Load("k1"));
  EXPECT_THAT(registry.Render(),
              HasSubstr("mm_cache_hits_total{tier=\"ram\"} 2\n"));
}

TEST_F(LoaderServiceTest, ErrorsEndTheStreamWithTheirCode) {
  Start(1 << 20);
  EXPECT_THAT(Load(""),
              StatusIs(absl::StatusCode::kInvalidArgument, "key: required"));
  EXPECT_THAT(Load("nope"), StatusIs(absl::StatusCode::kNotFound,
                                     "unknown model key 'nope'"));
  v1::Model record;
  record.set_key("gone");
  record.set_path("gone.safetensors");
  record.set_type("vae");
  record.set_format("checkpoint");
  record.set_base("sd-1");
  records_.Put(record);
  EXPECT_THAT(Load("gone"),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("model gone: model not found on disk: ")));
  record.set_key("onnx");
  record.set_type("main");
  record.set_format("onnx");
  record.set_base("sdxl");
  records_.Put(record);
  EXPECT_THAT(Load("onnx"),
              StatusIs(absl::StatusCode::kUnimplemented,
                       HasSubstr("no loader for base 'sdxl', type 'main', "
                                 "format 'onnx'")));
  records_.SetDown(absl::UnavailableError("records down"));
  EXPECT_THAT(Load("gone"),
              StatusIs(absl::StatusCode::kUnavailable, "records down"));
}

TEST_F(LoaderServiceTest, TierAndDtypeErrors) {
  Start(1 << 20);
  AddModel("k1", Tensors(10, 1));
  auto load = [&](v1::LoadRequest request) -> absl::Status {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
    auto reader = stub_->Load(&context, request);
    v1::LoadResponse response;
    while (reader->Read(&response)) {
    }
    return FromGrpcStatus(reader->Finish());
  };
  v1::LoadRequest request;
  request.set_key("k1");
  request.set_tier(v1::TIER_VRAM);
  EXPECT_THAT(load(request),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("this loader has no VRAM tier")));
  request.set_tier(v1::TIER_RAM);
  request.set_dtype("F8");
  EXPECT_THAT(load(request),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "dtype: 'F8' is not one of F16, BF16, F32 (or empty)"));
}

TEST_F(LoaderServiceTest, FullOfLeasedModelsIsResourceExhausted) {
  Start(1024);
  AddModel("a", Tensors(150, 1));  // 600 + 6 bytes -> 704 in the region
  AddModel("b", Tensors(150, 2));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HeldLoad> held, Load("a"));
  EXPECT_THAT(Load("b"), StatusIs(absl::StatusCode::kResourceExhausted,
                                  HasSubstr("b needs 704 bytes but the cache "
                                            "budget is 1024 bytes, of which "
                                            "704 bytes are held")));
  held->context->TryCancel();
  held->reader->Finish();
  AwaitLeases("a", 0);
  // Now "a" is evicted to make room.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HeldLoad> b, Load("b"));
  v1::CacheStats stats = Stats();
  ASSERT_EQ(stats.models_size(), 1);
  EXPECT_EQ(stats.models(0).cache_key(), "b");
  EXPECT_EQ(stats.evictions(), 1);
}

TEST_F(LoaderServiceTest, ChangedRecordIsLoadedAfresh) {
  Start(1 << 20);
  AddModel("k1", Tensors(10, 1));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HeldLoad> old_load, Load("k1"));
  std::vector<FixtureTensor> replaced = Tensors(20, 9);
  WriteSafetensors(dir_.path() / "models" / "k1-v2.safetensors", replaced);
  v1::Model record = old_load->handle.config();
  record.set_path("k1-v2.safetensors");
  record.set_hash("blake3:v2");
  records_.Put(record);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HeldLoad> new_load, Load("k1"));
  EXPECT_NE(new_load->handle.shm_name(), old_load->handle.shm_name());
  EXPECT_EQ(new_load->handle.tensors(0).byte_size(), 80);
  EXPECT_EQ(new_load->handle.config().hash(), "blake3:v2");
}

TEST_F(LoaderServiceTest, RecordChangeDropsOnlyEntriesOfOtherFiles) {
  Start(1 << 20);
  AddModel("k1", Tensors(10, 1));
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<HeldLoad> load, Load("k1"));
    load->context->TryCancel();
    load->reader->Finish();
  }
  AwaitLeases("k1", 0);
  ASSERT_OK_AND_ASSIGN(v1::Model record, records_.Get("k1"));
  record.set_name("renamed");
  EXPECT_EQ(loader_->OnRecordChanged(record, /*deleted=*/false), 0);
  EXPECT_EQ(Stats().models_size(), 1);
  record.set_hash("blake3:other");
  EXPECT_EQ(loader_->OnRecordChanged(record, /*deleted=*/false), 1);
  EXPECT_EQ(Stats().models_size(), 0);
}

TEST_F(LoaderServiceTest, PreloadWarmsWithoutALease) {
  Start(1 << 20);
  AddModel("k1", Tensors(10, 1));
  for (bool hit : {false, true}) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
    v1::LoadRequest request;
    request.set_key("k1");
    v1::PreloadResponse response;
    ASSERT_TRUE(stub_->Preload(&context, request, &response).ok());
    EXPECT_EQ(response.hit(), hit);
    EXPECT_EQ(response.cache_key(), "k1");
  }
  EXPECT_EQ(Stats().models(0).leases(), 0);
}

TEST_F(LoaderServiceTest, ShutdownEndsHeldStreamsUnavailable) {
  Start(1 << 20);
  AddModel("k1", Tensors(10, 1));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HeldLoad> held, Load("k1"));
  std::thread stopper([this] { host_->Shutdown(absl::Seconds(5)); });
  grpc::Status status = held->reader->Finish();
  stopper.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(status.error_message(),
            "the loader is shutting down; load again once it is back");
}

TEST_F(LoaderServiceTest, ConcurrentLoadsOfOneModelReadItOnce) {
  Start(1 << 20);
  AddModel("k1", Tensors(100000, 3));
  constexpr int kClients = 10;
  std::vector<std::unique_ptr<HeldLoad>> held(kClients);
  std::vector<absl::Status> statuses(kClients);
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      absl::StatusOr<std::unique_ptr<HeldLoad>> load = Load("k1");
      statuses[i] = load.status();
      if (load.ok()) held[i] = *std::move(load);
    });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& s : statuses) ASSERT_OK(s);
  v1::CacheStats stats = Stats();
  EXPECT_EQ(stats.misses(), 1);
  EXPECT_EQ(stats.hits(), kClients - 1);
  EXPECT_EQ(stats.models(0).leases(), kClients);
  for (const auto& h : held) {
    EXPECT_EQ(h->handle.shm_name(), held[0]->handle.shm_name());
  }
}

}  // namespace
}  // namespace mm::loader
