#include "model/torch_checkpoint.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/strings.h"
#include "model/weights_file.h"

namespace mm::model {
namespace {

using Kind = PickleValue::Kind;

struct DtypeInfo {
  absl::string_view name;
  uint64_t size;
};

std::optional<DtypeInfo> DtypeOfStorage(absl::string_view storage_type) {
  static constexpr std::pair<absl::string_view, DtypeInfo> kTypes[] = {
      {"FloatStorage", {"F32", 4}},        {"DoubleStorage", {"F64", 8}},
      {"HalfStorage", {"F16", 2}},         {"BFloat16Storage", {"BF16", 2}},
      {"LongStorage", {"I64", 8}},         {"IntStorage", {"I32", 4}},
      {"ShortStorage", {"I16", 2}},        {"CharStorage", {"I8", 1}},
      {"ByteStorage", {"U8", 1}},          {"BoolStorage", {"BOOL", 1}},
      {"ComplexFloatStorage", {"C64", 8}},
  };
  for (const auto& [type, info] : kTypes) {
    if (type == storage_type) return info;
  }
  return std::nullopt;
}

std::optional<DtypeInfo> DtypeOfTorchDtype(absl::string_view dtype) {
  static constexpr std::pair<absl::string_view, DtypeInfo> kTypes[] = {
      {"float32", {"F32", 4}},
      {"float", {"F32", 4}},
      {"float64", {"F64", 8}},
      {"double", {"F64", 8}},
      {"float16", {"F16", 2}},
      {"half", {"F16", 2}},
      {"bfloat16", {"BF16", 2}},
      {"int64", {"I64", 8}},
      {"long", {"I64", 8}},
      {"int32", {"I32", 4}},
      {"int", {"I32", 4}},
      {"int16", {"I16", 2}},
      {"short", {"I16", 2}},
      {"int8", {"I8", 1}},
      {"uint8", {"U8", 1}},
      {"bool", {"BOOL", 1}},
      {"float8_e4m3fn", {"F8_E4M3", 1}},
      {"float8_e5m2", {"F8_E5M2", 1}},
  };
  for (const auto& [type, info] : kTypes) {
    if (type == dtype) return info;
  }
  return std::nullopt;
}

class IndexBuilder {
 public:
  IndexBuilder(const PickleData& pickle, absl::string_view prefix,
               const ZipArchive& archive, const TorchCheckpointOptions& options)
      : pickle_(pickle),
        prefix_(prefix),
        archive_(archive),
        options_(options) {}

  absl::StatusOr<TensorIndex> Build() {
    index_.format = WeightsFormat::kTorchZip;
    index_.findings = pickle_.findings;
    const PickleValue& root = pickle_.at(pickle_.root);
    if (!IsDictLike(root)) {
      std::string what = KindName(root);
      return absl::InvalidArgumentError(absl::StrCat(
          "checkpoint holds ", what,
          ", not a state dict; save model.state_dict() instead of the "
          "model object, or convert the checkpoint to safetensors"));
    }
    std::optional<PickleId> inner;
    for (size_t i = 0; i + 1 < root.items.size(); i += 2) {
      const PickleValue& key = pickle_.at(root.items[i]);
      const PickleValue& value = pickle_.at(root.items[i + 1]);
      if (key.kind == Kind::kString && key.text == "state_dict" &&
          IsDictLike(value)) {
        inner = root.items[i + 1];
      }
    }
    AddScalars(root);
    if (inner.has_value()) {
      AddScalars(pickle_.at(*inner));
      RETURN_IF_ERROR(Walk(*inner, "", 0));
    } else {
      RETURN_IF_ERROR(Walk(pickle_.root, "", 0));
    }
    return std::move(index_);
  }

 private:
  static bool IsDictLike(const PickleValue& value) {
    return value.kind == Kind::kDict ||
           (value.kind == Kind::kObject && !value.items.empty() &&
            value.items.size() % 2 == 0);
  }

  std::string KindName(const PickleValue& value) const {
    if (value.kind == Kind::kObject) {
      const PickleValue& callable = pickle_.at(value.callable);
      if (callable.kind == Kind::kGlobal) {
        return absl::StrCat("a pickled ", SafeForMessage(GlobalName(callable)),
                            " object");
      }
      return "a pickled object";
    }
    switch (value.kind) {
      case Kind::kList:
        return "a list";
      case Kind::kTuple:
        return "a tuple";
      case Kind::kNone:
        return "None";
      default:
        return "a single value";
    }
  }

