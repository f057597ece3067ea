#include "tests/testing/model_fixtures.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <bit>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "nlohmann/json.hpp"

namespace mm::testing {
namespace {

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "model_fixtures: %s\n", what.c_str());
  std::abort();
}

void PutLittle(std::string& out, uint64_t value, int width) {
  for (int i = 0; i < width; ++i) {
    out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
  }
}

// Writes either into memory or into a file, where runs of zeros become
// holes: the file is only ftruncate'd to its final size.
class Sink {
 public:
  explicit Sink(std::string* memory) : memory_(memory) {}
  explicit Sink(const std::filesystem::path& path) : path_(path) {
    std::filesystem::create_directories(path.parent_path());
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) Die("cannot create " + path.string());
  }
  ~Sink() {
    if (fd_ >= 0) {
      if (::ftruncate(fd_, static_cast<off_t>(position_)) != 0) {
        Die("cannot size " + path_.string());
      }
      ::close(fd_);
    }
  }

  uint64_t position() const { return position_; }

  void Write(const std::string& bytes) {
    if (memory_ != nullptr) {
      memory_->append(bytes);
    } else {
      size_t done = 0;
      while (done < bytes.size()) {
        const ssize_t wrote =
            ::pwrite(fd_, bytes.data() + done, bytes.size() - done,
                     static_cast<off_t>(position_ + done));
        if (wrote <= 0) Die("cannot write " + path_.string());
        done += static_cast<size_t>(wrote);
      }
    }
    position_ += bytes.size();
  }

  void Zeros(uint64_t count) {
    if (memory_ != nullptr) memory_->append(count, '\0');
    position_ += count;
  }

 private:
  std::string* memory_ = nullptr;
  std::filesystem::path path_;
  int fd_ = -1;
  uint64_t position_ = 0;
};

std::array<uint32_t, 256> MakeCrcTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}
const std::array<uint32_t, 256>& CrcTable() {
  static const std::array<uint32_t, 256> table = MakeCrcTable();
  return table;
}

// A 32×32 matrix over GF(2), one column per input bit.
using Gf2Matrix = std::array<uint32_t, 32>;
uint32_t Apply(const Gf2Matrix& m, uint32_t v) {
  uint32_t out = 0;
  for (int i = 0; v != 0; ++i, v >>= 1) {
    if (v & 1) out ^= m[i];
  }
  return out;
}
Gf2Matrix Multiply(const Gf2Matrix& a, const Gf2Matrix& b) {
  Gf2Matrix out;
  for (int i = 0; i < 32; ++i) out[i] = Apply(a, b[i]);
  return out;
}

// One table-driven CRC step over a byte.
uint32_t CrcStep(uint32_t crc, unsigned char byte) {
  return CrcTable()[(crc ^ byte) & 0xFF] ^ (crc >> 8);
}

struct Entry {
  std::string name;
  uint16_t method = 0;
  uint32_t crc = 0;
  uint64_t size = 0;
  uint64_t offset = 0;
  bool zip64 = false;
};

// Writes one stored entry: local header (with ZIP64 and 64-byte alignment
// padding as torch.save does when `align`), then the data or a hole.
Entry WriteEntry(Sink& sink, const std::string& name, const std::string* data,
                 uint64_t zero_size, uint16_t method, bool align,
                 bool force_zip64) {
  Entry entry;
  entry.name = name;
  entry.method = method;
  entry.size = data != nullptr ? data->size() : zero_size;
  entry.crc = data != nullptr ? Crc32(*data) : Crc32OfZeros(zero_size);
  entry.offset = sink.position();
  entry.zip64 = force_zip64 || entry.size >= 0xFFFFFFFFull ||
                entry.offset >= 0xFFFFFFFFull;
  std::string extra;
  if (entry.zip64) {
    PutLittle(extra, 0x0001, 2);
    PutLittle(extra, 16, 2);
    PutLittle(extra, entry.size, 8);
    PutLittle(extra, entry.size, 8);
  }
  if (align) {
    const uint64_t base = entry.offset + 30 + name.size() + extra.size() + 4;
    const uint64_t padding = (64 - base % 64) % 64;
    PutLittle(extra, 0x4246, 2);  // "FB", torch's padding record
    PutLittle(extra, padding, 2);
    extra.append(padding, 'Z');
  }
  std::string header;
  PutLittle(header, 0x04034b50, 4);
  PutLittle(header, entry.zip64 ? 45 : 20, 2);
  PutLittle(header, 0, 2);  // flags
  PutLittle(header, method, 2);
  PutLittle(header, 0, 2);     // time
  PutLittle(header, 0x21, 2);  // date: 1980-01-01
  PutLittle(header, entry.crc, 4);
  PutLittle(header, entry.zip64 ? 0xFFFFFFFFull : entry.size, 4);
  PutLittle(header, entry.zip64 ? 0xFFFFFFFFull : entry.size, 4);
  PutLittle(header, name.size(), 2);
  PutLittle(header, extra.size(), 2);
  header += name;
  header += extra;
  sink.Write(header);
  if (data != nullptr) {
    sink.Write(*data);
  } else {
    sink.Zeros(zero_size);
  }
  return entry;
}

