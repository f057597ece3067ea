// End to end: the real mm-records and mm-loader executables. A client maps
// a loaded model's shared memory and compares its bytes with the file; a
// client killed with SIGKILL loses its lease within 2 s; a loader killed
// with SIGKILL ends its clients' streams UNAVAILABLE and, restarted, leaves
// no shared-memory object of the killed run; with the records service down
// a Load fails UNAVAILABLE instead of hanging.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/client.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "modelmanager/v1/loader.grpc.pb.h"
#include "modelmanager/v1/records.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/testing/child_service.h"
#include "tests/testing/model_fixtures.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace mm {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::modelmanager::v1;
using ::mm::testing::FixtureByteSize;
using ::mm::testing::FixtureTensor;
using ::mm::testing::StatusIs;
using ::mm::testing::Subprocess;
using ::mm::testing::TempDir;
using ::testing::HasSubstr;

constexpr absl::Duration kCallTimeout = absl::Seconds(30);

std::string ReadAll(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

// Waits until `path` contains `needle`; the child writes it when ready.
// The child gives the test no event, so the file is looked at in short
// slices until the deadline (or until the child exits without writing it).
absl::StatusOr<std::string> AwaitLine(const std::filesystem::path& path,
                                      const std::string& needle,
                                      Subprocess& child) {
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  for (;;) {
    std::string text = ReadAll(path);
    size_t at = text.find(needle);
    if (at != std::string::npos) {
      size_t end = text.find('\n', at);
      if (end != std::string::npos) return text.substr(at, end - at);
    }
    if (!child.Running()) {
      return absl::InternalError(absl::StrCat("child exited: ", text));
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("no '", needle, "' in ", text));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
}

class LoaderE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    records_address_ = "unix:" + (dir_.path() / "records.sock").string();
    loader_address_ = "unix:" + (dir_.path() / "loader.sock").string();
    StartRecords();
    ASSERT_OK_AND_ASSIGN(auto records_channel,
                         MakeChannel(records_address_, {}));
    records_stub_ = v1::ModelRecords::NewStub(records_channel);
    StartLoader();
    ASSERT_OK_AND_ASSIGN(loader_channel_, MakeChannel(loader_address_, {}));
    loader_stub_ = v1::Loader::NewStub(loader_channel_);

    std::mt19937 random(42);
    tensors_ = {{.name = "decoder.weight", .dtype = "F32", .shape = {64, 1000}},
                {.name = "decoder.bias", .dtype = "F16", .shape = {7}}};
    for (FixtureTensor& t : tensors_) {
      t.data.resize(FixtureByteSize(t));
      for (char& c : t.data) c = static_cast<char>(random());
    }
    testing::WriteSafetensors(dir_.path() / "models" / "vae.safetensors",
                              tensors_);
    nlohmann::json config = {{"hash", "blake3:" + std::string(64, 'a')},
                             {"path", "vae.safetensors"},
                             {"file_size", 1},
                             {"name", "test vae"},
                             {"source", "/x/vae.safetensors"},
                             {"source_type", "path"},
                             {"type", "vae"},
                             {"format", "checkpoint"},
                             {"base", "sd-1"}};
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
    v1::CreateModelRequest request;
    request.set_config_json(config.dump());
    v1::Model created;
    grpc::Status status =
        records_stub_->CreateModel(&context, request, &created);
    ASSERT_TRUE(status.ok()) << GrpcStatusLine(status);
    key_ = created.key();
  }

  // A loader that exits on SIGTERM unlinks its objects; a SIGKILL (the
  // Subprocess destructor's) would leave them in /dev/shm.
  void TearDown() override {
    // An idle client connection that made a callback-API call holds the
    // server's drain until close to the grace period (seen with gRPC 1.51);
    // close ours first so the test measures the loader, not that.
    loader_stub_.reset();
    loader_channel_.reset();
    if (loader_ != nullptr && loader_->Running()) {
      loader_->Signal(SIGTERM);
      absl::StatusOr<int> code = loader_->Wait(absl::Seconds(30));
      ASSERT_OK(code.status());
      EXPECT_EQ(*code, 0) << ReadAll(dir_.path() / "loader.log");
    }
    for (const std::string& name : shm_names_) {
      EXPECT_FALSE(std::filesystem::exists("/dev/shm" + name)) << name;
    }
  }

  void StartRecords() {
    ASSERT_OK_AND_ASSIGN(
        records_,
        Subprocess::Start({MM_RECORDS_BIN, "--listen", records_address_, "--db",
                           "sqlite:" + (dir_.path() / "records.db").string()},
                          dir_.path() / "records.log"));
    ASSERT_OK_AND_ASSIGN(auto channel, MakeChannel(records_address_, {}));
    ASSERT_OK(testing::WaitForChildServing(
        *records_, *channel, "modelmanager.v1.ModelRecords",
        dir_.path() / "records.log", absl::Seconds(60)));
  }

  void StartLoader() {
    ASSERT_OK_AND_ASSIGN(
        loader_,
        Subprocess::Start(
            {MM_LOADER_BIN, "--listen", loader_address_, "--records",
             records_address_, "--models-dir",
             (dir_.path() / "models").string(), "--ram-cache", "64MiB",
             "--shm-name-log", (dir_.path() / "loader-shm.list").string(),
             "--shutdown-grace", "5s"},
            dir_.path() / "loader.log"));
    ASSERT_OK_AND_ASSIGN(auto channel, MakeChannel(loader_address_, {}));
    ASSERT_OK(testing::WaitForChildServing(
        *loader_, *channel, "modelmanager.v1.Loader",
        dir_.path() / "loader.log", absl::Seconds(60)));
  }

  absl::StatusOr<std::unique_ptr<Subprocess>> StartHolder(
      const std::string& name) {
    return Subprocess::Start({MM_LOADER_HOLD_CLIENT_BIN, loader_address_, key_},
                             dir_.path() / (name + ".out"));
  }

  int Leases() {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
    v1::CacheStats stats;
    grpc::Status status = loader_stub_->GetCacheStats(&context, {}, &stats);
    EXPECT_TRUE(status.ok()) << GrpcStatusLine(status);
    int leases = 0;
    for (const v1::CachedModel& m : stats.models()) leases += m.leases();
    return leases;
  }

  TempDir dir_;
  std::string records_address_;
  std::string loader_address_;
  std::unique_ptr<Subprocess> records_;
  std::unique_ptr<Subprocess> loader_;
  std::unique_ptr<v1::ModelRecords::Stub> records_stub_;
  std::shared_ptr<grpc::Channel> loader_channel_;
  std::unique_ptr<v1::Loader::Stub> loader_stub_;
  std::vector<FixtureTensor> tensors_;
  std::string key_;
  // Objects that must be gone after TearDown.
  std::vector<std::string> shm_names_;
};

