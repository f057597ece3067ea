#include "services/loader/loader_registry.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace mm::loader {
namespace {

using ::mm::testing::StatusIs;

TEST(LoaderRegistryTest, ExactTripleThenAny) {
  LoaderRegistry registry;
  ASSERT_OK(registry.Register({"any", "vae", "checkpoint"},
                              LoaderKind::kWeightsFiles));
  ASSERT_OK(registry.Register({"sdxl", "lora", "lycoris"},
                              LoaderKind::kWeightsFiles));
  EXPECT_OK(registry.Find("sd-1", "vae", "checkpoint").status());
  EXPECT_OK(registry.Find("sdxl", "lora", "lycoris").status());
  EXPECT_THAT(registry.Find("sd-1", "lora", "lycoris"),
              StatusIs(absl::StatusCode::kUnimplemented,
                       "no loader for base 'sd-1', type 'lora', format "
                       "'lycoris' (lora.lycoris.sd-1 models cannot be loaded "
                       "by this loader)"));
}

TEST(LoaderRegistryTest, SecondRegistrationIsAnError) {
  LoaderRegistry registry;
  ASSERT_OK(registry.Register({"any", "vae", "checkpoint"},
                              LoaderKind::kWeightsFiles));
  EXPECT_THAT(registry.Register({"any", "vae", "checkpoint"},
                                LoaderKind::kWeightsFiles),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       "a loader for base 'any', type 'vae', format "
                       "'checkpoint' is registered twice"));
}

TEST(LoaderRegistryTest, DefaultLoadsWeightsFilesButNotOnnx) {
  ASSERT_OK_AND_ASSIGN(LoaderRegistry registry, DefaultLoaderRegistry());
  EXPECT_OK(registry.Find("sdxl", "main", "diffusers").status());
  EXPECT_OK(registry.Find("flux", "main", "gguf_quantized").status());
  EXPECT_OK(registry.Find("sd-1", "lora", "lycoris").status());
  EXPECT_THAT(registry.Find("sdxl", "main", "onnx"),
              StatusIs(absl::StatusCode::kUnimplemented));
  EXPECT_THAT(registry.Find("unknown", "unknown", "unknown"),
              StatusIs(absl::StatusCode::kUnimplemented));
}

}  // namespace
}  // namespace mm::loader
