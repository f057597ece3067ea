#include "common/metrics/registry.h"

#include <cmath>
#include <limits>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mm::metrics {
namespace {

using ::testing::HasSubstr;

TEST(MetricsRegistryTest, RendersASmallRegistryExactly) {
  Registry registry;
  Family<Counter>* requests = registry.AddCounter(
      "mm_requests_total", "Requests served", {"method", "code"});
  requests->WithLabels({"Get", "OK"})->Increment();
  requests->WithLabels({"Get", "OK"})->Increment(2);
  requests->WithLabels({"Delete", "NOT_FOUND"})->Increment();
  registry.AddGauge("mm_queue_depth", "Jobs waiting")->WithLabels({})->Set(7);
  Family<Histogram>* latency = registry.AddHistogram(
      "mm_latency_seconds", "How long", {"method"}, {0.5, 1});
  latency->WithLabels({"Get"})->Observe(0.25);
  latency->WithLabels({"Get"})->Observe(0.5);  // le is inclusive
  latency->WithLabels({"Get"})->Observe(0.75);
  latency->WithLabels({"Get"})->Observe(3);

  EXPECT_EQ(registry.Render(),
            "# HELP mm_latency_seconds How long\n"
            "# TYPE mm_latency_seconds histogram\n"
            "mm_latency_seconds_bucket{method=\"Get\",le=\"0.5\"} 2\n"
            "mm_latency_seconds_bucket{method=\"Get\",le=\"1\"} 3\n"
            "mm_latency_seconds_bucket{method=\"Get\",le=\"+Inf\"} 4\n"
            "mm_latency_seconds_sum{method=\"Get\"} 4.5\n"
            "mm_latency_seconds_count{method=\"Get\"} 4\n"
            "# HELP mm_queue_depth Jobs waiting\n"
            "# TYPE mm_queue_depth gauge\n"
            "mm_queue_depth 7\n"
            "# HELP mm_requests_total Requests served\n"
            "# TYPE mm_requests_total counter\n"
            "mm_requests_total{method=\"Delete\",code=\"NOT_FOUND\"} 1\n"
            "mm_requests_total{method=\"Get\",code=\"OK\"} 3\n");
}

TEST(MetricsRegistryTest, UnlabelledFamiliesRenderZeroAndLabelledOnesNothing) {
  Registry registry;
  registry.AddCounter("a_total", "A");
  registry.AddHistogram("b_seconds", "B", {}, {1});
  registry.AddGauge("c", "C", {"tier"});
  EXPECT_EQ(registry.Render(),
            "# HELP a_total A\n# TYPE a_total counter\na_total 0\n"
            "# HELP b_seconds B\n# TYPE b_seconds histogram\n"
            "b_seconds_bucket{le=\"1\"} 0\nb_seconds_bucket{le=\"+Inf\"} 0\n"
            "b_seconds_sum 0\nb_seconds_count 0\n"
            "# HELP c C\n# TYPE c gauge\n");
}

TEST(MetricsRegistryTest, EscapesLabelValuesAndHelp) {
  EXPECT_EQ(EscapeLabelValue("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  EXPECT_EQ(EscapeHelp("x\\y\nz \"q\""), "x\\\\y\\nz \"q\"");

  Registry registry;
  registry.AddCounter("e_total", "line one\nline \\two", {"path"})
      ->WithLabels({"C:\\models\\\"x\"\n"})
      ->Increment();
  EXPECT_EQ(registry.Render(),
            "# HELP e_total line one\\nline \\\\two\n"
            "# TYPE e_total counter\n"
            "e_total{path=\"C:\\\\models\\\\\\\"x\\\"\\n\"} 1\n");
}

TEST(MetricsRegistryTest, FormatsValues) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(1e12), "1000000000000");
  EXPECT_EQ(FormatValue(-3), "-3");
  EXPECT_EQ(FormatValue(0.25), "0.25");
  EXPECT_EQ(FormatValue(0.1), "0.1");
  EXPECT_EQ(FormatValue(1e300), "1e+300");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatValue(std::nan("")), "NaN");
}

