// A Device in host memory, for testing the VRAM tier's policy without a
// GPU: allocations are heap buffers counted against a fixed capacity, the
// "IPC handle" is 64 bytes naming the buffer, and copies are memcpy.
#ifndef MM_TESTS_LOADER_FAKE_DEVICE_H_
#define MM_TESTS_LOADER_FAKE_DEVICE_H_

#include <atomic>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "services/loader/device.h"

namespace mm::loader {

class FakeDeviceBuffer : public DeviceBuffer {
 public:
  FakeDeviceBuffer(uint64_t size, std::atomic<uint64_t>* used)
      : bytes_(size, '\0'), used_(used) {
    used_->fetch_add(size);
  }
  ~FakeDeviceBuffer() override { used_->fetch_sub(bytes_.size()); }
  uint64_t size() const override { return bytes_.size(); }
  std::string ipc_handle() const override {
    std::string handle(64, '\0');
    const void* address = bytes_.data();
    std::memcpy(handle.data(), &address, sizeof(address));
    return handle;
  }
  const std::string& bytes() const { return bytes_; }
  std::string& mutable_bytes() { return bytes_; }

 private:
  std::string bytes_;
  std::atomic<uint64_t>* used_;
};

class FakeDevice : public Device {
 public:
  explicit FakeDevice(uint64_t capacity) : capacity_(capacity) {}
  int ordinal() const override { return 0; }
  absl::StatusOr<uint64_t> FreeBytes() override {
    return capacity_ - used_.load();
  }
  absl::StatusOr<std::unique_ptr<DeviceBuffer>> Allocate(
      uint64_t bytes) override {
    if (used_.load() + bytes > capacity_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("fake device has no room for ", bytes, " bytes"));
    }
    allocations_.fetch_add(1);
    return std::make_unique<FakeDeviceBuffer>(bytes, &used_);
  }
  absl::Status CopyFromHost(DeviceBuffer& destination, const char* source,
                            uint64_t bytes) override {
    auto& buffer = static_cast<FakeDeviceBuffer&>(destination);
    std::memcpy(buffer.mutable_bytes().data(), source, bytes);
    return absl::OkStatus();
  }
  uint64_t used() const { return used_.load(); }
  int allocations() const { return allocations_.load(); }

 private:
  const uint64_t capacity_;
  std::atomic<uint64_t> used_{0};
  std::atomic<int> allocations_{0};
};

}  // namespace mm::loader

#endif  // MM_TESTS_LOADER_FAKE_DEVICE_H_
