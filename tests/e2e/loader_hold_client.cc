// A client process for the loader's end-to-end test: loads KEY from the
// loader at ADDR, prints "handle <shm name>" once it holds the lease, then
// keeps the stream open until it ends and prints "ended <CODE> <message>".
// The test kills it (kill -9) to check that the lease goes with it.
//
//   loader_hold_client unix:/tmp/x/loader.sock KEY
#include <iostream>

#include "common/client.h"
#include "common/grpc_status.h"
#include "modelmanager/v1/loader.grpc.pb.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: loader_hold_client ADDR KEY\n";
    return 2;
  }
  auto channel = mm::MakeChannel(argv[1], {});
  if (!channel.ok()) {
    std::cerr << channel.status() << "\n";
    return 1;
  }
  auto stub = modelmanager::v1::Loader::NewStub(*channel);
  grpc::ClientContext context;
  modelmanager::v1::LoadRequest request;
  request.set_key(argv[2]);
  auto reader = stub->Load(&context, request);
  modelmanager::v1::LoadResponse response;
  while (reader->Read(&response)) {
    if (response.has_handle()) {
      std::cout << "handle " << response.handle().shm_name() << std::endl;
    }
  }
  std::cout << "ended " << mm::GrpcStatusLine(reader->Finish()) << std::endl;
  return 0;
}
