// mm_blake3_kernel_bench: BLAKE3 throughput of each SIMD backend on a buffer
// already in memory, so no file, page fault or thread is measured: only the
// compression code. Prints, per backend, the best of `repeats` in GB/s of
// the thread's CPU time (which other processes on a shared machine barely
// disturb) and of wall time.
//
// Usage: mm_blake3_kernel_bench [size_kib] [repeats] [update_kib]
// `size_kib` (default 1024: the data stays in L2) bytes are hashed per
// repeat, fed to Update in `update_kib` pieces (default: all at once).
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "model/blake3.h"

namespace {

double ThreadCpuSeconds() {
  timespec ts;
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) +
         1e-9 * static_cast<double>(ts.tv_nsec);
}

}  // namespace

int main(int argc, char** argv) {
  const size_t size_kib = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 1024;
  const int repeats = argc > 2 ? std::max(1, std::atoi(argv[2])) : 200;
  const size_t update_kib =
      argc > 3 ? std::strtoul(argv[3], nullptr, 10) : size_kib;
  if (size_kib == 0 || update_kib == 0) {
    std::fprintf(stderr, "usage: %s [size_kib] [repeats] [update_kib]\n",
                 argv[0]);
    return 2;
  }
  std::vector<uint8_t> data(size_kib * 1024);
  for (size_t i = 0; i < data.size(); ++i) {
    data[i] = static_cast<uint8_t>(i * 2654435761u >> 13);
  }
  std::printf("%zu KiB per hash, in %zu KiB updates, best of %d\n", size_kib,
              update_kib, repeats);
  std::printf("%-9s %10s %10s  %s\n", "backend", "GB/s cpu", "GB/s wall",
              "digest prefix");
  for (mm::model::Blake3Backend backend :
       mm::model::SupportedBlake3Backends()) {
    double best_cpu = 1e9;
    double best_wall = 1e9;
    uint8_t first_byte = 0;
    for (int r = 0; r < repeats; ++r) {
      const double cpu_start = ThreadCpuSeconds();
      const auto wall_start = std::chrono::steady_clock::now();
      absl::StatusOr<mm::model::Blake3Hasher> hasher =
          mm::model::Blake3Hasher::WithBackend(backend);
      if (!hasher.ok()) return 1;
      for (size_t offset = 0; offset < data.size();
           offset += update_kib * 1024) {
        const size_t length = std::min(update_kib * 1024, data.size() - offset);
        hasher->Update(absl::MakeConstSpan(data.data() + offset, length));
      }
      first_byte = hasher->Finalize()[0];
      best_cpu = std::min(best_cpu, ThreadCpuSeconds() - cpu_start);
      best_wall =
          std::min(best_wall, std::chrono::duration<double>(
                                  std::chrono::steady_clock::now() - wall_start)
                                  .count());
    }
    const double bytes = static_cast<double>(data.size());
    std::printf("%-9s %10.2f %10.2f  %02x\n",
                std::string(mm::model::Blake3BackendName(backend)).c_str(),
                bytes / best_cpu / 1e9, bytes / best_wall / 1e9, first_byte);
  }
  return 0;
}
