// The loader's cache policy, apart from what an entry holds: entries keyed
// "key[:submodel][@dtype]" with a byte size known before loading, a budget,
// leases (a leased entry is never evicted nor unloaded), LRU eviction of
// unleased entries when room is needed, single flight (concurrent Acquires
// of one key run the filler once; the others wait and share the result),
// RESOURCE_EXHAUSTED when an entry cannot fit even after evicting every
// unleased entry, keep-alive expiry of idle entries, and statistics.
//
// Lifecycle of an entry: kLoading (budget reserved, filler running) ->
// kReady (value set) -> removed (evicted, unloaded, expired or invalidated;
// its value is destroyed outside the lock once no Lease holds it). A filler
// that fails removes the entry and hands its error to every waiter.
//
// Thread-safety: every method may be called from any thread. Fillers run
// without the lock held. A Lease may be destroyed on any thread, and must
// not outlive the cache.
//
//   ModelCache cache({.budget_bytes = 8 << 30});
//   ASSIGN_OR_RETURN(ModelCache::Lease lease,
//                    cache.Acquire({.cache_key = "abc:vae", .bytes = n},
//                                  [&] { return LoadIt(); }));
//   Use(lease.value());   // until lease goes out of scope
#ifndef MM_SERVICES_LOADER_MODEL_CACHE_H_
#define MM_SERVICES_LOADER_MODEL_CACHE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/mutex.h"

namespace mm::loader {

struct ModelCacheEntry;

// What an entry holds (a shared-memory region and its handle, ...). The
// cache only keeps it alive and destroys it.
class CachedValue {
 public:
  virtual ~CachedValue() = default;
};

// "key", "key:submodel", "key@F16", "key:submodel@F16".
std::string CacheKey(const std::string& key, const std::string& submodel,
                     const std::string& dtype);

class ModelCache {
 public:
  struct Options {
    // Bytes the entries may take together. Required (> 0).
    uint64_t budget_bytes = 0;
    // Unleased entries idle this long are dropped by ExpireIdle; zero keeps
    // them until evicted.
    absl::Duration keep_alive = absl::ZeroDuration();
    // Time source for last use and keep-alive; defaults to RealClock().
    Clock* clock = nullptr;
    // Which unleased entries go first when room is needed: the least
    // recently used (RAM tier), or the smallest (VRAM tier, spec §9).
    enum class Eviction { kLeastRecentlyUsed, kSmallestFirst };
    Eviction eviction = Eviction::kLeastRecentlyUsed;
    // The flag that sets the budget, for RESOURCE_EXHAUSTED messages.
    std::string budget_flag = "--ram-cache";
  };

  // What is known about an entry before it is loaded.
  struct EntrySpec {
    std::string cache_key;
    // Bytes it will take (from the headers).
    uint64_t bytes = 0;
    // The model key it belongs to (for InvalidateModel) and its name, for
    // statistics.
    std::string model_key;
    std::string submodel;
    std::string dtype;
    std::string name;
  };

  using Filler =
      std::function<absl::StatusOr<std::shared_ptr<const CachedValue>>()>;

  // Holds an entry: while any Lease of it lives, it is not evicted,
  // unloaded or expired. Movable; destroying it (or Release) ends it.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept { *this = std::move(other); }
    Lease& operator=(Lease&& other) noexcept;
    ~Lease() { Release(); }
    void Release();

    const std::shared_ptr<const CachedValue>& value() const { return value_; }
    const std::string& cache_key() const { return cache_key_; }
    // True when the entry was in the cache (or being loaded by another
    // caller): no file was read for this lease.
    bool hit() const { return hit_; }
    bool valid() const { return cache_ != nullptr; }

   private:
    friend class ModelCache;
    ModelCache* cache_ = nullptr;
    std::string cache_key_;
    std::shared_ptr<struct ModelCacheEntry> entry_;
    std::shared_ptr<const CachedValue> value_;
    bool hit_ = false;
  };

  struct EntryStats {
    EntrySpec spec;
    int leases = 0;
    // Callers waiting for the entry's fill (single flight).
    int waiters = 0;
    bool loading = false;
    absl::Time last_use;
  };
  struct Stats {
    int64_t hits = 0;
    int64_t misses = 0;
    int64_t evictions = 0;
    uint64_t budget_bytes = 0;
    uint64_t used_bytes = 0;
    uint64_t high_watermark_bytes = 0;
    // Most recently used first.
    std::vector<EntryStats> entries;
  };

  explicit ModelCache(const Options& options);
  // Entries' values are destroyed; every Lease must be gone by then.
  ~ModelCache();
  ModelCache(const ModelCache&) = delete;
  ModelCache& operator=(const ModelCache&) = delete;

  // Returns a lease on the entry, running `fill` (on this thread, without
  // the lock) when it is not cached and no one else is filling it; a caller
  // that finds it being filled waits for that fill instead.
  // RESOURCE_EXHAUSTED when spec.bytes cannot fit even after evicting every
  // unleased entry (nothing is evicted then); the filler's error when it
  // fails (for the waiters too).
  absl::StatusOr<Lease> Acquire(const EntrySpec& spec, const Filler& fill);

  // Drops an unleased entry: its bytes. NOT_FOUND when absent (or still
  // loading), FAILED_PRECONDITION while leased.
  absl::StatusOr<uint64_t> Unload(const std::string& cache_key);

  // Drops every entry of `model_key` (its record changed or was deleted);
  // leased ones are dropped when their last lease ends, and a new Acquire
  // loads afresh. Returns the entries affected.
  int InvalidateModel(const std::string& model_key);

  // Like InvalidateModel, but only the loaded entries of `model_key` for
  // which `stale(value)` is true (run under the cache's lock: keep it
  // cheap). Entries still loading are left alone.
  int InvalidateModelIf(const std::string& model_key,
                        const std::function<bool(const CachedValue&)>& stale);

  // Drops unleased entries idle for keep_alive or longer; returns how many.
  // No-op when keep_alive is zero. The service calls it periodically.
  int ExpireIdle();

  Stats GetStats() const;

 private:
  using Entry = ModelCacheEntry;
  using Graveyard = std::vector<std::shared_ptr<const CachedValue>>;

  void ReleaseLease(const std::shared_ptr<Entry>& entry);
  Lease MakeLease(const std::shared_ptr<Entry>& entry, bool hit)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Forgets `entry` (in entries_ or doomed_), returning its bytes to the
  // budget and moving its value into `graveyard`, destroyed after the lock
  // is released (unmapping gigabytes under the lock would stall every
  // caller).
  void RemoveLocked(const std::shared_ptr<Entry>& entry, Graveyard& graveyard)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  Clock* const clock_;
  mutable Mutex mu_;
  std::map<std::string, std::shared_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
  // Invalidated entries still leased: out of entries_ (a new Acquire loads
  // afresh) but still counted in used_bytes_ until their last lease ends.
  std::vector<std::shared_ptr<Entry>> doomed_ ABSL_GUARDED_BY(mu_);
  uint64_t used_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t high_watermark_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t hits_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t misses_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t evictions_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace mm::loader

#endif  // MM_SERVICES_LOADER_MODEL_CACHE_H_
