#include "services/loader/model_loader.h"

#include <sys/random.h>

#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "google/protobuf/util/time_util.h"
#include "services/loader/load_plan.h"
#include "services/loader/ram_tier.h"

namespace mm::loader {
namespace {

namespace v1 = ::modelmanager::v1;

// What a cache entry holds: the region and the record it was loaded for, so
// a hit can tell that the record moved on (another path or hash) and load
// afresh.
class LoadedEntry : public CachedValue {
 public:
  LoadedEntry(std::shared_ptr<const RamModel> ram, v1::Model record)
      : ram_(std::move(ram)), record_(std::move(record)) {}
  const RamModel& ram() const { return *ram_; }
  const v1::Model& record() const { return record_; }

 private:
  std::shared_ptr<const RamModel> ram_;
  v1::Model record_;
};

std::string RandomLeaseId() {
  unsigned char bytes[16] = {};
  size_t filled = 0;
  while (filled < sizeof(bytes)) {
    ssize_t n = ::getrandom(bytes + filled, sizeof(bytes) - filled, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the id only needs to be unique, not secret
    filled += static_cast<size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  for (unsigned char b : bytes) {
    id.push_back(kHex[b >> 4]);
    id.push_back(kHex[b & 15]);
  }
  return id;
}

absl::Status CheckDtype(const std::string& dtype) {
  if (dtype.empty()) return absl::OkStatus();
  if (dtype == "F16" || dtype == "BF16" || dtype == "F32") {
    return absl::UnimplementedError(absl::StrCat(
        "dtype: conversion to ", dtype,
        " is not in this build of the loader yet; load without a dtype "
        "(as stored)"));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "dtype: '", dtype, "' is not one of F16, BF16, F32 (or empty)"));
}

bool SameFiles(const v1::Model& a, const v1::Model& b) {
  return a.path() == b.path() && a.hash() == b.hash();
}

}  // namespace

ModelLoader::ModelLoader(const Options& options)
    : options_(options),
      clock_(options.clock != nullptr ? options.clock : RealClock()),
      // The default registry is built from the static family table, which
      // registers each (type, format) once: it cannot fail.
      default_registry_(DefaultLoaderRegistry().value()),
      registry_(options.registry != nullptr ? options.registry
                                            : &default_registry_),
      cache_({.budget_bytes = options.ram_budget_bytes,
              .keep_alive = options.keep_alive,
              .clock = clock_}) {}

absl::StatusOr<ModelLoader::Loaded> ModelLoader::Load(
    const v1::LoadRequest& request, const ProgressCallback& progress) {
  if (request.key().empty()) {
    return absl::InvalidArgumentError("key: required");
  }
  if (request.tier() == v1::TIER_VRAM) {
    return absl::FailedPreconditionError(
        "tier: this loader has no VRAM tier (built without CUDA, or no CUDA "
        "device on this node); load into TIER_RAM");
  }
  RETURN_IF_ERROR(CheckDtype(request.dtype()));
  ASSIGN_OR_RETURN(v1::Model record, options_.records->Get(request.key()));
  // One loader kind today; the lookup still refuses what it cannot load.
  RETURN_IF_ERROR(
      registry_->Find(record.base(), record.type(), record.format()).status());
  std::filesystem::path path = record.path();
  if (path.is_relative()) path = options_.models_dir / path;
  const std::string what = request.submodel().empty()
                               ? absl::StrCat("model ", request.key())
                               : absl::StrCat("model ", request.key(),
                                              " submodel ", request.submodel());
  absl::StatusOr<LoadPlan> planned =
      PlanLoad({.path = path,
                .type = record.type(),
                .format = record.format(),
                .submodel = request.submodel(),
                .repo_variant = record.repo_variant()});
  if (!planned.ok()) return Annotate(planned.status(), what);
  LoadPlan plan = *std::move(planned);
  const std::string cache_key =
      CacheKey(request.key(), request.submodel(), request.dtype());
  ModelCache::EntrySpec spec{.cache_key = cache_key,
                             .bytes = plan.total_bytes,
                             .model_key = request.key(),
                             .submodel = request.submodel(),
                             .dtype = request.dtype(),
                             .name = record.name()};
  auto fill = [&]() -> absl::StatusOr<std::shared_ptr<const CachedValue>> {
    MM_LOG(INFO) << "model_load_started key=" << request.key()
                 << " submodel=" << request.submodel()
                 << " hash=" << record.hash()
                 << " tier=ram dtype=" << request.dtype()
                 << " bytes=" << plan.total_bytes;
    absl::Time start = clock_->Now();
    absl::StatusOr<std::shared_ptr<const RamModel>> ram = LoadIntoShm(
        plan, {.group = options_.shm_group, .name_log = options_.shm_name_log},
        {.threads = options_.read_threads,
         .progress = [&](uint64_t done, uint64_t total) {
           if (!progress) return;
           v1::LoadProgress p;
           p.set_phase("reading");
           p.set_bytes(static_cast<int64_t>(done));
           p.set_total_bytes(static_cast<int64_t>(total));
           progress(p);
         }});
    if (!ram.ok()) {
      MM_LOG(WARNING) << "model_load_failed key=" << request.key()
                      << " submodel=" << request.submodel() << ": "
                      << ram.status();
      return Annotate(ram.status(), what);
    }
    MM_LOG(INFO) << "model_load_complete key=" << request.key()
                 << " submodel=" << request.submodel()
                 << " hash=" << record.hash()
                 << " tier=ram dtype=" << request.dtype()
                 << " bytes=" << plan.total_bytes
                 << " seconds=" << absl::ToDoubleSeconds(clock_->Now() - start);
    return std::make_shared<const LoadedEntry>(*std::move(ram), record);
  };
  ASSIGN_OR_RETURN(ModelCache::Lease lease, cache_.Acquire(spec, fill));
  auto* entry = static_cast<const LoadedEntry*>(lease.value().get());
  if (!SameFiles(entry->record(), record)) {
    // The record moved on since this entry was loaded: never hand out the
    // old bytes. Invalidation lets current leases finish on the old entry.
    MM_LOG(INFO) << cache_key << ": record changed (path or hash); reloading";
    lease.Release();
    cache_.InvalidateModel(request.key());
    ASSIGN_OR_RETURN(lease, cache_.Acquire(spec, fill));
    entry = static_cast<const LoadedEntry*>(lease.value().get());
  }
  Loaded loaded;
  v1::ModelHandle& handle = loaded.handle;
  handle.set_lease_id(RandomLeaseId());
  handle.set_key(request.key());
  handle.set_submodel(request.submodel());
  *handle.mutable_config() = entry->record();
  handle.set_tier(v1::TIER_RAM);
  handle.set_shm_name(entry->ram().region().name());
  handle.set_total_bytes(static_cast<int64_t>(entry->ram().region().size()));
  handle.set_cache_key(cache_key);
  handle.set_dtype(request.dtype());
  for (const PlannedTensor& t : entry->ram().plan().tensors) {
    v1::TensorHandle* out = handle.add_tensors();
    out->set_name(t.name);
    out->set_dtype(t.dtype);
    for (int64_t d : t.shape) out->add_shape(d);
    out->set_offset(static_cast<int64_t>(t.region_offset));
    out->set_byte_size(static_cast<int64_t>(t.byte_size));
  }
  for (const auto& [name, contents] : entry->ram().plan().side_files) {
    (*handle.mutable_files())[name] = contents;
  }
  loaded.lease = std::move(lease);
  return loaded;
}

int ModelLoader::OnRecordChanged(const v1::Model& record, bool deleted) {
  int affected =
      deleted
          ? cache_.InvalidateModel(record.key())
          : cache_.InvalidateModelIf(
                record.key(), [&record](const CachedValue& value) {
                  return !SameFiles(
                      static_cast<const LoadedEntry&>(value).record(), record);
                });
  if (affected > 0) {
    MM_LOG(INFO) << "record " << record.key()
                 << (deleted ? " deleted" : " changed its path or hash")
                 << ": dropped " << affected
                 << " cache entr(ies) (leased ones when released)";
  }
  return affected;
}

absl::StatusOr<uint64_t> ModelLoader::Unload(const v1::UnloadRequest& request) {
  if (request.key().empty()) {
    return absl::InvalidArgumentError("key: required");
  }
  return cache_.Unload(
      CacheKey(request.key(), request.submodel(), request.dtype()));
}

v1::CacheStats ModelLoader::GetCacheStats() const {
  ModelCache::Stats stats = cache_.GetStats();
  v1::CacheStats out;
  out.set_hits(stats.hits);
  out.set_misses(stats.misses);
  out.set_evictions(stats.evictions);
  out.set_ram_budget_bytes(static_cast<int64_t>(stats.budget_bytes));
  out.set_ram_used_bytes(static_cast<int64_t>(stats.used_bytes));
  out.set_high_watermark_bytes(
      static_cast<int64_t>(stats.high_watermark_bytes));
  for (const ModelCache::EntryStats& e : stats.entries) {
    v1::CachedModel* m = out.add_models();
    m->set_cache_key(e.spec.cache_key);
    m->set_tier(v1::TIER_RAM);
    m->set_bytes(static_cast<int64_t>(e.spec.bytes));
    m->set_leases(e.leases);
    m->set_key(e.spec.model_key);
    m->set_submodel(e.spec.submodel);
    m->set_dtype(e.spec.dtype);
    m->set_name(e.spec.name);
    m->set_loading(e.loading);
    *m->mutable_last_use_time() =
        google::protobuf::util::TimeUtil::NanosecondsToTimestamp(
            absl::ToUnixNanos(e.last_use));
  }
  return out;
}

}  // namespace mm::loader