TEST(MetricsRegistryTest, CountersNeverGoDown) {
  Registry registry;
  Counter* counter = registry.AddCounter("c_total", "C")->WithLabels({});
  counter->Increment(5);
  counter->Increment(-2);
  counter->Increment(std::nan(""));
  EXPECT_EQ(counter->value(), 5);
}

TEST(MetricsRegistryTest, HistogramBucketsByUpperBound) {
  Histogram histogram({1, 2, 5});
  for (double value : {0.0, 1.0, 1.5, 2.0, 4.9, 5.0, 5.1, 100.0}) {
    histogram.Observe(value);
  }
  EXPECT_EQ(histogram.bucket_counts(), (std::vector<uint64_t>{2, 2, 2, 2}));
  EXPECT_DOUBLE_EQ(histogram.sum(), 119.5);
}

TEST(MetricsRegistryTest, AddingTheSameFamilyTwiceSharesIt) {
  Registry registry;
  auto* first = registry.AddCounter("x_total", "X", {"a"});
  auto* second = registry.AddCounter("x_total", "X", {"a"});
  EXPECT_EQ(first, second);
  EXPECT_EQ(first->WithLabels({"1"}), second->WithLabels({"1"}));
}

TEST(MetricsRegistryDeathTest, RejectsProgrammingErrors) {
  Registry registry;
  registry.AddCounter("x_total", "X", {"a"});
  EXPECT_DEATH(registry.AddGauge("x_total", "X", {"a"}),
               "added twice with a different type");
  EXPECT_DEATH(registry.AddCounter("x_total", "X", {"b"}),
               "added twice with a different type");
  EXPECT_DEATH(registry.AddCounter("9bad", "X"), "invalid metric name '9bad'");
  EXPECT_DEATH(registry.AddCounter("ok_total", "X", {"__reserved"}),
               "invalid label name '__reserved'");
  EXPECT_DEATH(registry.AddHistogram("h", "H", {"le"}, {1}),
               "invalid label name 'le'");
  EXPECT_DEATH(registry.AddHistogram("h", "H", {}, {2, 1}),
               "bounds must be finite and ascending");
  EXPECT_DEATH(registry.AddCounter("x_total", "X", {"a"})->WithLabels({}),
               "series with 0 label values for labels \\(a\\)");
}

TEST(MetricsRegistryTest, CollectorsRunBeforeEveryRender) {
  Registry registry;
  Gauge* depth = registry.AddGauge("depth", "D")->WithLabels({});
  int runs = 0;
  int id = registry.AddCollector([&] { depth->Set(++runs * 10); });
  EXPECT_THAT(registry.Render(), HasSubstr("depth 10\n"));
  EXPECT_THAT(registry.Render(), HasSubstr("depth 20\n"));
  registry.RemoveCollector(id);
  EXPECT_THAT(registry.Render(), HasSubstr("depth 20\n"));
  EXPECT_EQ(runs, 2);
}

// Run under the tsan preset: concurrent updates, series creation and
// rendering; no update is lost.
TEST(MetricsRegistryTest, ConcurrentUpdatesAreCountedOnce) {
  Registry registry;
  auto* counters = registry.AddCounter("n_total", "N", {"thread"});
  auto* histograms = registry.AddHistogram("h_seconds", "H", {}, {0.5});
  constexpr int kThreads = 4;
  constexpr int kIterations = 10000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kIterations; ++i) {
        counters->WithLabels({std::to_string(t % 2)})->Increment();
        histograms->WithLabels({})->Observe(i % 2);
        if (i % 1000 == 0) registry.Render();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(counters->WithLabels({"0"})->value(), 2 * kIterations);
  EXPECT_EQ(counters->WithLabels({"1"})->value(), 2 * kIterations);
  EXPECT_EQ(histograms->WithLabels({})->bucket_counts(),
            (std::vector<uint64_t>{2 * kIterations, 2 * kIterations}));
  EXPECT_THAT(registry.Render(), HasSubstr("h_seconds_count 40000\n"));
}

}  // namespace
}  // namespace mm::metrics