  void AddScalars(const PickleValue& dict) {
    for (size_t i = 0; i + 1 < dict.items.size(); i += 2) {
      const PickleValue& key = pickle_.at(dict.items[i]);
      const PickleValue& value = pickle_.at(dict.items[i + 1]);
      if (key.kind != Kind::kString || index_.scalars.contains(key.text)) {
        continue;
      }
      switch (value.kind) {
        case Kind::kInt:
          index_.scalars[key.text] = value.int_value;
          break;
        case Kind::kBool:
          index_.scalars[key.text] = value.bool_value;
          break;
        case Kind::kFloat:
          index_.scalars[key.text] = value.float_value;
          break;
        case Kind::kString:
          index_.scalars[key.text] = value.text;
          break;
        default:
          break;
      }
    }
  }

  absl::Status Walk(PickleId dict_id, const std::string& prefix, int depth) {
    // Each dict is walked once, so shared or cyclic references cannot make
    // the walk exponential.
    if (!walked_.insert(dict_id).second) return absl::OkStatus();
    const PickleValue& dict = pickle_.at(dict_id);
    for (size_t i = 0; i + 1 < dict.items.size(); i += 2) {
      const PickleValue& key = pickle_.at(dict.items[i]);
      std::string name;
      if (key.kind == Kind::kString) {
        name = prefix + key.text;
      } else if (key.kind == Kind::kInt) {
        name = absl::StrCat(prefix, key.int_value);
      } else {
        continue;
      }
      const PickleId value_id = dict.items[i + 1];
      const PickleValue& value = pickle_.at(value_id);
      ASSIGN_OR_RETURN(std::optional<TensorInfo> tensor,
                       ResolveTensor(value_id, name, 0));
      if (tensor.has_value()) {
        RETURN_IF_ERROR(index_.AddTensor(*std::move(tensor)));
        continue;
      }
      if (IsDictLike(value)) {
        if (depth + 1 >= options_.max_name_depth) {
          AddFinding(absl::StrCat(
              "dict ", QuotedForMessage(name), " nests deeper than ",
              options_.max_name_depth, " levels; its contents were skipped"));
          continue;
        }
        RETURN_IF_ERROR(Walk(value_id, name + ".", depth + 1));
      }
    }
    return absl::OkStatus();
  }

  void AddFinding(std::string finding) {
    index_.findings.push_back(std::move(finding));
  }

  const PickleValue* Arg(const PickleValue& call, size_t i) const {
    const PickleValue& args = pickle_.at(call.args);
    if (args.kind != Kind::kTuple || i >= args.items.size()) return nullptr;
    return &pickle_.at(args.items[i]);
  }

  // Reads a tuple of non-negative ints (a size or a stride).
  static std::optional<std::vector<int64_t>> IntTuple(
      const PickleData& pickle, const PickleValue* value) {
    if (value == nullptr) return std::nullopt;
    const PickleValue* tuple = value;
    // torch.Size((2, 3)) pickles as a REDUCE of torch.Size over a tuple.
    if (tuple->kind == Kind::kObject) {
      const PickleValue& args = pickle.at(tuple->args);
      if (args.kind != Kind::kTuple || args.items.size() != 1) {
        return std::nullopt;
      }
      tuple = &pickle.at(args.items[0]);
    }
    if (tuple->kind != Kind::kTuple && tuple->kind != Kind::kList) {
      return std::nullopt;
    }
    std::vector<int64_t> out;
    for (PickleId item : tuple->items) {
      const PickleValue& element = pickle.at(item);
      if (element.kind != Kind::kInt || element.int_value < 0) {
        return std::nullopt;
      }
      out.push_back(element.int_value);
    }
    return out;
  }

