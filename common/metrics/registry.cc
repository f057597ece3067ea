#include "common/metrics/registry.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace mm::metrics {
namespace {

// Programming errors (see the Registry comment): say what and stop.
[[noreturn]] void Die(const std::string& message) {
  std::cerr << "metrics: " << message << std::endl;
  std::abort();
}

bool IsNameStart(char c, bool colon_allowed) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         (colon_allowed && c == ':');
}

bool IsValidName(std::string_view name, bool colon_allowed) {
  if (name.empty() || !IsNameStart(name[0], colon_allowed)) return false;
  for (char c : name) {
    if (!IsNameStart(c, colon_allowed) && !(c >= '0' && c <= '9')) {
      return false;
    }
  }
  return true;
}

template <typename Metric>
std::unique_ptr<Metric> MakeMetric(const std::vector<double>& bounds) {
  if constexpr (std::is_same_v<Metric, Histogram>) {
    return std::make_unique<Histogram>(bounds);
  } else {
    return std::make_unique<Metric>();
  }
}

// `{a="x",b="y"` (no closing brace, so a histogram can append le).
std::string LabelText(const std::vector<std::string>& names,
                      const std::vector<std::string>& values) {
  std::string text;
  for (size_t i = 0; i < names.size(); ++i) {
    absl::StrAppend(&text, i == 0 ? "{" : ",", names[i], "=\"",
                    EscapeLabelValue(values[i]), "\"");
  }
  return text;
}

std::string Closed(const std::string& labels) {
  return labels.empty() ? "" : labels + "}";
}

const char* TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

}  // namespace

void Counter::Increment(double amount) {
  if (!(amount > 0)) return;  // also drops NaN
  value_.fetch_add(amount, std::memory_order_relaxed);
}

Histogram::Histogram(const std::vector<double>& bounds)
    : bounds_(bounds), buckets_(new std::atomic<uint64_t>[bounds.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i] = 0;
}

void Histogram::Observe(double value) {
  // The first bucket whose upper bound holds the value; +Inf otherwise.
  size_t index =
      std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  buckets_[index].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::bucket_counts() const {
  std::vector<uint64_t> counts(bounds_.size() + 1);
  for (size_t i = 0; i < counts.size(); ++i) {
    counts[i] = buckets_[i].load(std::memory_order_relaxed);
  }
  return counts;
}

std::vector<double> LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
          0.5,   1,      2.5,   5,    10,    30,   60};
}

template <typename Metric>
Metric* Family<Metric>::WithLabels(const std::vector<std::string>& values) {
  if (values.size() != label_names_.size()) {
    Die(absl::StrCat("series with ", values.size(),
                     " label values for labels (",
                     absl::StrJoin(label_names_, ","), ")"));
  }
  MutexLock lock(&mu_);
  std::unique_ptr<Metric>& metric = series_[values];
  if (metric == nullptr) metric = MakeMetric<Metric>(bounds_);
  return metric.get();
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

Registry::Entry& Registry::FindOrAdd(const std::string& name,
                                     const std::string& help, MetricType type,
                                     const std::vector<std::string>& labels,
                                     const std::vector<double>& bounds) {
  if (!IsValidName(name, /*colon_allowed=*/true)) {
    Die(absl::StrCat("invalid metric name '", name, "'"));
  }
  for (const std::string& label : labels) {
    if (!IsValidName(label, /*colon_allowed=*/false) ||
        label.starts_with("__") ||
        (type == MetricType::kHistogram && label == "le")) {
      Die(absl::StrCat("metric ", name, ": invalid label name '", label, "'"));
    }
  }
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1])) {
      Die(absl::StrCat("metric ", name,
                       ": histogram bounds must be finite and ascending"));
    }
  }
  auto it = families_.find(name);
  if (it != families_.end()) {
    Entry& entry = it->second;
    const std::vector<std::string>* existing_labels = nullptr;
    const std::vector<double>* existing_bounds = nullptr;
    if (entry.counters) existing_labels = &entry.counters->label_names();
    if (entry.gauges) existing_labels = &entry.gauges->label_names();
    if (entry.histograms) {
      existing_labels = &entry.histograms->label_names();
      existing_bounds = &entry.histograms->bounds();
    }
    if (entry.type != type || *existing_labels != labels ||
        (existing_bounds != nullptr && *existing_bounds != bounds)) {
      Die(absl::StrCat("metric ", name,
                       " added twice with a different type, labels or "
                       "buckets"));
    }
    return entry;
  }
  Entry& entry = families_[name];
  entry.type = type;
  entry.help = help;
  switch (type) {
    case MetricType::kCounter:
      entry.counters = std::make_unique<Family<Counter>>(labels, bounds);
      if (labels.empty()) entry.counters->WithLabels({});
      break;
    case MetricType::kGauge:
      entry.gauges = std::make_unique<Family<Gauge>>(labels, bounds);
      if (labels.empty()) entry.gauges->WithLabels({});
      break;
    case MetricType::kHistogram:
      entry.histograms = std::make_unique<Family<Histogram>>(labels, bounds);
      if (labels.empty()) entry.histograms->WithLabels({});
      break;
  }
  return entry;
}

