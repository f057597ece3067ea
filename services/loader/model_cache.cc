#include "services/loader/model_cache.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"

namespace mm::loader {

// One cache entry. Every field is guarded by the owning cache's mu_ (it is
// a separate struct only so that a Lease can point at it).
struct ModelCacheEntry {
  enum class State { kLoading, kReady, kFailed };
  ModelCache::EntrySpec spec;
  State state = State::kLoading;
  std::shared_ptr<const CachedValue> value;
  int leases = 0;
  // Callers waiting for the fill; each is handed a lease when it succeeds.
  int waiters = 0;
  // Invalidated: dropped when the last lease ends.
  bool doomed = false;
  absl::Status fill_error;
  absl::Time last_use;
};

std::string CacheKey(const std::string& key, const std::string& submodel,
                     const std::string& dtype) {
  std::string out = key;
  if (!submodel.empty()) absl::StrAppend(&out, ":", submodel);
  if (!dtype.empty()) absl::StrAppend(&out, "@", dtype);
  return out;
}

ModelCache::Lease& ModelCache::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Release();
    cache_ = std::exchange(other.cache_, nullptr);
    cache_key_ = std::move(other.cache_key_);
    entry_ = std::move(other.entry_);
    value_ = std::move(other.value_);
    hit_ = other.hit_;
  }
  return *this;
}

void ModelCache::Lease::Release() {
  if (cache_ == nullptr) return;
  ModelCache* cache = std::exchange(cache_, nullptr);
  // Our reference to the value goes first, so that the cache's graveyard
  // holds the last one and destroys it outside the lock.
  value_.reset();
  cache->ReleaseLease(entry_);
  entry_.reset();
}

ModelCache::ModelCache(const Options& options)
    : options_(options),
      clock_(options.clock != nullptr ? options.clock : RealClock()) {}

ModelCache::~ModelCache() = default;

ModelCache::Lease ModelCache::MakeLease(const std::shared_ptr<Entry>& entry,
                                        bool hit) {
  Lease lease;
  lease.cache_ = this;
  lease.cache_key_ = entry->spec.cache_key;
  lease.entry_ = entry;
  lease.value_ = entry->value;
  lease.hit_ = hit;
  return lease;
}

void ModelCache::RemoveLocked(const std::shared_ptr<Entry>& entry,
                              Graveyard& graveyard) {
  auto it = entries_.find(entry->spec.cache_key);
  if (it != entries_.end() && it->second == entry) entries_.erase(it);
  doomed_.erase(std::remove(doomed_.begin(), doomed_.end(), entry),
                doomed_.end());
  used_bytes_ -= entry->spec.bytes;
  if (entry->value != nullptr) graveyard.push_back(std::move(entry->value));
  entry->value.reset();
}

absl::StatusOr<ModelCache::Lease> ModelCache::Acquire(const EntrySpec& spec,
                                                      const Filler& fill) {
  std::shared_ptr<Entry> mine;
  {
    Graveyard graveyard;  // destroyed after the lock below is released
    MutexLock lock(&mu_);
    auto it = entries_.find(spec.cache_key);
    if (it != entries_.end()) {
      std::shared_ptr<Entry> entry = it->second;
      if (entry->state == Entry::State::kLoading) {
        ++entry->waiters;
        mu_.Await([&] { return entry->state != Entry::State::kLoading; });
        --entry->waiters;
        if (entry->state == Entry::State::kFailed) return entry->fill_error;
        // The filler counted a lease for every waiter when it finished, so
        // the entry could not be evicted before we woke.
        ++hits_;
        return MakeLease(entry, /*hit=*/true);
      }
      ++entry->leases;
      entry->last_use = clock_->Now();
      ++hits_;
      return MakeLease(entry, /*hit=*/true);
    }
    const uint64_t budget = options_.budget_bytes;
    if (used_bytes_ + spec.bytes > budget || spec.bytes > budget) {
      std::vector<std::shared_ptr<Entry>> evictable;
      uint64_t freeable = 0;
      for (const auto& [key, entry] : entries_) {
        if (entry->state == Entry::State::kReady && entry->leases == 0 &&
            entry->waiters == 0) {
          evictable.push_back(entry);
          freeable += entry->spec.bytes;
        }
      }
      uint64_t locked = used_bytes_ - freeable;
      if (spec.bytes > budget || locked + spec.bytes > budget) {
        return absl::ResourceExhaustedError(absl::StrCat(
            spec.cache_key, " needs ", spec.bytes,
            " bytes but the cache "
            "budget is ",
            budget, " bytes, of which ", locked,
            " bytes are held by open Load streams or loads in progress; "
            "end those streams or raise the budget (",
            options_.budget_flag, ")"));
      }
      if (options_.eviction == Options::Eviction::kSmallestFirst) {
        std::sort(evictable.begin(), evictable.end(),
                  [](const auto& a, const auto& b) {
                    return std::tie(a->spec.bytes, a->last_use) <
                           std::tie(b->spec.bytes, b->last_use);
                  });
      } else {
        std::sort(evictable.begin(), evictable.end(),
                  [](const auto& a, const auto& b) {
                    return a->last_use < b->last_use;
                  });
      }
      for (const std::shared_ptr<Entry>& victim : evictable) {
        if (used_bytes_ + spec.bytes <= budget) break;
        RemoveLocked(victim, graveyard);
        ++evictions_;
      }
    }
    mine = std::make_shared<Entry>();
    mine->spec = spec;
    mine->last_use = clock_->Now();
    entries_[spec.cache_key] = mine;
    used_bytes_ += spec.bytes;
    high_watermark_ = std::max(high_watermark_, used_bytes_);
    ++misses_;
  }

  absl::StatusOr<std::shared_ptr<const CachedValue>> value = fill();

  Graveyard graveyard;
  MutexLock lock(&mu_);
  if (!value.ok() || *value == nullptr) {
    mine->state = Entry::State::kFailed;
    mine->fill_error = value.ok() ? absl::InternalError(absl::StrCat(
                                        spec.cache_key, ": loaded nothing"))
                                  : value.status();
    RemoveLocked(mine, graveyard);
    return mine->fill_error;
  }
  mine->value = *std::move(value);
  mine->state = Entry::State::kReady;
  mine->leases = 1 + mine->waiters;
  mine->last_use = clock_->Now();
  return MakeLease(mine, /*hit=*/false);
}