  // A TensorInfo when `id` is a rebuilt tensor (or parameter), nullopt when
  // it is something else. Errors only for tensors that contradict the
  // archive.
  absl::StatusOr<std::optional<TensorInfo>> ResolveTensor(
      PickleId id, const std::string& name, int depth) {
    const PickleValue& value = pickle_.at(id);
    if (value.kind != Kind::kObject || depth > 4) return std::nullopt;
    const PickleValue& callable = pickle_.at(value.callable);
    if (callable.kind != Kind::kGlobal) return std::nullopt;
    const std::string function = GlobalName(callable);
    if (function == "torch._utils._rebuild_parameter" ||
        function == "torch._utils._rebuild_parameter_with_state") {
      const PickleValue& args = pickle_.at(value.args);
      if (args.kind != Kind::kTuple || args.items.empty()) {
        return std::nullopt;
      }
      return ResolveTensor(args.items[0], name, depth + 1);
    }
    if (function != "torch._utils._rebuild_tensor_v2" &&
        function != "torch._utils._rebuild_tensor" &&
        function != "torch._utils._rebuild_tensor_v3") {
      if (absl::StartsWith(function, "torch._utils._rebuild_")) {
        AddFinding(absl::StrCat("tensor ", QuotedForMessage(name),
                                " is rebuilt by ", SafeForMessage(function),
                                ", which is not supported; it was skipped"));
      }
      return std::nullopt;
    }
    const auto bad = [&](absl::string_view what) {
      return absl::DataLossError(
          absl::StrCat("checkpoint tensor ", QuotedForMessage(name), ": ", what,
                       "; the checkpoint is corrupt"));
    };
    // (storage, storage_offset, size, stride, ...)
    const PickleValue* storage = Arg(value, 0);
    const PickleValue* storage_offset = Arg(value, 1);
    std::optional<std::vector<int64_t>> shape =
        IntTuple(pickle_, Arg(value, 2));
    std::optional<std::vector<int64_t>> strides =
        IntTuple(pickle_, Arg(value, 3));
    if (storage == nullptr || storage->kind != Kind::kPersistentId ||
        storage_offset == nullptr || storage_offset->kind != Kind::kInt ||
        storage_offset->int_value < 0 || !shape || !strides ||
        shape->size() != strides->size()) {
      return bad(absl::StrCat(function,
                              " arguments are not (storage, offset, size, "
                              "stride)"));
    }
    // pid: ('storage', storage_type, key, location, numel)
    const PickleValue& pid = pickle_.at(storage->args);
    const auto pid_item = [&](size_t i) -> const PickleValue* {
      if (pid.kind != Kind::kTuple || i >= pid.items.size()) return nullptr;
      return &pickle_.at(pid.items[i]);
    };
    const PickleValue* tag = pid_item(0);
    const PickleValue* type = pid_item(1);
    const PickleValue* key = pid_item(2);
    if (tag == nullptr || tag->kind != Kind::kString ||
        tag->text != "storage" || type == nullptr ||
        type->kind != Kind::kGlobal || key == nullptr ||
        (key->kind != Kind::kString && key->kind != Kind::kInt)) {
      return bad(
          "storage is not a ('storage', type, key, location, numel) "
          "persistent id");
    }
    std::optional<DtypeInfo> dtype;
    if (type->module == "torch") dtype = DtypeOfStorage(type->name);
    if (!dtype && function == "torch._utils._rebuild_tensor_v3") {
      const PickleValue* torch_dtype = Arg(value, 6);
      if (torch_dtype != nullptr && torch_dtype->kind == Kind::kGlobal &&
          torch_dtype->module == "torch") {
        dtype = DtypeOfTorchDtype(torch_dtype->name);
      }
    }
    if (!dtype) {
      return absl::InvalidArgumentError(absl::StrCat(
          "checkpoint tensor ", QuotedForMessage(name), " has storage type ",
          SafeForMessage(GlobalName(*type)),
          ", which is not supported; convert the checkpoint to safetensors"));
    }
    const std::string entry_name =
        key->kind == Kind::kString
            ? absl::StrCat(prefix_, "data/", key->text)
            : absl::StrCat(prefix_, "data/", key->int_value);
    const ZipEntry* entry = archive_.Find(entry_name);
    if (entry == nullptr) {
      return bad(absl::StrCat("its storage entry ",
                              QuotedForMessage(entry_name),
                              " is missing from the archive"));
    }

    // Elements, and the furthest element the strides reach, overflow-safe.
    constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
    uint64_t elements = 1;
    uint64_t last = 0;
    bool overflow = false;
    for (size_t i = 0; i < shape->size(); ++i) {
      const uint64_t dim = static_cast<uint64_t>((*shape)[i]);
      const uint64_t stride = static_cast<uint64_t>((*strides)[i]);
      if (dim != 0 && elements > kMax / dim) overflow = true;
      elements *= dim;
      if (dim > 0) {
        if (stride != 0 && dim - 1 > kMax / stride) overflow = true;
        const uint64_t reach = (dim - 1) * stride;
        if (last > kMax - reach) overflow = true;
        last += reach;
      }
    }
    const uint64_t offset_elements =
        static_cast<uint64_t>(storage_offset->int_value);
    const bool has_zero_dim =
        std::find(shape->begin(), shape->end(), 0) != shape->end();
    if (has_zero_dim) {
      elements = 0;
      last = 0;
      overflow = false;
    }
    if (overflow || elements > kMax / dtype->size ||
        offset_elements > kMax / dtype->size - 1 ||
        last > kMax / dtype->size - offset_elements - 1) {
      return bad("its shape and strides overflow 64-bit sizes");
    }
    if (elements > 0 &&
        (offset_elements + last + 1) * dtype->size > entry->uncompressed_size) {
      return bad(absl::StrCat(
          "it reaches byte ", (offset_elements + last + 1) * dtype->size,
          " of storage ", QuotedForMessage(entry_name), ", which has only ",
          entry->uncompressed_size, " bytes"));
    }
    TensorInfo info;
    info.name = name;
    info.dtype = std::string(dtype->name);
    info.shape = *std::move(shape);
    info.strides = *std::move(strides);
    info.offset = offset_elements * dtype->size;
    info.byte_size = elements * dtype->size;
    info.storage = entry_name;
    return info;
  }