Family<Counter>* Registry::AddCounter(
    const std::string& name, const std::string& help,
    const std::vector<std::string>& label_names) {
  MutexLock lock(&mu_);
  return FindOrAdd(name, help, MetricType::kCounter, label_names, {})
      .counters.get();
}

Family<Gauge>* Registry::AddGauge(const std::string& name,
                                  const std::string& help,
                                  const std::vector<std::string>& label_names) {
  MutexLock lock(&mu_);
  return FindOrAdd(name, help, MetricType::kGauge, label_names, {})
      .gauges.get();
}

Family<Histogram>* Registry::AddHistogram(
    const std::string& name, const std::string& help,
    const std::vector<std::string>& label_names,
    const std::vector<double>& bounds) {
  MutexLock lock(&mu_);
  return FindOrAdd(name, help, MetricType::kHistogram, label_names, bounds)
      .histograms.get();
}

int Registry::AddCollector(std::function<void()> collect) {
  MutexLock lock(&collect_mu_);
  int id = next_collector_id_++;
  collectors_[id] = std::move(collect);
  return id;
}

void Registry::RemoveCollector(int id) {
  MutexLock lock(&collect_mu_);
  collectors_.erase(id);
}

std::string Registry::Render() const {
  {
    // Collectors may take a while (a database query); they run outside
    // mu_ so that start-up code adding families is never held up by a
    // scrape.
    MutexLock lock(&collect_mu_);
    for (const auto& [id, collect] : collectors_) collect();
  }

  std::string text;
  MutexLock lock(&mu_);
  for (const auto& family : families_) {
    // Named copies of the references: clang 14 cannot capture structured
    // bindings in the lambdas below.
    const std::string& name = family.first;
    const Entry& entry = family.second;
    absl::StrAppend(&text, "# HELP ", name, " ", EscapeHelp(entry.help), "\n",
                    "# TYPE ", name, " ", TypeName(entry.type), "\n");
    switch (entry.type) {
      case MetricType::kCounter:
        entry.counters->ForEach([&](const std::vector<std::string>& values,
                                    const Counter& counter) {
          absl::StrAppend(
              &text, name,
              Closed(LabelText(entry.counters->label_names(), values)), " ",
              FormatValue(counter.value()), "\n");
        });
        break;
      case MetricType::kGauge:
        entry.gauges->ForEach(
            [&](const std::vector<std::string>& values, const Gauge& gauge) {
              absl::StrAppend(
                  &text, name,
                  Closed(LabelText(entry.gauges->label_names(), values)), " ",
                  FormatValue(gauge.value()), "\n");
            });
        break;
      case MetricType::kHistogram:
        entry.histograms->ForEach([&](const std::vector<std::string>& values,
                                      const Histogram& histogram) {
          std::string labels =
              LabelText(entry.histograms->label_names(), values);
          std::string le_prefix = labels.empty() ? "{le=\"" : labels + ",le=\"";
          // Read the buckets once and derive the count from them, so
          // _count always equals the +Inf bucket even while observations
          // land during the scrape.
          std::vector<uint64_t> counts = histogram.bucket_counts();
          double sum = histogram.sum();
          uint64_t cumulative = 0;
          for (size_t i = 0; i < counts.size(); ++i) {
            cumulative += counts[i];
            std::string le = i < histogram.bounds().size()
                                 ? FormatValue(histogram.bounds()[i])
                                 : "+Inf";
            absl::StrAppend(&text, name, "_bucket", le_prefix, le, "\"} ",
                            cumulative, "\n");
          }
          absl::StrAppend(&text, name, "_sum", Closed(labels), " ",
                          FormatValue(sum), "\n", name, "_count",
                          Closed(labels), " ", cumulative, "\n");
        });
        break;
    }
  }
  return text;
}

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string EscapeHelp(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // Whole numbers (counts, bytes) print as integers, not as "1e+06".
  if (value == std::trunc(value) && std::fabs(value) < 9007199254740992.0) {
    return absl::StrCat(static_cast<int64_t>(value));
  }
  char buffer[64];
  auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, result.ptr);
}

}  // namespace mm::metrics
