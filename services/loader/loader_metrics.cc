#include "services/loader/loader_metrics.h"

#include <string>

namespace mm::loader {
namespace {

struct TierFamilies {
  metrics::Family<metrics::Counter>* hits;
  metrics::Family<metrics::Counter>* misses;
  metrics::Family<metrics::Counter>* evictions;
  metrics::Family<metrics::Gauge>* bytes;
  metrics::Family<metrics::Gauge>* budget;
  metrics::Family<metrics::Gauge>* entries;
  metrics::Family<metrics::Gauge>* leases;
};

// The cache keeps its own running totals; a counter follows one by adding
// what it gained since the last scrape (collectors run one at a time).
void Follow(metrics::Counter* counter, int64_t total) {
  counter->Increment(static_cast<double>(total) - counter->value());
}

void Export(const TierFamilies& f, const std::string& tier,
            const ModelCache::Stats& stats) {
  Follow(f.hits->WithLabels({tier}), stats.hits);
  Follow(f.misses->WithLabels({tier}), stats.misses);
  Follow(f.evictions->WithLabels({tier}), stats.evictions);
  f.bytes->WithLabels({tier})->Set(static_cast<double>(stats.used_bytes));
  f.budget->WithLabels({tier})->Set(static_cast<double>(stats.budget_bytes));
  f.entries->WithLabels({tier})->Set(static_cast<double>(stats.entries.size()));
  int64_t leases = 0;
  for (const ModelCache::EntryStats& entry : stats.entries) {
    leases += entry.leases;
  }
  f.leases->WithLabels({tier})->Set(static_cast<double>(leases));
}

}  // namespace

metrics::ScopedCollector ExportLoaderMetrics(const ModelLoader* loader,
                                             metrics::Registry* registry) {
  const std::vector<std::string> tier = {"tier"};
  TierFamilies f{
      registry->AddCounter("mm_cache_hits_total",
                           "Loads served from the cache, by tier", tier),
      registry->AddCounter("mm_cache_misses_total",
                           "Loads that had to read the model, by tier", tier),
      registry->AddCounter("mm_cache_evictions_total",
                           "Unleased entries evicted to make room, by tier",
                           tier),
      registry->AddGauge("mm_cache_bytes",
                         "Bytes the tier's entries take (loading included)",
                         tier),
      registry->AddGauge("mm_cache_budget_bytes", "The tier's budget", tier),
      registry->AddGauge("mm_cache_entries", "Entries in the tier", tier),
      registry->AddGauge("mm_cache_leases",
                         "Leases held on the tier's entries (open Load "
                         "streams)",
                         tier)};
  auto collect = [loader, f] {
    Export(f, "ram", loader->RamStats());
    if (std::optional<ModelCache::Stats> vram = loader->VramStats()) {
      Export(f, "vram", *vram);
    }
  };
  collect();  // so the series exist before the first scrape
  return metrics::ScopedCollector(registry, std::move(collect));
}

}  // namespace mm::loader
