#include "services/loader/client/loaded_model.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/mutex.h"

namespace mm::loader::client {

namespace v1 = ::modelmanager::v1;

absl::StatusOr<std::unique_ptr<LoadedModel>> LoadedModel::Load(
    std::shared_ptr<grpc::Channel> channel, const Options& options) {
  std::unique_ptr<LoadedModel> model(new LoadedModel());
  model->stub_ = v1::Loader::NewStub(channel);
  v1::LoadRequest request;
  request.set_key(options.key);
  request.set_submodel(options.submodel);
  request.set_dtype(options.dtype);
  request.set_tier(v1::TIER_RAM);
  model->reader_ = model->stub_->Load(&model->context_, request);
  // The deadline covers getting the handle only: after it, a timer ends the
  // wait by cancelling, and a held stream has no deadline.
  bool got_handle = false;
  absl::Time deadline = absl::Now() + options.timeout;
  Mutex mu;
  bool read_done = false;
  std::thread watchdog([&] {
    MutexLock lock(&mu);
    if (!mu.AwaitWithDeadline([&] { return read_done; }, deadline)) {
      model->context_.TryCancel();
    }
  });
  v1::LoadResponse response;
  while (model->reader_->Read(&response)) {
    if (response.has_handle()) {
      model->handle_ = response.handle();
      got_handle = true;
      break;
    }
  }
  {
    MutexLock lock(&mu);
    read_done = true;
  }
  watchdog.join();
  if (!got_handle) {
    grpc::Status status = model->reader_->Finish();
    if (status.error_code() == grpc::StatusCode::CANCELLED &&
        absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("no handle for ", options.key, " within ",
                       absl::FormatDuration(options.timeout)));
    }
    if (status.ok()) {
      return absl::InternalError(
          "the loader ended the stream without a handle");
    }
    return FromGrpcStatus(status);
  }
  model->lease_held_ = true;
  LoadedModel* raw = model.get();
  model->holder_ = std::thread([raw] {
    v1::LoadResponse ignored;
    while (raw->reader_->Read(&ignored)) {
    }
    raw->lease_held_ = false;
    raw->reader_->Finish();
  });

  const v1::ModelHandle& handle = model->handle_;
  if (handle.tier() != v1::TIER_RAM) {
    return absl::UnimplementedError(
        "the C++ client maps RAM-tier handles only");
  }
  int fd = ::shm_open(handle.shm_name().c_str(), O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot open ", handle.shm_name(), ": ", std::strerror(errno),
        "; the client must share /dev/shm with the loader (same node, "
        "same IPC namespace) and be in its --shm-group"));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 ||
      static_cast<int64_t>(st.st_size) != handle.total_bytes()) {
    ::close(fd);
    return absl::DataLossError(absl::StrCat(
        handle.shm_name(), " is not ", handle.total_bytes(), " bytes long"));
  }
  void* map = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ,
                     MAP_SHARED, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) {
    return absl::InternalError(
        absl::StrCat("mmap ", handle.shm_name(), ": ", std::strerror(errno)));
  }
  model->base_ = static_cast<const std::byte*>(map);
  model->mapped_bytes_ = static_cast<size_t>(st.st_size);
  for (const v1::TensorHandle& t : handle.tensors()) {
    if (t.offset() < 0 || t.byte_size() < 0 ||
        t.offset() > handle.total_bytes() ||
        t.byte_size() > handle.total_bytes() - t.offset()) {
      return absl::DataLossError(absl::StrCat(
          "tensor ", t.name(), " lies outside ", handle.shm_name()));
    }
    model->tensors_.push_back(
        {t.name(),
         t.dtype(),
         {t.shape().begin(), t.shape().end()},
         std::span<const std::byte>(model->base_ + t.offset(),
                                    static_cast<size_t>(t.byte_size()))});
  }
  return model;
}

LoadedModel::~LoadedModel() {
  // Ending the stream releases the lease.
  context_.TryCancel();
  if (holder_.joinable()) holder_.join();
  if (base_ != nullptr) {
    ::munmap(const_cast<std::byte*>(base_), mapped_bytes_);
  }
}

const TensorView* LoadedModel::Find(const std::string& name) const {
  for (const TensorView& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

}  // namespace mm::loader::client