TEST_F(LoaderE2eTest, ClientMapsTheBytesOfTheFile) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
  v1::LoadRequest request;
  request.set_key(key_);
  auto reader = loader_stub_->Load(&context, request);
  v1::LoadResponse response;
  v1::ModelHandle handle;
  while (reader->Read(&response)) {
    if (response.has_handle()) {
      handle = response.handle();
      break;
    }
  }
  ASSERT_FALSE(handle.shm_name().empty());
  shm_names_.push_back(handle.shm_name());
  EXPECT_EQ(handle.config().name(), "test vae");
  int fd = ::shm_open(handle.shm_name().c_str(), O_RDONLY, 0);
  ASSERT_GE(fd, 0);
  struct stat st;
  ASSERT_EQ(::fstat(fd, &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_size, handle.total_bytes());
  auto* base = static_cast<const char*>(
      ::mmap(nullptr, st.st_size, PROT_READ, MAP_SHARED, fd, 0));
  ::close(fd);
  ASSERT_NE(base, MAP_FAILED);
  ASSERT_EQ(handle.tensors_size(), 2);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(std::string(base + handle.tensors(i).offset(),
                          handle.tensors(i).byte_size()),
              tensors_[i].data);
  }
  ::munmap(const_cast<char*>(base), st.st_size);
  context.TryCancel();
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

// The issue's bound is 2 s. Sanitizer builds run the loader and this test
// several times slower, beside other tests on two cores (a TSan run once
// took 3.4 s), so they get 10 s: still far below any keepalive or polling
// interval, so it still shows the lease ends on the stream's cancellation.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr absl::Duration kLeaseEndBound = absl::Seconds(10);
#else
constexpr absl::Duration kLeaseEndBound = absl::Seconds(2);
#endif

TEST_F(LoaderE2eTest, KilledClientLosesItsLeaseWithinTwoSeconds) {
  ASSERT_OK_AND_ASSIGN(auto holder, StartHolder("holder"));
  ASSERT_OK_AND_ASSIGN(std::string line, AwaitLine(dir_.path() / "holder.out",
                                                   "handle /mm-", *holder));
  shm_names_.push_back(line.substr(std::string("handle ").size()));
  EXPECT_EQ(Leases(), 1);
  holder->Signal(SIGKILL);
  ASSERT_OK(holder->Wait(absl::Seconds(10)).status());
  absl::Time killed = absl::Now();
  while (Leases() != 0) {
    ASSERT_LT(absl::Now() - killed, kLeaseEndBound)
        << "the lease outlived its client";
    absl::SleepFor(absl::Milliseconds(20));
  }
}