void WriteCentralDirectory(Sink& sink, const std::vector<Entry>& entries,
                           bool force_zip64) {
  const uint64_t directory_offset = sink.position();
  std::string directory;
  for (const Entry& entry : entries) {
    std::string extra;
    const bool big_size = entry.zip64;
    const bool big_offset = force_zip64 || entry.offset >= 0xFFFFFFFFull;
    if (big_size || big_offset) {
      std::string body;
      if (big_size) {
        PutLittle(body, entry.size, 8);
        PutLittle(body, entry.size, 8);
      }
      if (big_offset) PutLittle(body, entry.offset, 8);
      PutLittle(extra, 0x0001, 2);
      PutLittle(extra, body.size(), 2);
      extra += body;
    }
    PutLittle(directory, 0x02014b50, 4);
    PutLittle(directory, 45, 2);  // made by
    PutLittle(directory, (big_size || big_offset) ? 45 : 20, 2);
    PutLittle(directory, 0, 2);
    PutLittle(directory, entry.method, 2);
    PutLittle(directory, 0, 2);
    PutLittle(directory, 0x21, 2);
    PutLittle(directory, entry.crc, 4);
    PutLittle(directory, big_size ? 0xFFFFFFFFull : entry.size, 4);
    PutLittle(directory, big_size ? 0xFFFFFFFFull : entry.size, 4);
    PutLittle(directory, entry.name.size(), 2);
    PutLittle(directory, extra.size(), 2);
    PutLittle(directory, 0, 2);  // comment
    PutLittle(directory, 0, 2);  // disk
    PutLittle(directory, 0, 2);  // internal attributes
    PutLittle(directory, 0, 4);  // external attributes
    PutLittle(directory, big_offset ? 0xFFFFFFFFull : entry.offset, 4);
    directory += entry.name;
    directory += extra;
  }
  sink.Write(directory);
  const uint64_t count = entries.size();
  const bool zip64 = force_zip64 || count >= 0xFFFF ||
                     directory.size() >= 0xFFFFFFFFull ||
                     directory_offset >= 0xFFFFFFFFull;
  std::string tail;
  if (zip64) {
    const uint64_t record_offset = sink.position();
    PutLittle(tail, 0x06064b50, 4);
    PutLittle(tail, 44, 8);
    PutLittle(tail, 45, 2);
    PutLittle(tail, 45, 2);
    PutLittle(tail, 0, 4);
    PutLittle(tail, 0, 4);
    PutLittle(tail, count, 8);
    PutLittle(tail, count, 8);
    PutLittle(tail, directory.size(), 8);
    PutLittle(tail, directory_offset, 8);
    PutLittle(tail, 0x07064b50, 4);
    PutLittle(tail, 0, 4);
    PutLittle(tail, record_offset, 8);
    PutLittle(tail, 1, 4);
  }
  PutLittle(tail, 0x06054b50, 4);
  PutLittle(tail, 0, 2);
  PutLittle(tail, 0, 2);
  PutLittle(tail, zip64 ? 0xFFFF : count, 2);
  PutLittle(tail, zip64 ? 0xFFFF : count, 2);
  PutLittle(tail, zip64 ? 0xFFFFFFFFull : directory.size(), 4);
  PutLittle(tail, zip64 ? 0xFFFFFFFFull : directory_offset, 4);
  PutLittle(tail, 0, 2);
  sink.Write(tail);
}

