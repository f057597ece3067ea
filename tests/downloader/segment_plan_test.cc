// PlanSegments and HasSavedProgress on their own: how a file is split
// before any byte moves, and when saved segments are worth resuming.
#include "services/downloader/segment_plan.h"

#include <limits>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mm::downloader {
namespace {

using ::testing::ElementsAre;

MATCHER_P3(IsSegment, begin, end, done, "") {
  return arg.begin == begin && arg.end == end && arg.done == done;
}

constexpr int64_t kMiB = int64_t{1} << 20;

SegmentLimits Limits(int max_segments, int64_t min_segment_size) {
  return SegmentLimits{.max_segments = max_segments,
                       .min_segment_size = min_segment_size};
}

TEST(PlanSegmentsTest, UnknownSizeIsOneOpenEndedStream) {
  EXPECT_THAT(
      PlanSegments({.total_bytes = -1, .accepts_ranges = true}, Limits(8, 1)),
      ElementsAre(IsSegment(0, -1, 0)));
}

TEST(PlanSegmentsTest, WithoutRangesALargeFileIsStillOneStream) {
  EXPECT_THAT(PlanSegments({.total_bytes = 100 * kMiB, .accepts_ranges = false},
                           Limits(8, kMiB)),
              ElementsAre(IsSegment(0, 100 * kMiB, 0)));
}

TEST(PlanSegmentsTest, EmptyFileIsOneCompleteSegment) {
  std::vector<Segment> plan =
      PlanSegments({.total_bytes = 0, .accepts_ranges = true}, Limits(8, 1));
  ASSERT_THAT(plan, ElementsAre(IsSegment(0, 0, 0)));
  EXPECT_TRUE(plan[0].Complete());
}

TEST(PlanSegmentsTest, SplitsOnlyFromTwoMinimumSegments) {
  const SegmentLimits limits = Limits(8, 16 * kMiB);
  EXPECT_THAT(
      PlanSegments({.total_bytes = 32 * kMiB - 1, .accepts_ranges = true},
                   limits),
      ElementsAre(IsSegment(0, 32 * kMiB - 1, 0)));
  EXPECT_THAT(
      PlanSegments({.total_bytes = 32 * kMiB, .accepts_ranges = true}, limits),
      ElementsAre(IsSegment(0, 16 * kMiB, 0),
                  IsSegment(16 * kMiB, 32 * kMiB, 0)));
}

TEST(PlanSegmentsTest, AsManyMinimumSegmentsAsFitWithTheRemainderLast) {
  // 100 bytes, at least 30 each: 3 segments of 33, the last one 34.
  EXPECT_THAT(
      PlanSegments({.total_bytes = 100, .accepts_ranges = true}, Limits(8, 30)),
      ElementsAre(IsSegment(0, 33, 0), IsSegment(33, 66, 0),
                  IsSegment(66, 100, 0)));
}

TEST(PlanSegmentsTest, NeverMoreThanMaxSegments) {
  std::vector<Segment> plan = PlanSegments(
      {.total_bytes = 1000 * kMiB, .accepts_ranges = true}, Limits(4, kMiB));
  ASSERT_EQ(plan.size(), 4u);
  EXPECT_EQ(plan.front().begin, 0);
  EXPECT_EQ(plan.back().end, 1000 * kMiB);
  for (size_t i = 1; i < plan.size(); ++i) {
    EXPECT_EQ(plan[i].begin, plan[i - 1].end) << "gap or overlap at " << i;
  }
}

TEST(PlanSegmentsTest, OneSegmentAllowedMeansOneStream) {
  EXPECT_THAT(PlanSegments({.total_bytes = 1000 * kMiB, .accepts_ranges = true},
                           Limits(1, kMiB)),
              ElementsAre(IsSegment(0, 1000 * kMiB, 0)));
}

TEST(PlanSegmentsTest, NonPositiveMinimumCountsAsOneByte) {
  EXPECT_THAT(
      PlanSegments({.total_bytes = 3, .accepts_ranges = true}, Limits(8, 0)),
      ElementsAre(IsSegment(0, 1, 0), IsSegment(1, 2, 0), IsSegment(2, 3, 0)));
}

TEST(PlanSegmentsTest, HugeMinimumDoesNotOverflow) {
  EXPECT_THAT(PlanSegments({.total_bytes = 100, .accepts_ranges = true},
                           Limits(8, std::numeric_limits<int64_t>::max())),
              ElementsAre(IsSegment(0, 100, 0)));
}

TEST(HasSavedProgressTest, OnlyBytesWrittenCount) {
  EXPECT_FALSE(HasSavedProgress({}));
  EXPECT_FALSE(HasSavedProgress({Segment{0, -1, 0}}));
  EXPECT_FALSE(HasSavedProgress({Segment{0, 100, 0}}));
  EXPECT_TRUE(HasSavedProgress({Segment{0, -1, 10}}));
  // Several planned segments: the split itself is saved progress, even
  // before a byte (their ranges must be asked for again, not re-planned).
  EXPECT_TRUE(HasSavedProgress({Segment{0, 50, 0}, Segment{50, 100, 0}}));
}

}  // namespace
}  // namespace mm::downloader
