// How the engine splits one file into byte ranges fetched on separate
// connections, decided once the first response tells the size and whether
// the server honours Range. Pure functions: no I/O, no clock.
//
//   std::vector<Segment> plan = PlanSegments(
//       {.total_bytes = 100 << 20, .accepts_ranges = true},
//       {.max_segments = 8, .min_segment_size = 16 << 20});
//   // 6 segments of 16.6 MiB, the last one taking the remainder.
//
// Thread-safety: pure functions.
#ifndef MM_SERVICES_DOWNLOADER_SEGMENT_PLAN_H_
#define MM_SERVICES_DOWNLOADER_SEGMENT_PLAN_H_

#include <cstdint>
#include <vector>

#include "services/downloader/job.h"

namespace mm::downloader {

// What the first response said about the file.
struct FileShape {
  // -1 when the server did not say (no Content-Length, no Content-Range).
  int64_t total_bytes = -1;
  // A 206 to "bytes=0-": ranges work, so a lost connection resumes and
  // segments can run side by side.
  bool accepts_ranges = false;
};

struct SegmentLimits {
  // Connections for one file at most.
  int max_segments = 8;
  // The smallest range worth its own connection; a file is split only when
  // it holds at least two of them. Values below 1 count as 1.
  int64_t min_segment_size = int64_t{16} << 20;
};

// The segments of a file fetched from zero, in order, covering [0, total)
// without gaps, none begun (done = 0). One segment when the size is unknown
// (end -1: one open-ended stream), when ranges do not work, or when the file
// is smaller than two minimum segments; otherwise as many as fit, up to
// max_segments, of equal size with the remainder in the last one.
std::vector<Segment> PlanSegments(const FileShape& shape,
                                  const SegmentLimits& limits);

// Whether saved segments hold progress to resume from: anything but
// nothing planned or one segment with no byte written.
bool HasSavedProgress(const std::vector<Segment>& segments);

}  // namespace mm::downloader

#endif  // MM_SERVICES_DOWNLOADER_SEGMENT_PLAN_H_