// --- pickle -------------------------------------------------------------

struct StorageType {
  const char* dtype;
  const char* storage;
};
const char* StorageFor(const std::string& dtype) {
  static constexpr StorageType kTypes[] = {
      {"F32", "FloatStorage"}, {"F64", "DoubleStorage"},
      {"F16", "HalfStorage"},  {"BF16", "BFloat16Storage"},
      {"I64", "LongStorage"},  {"I32", "IntStorage"},
      {"I16", "ShortStorage"}, {"I8", "CharStorage"},
      {"U8", "ByteStorage"},   {"BOOL", "BoolStorage"},
  };
  for (const StorageType& type : kTypes) {
    if (dtype == type.dtype) return type.storage;
  }
  Die("no torch storage type for dtype " + dtype);
}

// Emits values the way Python's protocol-2 pickler does, memoising each
// container and string with BINPUT like torch.save's output.
class TorchPickler {
 public:
  void Put() {
    if (memo_ < 256) {
      out_.push_back('q');
      out_.push_back(static_cast<char>(memo_));
    } else {
      out_.push_back('r');
      PutLittle(out_, memo_, 4);
    }
    ++memo_;
  }
  void Global(const std::string& module, const std::string& name) {
    out_ += "c" + module + "\n" + name + "\n";
    Put();
  }
  void Unicode(const std::string& text) {
    out_.push_back('X');
    PutLittle(out_, text.size(), 4);
    out_ += text;
    Put();
  }
  void Int(int64_t value) {
    if (value >= 0 && value < 256) {
      out_.push_back('K');
      out_.push_back(static_cast<char>(value));
    } else if (value >= 0 && value < 65536) {
      out_.push_back('M');
      PutLittle(out_, value, 2);
    } else if (value >= INT32_MIN && value <= INT32_MAX) {
      out_.push_back('J');
      PutLittle(out_, static_cast<uint32_t>(value), 4);
    } else {
      out_.push_back('\x8a');
      out_.push_back(8);
      PutLittle(out_, static_cast<uint64_t>(value), 8);
    }
  }
  void Scalar(const FixtureScalar& value) {
    if (const auto* i = std::get_if<int64_t>(&value)) {
      Int(*i);
    } else if (const auto* d = std::get_if<double>(&value)) {
      out_.push_back('G');
      const uint64_t bits = std::bit_cast<uint64_t>(*d);
      for (int k = 7; k >= 0; --k) {
        out_.push_back(static_cast<char>((bits >> (8 * k)) & 0xFF));
      }
    } else if (const auto* b = std::get_if<bool>(&value)) {
      out_.push_back(*b ? '\x88' : '\x89');
    } else {
      Unicode(std::get<std::string>(value));
    }
  }
  void IntTuple(const std::vector<int64_t>& values) {
    if (values.empty()) {
      out_.push_back(')');
      return;
    }
    if (values.size() <= 3) {
      for (int64_t v : values) Int(v);
      out_.push_back(static_cast<char>(0x84 + values.size()));
    } else {
      out_.push_back('(');
      for (int64_t v : values) Int(v);
      out_.push_back('t');
    }
    Put();
  }
  void EmptyOrderedDict() {
    Global("collections", "OrderedDict");
    out_.push_back(')');
    out_.push_back('R');
    Put();
  }
  void Tensor(const FixtureTensor& tensor, size_t storage_key, bool parameter) {
    int64_t numel = 1;
    for (int64_t d : tensor.shape) numel *= d;
    TensorOf(tensor.dtype, storage_key, numel, 0, tensor.shape, {}, parameter);
  }
  // _rebuild_tensor_v2(storage, offset, shape, strides, ...); empty
  // `strides` are row-major contiguous.
  void TensorOf(const std::string& dtype, size_t storage_key,
                int64_t storage_numel, int64_t offset,
                const std::vector<int64_t>& shape, std::vector<int64_t> strides,
                bool parameter) {
    if (parameter) Global("torch._utils", "_rebuild_parameter");
    Global("torch._utils", "_rebuild_tensor_v2");
    out_.push_back('(');
    // Persistent id: ('storage', torch.XStorage, key, location, numel).
    out_.push_back('(');
    Unicode("storage");
    Global("torch", StorageFor(dtype));
    Unicode(std::to_string(storage_key));
    Unicode("cpu");
    Int(storage_numel);
    out_.push_back('t');
    Put();
    out_.push_back('Q');
    Int(offset);
    IntTuple(shape);
    if (strides.empty()) {
      strides.resize(shape.size());
      int64_t stride = 1;
      for (size_t i = shape.size(); i-- > 0;) {
        strides[i] = stride;
        stride *= shape[i];
      }
    }
    IntTuple(strides);
    out_.push_back('\x89');  // requires_grad=False
    EmptyOrderedDict();      // backward hooks
    out_.push_back('t');
    Put();
    out_.push_back('R');
    Put();
    if (parameter) {
      // _rebuild_parameter(data, requires_grad, backward_hooks)
      out_.push_back('\x89');
      EmptyOrderedDict();
      out_.push_back('\x87');
      Put();
      out_.push_back('R');
      Put();
    }
  }
  std::string& out() { return out_; }

