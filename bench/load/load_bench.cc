// bench/load: the loader's RAM tier side by side with its peers, on one
// page-cached safetensors file (written by the bench, random F32 data):
//   - cp FILE /dev/shm/...                     (the copy the loader competes
//   with)
//   - RAM-tier Load, cache miss (in-process ModelLoader: planning, shm
//     object, parallel pread)
//   - numpy.fromfile of the same file (Debian's python3-numpy), when present
//   - cache-hit Load over gRPC on a unix socket: p50 / p90 of 200
//   - a client (mm_loader_client) loading a cached model, mapping it and
//     touching its first tensor: p50 of 50, for the big file and a 128 MiB one
// Each timed peer runs 3 times; the best is reported. Usage:
//   load_bench [--bytes N] [--dir DIR] [--threads N]
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/client.h"
#include "common/server.h"
#include "services/loader/client/loaded_model.h"
#include "services/loader/loader_service.h"
#include "services/loader/model_loader.h"

namespace {

namespace fs = std::filesystem;
namespace v1 = ::modelmanager::v1;

double Now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class Records : public mm::loader::RecordSource {
 public:
  absl::StatusOr<v1::Model> Get(const std::string& key) override {
    v1::Model record;
    record.set_key(key);
    record.set_path(key + ".safetensors");
    record.set_hash("blake3:bench");
    record.set_type("vae");
    record.set_format("checkpoint");
    record.set_base("sd-1");
    return record;
  }
};

// A safetensors file of `bytes` bytes of F32 tensors of 32 MiB each.
void WriteModel(const fs::path& path, uint64_t bytes) {
  const uint64_t tensor_bytes = 32ull << 20;
  uint64_t count = std::max<uint64_t>(1, bytes / tensor_bytes);
  std::string header = "{";
  for (uint64_t i = 0; i < count; ++i) {
    absl::StrAppend(&header, i ? "," : "", "\"t", i,
                    "\":{\"dtype\":\"F32\",\"shape\":[", tensor_bytes / 4,
                    "],\"data_offsets\":[", i * tensor_bytes, ",",
                    (i + 1) * tensor_bytes, "]}");
  }
  header += "}";
  while ((header.size() + 8) % 8 != 0) header += ' ';
  std::ofstream out(path, std::ios::binary);
  uint64_t length = header.size();
  out.write(reinterpret_cast<const char*>(&length), 8);
  out << header;
  std::mt19937_64 random(1);
  std::vector<uint64_t> block(tensor_bytes / 8);
  for (uint64_t i = 0; i < count; ++i) {
    for (uint64_t& word : block) word = random();
    out.write(reinterpret_cast<const char*>(block.data()), tensor_bytes);
  }
}

double Best(int runs, const std::function<double()>& once) {
  double best = 1e30;
  for (int i = 0; i < runs; ++i) best = std::min(best, once());
  return best;
}

double Percentile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  return values[static_cast<size_t>(p * (values.size() - 1))];
}

