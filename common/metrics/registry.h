// Process metrics for Prometheus: counters, gauges and fixed-bucket
// histograms, each a family of series told apart by label values, rendered
// in the text exposition format (version 0.0.4) by Render.
//
//   metrics::Registry registry;
//   metrics::Family<metrics::Counter>* rpcs = registry.AddCounter(
//       "mm_rpc_requests_total", "Finished rpcs", {"method", "code"});
//   metrics::Counter* ok = rpcs->WithLabels({"GetModel", "OK"});  // cache it
//   ok->Increment();                                              // atomic
//   std::string text = registry.Render();
//
// Lifecycle: families and series live as long as the registry, so the
// pointers Add* and WithLabels return may be kept and used from any thread.
// Families are added during start-up; adding a name twice returns the
// existing family when type, labels and buckets match (two components may
// share one) and aborts otherwise, as does an invalid metric or label name
// or a wrong number of label values: these are programming errors that any
// test constructing the component finds.
//
// Thread-safety: everything may be called concurrently. Updating a series
// is one atomic operation (a histogram: three); WithLabels takes the
// family's mutex for one map look-up, so hot paths with fixed labels keep
// the series pointer. Collectors (AddCollector) run at the start of every
// Render, on the rendering thread; they set gauges from state that is
// cheaper to read at scrape time than to maintain (a job table's counts).
#ifndef MM_COMMON_METRICS_REGISTRY_H_
#define MM_COMMON_METRICS_REGISTRY_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "common/mutex.h"

namespace mm::metrics {

// A value that only goes up (requests, bytes, errors).
class Counter {
 public:
  // `amount` must be >= 0 (a negative amount is ignored: counters never
  // go down, and a scraper would read a decrease as a restart).
  void Increment(double amount = 1);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// A value that goes up and down (queue depth, bytes held, a rate).
class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Add(double amount) {
    value_.fetch_add(amount, std::memory_order_relaxed);
  }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Observations counted into fixed buckets by upper bound (le), with their
// sum and count.
class Histogram {
 public:
  // `bounds`: ascending, finite upper bounds; +Inf is implied.
  explicit Histogram(const std::vector<double>& bounds);

  void Observe(double value);

  // Non-cumulative counts per bucket, the last one for +Inf.
  std::vector<uint64_t> bucket_counts() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // bounds_.size() + 1
  std::atomic<double> sum_{0};
};

// Buckets for rpc latencies in seconds: 1 ms to 60 s.
std::vector<double> LatencyBuckets();

enum class MetricType { kCounter, kGauge, kHistogram };

// The series of one metric name, one per combination of label values.
template <typename Metric>
class Family {
 public:
  Family(std::vector<std::string> label_names, std::vector<double> bounds)
      : label_names_(std::move(label_names)), bounds_(std::move(bounds)) {}

  // The series for `values` (one per label name, in order), created at
  // zero on first use. The pointer stays valid for the registry's life.
  Metric* WithLabels(const std::vector<std::string>& values)
      ABSL_LOCKS_EXCLUDED(mu_);

  const std::vector<std::string>& label_names() const { return label_names_; }
  const std::vector<double>& bounds() const { return bounds_; }

  // Calls `visit(values, metric)` for every series, in label order.
  template <typename Visit>
  void ForEach(Visit visit) const ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    for (const auto& [values, metric] : series_) visit(values, *metric);
  }

 private:
  const std::vector<std::string> label_names_;
  const std::vector<double> bounds_;  // histograms only
  mutable Mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<Metric>> series_
      ABSL_GUARDED_BY(mu_);
};

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // `name`: [a-zA-Z_:][a-zA-Z0-9_:]*; `label_names`: [a-zA-Z_][a-zA-Z0-9_]*,
  // not starting with "__", never "le" for histograms. A family without
  // labels has its one series from the start, so it renders as 0.
  Family<Counter>* AddCounter(const std::string& name, const std::string& help,
                              const std::vector<std::string>& label_names = {})
      ABSL_LOCKS_EXCLUDED(mu_);
  Family<Gauge>* AddGauge(const std::string& name, const std::string& help,
                          const std::vector<std::string>& label_names = {})
      ABSL_LOCKS_EXCLUDED(mu_);
  Family<Histogram>* AddHistogram(const std::string& name,
                                  const std::string& help,
                                  const std::vector<std::string>& label_names,
                                  const std::vector<double>& bounds)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Runs `collect` at the start of every Render (see the class comment);
  // returns an id for RemoveCollector. `collect` must not add or remove
  // collectors.
  int AddCollector(std::function<void()> collect)
      ABSL_LOCKS_EXCLUDED(collect_mu_);
  // Stops running the collector `id`, waiting for a Render that is running
  // it to finish, so that what it reads may be destroyed afterwards.
  void RemoveCollector(int id) ABSL_LOCKS_EXCLUDED(collect_mu_);

  // The text exposition of every family, in name order.
  std::string Render() const ABSL_LOCKS_EXCLUDED(mu_, collect_mu_);

 private:
  struct Entry {
    MetricType type;
    std::string help;
    std::unique_ptr<Family<Counter>> counters;
    std::unique_ptr<Family<Gauge>> gauges;
    std::unique_ptr<Family<Histogram>> histograms;
  };

  // Finds or adds the entry for `name` (see the class comment on clashes).
  Entry& FindOrAdd(const std::string& name, const std::string& help,
                   MetricType type, const std::vector<std::string>& labels,
                   const std::vector<double>& bounds)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable Mutex mu_;
  std::map<std::string, Entry> families_ ABSL_GUARDED_BY(mu_);
  // Held while collectors run, so RemoveCollector can wait them out; apart
  // from mu_ so that a slow collector never holds up AddCounter and co.
  mutable Mutex collect_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::map<int, std::function<void()>> collectors_ ABSL_GUARDED_BY(collect_mu_);
  int next_collector_id_ ABSL_GUARDED_BY(collect_mu_) = 0;
};

// Adds a collector for as long as it lives (Registry::AddCollector and
// RemoveCollector), so that the object a collector reads can be destroyed
// safely after it. Move-only; a default-constructed one holds nothing.
class ScopedCollector {
 public:
  ScopedCollector() = default;
  ScopedCollector(Registry* registry, std::function<void()> collect)
      : registry_(registry), id_(registry->AddCollector(std::move(collect))) {}
  ~ScopedCollector() { Reset(); }
  ScopedCollector(ScopedCollector&& other) noexcept
      : registry_(std::exchange(other.registry_, nullptr)), id_(other.id_) {}
  ScopedCollector& operator=(ScopedCollector&& other) noexcept {
    if (this != &other) {
      Reset();
      registry_ = std::exchange(other.registry_, nullptr);
      id_ = other.id_;
    }
    return *this;
  }
  void Reset() {
    if (registry_ != nullptr) registry_->RemoveCollector(id_);
    registry_ = nullptr;
  }

 private:
  Registry* registry_ = nullptr;
  int id_ = -1;
};

// Text exposition helpers, exposed for tests.
// Escapes a label value: backslash, double quote and newline.
std::string EscapeLabelValue(std::string_view value);
// Escapes HELP text: backslash and newline.
std::string EscapeHelp(std::string_view help);
// Shortest text that reads back as `value`; "+Inf", "-Inf", "NaN".
std::string FormatValue(double value);

}  // namespace mm::metrics

#endif  // MM_COMMON_METRICS_REGISTRY_H_
