// Load with a dtype: the plan sizes the region from the converted dtypes,
// the read path converts with libtorch, and the bytes equal what Python's
// torch.Tensor.to gives for the same file (tests/loader/torch_reference.py,
// run with Debian's python3-torch).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/loader/dtype_conversion.h"
#include "services/loader/load_plan.h"
#include "services/loader/model_loader.h"
#include "services/loader/region_reader.h"
#include "tests/loader/fake_records.h"
#include "tests/testing/model_fixtures.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace mm::loader {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::modelmanager::v1;
using ::mm::testing::FixtureTensor;
using ::mm::testing::ReadFile;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::mm::testing::WriteSafetensors;
using ::testing::HasSubstr;

// Debian's interpreter, where python3-torch lives (a python3 earlier on
// PATH, such as a pyenv shim, may lack torch).
constexpr char kPython[] = "/usr/bin/python3";

template <typename T>
void Append(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof(value));
}

// F32 values that exercise the conversions' edges, then random bit
// patterns (every class: normals, subnormals, NaNs with payloads), enough
// of them that the tensor spans several of the reader's 1 MiB conversion
// chunks.
std::string F32Data(size_t random_values) {
  std::string out;
  const float specials[] = {
      0.0f,
      -0.0f,
      1.0f,
      -1.0f,
      1.0f / 3,
      3.14159265f,
      65504.0f,                           // largest F16
      65520.0f,                           // rounds to +inf in F16
      65519.0f,                           // rounds to 65504
      1e-8f,                              // an F16 subnormal
      5.9604645e-8f,                      // smallest F16 subnormal
      2.9802322e-8f,                      // half of it: ties to 0
      1e-45f,                             // an F32 subnormal
      std::numeric_limits<float>::max(),  // inf in F16, BF16 max rounds up
      std::numeric_limits<float>::infinity(),
      -std::numeric_limits<float>::infinity(),
      1.0f + 0x1p-11f,  // F16 tie: rounds to even (1.0)
      1.0f + 0x3p-11f,  // F16 tie: rounds up
      1.0f + 0x1p-8f,   // BF16 tie: rounds to even
      1.0f + 0x3p-8f,   // BF16 tie: rounds up
      1.0f + 0x1p-9f,   // below the BF16 tie
  };
  for (float f : specials) Append(out, f);
  const uint32_t nans[] = {0x7fc00000, 0xffc00000, 0x7f800001,
                           0x7fbfffff, 0x7fc12345, 0xff812345};
  for (uint32_t bits : nans) Append(out, bits);
  std::mt19937 random(7);
  for (size_t i = 0; i < random_values; ++i)
    Append(out, static_cast<uint32_t>(random()));
  return out;
}

// Every 16-bit pattern once (all F16 or all BF16 values).
std::string All16BitPatterns() {
  std::string out;
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    Append(out, static_cast<uint16_t>(bits));
  }
  return out;
}

std::string F64Data() {
  std::string out;
  const double values[] = {0.0,
                           -0.0,
                           1.0 / 3,
                           1e300,
                           -1e-300,
                           std::numeric_limits<double>::quiet_NaN(),
                           std::numeric_limits<double>::infinity(),
                           65519.99,
                           1.0 + 0x1p-24,
                           1.0 + 0x1p-24 + 0x1p-40};
  for (double d : values) Append(out, d);
  return out;
}

std::vector<FixtureTensor> Tensors() {
  std::vector<FixtureTensor> tensors;
  std::string f32 = F32Data(300000);  // 1.2 MB: two conversion chunks
  tensors.push_back({.name = "f32",
                     .dtype = "F32",
                     .shape = {static_cast<int64_t>(f32.size() / 4)},
                     .data = f32});
  tensors.push_back({.name = "f16",
                     .dtype = "F16",
                     .shape = {256, 256},
                     .data = All16BitPatterns()});
  tensors.push_back({.name = "bf16",
                     .dtype = "BF16",
                     .shape = {65536},
                     .data = All16BitPatterns()});
  tensors.push_back(
      {.name = "f64", .dtype = "F64", .shape = {2, 5}, .data = F64Data()});
  std::string ids;
  for (int64_t i = 0; i < 7; ++i) Append(ids, i * 0x0102030405060708);
  tensors.push_back({.name = "ids", .dtype = "I64", .shape = {7}, .data = ids});
  return tensors;
}