int Run(int argc, char** argv) {
  uint64_t bytes = 2ull << 30;
  fs::path dir = fs::temp_directory_path() / "mm-load-bench";
  int threads = 4;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--bytes") (void)absl::SimpleAtoi(argv[i + 1], &bytes);
    if (flag == "--dir") dir = argv[i + 1];
    if (flag == "--threads") (void)absl::SimpleAtoi(argv[i + 1], &threads);
  }
  fs::create_directories(dir);
  fs::path big = dir / "big.safetensors";
  fs::path small = dir / "small.safetensors";
  if (!fs::exists(big) || fs::file_size(big) < bytes) WriteModel(big, bytes);
  if (!fs::exists(small)) WriteModel(small, 128ull << 20);
  uint64_t size = fs::file_size(big);
  // Page-cache both files.
  std::system(
      absl::StrCat("cat ", big.string(), " ", small.string(), " > /dev/null")
          .c_str());
  auto gbps = [&](double seconds) { return size / seconds / 1e9; };
  std::cout << absl::StrFormat("file: %s, %.2f GiB, page-cached; %d threads\n",
                               big.string(), size / double(1 << 30), threads);

  // cp into /dev/shm.
  std::string shm_copy = "/dev/shm/mm-load-bench-cp";
  double cp = Best(3, [&] {
    double start = Now();
    std::system(absl::StrCat("cp ", big.string(), " ", shm_copy).c_str());
    double seconds = Now() - start;
    fs::remove(shm_copy);
    return seconds;
  });
  std::cout << absl::StrFormat("cp to /dev/shm:          %7.3f s  %6.2f GB/s\n",
                               cp, gbps(cp));

  Records records;
  mm::loader::ModelLoader loader({.models_dir = dir,
                                  .ram_budget_bytes = 3 * size,
                                  .read_threads = threads,
                                  .records = &records});
  v1::LoadRequest request;
  request.set_key("big");
  double miss = Best(3, [&] {
    double start = Now();
    auto loaded = loader.Load(request, {});
    double seconds = Now() - start;
    if (!loaded.ok()) {
      std::cerr << loaded.status() << "\n";
      std::exit(1);
    }
    loaded->lease.Release();
    v1::UnloadRequest unload;
    unload.set_key("big");
    (void)loader.Unload(unload);
    return seconds;
  });
  std::cout << absl::StrFormat(
      "RAM-tier Load (miss):    %7.3f s  %6.2f GB/s  = %.2fx cp\n", miss,
      gbps(miss), cp / miss);

  if (std::system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") == 0) {
    double numpy = Best(3, [&] {
      double start = Now();
      std::system(absl::StrCat("/usr/bin/python3 -c 'import numpy; "
                               "numpy.fromfile(\"",
                               big.string(), "\", dtype=numpy.uint8)'")
                      .c_str());
      return Now() - start;
    });
    std::cout << absl::StrFormat(
        "numpy.fromfile:          %7.3f s  %6.2f GB/s  (with interpreter "
        "start)\n",
        numpy, gbps(numpy));
  }

  // Over gRPC.
  mm::loader::LoaderService service(&loader);
  mm::ServerOptions options;
  options.listen = "unix:" + (dir / "loader.sock").string();
  auto host = mm::ServiceHost::Start(options, {&service},
                                     {mm::loader::kLoaderServiceName});
  if (!host.ok()) {
    std::cerr << host.status() << "\n";
    return 1;
  }
  (*host)->AddShutdownHook([&service] { service.Shutdown(); });
  auto channel = mm::MakeChannel((*host)->address(), {});
  auto stub = v1::Loader::NewStub(*channel);
  for (const char* key : {"big", "small"}) {
    request.set_key(key);
    (void)loader.Load(request, {});  // cached, unleased
  }
  std::vector<double> hits;
  request.set_key("big");
  for (int i = 0; i < 200; ++i) {
    grpc::ClientContext context;
    double start = Now();
    auto reader = stub->Load(&context, request);
    v1::LoadResponse response;
    while (reader->Read(&response) && !response.has_handle()) {
    }
    hits.push_back(Now() - start);
    context.TryCancel();
    reader->Finish();
  }
  std::cout << absl::StrFormat(
      "cache-hit Load (gRPC):   p50 %.3f ms  p90 %.3f ms\n",
      Percentile(hits, 0.5) * 1e3, Percentile(hits, 0.9) * 1e3);
  for (const char* key : {"small", "big"}) {
    std::vector<double> touches;
    for (int i = 0; i < 50; ++i) {
      double start = Now();
      auto model =
          mm::loader::client::LoadedModel::Load(*channel, {.key = key});
      if (!model.ok()) {
        std::cerr << model.status() << "\n";
        return 1;
      }
      volatile std::byte first = (*model)->tensors()[0].bytes[0];
      (void)first;
      touches.push_back(Now() - start);
    }
    std::cout << absl::StrFormat(
        "client map + first byte: p50 %.3f ms  (%s, %.0f MiB)\n",
        Percentile(touches, 0.5) * 1e3, key,
        fs::file_size(dir / (std::string(key) + ".safetensors")) /
            double(1 << 20));
  }
  (*host)->Shutdown(absl::Seconds(5));
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
