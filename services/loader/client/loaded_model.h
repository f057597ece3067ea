// The C++ client of the loader: Load returns an object that holds the Load
// stream (and so the lease) on its own thread, maps the model's shared
// memory read-only and exposes each tensor as a raw span, without a copy.
// Destroying it ends the stream (releasing the lease) and unmaps.
//
// RAM tier only for now. torch::Tensor views over the same mapping are in
// torch_tensors.h (target mm_loader_client_torch, with libtorch only).
//
// Thread-safety: const methods may be called from any thread.
//
//   ASSIGN_OR_RETURN(auto model, mm::loader::client::LoadedModel::Load(
//       channel, {.key = "3f2a...", .submodel = "vae"}));
//   const TensorView* w = model->Find("decoder.conv_in.weight");
//   Use(w->bytes.data(), w->bytes.size());   // while `model` lives
#ifndef MM_SERVICES_LOADER_CLIENT_LOADED_MODEL_H_
#define MM_SERVICES_LOADER_CLIENT_LOADED_MODEL_H_

#include <atomic>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "modelmanager/v1/loader.grpc.pb.h"

namespace mm::loader::client {

struct TensorView {
  std::string name;
  // safetensors dtype name (or GGML type name).
  std::string dtype;
  std::vector<int64_t> shape;
  // The tensor's bytes inside the read-only mapping.
  std::span<const std::byte> bytes;
};

class LoadedModel {
 public:
  struct Options {
    std::string key;
    std::string submodel;
    std::string dtype;
    // How long to wait for the handle (the load itself).
    absl::Duration timeout = absl::Minutes(10);
  };

  // Loads and maps. The loader's errors come back as they are (NOT_FOUND,
  // RESOURCE_EXHAUSTED, ...); DEADLINE_EXCEEDED after `timeout`; DATA_LOSS
  // when the handle does not fit the object it names.
  static absl::StatusOr<std::unique_ptr<LoadedModel>> Load(
      std::shared_ptr<grpc::Channel> channel, const Options& options);

  ~LoadedModel();
  LoadedModel(const LoadedModel&) = delete;
  LoadedModel& operator=(const LoadedModel&) = delete;

  const modelmanager::v1::ModelHandle& handle() const { return handle_; }
  const std::vector<TensorView>& tensors() const { return tensors_; }
  // The tensor named `name`, or nullptr.
  const TensorView* Find(const std::string& name) const;
  // False once the stream ended (the loader went away): the mapping stays
  // valid, but the model is no longer locked for us.
  bool lease_held() const { return lease_held_.load(); }

 private:
  LoadedModel() = default;

  std::unique_ptr<modelmanager::v1::Loader::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<modelmanager::v1::LoadResponse>> reader_;
  modelmanager::v1::ModelHandle handle_;
  std::vector<TensorView> tensors_;
  const std::byte* base_ = nullptr;
  size_t mapped_bytes_ = 0;
  std::atomic<bool> lease_held_{false};
  // Reads the stream until it ends, so the end is noticed and the stream
  // stays serviced.
  std::thread holder_;
};

}  // namespace mm::loader::client

#endif  // MM_SERVICES_LOADER_CLIENT_LOADED_MODEL_H_