  const PickleData& pickle_;
  std::string prefix_;
  const ZipArchive& archive_;
  const TorchCheckpointOptions& options_;
  TensorIndex index_;
  absl::flat_hash_set<PickleId> walked_;
};

// torch.save's formats before 1.6 (a bare pickle, or a tar of them): the
// refusal when `head` starts like one.
absl::Status RefuseLegacyFormat(absl::string_view head) {
  const SniffedFormat format = SniffWeightsSignature(head);
  if (format != SniffedFormat::kPickle && format != SniffedFormat::kTar) {
    return absl::OkStatus();
  }
  return absl::UnimplementedError(
      "legacy checkpoint format not supported (torch.save before 1.6 or "
      "_use_new_zipfile_serialization=False); re-save it with a current "
      "PyTorch or convert it to safetensors");
}

}  // namespace

absl::StatusOr<TensorIndex> TensorIndexFromPickle(
    const PickleData& pickle, absl::string_view archive_prefix,
    const ZipArchive& archive, const TorchCheckpointOptions& options) {
  return IndexBuilder(pickle, archive_prefix, archive, options).Build();
}

absl::StatusOr<TensorIndex> TensorIndexFromArchive(
    const ZipArchive& archive, const TorchCheckpointOptions& options) {
  const ZipEntry* pickle_entry = nullptr;
  for (const ZipEntry& entry : archive.entries()) {
    const size_t slash = entry.name.find('/');
    if (slash != std::string::npos &&
        entry.name.substr(slash + 1) == "data.pkl") {
      pickle_entry = &entry;
      break;
    }
  }
  if (pickle_entry == nullptr) {
    return absl::InvalidArgumentError(
        "zip archive has no <archive>/data.pkl entry; it is not a checkpoint "
        "written by torch.save");
  }
  const std::string prefix =
      pickle_entry->name.substr(0, pickle_entry->name.size() - 8);
  if (const ZipEntry* byteorder = archive.Find(prefix + "byteorder");
      byteorder != nullptr && byteorder->uncompressed_size == 3) {
    // The entry holds "little" (6 bytes) or "big" (3 bytes).
    return absl::UnimplementedError(
        "checkpoint was saved on a big-endian machine; big-endian storages "
        "are not supported");
  }
  ASSIGN_OR_RETURN(std::string bytes,
                   archive.ReadEntry(*pickle_entry, options.max_pickle_bytes));
  absl::StatusOr<PickleData> pickle = Unpickle(bytes, options.unpickler);
  if (!pickle.ok()) {
    return Annotate(pickle.status(), SafeForMessage(pickle_entry->name));
  }
  return TensorIndexFromPickle(*pickle, prefix, archive, options);
}

absl::StatusOr<TensorIndex> ParseTorchCheckpoint(
    std::string bytes, const TorchCheckpointOptions& options) {
  RETURN_IF_ERROR(RefuseLegacyFormat(bytes));
  ASSIGN_OR_RETURN(std::unique_ptr<ZipArchive> archive,
                   ZipArchive::FromBytes(std::move(bytes)));
  return TensorIndexFromArchive(*archive, options);
}

absl::StatusOr<TensorIndex> ReadTorchCheckpoint(
    const std::filesystem::path& path, const TorchCheckpointOptions& options) {
  {
    ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> file,
                     RandomAccessFile::Open({.path = path}));
    ASSIGN_OR_RETURN(std::string head,
                     file->ReadAt(0, std::min<uint64_t>(file->size(), 512),
                                  "checkpoint head"));
    RETURN_IF_ERROR(Annotate(RefuseLegacyFormat(head), path.string()));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<ZipArchive> archive, ZipArchive::Open(path));
  absl::StatusOr<TensorIndex> index = TensorIndexFromArchive(*archive, options);
  if (!index.ok()) return Annotate(index.status(), path.string());
  return index;
}

}  // namespace mm::model
