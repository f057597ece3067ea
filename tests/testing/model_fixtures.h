// Writers of model weight files for tests across the project: safetensors
// (in memory, or on disk with sparse zero data so a "7 GB" file costs no
// disk), torch.save-compatible zip checkpoints (a real protocol-2 pickle with
// _rebuild_tensor_v2, OrderedDict and torch.*Storage persistent ids, ZIP64
// when the sizes need it), GGUF files, plain stored zips, and a PickleWriter
// for hand-made (hostile) pickles.
//
// Thread-safety: free functions with no shared state; a PickleWriter is a
// value used from one thread.
//
//   WriteSafetensors(dir.path() / "vae.safetensors",
//                    {{.name = "decoder.conv_in.weight", .dtype = "F16",
//                      .shape = {512, 4, 3, 3}}});
//   WriteTorchCheckpoint(dir.path() / "m.ckpt", tensors,
//                        {.scalars = {{"global_step", int64_t{220000}}},
//                         .wrap_in_state_dict = true});
//
// Writers abort the test binary when a file cannot be written: a fixture
// that cannot be written is a broken machine, not a test failure.
#ifndef MM_TESTS_TESTING_MODEL_FIXTURES_H_
#define MM_TESTS_TESTING_MODEL_FIXTURES_H_

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace mm::testing {

// One tensor to write. Element size comes from `dtype` (safetensors names).
struct FixtureTensor {
  std::string name;
  std::string dtype = "F32";
  std::vector<int64_t> shape;
  // Little-endian element bytes, exactly shape × element size long; empty
  // means all zeros (left as a hole when writing a file).
  std::string data;
};

// Bytes of one element of a safetensors dtype; aborts on unknown names.
uint64_t FixtureDtypeSize(const std::string& dtype);
// Bytes the tensor's data occupies.
uint64_t FixtureByteSize(const FixtureTensor& tensor);

// A whole safetensors file in memory (zero data is materialised).
std::string SafetensorsBytes(
    const std::vector<FixtureTensor>& tensors,
    const std::map<std::string, std::string>& metadata = {});
// The header part only: 8-byte length + JSON.
std::string SafetensorsHeaderBytes(
    const std::vector<FixtureTensor>& tensors,
    const std::map<std::string, std::string>& metadata = {});
// Writes a safetensors file; zero tensors become holes (ftruncate).
void WriteSafetensors(const std::filesystem::path& path,
                      const std::vector<FixtureTensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

using FixtureScalar = std::variant<int64_t, double, bool, std::string>;

// A tensor viewing another tensor's storage, as torch.save writes a slice,
// a transpose or any view saved beside its base: same storage key, its own
// offset, shape and strides.
struct TorchFixtureView {
  std::string name;
  // Index of the tensor whose storage this views.
  size_t storage = 0;
  // Elements from the start of that storage.
  int64_t offset = 0;
  std::vector<int64_t> shape;
  // Empty: row-major contiguous for `shape`.
  std::vector<int64_t> strides;
};

struct TorchFixtureOptions {
  // Top-level non-tensor values ("global_step" → 220000). With
  // wrap_in_state_dict they sit beside "state_dict", else among the tensors.
  std::map<std::string, FixtureScalar> scalars;
  // Writes {"state_dict": OrderedDict(...), scalars...} like Lightning.
  bool wrap_in_state_dict = false;
  // Wraps each tensor in torch._utils._rebuild_parameter (nn.Parameter).
  bool as_parameters = false;
  // The archive folder torch.save names after the file stem.
  std::string archive_name = "archive";
  // Written into the state dict after the tensors.
  std::vector<TorchFixtureView> views;
};

// The protocol-2 data.pkl torch.save would write for `tensors` (storage i
// holds tensor i).
std::string TorchPickleBytes(const std::vector<FixtureTensor>& tensors,
                             const TorchFixtureOptions& options = {});
// A whole checkpoint in memory.
std::string TorchCheckpointBytes(const std::vector<FixtureTensor>& tensors,
                                 const TorchFixtureOptions& options = {});
// Writes a checkpoint; zero storages become holes, ZIP64 when needed.
void WriteTorchCheckpoint(const std::filesystem::path& path,
                          const std::vector<FixtureTensor>& tensors,
                          const TorchFixtureOptions& options = {});

// One entry of a hand-made zip. `method` is only recorded (8 marks the
// entry deflated without compressing it, to test refusal).
struct ZipFixtureEntry {
  std::string name;
  std::string data;
  uint16_t method = 0;
};
// A zip archive of stored entries in memory; `force_zip64` writes ZIP64
// records even when the sizes do not need them.
std::string ZipBytes(const std::vector<ZipFixtureEntry>& entries,
                     bool force_zip64 = false);

// A hand-made pickle, opcode by opcode.
class PickleWriter {
 public:
  PickleWriter& Proto(int protocol);
  PickleWriter& Global(const std::string& module, const std::string& name);
  PickleWriter& Unicode(const std::string& text);
  PickleWriter& Int(int64_t value);
  PickleWriter& Float(double value);
  PickleWriter& Bool(bool value);
  PickleWriter& None();
  PickleWriter& Mark();
  PickleWriter& Tuple();  // MARK ... TUPLE
  PickleWriter& EmptyTuple();
  PickleWriter& EmptyList();
  PickleWriter& EmptyDict();
  PickleWriter& Append();
  PickleWriter& SetItem();
  PickleWriter& SetItems();
  PickleWriter& Reduce();
  PickleWriter& Build();
  PickleWriter& BinPersId();
  PickleWriter& Put(uint32_t key);
  PickleWriter& Get(uint32_t key);
  PickleWriter& Stop();
  PickleWriter& Raw(const std::string& bytes);
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

// ggml type ids used by tests.
enum class GgmlFixtureType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ8_0 = 8,
  kQ4_K = 12,
  kBF16 = 30,
};

struct GgufFixtureTensor {
  std::string name;
  uint32_t type = 0;
  // Outermost first (PyTorch order); written innermost first as GGUF does.
  std::vector<int64_t> shape;
};

using GgufFixtureValue =
    std::variant<uint32_t, int32_t, uint64_t, float, bool, std::string,
                 std::vector<std::string>, std::vector<int32_t>>;

struct GgufFixture {
  uint32_t version = 3;
  std::vector<std::pair<std::string, GgufFixtureValue>> metadata;
  std::vector<GgufFixtureTensor> tensors;
  // Written as general.alignment when not 32.
  uint32_t alignment = 32;
};

// Bytes a tensor occupies in a GGUF file (block-rounded for quantized).
uint64_t GgufFixtureByteSize(const GgufFixtureTensor& tensor);
// A whole GGUF file in memory (zero data).
std::string GgufBytes(const GgufFixture& fixture);
// Writes a GGUF file with zero (sparse) data.
void WriteGguf(const std::filesystem::path& path, const GgufFixture& fixture);

// CRC-32 (zip polynomial) of `data`, and of `count` zero bytes (computed in
// O(log count), so multi-gigabyte sparse entries are cheap).
uint32_t Crc32(const std::string& data);
uint32_t Crc32OfZeros(uint64_t count);

}  // namespace mm::testing

#endif  // MM_TESTS_TESTING_MODEL_FIXTURES_H_
