// The VRAM tier on a real GPU (run by tests/gpu/check.sh): loads KEY into
// the RAM tier (the reference bytes) and into the VRAM tier, opens the
// handle's cudaIpcMemHandle_t in this process, copies the allocation back
// and compares every tensor; prints the VRAM Load's host-to-device rate
// next to cudaMemcpy of a pinned buffer of the same size. Exit 0 when every
// byte matches.
//
//   vram_check unix:/tmp/x/loader.sock KEY
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstring>
#include <iostream>
#include <vector>

#include "common/client.h"
#include "modelmanager/v1/loader.grpc.pb.h"
#include "services/loader/client/loaded_model.h"

namespace {

namespace v1 = ::modelmanager::v1;

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

int Fail(const std::string& message) {
  std::cerr << "vram_check: " << message << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) return Fail("usage: vram_check ADDR KEY");
  auto channel = mm::MakeChannel(argv[1], {});
  if (!channel.ok()) return Fail(std::string(channel.status().message()));
  auto ram = mm::loader::client::LoadedModel::Load(*channel, {.key = argv[2]});
  if (!ram.ok()) return Fail(std::string(ram.status().message()));

  auto stub = v1::Loader::NewStub(*channel);
  grpc::ClientContext context;
  v1::LoadRequest request;
  request.set_key(argv[2]);
  request.set_tier(v1::TIER_VRAM);
  auto start = std::chrono::steady_clock::now();
  auto reader = stub->Load(&context, request);
  v1::LoadResponse response;
  v1::ModelHandle handle;
  while (reader->Read(&response)) {
    if (response.has_handle()) {
      handle = response.handle();
      break;
    }
  }
  double load_seconds = Seconds(start);
  if (handle.cuda_ipc_handle().size() != sizeof(cudaIpcMemHandle_t)) {
    return Fail("no VRAM handle: " + reader->Finish().error_message());
  }
  if (cudaSetDevice(handle.device()) != cudaSuccess) {
    return Fail("cudaSetDevice failed");
  }
  cudaIpcMemHandle_t ipc;
  std::memcpy(&ipc, handle.cuda_ipc_handle().data(), sizeof(ipc));
  void* device = nullptr;
  if (cudaError_t e =
          cudaIpcOpenMemHandle(&device, ipc, cudaIpcMemLazyEnablePeerAccess);
      e != cudaSuccess) {
    return Fail(std::string("cudaIpcOpenMemHandle: ") + cudaGetErrorString(e));
  }
  std::vector<char> back(handle.total_bytes());
  cudaMemcpy(back.data(), device, back.size(), cudaMemcpyDeviceToHost);
  int mismatches = 0;
  for (const v1::TensorHandle& t : handle.tensors()) {
    const auto* view = (*ram)->Find(t.name());
    if (view == nullptr || view->bytes.size() != size_t(t.byte_size()) ||
        std::memcmp(back.data() + t.offset(), view->bytes.data(),
                    t.byte_size()) != 0) {
      std::cerr << "mismatch: " << t.name() << "\n";
      ++mismatches;
    }
  }
  cudaIpcCloseMemHandle(device);

  // The peer: cudaMemcpy of a pinned host buffer of the same size.
  void* pinned = nullptr;
  void* target = nullptr;
  cudaMallocHost(&pinned, back.size());
  cudaMalloc(&target, back.size());
  std::memcpy(pinned, back.data(), back.size());
  auto copy_start = std::chrono::steady_clock::now();
  cudaMemcpy(target, pinned, back.size(), cudaMemcpyHostToDevice);
  double copy_seconds = Seconds(copy_start);
  cudaFree(target);
  cudaFreeHost(pinned);

  std::cout << "tensors: " << handle.tensors_size()
            << ", mismatches: " << mismatches << "\n"
            << "VRAM Load (RAM hit + host-to-device): "
            << back.size() / load_seconds / 1e9 << " GB/s (" << load_seconds
            << " s)\n"
            << "cudaMemcpy from pinned memory:        "
            << back.size() / copy_seconds / 1e9 << " GB/s (" << copy_seconds
            << " s)\n";
  context.TryCancel();
  reader->Finish();
  return mismatches == 0 ? 0 : 1;
}