// A shm object mapped read-only, as a client maps it.
class Mapping {
 public:
  explicit Mapping(const std::string& name) {
    int fd = ::shm_open(name.c_str(), O_RDONLY, 0);
    if (fd < 0) return;
    struct stat st;
    if (::fstat(fd, &st) == 0) {
      size_ = static_cast<size_t>(st.st_size);
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
      if (p != MAP_FAILED) data_ = static_cast<const char*>(p);
    }
    ::close(fd);
  }
  ~Mapping() {
    if (data_ != nullptr) ::munmap(const_cast<char*>(data_), size_);
  }
  const char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  const char* data_ = nullptr;
  size_t size_ = 0;
};

class DtypeConversionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Built only with libtorch (tests/CMakeLists.txt), where it must be in.
    ASSERT_TRUE(DtypeConversionAvailable());
    fs::create_directories(dir_.path() / "models");
  }

  void AddModel(const std::string& key,
                const std::vector<FixtureTensor>& tensors) {
    WriteSafetensors(dir_.path() / "models" / (key + ".safetensors"), tensors);
    v1::Model record =
        TestRecord(key, key + ".safetensors", "vae", "checkpoint");
    record.set_name("model " + key);
    record.set_hash("blake3:" + key);
    records_.Put(record);
  }

  std::unique_ptr<ModelLoader> MakeLoader(uint64_t budget) {
    return std::make_unique<ModelLoader>(
        ModelLoader::Options{.models_dir = dir_.path() / "models",
                             .ram_budget_bytes = budget,
                             .read_threads = 3,
                             .records = &records_});
  }

  static v1::LoadRequest Request(const std::string& key,
                                 const std::string& dtype) {
    v1::LoadRequest request;
    request.set_key(key);
    request.set_dtype(dtype);
    return request;
  }

  TempDir dir_;
  FakeRecords records_;
};

TEST_F(DtypeConversionTest, BytesEqualPythonTorchTo) {
  const std::vector<FixtureTensor> tensors = Tensors();
  AddModel("m", tensors);
  const fs::path reference = dir_.path() / "reference";
  ASSERT_OK_AND_ASSIGN(
      mm::testing::CommandResult python,
      mm::testing::RunCommand(
          {kPython, MM_SOURCE_DIR "/tests/loader/torch_reference.py",
           (dir_.path() / "models" / "m.safetensors").string(),
           reference.string()},
          absl::Seconds(120)));
  ASSERT_EQ(python.exit_code, 0)
      << python.err << "\n(python3-torch is installed by scripts/setup.sh)";

  std::unique_ptr<ModelLoader> loader = MakeLoader(64 << 20);
  for (const std::string dtype : {"F16", "BF16", "F32"}) {
    SCOPED_TRACE(dtype);
    std::vector<std::string> phases;
    ASSERT_OK_AND_ASSIGN(
        ModelLoader::Loaded loaded,
        loader->Load(Request("m", dtype), [&](const v1::LoadProgress& p) {
          phases.push_back(p.phase());
        }));
    const v1::ModelHandle& handle = loaded.handle;
    EXPECT_EQ(handle.dtype(), dtype);
    EXPECT_EQ(handle.cache_key(), "m@" + dtype);
    ASSERT_FALSE(phases.empty());
    EXPECT_EQ(phases.back(), "converting");
    Mapping mapping(handle.shm_name());
    ASSERT_NE(mapping.data(), nullptr);
    ASSERT_EQ(mapping.size(), static_cast<size_t>(handle.total_bytes()));
    ASSERT_EQ(handle.tensors_size(), static_cast<int>(tensors.size()));
    for (const v1::TensorHandle& t : handle.tensors()) {
      SCOPED_TRACE(t.name());
      EXPECT_EQ(t.offset() % 64, 0);
      EXPECT_EQ(t.dtype(), t.name() == "ids" ? "I64" : dtype);
      std::string expected = ReadFile(reference / dtype / t.name());
      ASSERT_EQ(static_cast<size_t>(t.byte_size()), expected.size());
      ASSERT_LE(static_cast<size_t>(t.offset() + t.byte_size()),
                mapping.size());
      // memcmp, not EXPECT_EQ on the strings: a mismatch in 300000
      // elements would print megabytes. The first differing element says
      // enough.
      const char* got = mapping.data() + t.offset();
      size_t first_difference = expected.size();
      for (size_t i = 0; i < expected.size(); ++i) {
        if (got[i] != expected[i]) {
          first_difference = i;
          break;
        }
      }
      EXPECT_EQ(first_difference, expected.size())
          << "first differing byte at " << first_difference;
    }
  }
}

