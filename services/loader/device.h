// The VRAM tier's view of a GPU, as an interface: the CUDA implementation
// (cuda_device.cc, built with MM_WITH_CUDA) and a host-memory fake for
// tests (tests/loader/fake_device.h), so the VRAM cache policy is tested on
// machines without a GPU.
//
// Thread-safety: implementations are thread-safe.
#ifndef MM_SERVICES_LOADER_DEVICE_H_
#define MM_SERVICES_LOADER_DEVICE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace mm::loader {

// One device allocation; freed on destruction.
class DeviceBuffer {
 public:
  virtual ~DeviceBuffer() = default;
  virtual uint64_t size() const = 0;
  // What a client opens the allocation with: the 64-byte
  // cudaIpcMemHandle_t for CUDA.
  virtual std::string ipc_handle() const = 0;
};

class Device {
 public:
  virtual ~Device() = default;
  // The device ordinal.
  virtual int ordinal() const = 0;
  // Bytes free on the device now.
  virtual absl::StatusOr<uint64_t> FreeBytes() = 0;
  // RESOURCE_EXHAUSTED when the device has no room.
  virtual absl::StatusOr<std::unique_ptr<DeviceBuffer>> Allocate(
      uint64_t bytes) = 0;
  // Copies `bytes` bytes from host memory `source` to the start of
  // `destination` (overlapping reads of the source with the transfers where
  // the implementation can).
  virtual absl::Status CopyFromHost(DeviceBuffer& destination,
                                    const char* source, uint64_t bytes) = 0;
};

// The CUDA device `ordinal`: FAILED_PRECONDITION when this build has no
// CUDA support or the node has no such device.
absl::StatusOr<std::unique_ptr<Device>> OpenCudaDevice(int ordinal);

}  // namespace mm::loader

#endif  // MM_SERVICES_LOADER_DEVICE_H_
