// The C++ client's torch::Tensor views, against an in-process loader: no
// copy (the data pointer is the mapping's), values equal to the file's, and
// a Load with a dtype gives what libtorch's own .to gives.
#include "services/loader/client/torch_tensors.h"

// Only what is needed: libtorch 1.13's full headers (ATen/ATen.h, and
// ATen/ops/equal.h through DeviceGuard) do not compile with clang in C++20.
#include <ATen/core/Tensor.h>
#include <ATen/ops/from_blob.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/client.h"
#include "common/server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/loader/loader_service.h"
#include "services/loader/model_loader.h"
#include "tests/loader/fake_records.h"
#include "tests/testing/model_fixtures.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::loader::client {
namespace {

namespace v1 = ::modelmanager::v1;
using ::mm::testing::FixtureByteSize;
using ::mm::testing::FixtureTensor;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;

// The file's tensor as torch sees it (a copy, owning its memory).
at::Tensor FromFixture(const FixtureTensor& t, at::ScalarType type) {
  return at::from_blob(const_cast<char*>(t.data.data()), t.shape,
                       at::TensorOptions().dtype(type))
      .clone();
}

class TorchTensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tensors_ = {{.name = "w", .dtype = "F32", .shape = {4, 100}},
                {.name = "h", .dtype = "F16", .shape = {5}},
                {.name = "b", .dtype = "BF16", .shape = {3, 2}},
                {.name = "ids", .dtype = "I64", .shape = {2}}};
    std::mt19937 random(11);
    std::uniform_real_distribution<float> value(-100, 100);
    for (FixtureTensor& t : tensors_) {
      t.data.resize(FixtureByteSize(t));
      if (t.dtype == "F32") {
        // Finite values, so that equal() is a fair comparison.
        for (size_t i = 0; i < t.data.size(); i += 4) {
          float f = value(random);
          std::memcpy(&t.data[i], &f, 4);
        }
      } else {
        for (char& c : t.data) c = static_cast<char>(random() & 0x3f);
      }
    }
    testing::WriteSafetensors(dir_.path() / "m.safetensors", tensors_);
    records_.Put(TestRecord("k", "m.safetensors", "vae", "checkpoint"));
    loader_ = std::make_unique<ModelLoader>(
        ModelLoader::Options{.models_dir = dir_.path(),
                             .ram_budget_bytes = 1 << 20,
                             .records = &records_});
    service_ = std::make_unique<LoaderService>(loader_.get());
    ServerOptions options;
    options.listen = "unix:" + (dir_.path() / "loader.sock").string();
    ASSERT_OK_AND_ASSIGN(host_, ServiceHost::Start(options, {service_.get()},
                                                   {kLoaderServiceName}));
    host_->AddShutdownHook([this] { service_->Shutdown(); });
    ASSERT_OK_AND_ASSIGN(channel_, MakeChannel(host_->address(), {}));
  }
  void TearDown() override {
    if (host_) host_->Shutdown(absl::Seconds(5));
    host_.reset();
    service_.reset();
    loader_.reset();
  }

  TempDir dir_;
  std::vector<FixtureTensor> tensors_;
  FakeRecords records_;
  std::unique_ptr<ModelLoader> loader_;
  std::unique_ptr<LoaderService> service_;
  std::unique_ptr<ServiceHost> host_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(TorchTensorsTest, ViewsTheMappingWithoutACopy) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<LoadedModel> model,
                       LoadedModel::Load(channel_, {.key = "k"}));
  ASSERT_OK_AND_ASSIGN(auto tensors, TorchTensors(*model));
  ASSERT_EQ(tensors.size(), tensors_.size());
  const v1::ModelHandle& handle = model->handle();
  // The mapping: the first tensor's span starts `offset` bytes into it.
  const std::byte* base =
      model->tensors()[0].bytes.data() - handle.tensors(0).offset();
  const std::byte* end = base + handle.total_bytes();
  const at::ScalarType types[] = {at::kFloat, at::kHalf, at::kBFloat16,
                                  at::kLong};
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, tensor] = tensors[i];
    SCOPED_TRACE(name);
    EXPECT_EQ(name, tensors_[i].name);
    const auto* data = static_cast<const std::byte*>(tensor.data_ptr());
    EXPECT_EQ(data, model->tensors()[i].bytes.data());
    EXPECT_GE(data, base);
    EXPECT_LE(data + tensor.nbytes(), end);
    EXPECT_EQ(tensor.scalar_type(), types[i]);
    EXPECT_EQ(tensor.sizes().vec(), tensors_[i].shape);
    EXPECT_TRUE(tensor.is_contiguous());
    // The file's bytes, bit for bit.
    ASSERT_EQ(tensor.nbytes(), tensors_[i].data.size());
    EXPECT_EQ(std::memcmp(data, tensors_[i].data.data(), tensor.nbytes()), 0);
  }
}

TEST_F(TorchTensorsTest, ConvertedLoadEqualsLibtorchTo) {
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<LoadedModel> model,
      LoadedModel::Load(channel_, {.key = "k", .dtype = "BF16"}));
  ASSERT_OK_AND_ASSIGN(auto tensors, TorchTensors(*model));
  ASSERT_EQ(tensors.size(), 4u);
  const at::ScalarType types[] = {at::kFloat, at::kHalf, at::kBFloat16,
                                  at::kLong};
  for (size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE(tensors[i].first);
    at::Tensor expected = FromFixture(tensors_[i], types[i]).to(at::kBFloat16);
    EXPECT_EQ(tensors[i].second.scalar_type(), at::kBFloat16);
    // Bits, not values (-0 and 0, NaNs).
    ASSERT_EQ(tensors[i].second.nbytes(), expected.nbytes());
    EXPECT_EQ(std::memcmp(tensors[i].second.data_ptr(), expected.data_ptr(),
                          expected.nbytes()),
              0);
  }
  EXPECT_EQ(tensors[3].second.scalar_type(), at::kLong);
  EXPECT_EQ(std::memcmp(tensors[3].second.data_ptr(), tensors_[3].data.data(),
                        tensors_[3].data.size()),
            0);
}

TEST(AsTorchTensorTest, RefusesWhatTorchCannotView) {
  std::vector<std::byte> bytes(18);
  TensorView blocks{.name = "blk.0.attn_q.weight",
                    .dtype = "Q4_0",
                    .shape = {32},
                    .bytes = bytes};
  EXPECT_THAT(AsTorchTensor(blocks),
              StatusIs(absl::StatusCode::kUnimplemented,
                       "tensor 'blk.0.attn_q.weight': dtype Q4_0 has no "
                       "torch type; use its raw bytes"));
  TensorView short_view{
      .name = "w", .dtype = "F32", .shape = {5}, .bytes = bytes};
  EXPECT_THAT(AsTorchTensor(short_view),
              StatusIs(absl::StatusCode::kDataLoss,
                       "tensor 'w': 18 bytes do not hold the shape's 5 "
                       "elements of F32"));
}

}  // namespace
}  // namespace mm::loader::client
