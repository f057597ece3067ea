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
//   - torch.load of the same weights saved with torch.save (Debian's
//     python3-torch; bench/load/torch_peers.py writes big.pt once)
//   - F32 -> F16: a Load with dtype F16 (cache miss: read + convert into
//     the shm object) against tensor.to(torch.float16) of the same tensors
//     already in memory in Python, with torch's default threads and with
//     --threads
//   - the loader's resident memory without shared memory (RssAnon of this
//     process, which is the loader) with --cached-gib GiB cached (copies of
//     the big file under other keys), when /dev/shm and the RAM allow it
// Each timed peer runs 3 times; the best is reported. Usage:
//   load_bench [--bytes N] [--dir DIR] [--threads N] [--cached-gib N]
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/client.h"
#include "common/server.h"
#include "services/loader/client/loaded_model.h"
#include "services/loader/dtype_conversion.h"
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
    // "big1", "big2", ...: the big file again under other keys (cache
    // entries of their own), for the resident-memory figure.
    record.set_path((absl::StartsWith(key, "big") ? std::string("big") : key) +
                    ".safetensors");
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

// The command's standard output (empty when it fails).
std::string Capture(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return out;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) {
    out.append(buffer, n);
  }
  return ::pclose(pipe) == 0 ? out : std::string();
}

// "RssAnon:    1234 kB" -> bytes, from /proc/self/status.
uint64_t StatusBytes(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, field + ":")) {
      uint64_t kb = 0;
      std::string number = line.substr(field.size() + 1);
      number.erase(0, number.find_first_not_of(" \t"));
      number = number.substr(0, number.find(' '));
      (void)absl::SimpleAtoi(number, &kb);
      return kb * 1024;
    }
  }
  return 0;
}