void ModelCache::ReleaseLease(const std::shared_ptr<Entry>& entry) {
  Graveyard graveyard;
  MutexLock lock(&mu_);
  --entry->leases;
  entry->last_use = clock_->Now();
  if (entry->leases == 0 && entry->doomed) RemoveLocked(entry, graveyard);
}

absl::StatusOr<uint64_t> ModelCache::Unload(const std::string& cache_key) {
  Graveyard graveyard;
  MutexLock lock(&mu_);
  auto it = entries_.find(cache_key);
  if (it == entries_.end()) {
    return absl::NotFoundError(
        absl::StrCat(cache_key, " is not in the cache (see mm ps)"));
  }
  std::shared_ptr<Entry> entry = it->second;
  if (entry->state != Entry::State::kReady) {
    return absl::FailedPreconditionError(
        absl::StrCat(cache_key, " is being loaded; unload it afterwards"));
  }
  if (entry->leases > 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(cache_key, " is held by ", entry->leases,
                     " open Load stream(s); it can be unloaded once they end"));
  }
  uint64_t bytes = entry->spec.bytes;
  RemoveLocked(entry, graveyard);
  return bytes;
}

int ModelCache::InvalidateModel(const std::string& model_key) {
  return InvalidateModelIf(model_key, nullptr);
}

int ModelCache::InvalidateModelIf(
    const std::string& model_key,
    const std::function<bool(const CachedValue&)>& stale) {
  Graveyard graveyard;
  MutexLock lock(&mu_);
  std::vector<std::shared_ptr<Entry>> affected;
  for (const auto& [key, entry] : entries_) {
    if (entry->spec.model_key != model_key) continue;
    if (stale != nullptr &&
        (entry->state != Entry::State::kReady || !stale(*entry->value))) {
      continue;
    }
    affected.push_back(entry);
  }
  for (const std::shared_ptr<Entry>& entry : affected) {
    if (entry->state == Entry::State::kReady && entry->leases == 0 &&
        entry->waiters == 0) {
      RemoveLocked(entry, graveyard);
    } else {
      entry->doomed = true;
      entries_.erase(entry->spec.cache_key);
      doomed_.push_back(entry);
    }
  }
  return static_cast<int>(affected.size());
}

int ModelCache::ExpireIdle() {
  if (options_.keep_alive <= absl::ZeroDuration()) return 0;
  Graveyard graveyard;
  MutexLock lock(&mu_);
  absl::Time now = clock_->Now();
  std::vector<std::shared_ptr<Entry>> idle;
  for (const auto& [key, entry] : entries_) {
    if (entry->state == Entry::State::kReady && entry->leases == 0 &&
        entry->waiters == 0 && now - entry->last_use >= options_.keep_alive) {
      idle.push_back(entry);
    }
  }
  for (const std::shared_ptr<Entry>& entry : idle) {
    RemoveLocked(entry, graveyard);
  }
  return static_cast<int>(idle.size());
}

ModelCache::Stats ModelCache::GetStats() const {
  MutexLock lock(&mu_);
  Stats stats;
  stats.hits = hits_;
  stats.misses = misses_;
  stats.evictions = evictions_;
  stats.budget_bytes = options_.budget_bytes;
  stats.used_bytes = used_bytes_;
  stats.high_watermark_bytes = high_watermark_;
  auto add = [&](const Entry& entry) {
    stats.entries.push_back({entry.spec, entry.leases, entry.waiters,
                             entry.state != Entry::State::kReady,
                             entry.last_use});
  };
  for (const auto& [key, entry] : entries_) add(*entry);
  for (const auto& entry : doomed_) add(*entry);
  std::stable_sort(stats.entries.begin(), stats.entries.end(),
                   [](const EntryStats& a, const EntryStats& b) {
                     return a.last_use > b.last_use;
                   });
  return stats;
}

}  // namespace mm::loader
