#include "services/loader/model_loader.h"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "google/protobuf/util/time_util.h"
#include "services/loader/dtype_conversion.h"
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

// What a VRAM cache entry holds: the device allocation, and the layout and
// record it was filled with (not the RAM region: the RAM tier may evict that
// independently).
class VramEntry : public CachedValue {
 public:
  VramEntry(std::unique_ptr<DeviceBuffer> buffer, LoadPlan plan,
            v1::Model record)
      : buffer_(std::move(buffer)),
        plan_(std::move(plan)),
        record_(std::move(record)) {}
  const DeviceBuffer& buffer() const { return *buffer_; }
  const LoadPlan& plan() const { return plan_; }
  const v1::Model& record() const { return record_; }

 private:
  std::unique_ptr<DeviceBuffer> buffer_;
  LoadPlan plan_;
  v1::Model record_;
};

void AddLayout(const LoadPlan& plan, v1::ModelHandle& handle) {
  for (const PlannedTensor& t : plan.tensors) {
    v1::TensorHandle* out = handle.add_tensors();
    out->set_name(t.name);
    out->set_dtype(t.dtype);
    for (int64_t d : t.shape) out->add_shape(d);
    out->set_offset(static_cast<int64_t>(t.region_offset));
    out->set_byte_size(static_cast<int64_t>(t.byte_size));
  }
  for (const auto& [name, contents] : plan.side_files) {
    (*handle.mutable_files())[name] = contents;
  }
}

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
  if (!IsTargetDtype(dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dtype: '", dtype, "' is not one of F16, BF16, F32 (or empty)"));
  }
  if (!DtypeConversionAvailable()) {
    return absl::UnimplementedError(
        absl::StrCat("dtype: conversion to ", dtype,
                     " needs libtorch, and this mm-loader was built without it "
                     "(MM_WITH_TORCH); load without a dtype (as stored)"));
  }
  return absl::OkStatus();
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
              .clock = clock_}),
      vram_cache_({.budget_bytes = options.vram_budget_bytes,
                   .keep_alive = options.keep_alive,
                   .clock = clock_,
                   .eviction = ModelCache::Options::Eviction::kSmallestFirst,
                   .budget_flag = "--vram-cache"}) {}

absl::StatusOr<ModelLoader::Loaded> ModelLoader::Load(
    const v1::LoadRequest& request, const ProgressCallback& progress) {
  if (request.key().empty()) {
    return absl::InvalidArgumentError("key: required");
  }
  if (request.tier() == v1::TIER_VRAM && options_.device == nullptr) {
    if (!options_.vram_unavailable.ok()) return options_.vram_unavailable;
    return absl::FailedPreconditionError(
        "tier: this loader has no VRAM tier (built without CUDA, or no CUDA "
        "device on this node); load into TIER_RAM");
  }
  if (request.tier() == v1::TIER_VRAM &&
      request.device() != options_.device->ordinal()) {
    return absl::FailedPreconditionError(
        absl::StrCat("device: this loader serves CUDA device ",
                     options_.device->ordinal(), ", not ", request.device()));
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
                .base = record.base(),
                .submodel = request.submodel(),
                .repo_variant = record.repo_variant(),
                .dtype = request.dtype()});
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
           // Reading and converting go chunk by chunk together: a load that
           // converts reports the one phase "converting" throughout.
           p.set_phase(plan.converted_tensors > 0 ? "converting" : "reading");
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
  handle.set_cache_key(cache_key);
  handle.set_dtype(request.dtype());
  if (request.tier() != v1::TIER_VRAM) {
    *handle.mutable_config() = entry->record();
    handle.set_tier(v1::TIER_RAM);
    handle.set_shm_name(entry->ram().region().name());
    handle.set_total_bytes(static_cast<int64_t>(entry->ram().region().size()));
    AddLayout(entry->ram().plan(), handle);
    loaded.lease = std::move(lease);
    return loaded;
  }
  // VRAM: a device copy of the RAM entry (held by `lease` while copying).
  const uint64_t bytes = entry->ram().region().size();
  ModelCache::EntrySpec vram_spec = spec;
  vram_spec.bytes = bytes;
  auto vram_fill = [&]() -> absl::StatusOr<std::shared_ptr<const CachedValue>> {
    if (progress) {
      v1::LoadProgress p;
      p.set_phase("copying_to_device");
      p.set_total_bytes(static_cast<int64_t>(bytes));
      progress(p);
    }
    ASSIGN_OR_RETURN(std::unique_ptr<DeviceBuffer> buffer,
                     options_.device->Allocate(bytes));
    RETURN_IF_ERROR(options_.device->CopyFromHost(
        *buffer, entry->ram().region().data(), bytes));
    return std::make_shared<const VramEntry>(
        std::move(buffer), entry->ram().plan(), entry->record());
  };
  ASSIGN_OR_RETURN(ModelCache::Lease vram_lease,
                   vram_cache_.Acquire(vram_spec, vram_fill));
  auto* vram = static_cast<const VramEntry*>(vram_lease.value().get());
  if (!SameFiles(vram->record(), entry->record())) {
    vram_lease.Release();
    vram_cache_.InvalidateModel(request.key());
    ASSIGN_OR_RETURN(vram_lease, vram_cache_.Acquire(vram_spec, vram_fill));
    vram = static_cast<const VramEntry*>(vram_lease.value().get());
  }
  *handle.mutable_config() = vram->record();
  handle.set_tier(v1::TIER_VRAM);
  handle.set_cuda_ipc_handle(vram->buffer().ipc_handle());
  handle.set_device(options_.device->ordinal());
  handle.set_total_bytes(static_cast<int64_t>(vram->buffer().size()));
  AddLayout(vram->plan(), handle);
  loaded.lease = std::move(vram_lease);
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
  const std::string cache_key =
      CacheKey(request.key(), request.submodel(), request.dtype());
  // One name for both tiers: the VRAM copy goes first when there is one.
  absl::StatusOr<uint64_t> vram = vram_cache_.Unload(cache_key);
  if (vram.ok() || !absl::IsNotFound(vram.status())) {
    if (!vram.ok()) return vram.status();
    absl::StatusOr<uint64_t> ram = cache_.Unload(cache_key);
    return *vram + (ram.ok() ? *ram : 0);
  }
  return cache_.Unload(cache_key);
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
  ModelCache::Stats vram = vram_cache_.GetStats();
  out.set_hits(out.hits() + vram.hits);
  out.set_misses(out.misses() + vram.misses);
  out.set_evictions(out.evictions() + vram.evictions);
  out.set_vram_budget_bytes(static_cast<int64_t>(vram.budget_bytes));
  out.set_vram_used_bytes(static_cast<int64_t>(vram.used_bytes));
  std::vector<std::pair<v1::Tier, ModelCache::EntryStats>> all;
  for (auto& e : vram.entries) all.push_back({v1::TIER_VRAM, std::move(e)});
  for (auto& e : stats.entries) all.push_back({v1::TIER_RAM, std::move(e)});
  std::stable_sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
    return a.second.last_use > b.second.last_use;
  });
  for (const auto& [tier, e] : all) {
    v1::CachedModel* m = out.add_models();
    m->set_cache_key(e.spec.cache_key);
    m->set_tier(tier);
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
