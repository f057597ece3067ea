// The VRAM tier's device on CUDA (built when MM_WITH_CUDA finds the
// toolkit). Only the runtime API: no kernels, so no nvcc.
#include <cuda_runtime_api.h>

#include <cstring>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "common/mutex.h"
#include "services/loader/device.h"

namespace mm::loader {
namespace {

// Bytes per staging buffer; two alternate so that filling one from host
// memory overlaps the DMA of the other.
constexpr uint64_t kStagingBytes = 64 << 20;

absl::Status CudaError(cudaError_t error, absl::string_view what) {
  return absl::InternalError(
      absl::StrCat(what, ": ", cudaGetErrorString(error)));
}

class CudaBuffer : public DeviceBuffer {
 public:
  CudaBuffer(int ordinal, void* pointer, uint64_t size, std::string handle)
      : ordinal_(ordinal),
        pointer_(pointer),
        size_(size),
        handle_(std::move(handle)) {}
  ~CudaBuffer() override {
    cudaSetDevice(ordinal_);
    cudaFree(pointer_);
  }
  uint64_t size() const override { return size_; }
  std::string ipc_handle() const override { return handle_; }
  void* pointer() const { return pointer_; }

 private:
  int ordinal_;
  void* pointer_;
  uint64_t size_;
  std::string handle_;
};

class CudaDevice : public Device {
 public:
  explicit CudaDevice(int ordinal) : ordinal_(ordinal) {}
  ~CudaDevice() override {
    MutexLock lock(&mu_);
    cudaSetDevice(ordinal_);
    for (int i = 0; i < 2; ++i) {
      if (staging_[i] != nullptr) cudaFreeHost(staging_[i]);
      if (done_[i] != nullptr) cudaEventDestroy(done_[i]);
    }
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  int ordinal() const override { return ordinal_; }

  absl::StatusOr<uint64_t> FreeBytes() override {
    if (cudaError_t e = cudaSetDevice(ordinal_); e != cudaSuccess) {
      return CudaError(e, "cudaSetDevice");
    }
    size_t free_bytes = 0, total = 0;
    if (cudaError_t e = cudaMemGetInfo(&free_bytes, &total); e != cudaSuccess) {
      return CudaError(e, "cudaMemGetInfo");
    }
    return static_cast<uint64_t>(free_bytes);
  }

  absl::StatusOr<std::unique_ptr<DeviceBuffer>> Allocate(
      uint64_t bytes) override {
    if (cudaError_t e = cudaSetDevice(ordinal_); e != cudaSuccess) {
      return CudaError(e, "cudaSetDevice");
    }
    void* pointer = nullptr;
    cudaError_t e = cudaMalloc(&pointer, bytes);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // clear the sticky-free error state
      return absl::ResourceExhaustedError(
          absl::StrCat("CUDA device ", ordinal_, " has no room for ", bytes,
                       " bytes; free VRAM or lower --vram-cache"));
    }
    if (e != cudaSuccess) return CudaError(e, "cudaMalloc");
    cudaIpcMemHandle_t handle;
    if (cudaError_t h = cudaIpcGetMemHandle(&handle, pointer);
        h != cudaSuccess) {
      cudaFree(pointer);
      return CudaError(h, "cudaIpcGetMemHandle");
    }
    return std::make_unique<CudaBuffer>(
        ordinal_, pointer, bytes,
        std::string(reinterpret_cast<const char*>(&handle), sizeof(handle)));
  }

  absl::Status CopyFromHost(DeviceBuffer& destination, const char* source,
                            uint64_t bytes) override {
    auto& buffer = static_cast<CudaBuffer&>(destination);
    if (bytes > buffer.size()) {
      return absl::InvalidArgumentError("copy larger than the allocation");
    }
    // One copy at a time per device: the staging buffers are shared.
    MutexLock lock(&mu_);
    if (cudaError_t e = cudaSetDevice(ordinal_); e != cudaSuccess) {
      return CudaError(e, "cudaSetDevice");
    }
    if (absl::Status s = EnsureStaging(); !s.ok()) return s;
    char* device = static_cast<char*>(buffer.pointer());
    int slot = 0;
    for (uint64_t done = 0; done < bytes; done += kStagingBytes) {
      uint64_t n = std::min(kStagingBytes, bytes - done);
      // Wait until the DMA that last read this staging buffer is done,
      // then refill it while the other buffer's DMA runs.
      if (cudaError_t e = cudaEventSynchronize(done_[slot]); e != cudaSuccess) {
        return CudaError(e, "cudaEventSynchronize");
      }
      std::memcpy(staging_[slot], source + done, n);
      if (cudaError_t e = cudaMemcpyAsync(device + done, staging_[slot], n,
                                          cudaMemcpyHostToDevice, stream_);
          e != cudaSuccess) {
        return CudaError(e, "cudaMemcpyAsync");
      }
      if (cudaError_t e = cudaEventRecord(done_[slot], stream_);
          e != cudaSuccess) {
        return CudaError(e, "cudaEventRecord");
      }
      slot ^= 1;
    }
    if (cudaError_t e = cudaStreamSynchronize(stream_); e != cudaSuccess) {
      return CudaError(e, "cudaStreamSynchronize");
    }
    return absl::OkStatus();
  }

 private:
  absl::Status EnsureStaging() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (stream_ != nullptr) return absl::OkStatus();
    if (cudaError_t e =
            cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking);
        e != cudaSuccess) {
      stream_ = nullptr;
      return CudaError(e, "cudaStreamCreate");
    }
    for (int i = 0; i < 2; ++i) {
      if (cudaError_t e =
              cudaHostAlloc(&staging_[i], kStagingBytes, cudaHostAllocDefault);
          e != cudaSuccess) {
        return CudaError(e, "cudaHostAlloc (pinned staging)");
      }
      if (cudaError_t e =
              cudaEventCreateWithFlags(&done_[i], cudaEventDisableTiming);
          e != cudaSuccess) {
        return CudaError(e, "cudaEventCreate");
      }
    }
    return absl::OkStatus();
  }

  const int ordinal_;
  Mutex mu_;
  cudaStream_t stream_ ABSL_GUARDED_BY(mu_) = nullptr;
  void* staging_[2] ABSL_GUARDED_BY(mu_) = {nullptr, nullptr};
  cudaEvent_t done_[2] ABSL_GUARDED_BY(mu_) = {nullptr, nullptr};
};

}  // namespace

absl::StatusOr<std::unique_ptr<Device>> OpenCudaDevice(int ordinal) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || ordinal < 0 || ordinal >= count) {
    return absl::FailedPreconditionError(
        absl::StrCat("tier: no CUDA device ", ordinal, " on this node (",
                     e == cudaSuccess ? absl::StrCat(count, " device(s)")
                                      : std::string(cudaGetErrorString(e)),
                     "); load into TIER_RAM"));
  }
  return std::make_unique<CudaDevice>(ordinal);
}

}  // namespace mm::loader