TEST_F(LoaderE2eTest, KilledLoaderEndsStreamsAndItsRestartLeavesNoShm) {
  ASSERT_OK_AND_ASSIGN(auto holder, StartHolder("holder"));
  ASSERT_OK_AND_ASSIGN(std::string line, AwaitLine(dir_.path() / "holder.out",
                                                   "handle /mm-", *holder));
  std::string shm_name = line.substr(std::string("handle ").size());
  shm_names_.push_back(shm_name);
  ASSERT_TRUE(std::filesystem::exists("/dev/shm" + shm_name));
  loader_->Signal(SIGKILL);
  ASSERT_OK(loader_->Wait(absl::Seconds(10)).status());
  ASSERT_OK_AND_ASSIGN(std::string ended, AwaitLine(dir_.path() / "holder.out",
                                                    "ended ", *holder));
  EXPECT_THAT(ended, HasSubstr("ended UNAVAILABLE"));
  // Nothing removed it: the loader died without running any destructor.
  EXPECT_TRUE(std::filesystem::exists("/dev/shm" + shm_name));
  StartLoader();
  EXPECT_FALSE(std::filesystem::exists("/dev/shm" + shm_name));
  EXPECT_THAT(ReadAll(dir_.path() / "loader.log"),
              HasSubstr("removed 1 shared-memory object(s) of a previous run"));
}

TEST_F(LoaderE2eTest, RecordsDownIsUnavailableNotAHang) {
  records_->Signal(SIGKILL);
  ASSERT_OK(records_->Wait(absl::Seconds(10)).status());
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
  v1::LoadRequest request;
  request.set_key(key_);
  auto reader = loader_stub_->Load(&context, request);
  v1::LoadResponse response;
  while (reader->Read(&response)) {
  }
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << GrpcStatusLine(status);
  EXPECT_THAT(status.error_message(),
              HasSubstr("the records service at " + records_address_ +
                        " cannot be reached"));
}

TEST_F(LoaderE2eTest, DeletedRecordDropsItsEntryOnceReleased) {
  ASSERT_OK_AND_ASSIGN(auto holder, StartHolder("holder"));
  ASSERT_OK_AND_ASSIGN(std::string line, AwaitLine(dir_.path() / "holder.out",
                                                   "handle /mm-", *holder));
  std::string shm_name = line.substr(std::string("handle ").size());
  shm_names_.push_back(shm_name);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
  v1::DeleteModelRequest request;
  request.set_key(key_);
  v1::DeleteModelResponse response;
  grpc::Status status =
      records_stub_->DeleteModel(&context, request, &response);
  ASSERT_TRUE(status.ok()) << GrpcStatusLine(status);
  // Still held: the entry (and its object) stay until the holder goes.
  ASSERT_OK(AwaitLine(dir_.path() / "loader.log", "record " + key_ + " deleted",
                      *loader_)
                .status());
  EXPECT_EQ(Leases(), 1);
  EXPECT_TRUE(std::filesystem::exists("/dev/shm" + shm_name));
  holder->Signal(SIGKILL);
  ASSERT_OK(holder->Wait(absl::Seconds(10)).status());
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (std::filesystem::exists("/dev/shm" + shm_name)) {
    ASSERT_LT(absl::Now(), deadline) << "the deleted record's entry stayed";
    absl::SleepFor(absl::Milliseconds(20));
  }
  grpc::ClientContext stats_context;
  stats_context.set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
  v1::CacheStats stats;
  ASSERT_TRUE(loader_stub_->GetCacheStats(&stats_context, {}, &stats).ok());
  EXPECT_EQ(stats.models_size(), 0);
  EXPECT_EQ(stats.ram_used_bytes(), 0);
}

#ifdef MM_PYTHON_EXAMPLE
TEST_F(LoaderE2eTest, PythonExampleMapsTheSameBytes) {
  fs::path dump = dir_.path() / "python.dump";
  ASSERT_OK_AND_ASSIGN(
      testing::CommandResult result,
      testing::RunCommand({"/usr/bin/python3", MM_PYTHON_EXAMPLE, "--loader",
                           loader_address_, key_, "--dump", dump.string()},
                          absl::Seconds(60),
                          {{"PYTHONPATH", MM_PYTHON_STUBS_DIR}}));
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_THAT(result.out, HasSubstr(absl::StrCat(key_, ": 2 tensors in /mm-")));
  EXPECT_THAT(result.out, HasSubstr("decoder.weight F32 [64, 1000]"));
  EXPECT_EQ(ReadAll(dump), tensors_[0].data + tensors_[1].data);
  // The script's stream ended with it: no lease is left.
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (Leases() != 0) {
    ASSERT_LT(absl::Now(), deadline);
    absl::SleepFor(absl::Milliseconds(20));
  }
}