TEST_F(DtypeConversionTest, PlanSizesTheRegionFromTheConvertedDtypes) {
  fs::path file = dir_.path() / "p.safetensors";
  WriteSafetensors(file, {{.name = "w", .dtype = "F32", .shape = {3, 10}},
                          {.name = "h", .dtype = "F16", .shape = {5}},
                          {.name = "ids", .dtype = "I32", .shape = {4}}});
  ASSERT_OK_AND_ASSIGN(LoadPlan plan,
                       PlanLoad({.path = file, .dtype = "BF16"}));
  ASSERT_EQ(plan.tensors.size(), 3u);
  EXPECT_EQ(plan.converted_tensors, 2u);
  EXPECT_EQ(plan.tensors[0].dtype, "BF16");
  EXPECT_EQ(plan.tensors[0].source_dtype, "F32");
  EXPECT_EQ(plan.tensors[0].byte_size, 60u);
  EXPECT_EQ(plan.tensors[0].source_byte_size, 120u);
  EXPECT_EQ(plan.tensors[1].dtype, "BF16");
  EXPECT_EQ(plan.tensors[1].byte_size, 10u);
  EXPECT_EQ(plan.tensors[1].region_offset, 64u);
  EXPECT_FALSE(plan.tensors[2].converted());
  EXPECT_EQ(plan.tensors[2].dtype, "I32");
  EXPECT_EQ(plan.tensors[2].region_offset, 128u);
  EXPECT_EQ(plan.total_bytes, 192u);
  // What is read: the bytes in the file.
  EXPECT_EQ(plan.data_bytes, 120u + 10 + 16);

  ASSERT_OK_AND_ASSIGN(plan, PlanLoad({.path = file, .dtype = "F16"}));
  EXPECT_EQ(plan.converted_tensors, 1u);  // F16 stays as it is
  EXPECT_FALSE(plan.tensors[1].converted());
}

TEST_F(DtypeConversionTest, ConvertsIntoAMappingWithoutADescriptor) {
  // ReadIntoRegion without the object's descriptor converts straight into
  // the destination memory (the loader passes one and writes instead).
  std::string data;
  for (float f : {1.0f, 0.5f, -2.0f, 65504.0f, 1e9f}) Append(data, f);
  fs::path file = dir_.path() / "small.safetensors";
  WriteSafetensors(file,
                   {{.name = "w", .dtype = "F32", .shape = {5}, .data = data},
                    {.name = "i",
                     .dtype = "I32",
                     .shape = {1},
                     .data = std::string("\x01\x02\x03\x04", 4)}});
  ASSERT_OK_AND_ASSIGN(LoadPlan plan, PlanLoad({.path = file, .dtype = "F16"}));
  std::vector<char> region(plan.total_bytes, '\x55');
  ASSERT_OK(ReadIntoRegion(plan, region.data(), {.threads = 2}));
  const uint16_t expected[] = {0x3c00, 0x3800, 0xc000, 0x7bff, 0x7c00};
  EXPECT_EQ(std::memcmp(region.data(), expected, sizeof(expected)), 0);
  EXPECT_EQ(std::string(region.data() + 64, 4), "\x01\x02\x03\x04");
}