 private:
  std::string out_;
  uint32_t memo_ = 0;
};

std::string HeaderJson(const std::vector<FixtureTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [key, value] : metadata) meta[key] = value;
    header["__metadata__"] = meta;
  }
  uint64_t offset = 0;
  for (const FixtureTensor& tensor : tensors) {
    const uint64_t size = FixtureByteSize(tensor);
    header[tensor.name] = {{"dtype", tensor.dtype},
                           {"shape", tensor.shape},
                           {"data_offsets", {offset, offset + size}}};
    offset += size;
  }
  std::string json = header.dump();
  // The reference writer pads the header to a multiple of 8 with spaces.
  while ((8 + json.size()) % 8 != 0) json.push_back(' ');
  return json;
}

void WriteSafetensorsTo(Sink& sink, const std::vector<FixtureTensor>& tensors,
                        const std::map<std::string, std::string>& metadata) {
  const std::string json = HeaderJson(tensors, metadata);
  std::string head;
  PutLittle(head, json.size(), 8);
  head += json;
  sink.Write(head);
  for (const FixtureTensor& tensor : tensors) {
    if (tensor.data.empty()) {
      sink.Zeros(FixtureByteSize(tensor));
    } else {
      if (tensor.data.size() != FixtureByteSize(tensor)) {
        Die("tensor " + tensor.name + ": data size does not match its shape");
      }
      sink.Write(tensor.data);
    }
  }
}

void WriteTorchTo(Sink& sink, const std::vector<FixtureTensor>& tensors,
                  const TorchFixtureOptions& options) {
  const std::string prefix = options.archive_name + "/";
  std::vector<Entry> entries;
  const std::string pickle = TorchPickleBytes(tensors, options);
  entries.push_back(WriteEntry(sink, prefix + "data.pkl", &pickle, 0, 0,
                               /*align=*/true, false));
  const std::string byteorder = "little";
  entries.push_back(
      WriteEntry(sink, prefix + "byteorder", &byteorder, 0, 0, true, false));
  for (size_t i = 0; i < tensors.size(); ++i) {
    const FixtureTensor& tensor = tensors[i];
    const std::string name = prefix + "data/" + std::to_string(i);
    if (!tensor.data.empty() && tensor.data.size() != FixtureByteSize(tensor)) {
      Die("tensor " + tensor.name + ": data size does not match its shape");
    }
    entries.push_back(WriteEntry(sink, name,
                                 tensor.data.empty() ? nullptr : &tensor.data,
                                 FixtureByteSize(tensor), 0, true, false));
  }
  const std::string version = "3\n";
  entries.push_back(
      WriteEntry(sink, prefix + "version", &version, 0, 0, true, false));
  WriteCentralDirectory(sink, entries, false);
}