uint64_t MemAvailableBytes() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "MemAvailable:")) {
      uint64_t kb = 0;
      std::string number = line.substr(13);
      number.erase(0, number.find_first_not_of(" "));
      number = number.substr(0, number.find(' '));
      (void)absl::SimpleAtoi(number, &kb);
      return kb * 1024;
    }
  }
  return 0;
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
  int cached_gib = 8;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--cached-gib")
      (void)absl::SimpleAtoi(argv[i + 1], &cached_gib);
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
  const uint64_t rss_at_start = StatusBytes("RssAnon");
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
  mm::loader::ModelLoader loader(
      {.models_dir = dir,
       .ram_budget_bytes = (static_cast<uint64_t>(cached_gib) << 30) + 3 * size,
       .read_threads = threads,
       .records = &records});
  // The best of three cache misses: each load of "big" (as `dtype`, empty
  // for the file's own) is unloaded before the next.
  auto cold_load = [&](const std::string& dtype) {
    v1::LoadRequest request;
    request.set_key("big");
    request.set_dtype(dtype);
    return Best(3, [&] {
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
      unload.set_dtype(dtype);
      (void)loader.Unload(unload);
      return seconds;
    });
  };
  double miss = cold_load("");
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

  const std::string python = "/usr/bin/python3";
  const std::string peers = MM_LOAD_BENCH_SOURCE_DIR "/torch_peers.py";
  const bool have_torch =
      std::system((python + " -c 'import torch' 2>/dev/null").c_str()) == 0;
  if (have_torch) {
    fs::path pt = dir / "big.pt";
    if (!fs::exists(pt) || fs::last_write_time(pt) < fs::last_write_time(big)) {
      std::system(absl::StrCat(python, " ", peers, " save ", big.string(), " ",
                               pt.string())
                      .c_str());
    }
    std::system(absl::StrCat("cat ", pt.string(), " > /dev/null").c_str());
    double inside = 1e30;
    double wall = Best(3, [&] {
      double start = Now();
      std::string out =
          Capture(absl::StrCat(python, " ", peers, " load ", pt.string()));
      double seconds = Now() - start;
      double t = 0;
      if (absl::SimpleAtod(absl::StripAsciiWhitespace(out), &t)) {
        inside = std::min(inside, t);
      }
      return seconds;
    });
    std::cout << absl::StrFormat(
        "torch.load (.pt):        %7.3f s  %6.2f GB/s  (%.3f s with "
        "interpreter and import)\n",
        inside, gbps(inside), wall);
  } else {
    std::cout << "torch.load: skipped (no python3-torch)\n";
  }

  // F32 -> F16 of the whole file.
  double convert = cold_load("F16");
  std::cout << absl::StrFormat(
      "Load dtype F16 (miss):   %7.3f s  %6.2f GB/s of F32 (read + "
      "convert, %d threads)\n",
      convert, gbps(convert), threads);
  // The conversion kernel alone: ConvertElements in the loader's 1 MiB
  // chunks on `threads` threads, from the file's F32 data (mapped and
  // populated) into one reused per-thread buffer, as the loader converts
  // before writing to the object: no reading, no page faults.
  {
    int fd = ::open(big.c_str(), O_RDONLY);
    void* mapped =
        ::mmap(nullptr, size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
    ::close(fd);
    uint64_t header = 0;
    std::memcpy(&header, mapped, 8);
    const char* data = static_cast<const char*>(mapped) + 8 + header;
    const uint64_t elements = (size - 8 - header) / 4;
    double alone = Best(3, [&] {
      double start = Now();
      const uint64_t chunk = (1 << 20) / 4;
      std::atomic<uint64_t> next{0};
      auto work = [&] {
        std::vector<char> out(chunk * 2);
        for (;;) {
          uint64_t first = next.fetch_add(chunk);
          if (first >= elements) break;
          (void)mm::loader::ConvertElements("F32", "F16", data + first * 4,
                                            out.data(),
                                            std::min(chunk, elements - first));
        }
      };
      std::vector<std::thread> pool;
      for (int i = 1; i < threads; ++i) pool.emplace_back(work);
      work();
      for (std::thread& t : pool) t.join();
      return Now() - start;
    });
    ::munmap(mapped, size);
    std::cout << absl::StrFormat(
        "conversion kernel alone: %7.3f s  %6.2f GB/s of F32 (in memory, %d "
        "threads, no faults)\n",
        alone, gbps(alone), threads);
  }
  if (have_torch) {
    for (int torch_threads : {0, threads}) {
      std::string out = Capture(absl::StrCat(python, " ", peers, " to ",
                                             big.string(), " ", torch_threads));
      std::vector<std::string> parts =
          absl::StrSplit(absl::StripAsciiWhitespace(out), ' ');
      double seconds = 0;
      if (parts.size() == 2 && absl::SimpleAtod(parts[0], &seconds)) {
        std::cout << absl::StrFormat(
            "torch .to(float16):      %7.3f s  %6.2f GB/s of F32 (in memory, "
            "%s torch threads%s) -> Load is %.2fx\n",
            seconds, gbps(seconds), parts[1],
            torch_threads == 0 ? ", its default" : "", seconds / convert);
      }
    }
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
  v1::LoadRequest request;
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

  // Resident memory with cached_gib GiB cached: the big file under more
  // keys, unleased. Only what /dev/shm and the RAM leave room for (with
  // 1 GiB to spare for the rest of the machine).
  uint64_t want = static_cast<uint64_t>(cached_gib) << 30;
  struct statvfs shm;
  uint64_t shm_free =
      ::statvfs("/dev/shm", &shm) == 0 ? shm.f_bavail * shm.f_frsize : 0;
  uint64_t room = std::min(shm_free, MemAvailableBytes());
  room = room > (1ull << 30) ? room - (1ull << 30) : 0;
  uint64_t cached = 0;
  {
    v1::CacheStats stats = loader.GetCacheStats();
    cached = static_cast<uint64_t>(stats.ram_used_bytes());
  }
  bool out_of_room = false;
  for (int i = 1; cached < want; ++i) {
    if (size > room) {
      out_of_room = true;
      break;
    }
    request.set_key(absl::StrCat("big", i));
    auto loaded = loader.Load(request, {});
    if (!loaded.ok()) {
      std::cerr << loaded.status() << "\n";
      break;
    }
    cached += size;
    room -= size;
  }
  cached = static_cast<uint64_t>(loader.GetCacheStats().ram_used_bytes());
  std::cout << absl::StrFormat(
      "resident, %.2f GiB cached%s: RssAnon %.1f MiB (%.1f MiB at start), "
      "RssShmem %.1f MiB, RssFile %.1f MiB, VmHWM %.1f MiB\n",
      cached / double(1 << 30),
      out_of_room
          ? absl::StrFormat(" (all that fits: MemAvailable %.1f GiB left)",
                            MemAvailableBytes() / double(1 << 30))
          : std::string(),
      StatusBytes("RssAnon") / double(1 << 20), rss_at_start / double(1 << 20),
      StatusBytes("RssShmem") / double(1 << 20),
      StatusBytes("RssFile") / double(1 << 20),
      StatusBytes("VmHWM") / double(1 << 20));
  (*host)->Shutdown(absl::Seconds(5));
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