TEST_F(DtypeConversionTest, BudgetIsCheckedAgainstTheConvertedSize) {
  // 1000 F32 = 4000 bytes as stored, 2048 (2000 aligned up) as F16.
  AddModel("b", {{.name = "w", .dtype = "F32", .shape = {1000}}});
  std::unique_ptr<ModelLoader> loader = MakeLoader(3000);
  EXPECT_THAT(loader->Load(Request("b", ""), {}),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("needs 4032 bytes")));
  ASSERT_OK_AND_ASSIGN(ModelLoader::Loaded loaded,
                       loader->Load(Request("b", "F16"), {}));
  EXPECT_EQ(loaded.handle.total_bytes(), 2048);
  EXPECT_EQ(loaded.handle.tensors(0).byte_size(), 2000);
}

TEST_F(DtypeConversionTest, EachDtypeIsItsOwnCacheEntry) {
  AddModel("c", {{.name = "w", .dtype = "F32", .shape = {16}}});
  std::unique_ptr<ModelLoader> loader = MakeLoader(1 << 20);
  ASSERT_OK(loader->Load(Request("c", ""), {}).status());
  ASSERT_OK(loader->Load(Request("c", "F16"), {}).status());
  ASSERT_OK(loader->Load(Request("c", "F16"), {}).status());
  v1::CacheStats stats = loader->GetCacheStats();
  EXPECT_EQ(stats.misses(), 2);
  EXPECT_EQ(stats.hits(), 1);
  ASSERT_EQ(stats.models_size(), 2);
  std::vector<std::string> keys = {stats.models(0).cache_key(),
                                   stats.models(1).cache_key()};
  EXPECT_THAT(keys, ::testing::UnorderedElementsAre("c", "c@F16"));
}

TEST_F(DtypeConversionTest, RefusedDtypes) {
  AddModel("f8", {{.name = "w", .dtype = "F8_E4M3", .shape = {8}},
                  {.name = "b", .dtype = "F32", .shape = {2}}});
  std::unique_ptr<ModelLoader> loader = MakeLoader(1 << 20);
  EXPECT_THAT(loader->Load(Request("f8", "F16"), {}),
              StatusIs(absl::StatusCode::kUnimplemented,
                       "model f8: tensor 'w' is F8_E4M3, which this loader's "
                       "libtorch cannot convert to F16; load without a "
                       "dtype"));
  EXPECT_THAT(loader->Load(Request("f8", "fp16"), {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "dtype: 'fp16' is not one of F16, BF16, F32 (or "
                       "empty)"));

  fs::path gguf = dir_.path() / "models" / "g.gguf";
  mm::testing::WriteGguf(
      gguf, {.metadata = {{"general.architecture", std::string("llama")}},
             .tensors = {{.name = "norm",
                          .type = static_cast<uint32_t>(
                              mm::testing::GgmlFixtureType::kF32),
                          .shape = {10}}}});
  v1::Model record;
  record.set_key("g");
  record.set_path("g.gguf");
  record.set_type("main");
  record.set_format("gguf_quantized");
  record.set_base("any");
  records_.Put(record);
  EXPECT_THAT(loader->Load(Request("g", "F16"), {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "model g: dtype F16 asked of GGUF weights: GGUF "
                       "tensors are loaded as their stored blocks; load "
                       "without a dtype"));
}

}  // namespace
}  // namespace mm::loader