struct GgufTypeSize {
  uint64_t block;
  uint64_t bytes;
};
GgufTypeSize GgufSizeOf(uint32_t type) {
  switch (type) {
    case 0:
      return {1, 4};
    case 1:
      return {1, 2};
    case 2:
      return {32, 18};
    case 8:
      return {32, 34};
    case 12:
      return {256, 144};
    case 30:
      return {1, 2};
    default:
      Die("GGUF fixture: unsupported ggml type " + std::to_string(type));
  }
}

void PutGgufString(std::string& out, const std::string& text) {
  PutLittle(out, text.size(), 8);
  out += text;
}

std::string GgufHeader(const GgufFixture& fixture,
                       std::vector<uint64_t>& offsets) {
  std::string out = "GGUF";
  PutLittle(out, fixture.version, 4);
  PutLittle(out, fixture.tensors.size(), 8);
  const bool write_alignment = fixture.alignment != 32;
  PutLittle(out, fixture.metadata.size() + (write_alignment ? 1 : 0), 8);
  if (write_alignment) {
    PutGgufString(out, "general.alignment");
    PutLittle(out, 4, 4);
    PutLittle(out, fixture.alignment, 4);
  }
  for (const auto& [key, value] : fixture.metadata) {
    PutGgufString(out, key);
    if (const auto* v = std::get_if<uint32_t>(&value)) {
      PutLittle(out, 4, 4);
      PutLittle(out, *v, 4);
    } else if (const auto* v = std::get_if<int32_t>(&value)) {
      PutLittle(out, 5, 4);
      PutLittle(out, static_cast<uint32_t>(*v), 4);
    } else if (const auto* v = std::get_if<uint64_t>(&value)) {
      PutLittle(out, 10, 4);
      PutLittle(out, *v, 8);
    } else if (const auto* v = std::get_if<float>(&value)) {
      PutLittle(out, 6, 4);
      PutLittle(out, std::bit_cast<uint32_t>(*v), 4);
    } else if (const auto* v = std::get_if<bool>(&value)) {
      PutLittle(out, 7, 4);
      out.push_back(*v ? 1 : 0);
    } else if (const auto* v = std::get_if<std::string>(&value)) {
      PutLittle(out, 8, 4);
      PutGgufString(out, *v);
    } else if (const auto* v = std::get_if<std::vector<std::string>>(&value)) {
      PutLittle(out, 9, 4);
      PutLittle(out, 8, 4);
      PutLittle(out, v->size(), 8);
      for (const std::string& s : *v) PutGgufString(out, s);
    } else if (const auto* v = std::get_if<std::vector<int32_t>>(&value)) {
      PutLittle(out, 9, 4);
      PutLittle(out, 5, 4);
      PutLittle(out, v->size(), 8);
      for (int32_t i : *v) PutLittle(out, static_cast<uint32_t>(i), 4);
    }
  }
  uint64_t offset = 0;
  for (const GgufFixtureTensor& tensor : fixture.tensors) {
    PutGgufString(out, tensor.name);
    PutLittle(out, tensor.shape.size(), 4);
    for (auto it = tensor.shape.rbegin(); it != tensor.shape.rend(); ++it) {
      PutLittle(out, static_cast<uint64_t>(*it), 8);
    }
    PutLittle(out, tensor.type, 4);
    PutLittle(out, offset, 8);
    offsets.push_back(offset);
    const uint64_t size = GgufFixtureByteSize(tensor);
    offset +=
        (size + fixture.alignment - 1) / fixture.alignment * fixture.alignment;
  }
  while (out.size() % fixture.alignment != 0) out.push_back('\0');
  return out;
}

void WriteGgufTo(Sink& sink, const GgufFixture& fixture) {
  std::vector<uint64_t> offsets;
  sink.Write(GgufHeader(fixture, offsets));
  uint64_t end = 0;
  for (size_t i = 0; i < fixture.tensors.size(); ++i) {
    end = offsets[i] + GgufFixtureByteSize(fixture.tensors[i]);
  }
  sink.Zeros(end);
}

}  // namespace

uint32_t Crc32(const std::string& data) {
  uint32_t crc = 0xFFFFFFFFu;
  for (char c : data) crc = CrcStep(crc, static_cast<unsigned char>(c));
  return crc ^ 0xFFFFFFFFu;
}

