// Reads a LoadPlan's tensors straight into a destination region: parallel
// pread in large chunks across several threads, no intermediate copy. A
// tensor the plan converts (PlannedTensor::converted) is read chunk by
// chunk into a small per-thread staging buffer, converted
// (dtype_conversion.h) into a second one and written to its place in the
// region (straight into `destination` when there is no descriptor), on the
// same threads: each source byte is read once, and conversion of one chunk
// overlaps the reading of others.
//
// Thread-safety: a free function; it runs its own threads and returns when
// they are done. `progress` is called from those threads, serialised.
//
//   RETURN_IF_ERROR(ReadIntoRegion(plan, region->data(), {.threads = 4}));
#ifndef MM_SERVICES_LOADER_REGION_READER_H_
#define MM_SERVICES_LOADER_REGION_READER_H_

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "services/loader/load_plan.h"

namespace mm::loader {

struct ReadOptions {
  // Reading threads (at least 1).
  int threads = 4;
  // Bytes per pread; large enough that the system call cost vanishes,
  // small enough that threads share a single big tensor.
  uint64_t chunk_bytes = 8 << 20;
  // Source bytes per chunk of a converted tensor (a multiple of 8, so no
  // element straddles two chunks): the staging buffer's size, small enough
  // to stay in the cache between the read and the conversion.
  uint64_t convert_chunk_bytes = 1 << 20;
  // Called with (bytes read so far, plan.data_bytes) after each chunk.
  std::function<void(uint64_t, uint64_t)> progress;
};

// Fills `destination` (plan.total_bytes long) with every tensor at its
// region_offset; the padding between tensors is left as it is (zero in a
// fresh shm object). With `destination_fd` (the same object's descriptor,
// e.g. a shm object) the bytes go file to object inside the kernel
// (sendfile, one descriptor per thread): no user-space copy, and on tmpfs
// no zero-fill of pages that are about to be overwritten; without it (or
// where sendfile refuses), pread into the mapping. NOT_FOUND when a file
// vanished; DATA_LOSS when a file is shorter than its header said or
// changed size since it was planned; RESOURCE_EXHAUSTED when the object's
// filesystem is full; INTERNAL for other read errors; a conversion's error
// (ConvertElements).
absl::Status ReadIntoRegion(const LoadPlan& plan, char* destination,
                            const ReadOptions& options,
                            int destination_fd = -1);

}  // namespace mm::loader

#endif  // MM_SERVICES_LOADER_REGION_READER_H_
