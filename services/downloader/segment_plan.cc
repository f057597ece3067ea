#include "services/downloader/segment_plan.h"

#include <algorithm>

namespace mm::downloader {

std::vector<Segment> PlanSegments(const FileShape& shape,
                                  const SegmentLimits& limits) {
  const int64_t total = shape.total_bytes;
  const int64_t min_size = std::max<int64_t>(limits.min_segment_size, 1);
  int64_t count = 1;
  if (shape.accepts_ranges && limits.max_segments > 1 &&
      total / 2 >= min_size) {  // total >= 2 * min_size, without overflow
    count = std::min<int64_t>(limits.max_segments, total / min_size);
  }
  if (count == 1) return {Segment{0, total >= 0 ? total : -1, 0}};
  const int64_t size = total / count;
  std::vector<Segment> segments;
  segments.reserve(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    const int64_t begin = size * i;
    const int64_t end = i == count - 1 ? total : size * (i + 1);
    segments.push_back(Segment{begin, end, 0});
  }
  return segments;
}

bool HasSavedProgress(const std::vector<Segment>& segments) {
  return !segments.empty() && !(segments.size() == 1 && segments[0].done == 0);
}

}  // namespace mm::downloader