uint32_t Crc32OfZeros(uint64_t count) {
  // One zero byte is a linear map of the register; raise it to `count`.
  Gf2Matrix step;
  for (int i = 0; i < 32; ++i) step[i] = CrcStep(1u << i, 0);
  Gf2Matrix power;
  for (int i = 0; i < 32; ++i) power[i] = 1u << i;  // identity
  while (count != 0) {
    if (count & 1) power = Multiply(step, power);
    step = Multiply(step, step);
    count >>= 1;
  }
  return Apply(power, 0xFFFFFFFFu) ^ 0xFFFFFFFFu;
}

uint64_t FixtureDtypeSize(const std::string& dtype) {
  static const std::map<std::string, uint64_t> kSizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8}};
  auto it = kSizes.find(dtype);
  if (it == kSizes.end()) Die("unknown fixture dtype " + dtype);
  return it->second;
}

uint64_t FixtureByteSize(const FixtureTensor& tensor) {
  uint64_t size = FixtureDtypeSize(tensor.dtype);
  for (int64_t d : tensor.shape) size *= static_cast<uint64_t>(d);
  return size;
}

std::string SafetensorsHeaderBytes(
    const std::vector<FixtureTensor>& tensors,
    const std::map<std::string, std::string>& metadata) {
  const std::string json = HeaderJson(tensors, metadata);
  std::string out;
  PutLittle(out, json.size(), 8);
  return out + json;
}

std::string SafetensorsBytes(
    const std::vector<FixtureTensor>& tensors,
    const std::map<std::string, std::string>& metadata) {
  std::string out;
  Sink sink(&out);
  WriteSafetensorsTo(sink, tensors, metadata);
  return out;
}

void WriteSafetensors(const std::filesystem::path& path,
                      const std::vector<FixtureTensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  Sink sink(path);
  WriteSafetensorsTo(sink, tensors, metadata);
}

std::string TorchPickleBytes(const std::vector<FixtureTensor>& tensors,
                             const TorchFixtureOptions& options) {
  TorchPickler p;
  std::string& out = p.out();
  out += "\x80\x02";
  if (options.wrap_in_state_dict) {
    out.push_back('}');
    p.Put();
    out.push_back('(');
    p.Unicode("state_dict");
  }
  p.EmptyOrderedDict();
  // Python batches SETITEMS every 1,000 pairs.
  for (size_t start = 0; start < tensors.size(); start += 1000) {
    out.push_back('(');
    for (size_t i = start; i < tensors.size() && i < start + 1000; ++i) {
      p.Unicode(tensors[i].name);
      p.Tensor(tensors[i], i, options.as_parameters);
    }
    out.push_back('u');
  }
  if (!options.views.empty()) {
    out.push_back('(');
    for (const TorchFixtureView& view : options.views) {
      if (view.storage >= tensors.size()) {
        Die("view " + view.name + " names a storage past the tensors");
      }
      const FixtureTensor& base = tensors[view.storage];
      int64_t numel = 1;
      for (int64_t d : base.shape) numel *= d;
      p.Unicode(view.name);
      p.TensorOf(base.dtype, view.storage, numel, view.offset, view.shape,
                 view.strides, options.as_parameters);
    }
    out.push_back('u');
  }
  if (!options.wrap_in_state_dict && !options.scalars.empty()) {
    out.push_back('(');
    for (const auto& [key, value] : options.scalars) {
      p.Unicode(key);
      p.Scalar(value);
    }
    out.push_back('u');
  }
  if (options.wrap_in_state_dict) {
    for (const auto& [key, value] : options.scalars) {
      p.Unicode(key);
      p.Scalar(value);
    }
    out.push_back('u');
  }
  out.push_back('.');
  return out;
}

std::string TorchCheckpointBytes(const std::vector<FixtureTensor>& tensors,
                                 const TorchFixtureOptions& options) {
  std::string out;
  Sink sink(&out);
  WriteTorchTo(sink, tensors, options);
  return out;
}

