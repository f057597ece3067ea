// The loader's cache as metrics, read from each tier's statistics at
// scrape time (docs/operations.md); `tier` is "ram" or "vram" (only with a
// device):
//   mm_cache_hits_total, mm_cache_misses_total, mm_cache_evictions_total
//                                counters: Acquires served from the cache,
//                                that had to load, entries evicted
//   mm_cache_bytes               gauge: bytes the tier's entries take
//   mm_cache_budget_bytes        gauge: the tier's budget
//   mm_cache_entries             gauge: entries (loading ones included)
//   mm_cache_leases              gauge: leases held (open Load streams)
//
//   metrics::ScopedCollector collector = ExportLoaderMetrics(&loader, reg);
//
// The returned collector reads `loader`: destroy it first.
#ifndef MM_SERVICES_LOADER_LOADER_METRICS_H_
#define MM_SERVICES_LOADER_LOADER_METRICS_H_

#include "common/metrics/registry.h"
#include "services/loader/model_loader.h"

namespace mm::loader {

[[nodiscard]] metrics::ScopedCollector ExportLoaderMetrics(
    const ModelLoader* loader, metrics::Registry* registry);

}  // namespace mm::loader

#endif  // MM_SERVICES_LOADER_LOADER_METRICS_H_