// A files-only submodel: the script maps the 64-byte region, finds no
// tensors and prints the side files.
TEST_F(LoaderE2eTest, PythonExampleLoadsAFilesOnlySubmodel) {
  fs::path tokenizer = dir_.path() / "models" / "sd" / "tokenizer";
  testing::WriteFile(dir_.path() / "models" / "sd" / "model_index.json", "{}");
  testing::WriteFile(tokenizer / "merges.txt", "a b\n");
  testing::WriteFile(tokenizer / "vocab.json", R"({"a": 0})");
  nlohmann::json config = {{"hash", "blake3:" + std::string(64, 'b')},
                           {"path", "sd"},
                           {"file_size", 1},
                           {"name", "test sd"},
                           {"source", "/x/sd"},
                           {"source_type", "path"},
                           {"type", "main"},
                           {"format", "diffusers"},
                           {"base", "sd-1"}};
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
  v1::CreateModelRequest request;
  request.set_config_json(config.dump());
  v1::Model created;
  grpc::Status status = records_stub_->CreateModel(&context, request, &created);
  ASSERT_TRUE(status.ok()) << GrpcStatusLine(status);
  fs::path dump = dir_.path() / "python.dump";
  ASSERT_OK_AND_ASSIGN(
      testing::CommandResult result,
      testing::RunCommand(
          {"/usr/bin/python3", MM_PYTHON_EXAMPLE, "--loader", loader_address_,
           created.key() + ":tokenizer", "--dump", dump.string()},
          absl::Seconds(60), {{"PYTHONPATH", MM_PYTHON_STUBS_DIR}}));
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_THAT(result.out, HasSubstr(absl::StrCat(
                              created.key(), ":tokenizer: 0 tensors in /mm-")));
  EXPECT_THAT(result.out, HasSubstr(" (64 bytes)\n"));
  EXPECT_THAT(result.out, HasSubstr("  file merges.txt (4 bytes)\n"
                                    "  file vocab.json (8 bytes)\n"));
  EXPECT_EQ(ReadAll(dump), "");
}
#endif

TEST_F(LoaderE2eTest, CliLoadPsHoldUnloadCache) {
  auto mm = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {MM_BIN, "--loader", loader_address_});
    absl::StatusOr<testing::CommandResult> result =
        testing::RunCommand(args, absl::Seconds(60));
    EXPECT_OK(result.status());
    return result.ok() ? *result : testing::CommandResult{};
  };
  testing::CommandResult load = mm({"load", key_});
  ASSERT_EQ(load.exit_code, 0) << load.err;
  EXPECT_THAT(load.out, HasSubstr(absl::StrCat("loaded ", key_,
                                               " (test vae): 2 tensors, ")));
  testing::CommandResult ps = mm({"ps"});
  ASSERT_EQ(ps.exit_code, 0) << ps.err;
  EXPECT_THAT(ps.out, HasSubstr("KEY"));
  EXPECT_THAT(ps.out, HasSubstr(key_));
  EXPECT_THAT(ps.out, HasSubstr("test vae"));

  ASSERT_OK_AND_ASSIGN(auto holder,
                       Subprocess::Start({MM_BIN, "--loader", loader_address_,
                                          "load", key_, "--hold"},
                                         dir_.path() / "hold.out"));
  ASSERT_OK(AwaitLine(dir_.path() / "hold.out", "holding the lease", *holder)
                .status());
  EXPECT_EQ(Leases(), 1);
  testing::CommandResult refused = mm({"unload", key_});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err,
              HasSubstr(absl::StrCat("mm: FAILED_PRECONDITION: ", key_,
                                     " is held by 1 open Load stream(s)")));
  holder->Signal(SIGINT);
  ASSERT_OK(holder->Wait(absl::Seconds(10)).status());
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (Leases() != 0) {
    ASSERT_LT(absl::Now(), deadline);
    absl::SleepFor(absl::Milliseconds(20));
  }
  testing::CommandResult cache = mm({"cache"});
  ASSERT_EQ(cache.exit_code, 0) << cache.err;
  EXPECT_THAT(cache.out, HasSubstr("hits"));
  EXPECT_THAT(cache.out, HasSubstr("misses"));
  testing::CommandResult json = mm({"--json", "cache"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  nlohmann::json stats = nlohmann::json::parse(json.out);
  EXPECT_EQ(stats["misses"], "1");  // int64 is a string in proto JSON
  EXPECT_EQ(stats["hits"], "1");
  testing::CommandResult unload = mm({"unload", key_});
  ASSERT_EQ(unload.exit_code, 0) << unload.err;
  EXPECT_THAT(unload.out, HasSubstr(absl::StrCat("unloaded ", key_, ": ")));
  EXPECT_THAT(mm({"unload", key_}).err,
              HasSubstr("mm: NOT_FOUND: " + key_ + " is not in the cache"));
}

}  // namespace
}  // namespace mm