void WriteTorchCheckpoint(const std::filesystem::path& path,
                          const std::vector<FixtureTensor>& tensors,
                          const TorchFixtureOptions& options) {
  Sink sink(path);
  WriteTorchTo(sink, tensors, options);
}

std::string ZipBytes(const std::vector<ZipFixtureEntry>& entries,
                     bool force_zip64) {
  std::string out;
  Sink sink(&out);
  std::vector<Entry> written;
  for (const ZipFixtureEntry& entry : entries) {
    written.push_back(WriteEntry(sink, entry.name, &entry.data, 0, entry.method,
                                 false, force_zip64));
  }
  WriteCentralDirectory(sink, written, force_zip64);
  return out;
}

PickleWriter& PickleWriter::Proto(int protocol) {
  bytes_.push_back('\x80');
  bytes_.push_back(static_cast<char>(protocol));
  return *this;
}
PickleWriter& PickleWriter::Global(const std::string& module,
                                   const std::string& name) {
  bytes_ += "c" + module + "\n" + name + "\n";
  return *this;
}
PickleWriter& PickleWriter::Unicode(const std::string& text) {
  bytes_.push_back('X');
  PutLittle(bytes_, text.size(), 4);
  bytes_ += text;
  return *this;
}
PickleWriter& PickleWriter::Int(int64_t value) {
  if (value >= INT32_MIN && value <= INT32_MAX) {
    bytes_.push_back('J');
    PutLittle(bytes_, static_cast<uint32_t>(value), 4);
  } else {
    bytes_.push_back('\x8a');
    bytes_.push_back(8);
    PutLittle(bytes_, static_cast<uint64_t>(value), 8);
  }
  return *this;
}
PickleWriter& PickleWriter::Float(double value) {
  bytes_.push_back('G');
  const uint64_t bits = std::bit_cast<uint64_t>(value);
  for (int k = 7; k >= 0; --k) {
    bytes_.push_back(static_cast<char>((bits >> (8 * k)) & 0xFF));
  }
  return *this;
}
PickleWriter& PickleWriter::Bool(bool value) {
  bytes_.push_back(value ? '\x88' : '\x89');
  return *this;
}
PickleWriter& PickleWriter::None() { return Raw("N"); }
PickleWriter& PickleWriter::Mark() { return Raw("("); }
PickleWriter& PickleWriter::Tuple() { return Raw("t"); }
PickleWriter& PickleWriter::EmptyTuple() { return Raw(")"); }
PickleWriter& PickleWriter::EmptyList() { return Raw("]"); }
PickleWriter& PickleWriter::EmptyDict() { return Raw("}"); }
PickleWriter& PickleWriter::Append() { return Raw("a"); }
PickleWriter& PickleWriter::SetItem() { return Raw("s"); }
PickleWriter& PickleWriter::SetItems() { return Raw("u"); }
PickleWriter& PickleWriter::Reduce() { return Raw("R"); }
PickleWriter& PickleWriter::Build() { return Raw("b"); }
PickleWriter& PickleWriter::BinPersId() { return Raw("Q"); }
PickleWriter& PickleWriter::Put(uint32_t key) {
  bytes_.push_back('r');
  PutLittle(bytes_, key, 4);
  return *this;
}
PickleWriter& PickleWriter::Get(uint32_t key) {
  bytes_.push_back('j');
  PutLittle(bytes_, key, 4);
  return *this;
}
PickleWriter& PickleWriter::Stop() { return Raw("."); }
PickleWriter& PickleWriter::Raw(const std::string& bytes) {
  bytes_ += bytes;
  return *this;
}

uint64_t GgufFixtureByteSize(const GgufFixtureTensor& tensor) {
  const GgufTypeSize size = GgufSizeOf(tensor.type);
  uint64_t elements = 1;
  for (int64_t d : tensor.shape) elements *= static_cast<uint64_t>(d);
  return elements / size.block * size.bytes;
}

std::string GgufBytes(const GgufFixture& fixture) {
  std::string out;
  Sink sink(&out);
  WriteGgufTo(sink, fixture);
  return out;
}

void WriteGguf(const std::filesystem::path& path, const GgufFixture& fixture) {
  Sink sink(path);
  WriteGgufTo(sink, fixture);
}

}  // namespace mm::testing
