#include "model/unpickler.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status.h"
#include "common/strings.h"
#include "model/tensor_index.h"

namespace mm::model {
namespace {

using Kind = PickleValue::Kind;

// Globals that are pure data, or that the torch checkpoint reader interprets
// itself: meeting them is not worth a finding.
bool IsAllowedGlobal(absl::string_view module, absl::string_view name) {
  static constexpr absl::string_view kAllowed[] = {
      "collections.OrderedDict",
      "builtins.set",
      "builtins.frozenset",
      "__builtin__.set",
      "__builtin__.frozenset",
      "_codecs.encode",
      "torch._utils._rebuild_tensor",
      "torch._utils._rebuild_tensor_v2",
      "torch._utils._rebuild_tensor_v3",
      "torch._utils._rebuild_parameter",
      "torch._utils._rebuild_parameter_with_state",
      "torch.Size",
      "torch.device",
      "torch.storage.UntypedStorage",
      "torch.storage.TypedStorage",
      "torch.storage._TypedStorage",
  };
  const std::string full = absl::StrCat(module, ".", name);
  for (absl::string_view allowed : kAllowed) {
    if (full == allowed) return true;
  }
  // torch.FloatStorage, torch.HalfStorage, ... and dtypes (torch.float16).
  if (module == "torch") {
    if (absl::EndsWith(name, "Storage")) return true;
    static constexpr absl::string_view kDtypes[] = {
        "float16", "float32",       "float64",    "bfloat16", "int8",
        "int16",   "int32",         "int64",      "uint8",    "bool",
        "half",    "float",         "double",     "long",     "int",
        "short",   "float8_e4m3fn", "float8_e5m2"};
    for (absl::string_view dtype : kDtypes) {
      if (name == dtype) return true;
    }
  }
  return false;
}

// Globals only an attack would put in a checkpoint: they run code, touch
// files or processes, or import more.
bool IsDangerousGlobal(absl::string_view module, absl::string_view name) {
  static constexpr absl::string_view kModules[] = {"os",
                                                   "posix",
                                                   "nt",
                                                   "subprocess",
                                                   "sys",
                                                   "shutil",
                                                   "socket",
                                                   "ctypes",
                                                   "importlib",
                                                   "runpy",
                                                   "pty",
                                                   "commands",
                                                   "webbrowser",
                                                   "code",
                                                   "marshal",
                                                   "pickle",
                                                   "_pickle",
                                                   "builtins.eval",
                                                   "multiprocessing",
                                                   "signal",
                                                   "platform",
                                                   "asyncio",
                                                   "pdb",
                                                   "timeit",
                                                   "torch.hub"};
  const absl::string_view top = module.substr(0, module.find('.'));
  for (absl::string_view dangerous : kModules) {
    if (module == dangerous || top == dangerous) return true;
  }
  if (module == "builtins" || module == "__builtin__") {
    static constexpr absl::string_view kNames[] = {
        "eval",    "exec",    "execfile",   "compile",    "open",  "getattr",
        "setattr", "delattr", "__import__", "apply",      "input", "globals",
        "locals",  "vars",    "breakpoint", "memoryview", "file"};
    for (absl::string_view dangerous : kNames) {
      if (name == dangerous) return true;
    }
  }
  return false;
}

std::string OpcodeName(unsigned char op) {
  if (op >= 0x20 && op < 0x7f) return absl::StrFormat("'%c'", op);
  return absl::StrFormat("0x%02x", op);
}

class Unpickler {
 public:
  Unpickler(absl::string_view bytes, const UnpicklerOptions& options)
      : bytes_(bytes), options_(options) {}

  absl::StatusOr<PickleData> Run() {
    // Torch pickles build about one value per 5 bytes; reserving avoids
    // re-copying the arena as it grows (the bound keeps a small hostile
    // input from reserving much).
    const uint64_t expected = std::min<uint64_t>(
        {bytes_.size() / 4 + 16, options_.max_objects, uint64_t{1} << 22});
    data_.values.reserve(expected);
    dense_memo_.reserve(
        std::min<uint64_t>(expected / 2, options_.max_memo_entries));
    while (true) {
      if (pos_ >= bytes_.size()) {
        return absl::DataLossError(
            absl::StrCat("pickle ends at byte ", bytes_.size(),
                         " without a STOP opcode; the data is truncated"));
      }
      op_offset_ = pos_;
      op_ = static_cast<unsigned char>(bytes_[pos_++]);
      if (op_ == '.') break;
      RETURN_IF_ERROR(Step());
    }
    // Like Python, leftovers below the top (or an open MARK) are ignored.
    if (stack_.empty()) return Malformed("STOP with an empty stack");
    data_.root = stack_.back();
    return std::move(data_);
  }

 private:
  absl::Status Malformed(absl::string_view what) const {
    return absl::DataLossError(absl::StrCat("pickle opcode ", OpcodeName(op_),
                                            " at byte ", op_offset_, ": ", what,
                                            "; the data is corrupt"));
  }

  absl::Status Need(uint64_t count) const {
    if (bytes_.size() - pos_ < count) {
      return absl::DataLossError(absl::StrCat(
          "pickle opcode ", OpcodeName(op_), " at byte ", op_offset_, " needs ",
          count, " more bytes but only ", bytes_.size() - pos_,
          " remain; the data is truncated or corrupt"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<uint64_t> ReadUnsigned(int width) {
    RETURN_IF_ERROR(Need(width));
    uint64_t value = 0;
    for (int i = width - 1; i >= 0; --i) {
      value = (value << 8) | static_cast<unsigned char>(bytes_[pos_ + i]);
    }
    pos_ += width;
    return value;
  }

  absl::StatusOr<absl::string_view> ReadBytes(uint64_t count) {
    RETURN_IF_ERROR(Need(count));
    absl::string_view out = bytes_.substr(pos_, count);
    pos_ += count;
    return out;
  }

  absl::StatusOr<absl::string_view> ReadLine() {
    const size_t end = bytes_.find('\n', pos_);
    if (end == absl::string_view::npos) {
      return Malformed("text argument is not terminated by a newline");
    }
    absl::string_view line = bytes_.substr(pos_, end - pos_);
    pos_ = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    return line;
  }

  absl::StatusOr<PickleId> New(Kind kind) {
    if (data_.values.size() >= options_.max_objects ||
        data_.values.size() >= 0xFFFFFFFFu) {
      return absl::InvalidArgumentError(
          absl::StrCat("pickle builds more than ", options_.max_objects,
                       " objects (the limit); refusing to read it"));
    }
    PickleValue value;
    value.kind = kind;
    data_.values.push_back(std::move(value));
    return static_cast<PickleId>(data_.values.size() - 1);
  }

  PickleValue& At(PickleId id) { return data_.values[id]; }

  absl::Status Push(PickleId id) {
    stack_.push_back(id);
    return absl::OkStatus();
  }

  absl::StatusOr<PickleId> Pop() {
    if (stack_.empty()) return Malformed("stack underflow");
    PickleId id = stack_.back();
    stack_.pop_back();
    return id;
  }

  absl::StatusOr<PickleId> Top() {
    if (stack_.empty()) return Malformed("stack underflow");
    return stack_.back();
  }

  // Returns the items pushed since the last MARK and drops the mark.
  absl::StatusOr<std::vector<PickleId>> PopMark() {
    if (metastack_.empty()) return Malformed("no MARK to pop to");
    std::vector<PickleId> items = std::move(stack_);
    stack_ = std::move(metastack_.back());
    metastack_.pop_back();
    return items;
  }

  // Records that `child` now sits inside `parent`.
  absl::Status Nest(PickleId parent, PickleId child) {
    const uint32_t depth = At(child).depth + 1;
    if (depth > At(parent).depth) At(parent).depth = depth;
    if (At(parent).depth > options_.max_depth) {
      return absl::InvalidArgumentError(absl::StrCat(
          "pickle nests containers deeper than ", options_.max_depth,
          " levels (at byte ", op_offset_, "); refusing to read it"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<PickleId> Container(Kind kind, std::vector<PickleId> items) {
    ASSIGN_OR_RETURN(PickleId id, New(kind));
    for (PickleId item : items) RETURN_IF_ERROR(Nest(id, item));
    At(id).items = std::move(items);
    return id;
  }

  absl::Status PushInt(int64_t value) {
    ASSIGN_OR_RETURN(PickleId id, New(Kind::kInt));
    At(id).int_value = value;
    return Push(id);
  }

  absl::Status PushText(Kind kind, absl::string_view text) {
    if (kind == Kind::kString && !IsValidUtf8(text)) {
      return Malformed("string is not valid UTF-8");
    }
    ASSIGN_OR_RETURN(PickleId id, New(kind));
    At(id).text = std::string(text);
    return Push(id);
  }

  // Python 2 str: text when it decodes, bytes otherwise.
  absl::Status PushLegacyString(absl::string_view text) {
    return PushText(IsValidUtf8(text) ? Kind::kString : Kind::kBytes, text);
  }

  absl::Status PushLong(absl::string_view twos_complement) {
    if (twos_complement.size() <= 8) {
      uint64_t value = 0;
      for (size_t i = twos_complement.size(); i-- > 0;) {
        value = (value << 8) | static_cast<unsigned char>(twos_complement[i]);
      }
      const size_t bits = twos_complement.size() * 8;
      if (bits > 0 && bits < 64 && (value >> (bits - 1)) & 1) {
        value |= ~uint64_t{0} << bits;  // sign-extend
      }
      return PushInt(static_cast<int64_t>(value));
    }
    ASSIGN_OR_RETURN(PickleId id, New(Kind::kBigInt));
    At(id).text = std::string(twos_complement);
    return Push(id);
  }

  absl::Status PushDecimal(absl::string_view text) {
    int64_t value;
    if (absl::SimpleAtoi(text, &value)) return PushInt(value);
    for (char c : text) {
      if (!absl::ascii_isdigit(c) && c != '-' && c != '+') {
        return Malformed(
            absl::StrCat(QuotedForMessage(AsStd(text)), " is not an integer"));
      }
    }
    ASSIGN_OR_RETURN(PickleId id, New(Kind::kBigInt));
    At(id).text = std::string(text);
    return Push(id);
  }

  absl::StatusOr<PickleId> MakeGlobal(absl::string_view module,
                                      absl::string_view name) {
    if (!IsValidUtf8(module) || !IsValidUtf8(name)) {
      return Malformed("global name is not valid UTF-8");
    }
    ASSIGN_OR_RETURN(PickleId id, New(Kind::kGlobal));
    At(id).module = std::string(module);
    At(id).name = std::string(name);
    if (!IsAllowedGlobal(module, name)) {
      std::string full = absl::StrCat(module, ".", name);
      if (seen_globals_.insert(full).second) {
        if (IsDangerousGlobal(module, name)) {
          data_.findings.push_back(absl::StrCat(
              "refused global ", SafeForMessage(full),
              ": a checkpoint has no use for it and it was not called (the "
              "file may be malicious)"));
        } else {
          data_.findings.push_back(
              absl::StrCat("unknown global ", SafeForMessage(full),
                           " kept as an inert placeholder (not called)"));
        }
      }
    }
    return id;
  }

  bool IsGlobal(PickleId id, absl::string_view module, absl::string_view name) {
    const PickleValue& value = At(id);
    return value.kind == Kind::kGlobal && value.module == module &&
           value.name == name;
  }

  // What calling `callable(*args)` would build, without calling anything.
  absl::StatusOr<PickleId> Call(PickleId callable, PickleId args) {
    // A copy: New() below may move the arena.
    const std::vector<PickleId> arg_items = At(args).kind == Kind::kTuple
                                                ? At(args).items
                                                : std::vector<PickleId>();
    if (IsGlobal(callable, "collections", "OrderedDict")) {
      ASSIGN_OR_RETURN(PickleId dict, New(Kind::kDict));
      // OrderedDict([(k, v), ...]) keeps its pairs.
      if (arg_items.size() == 1 && At(arg_items[0]).kind == Kind::kList) {
        const std::vector<PickleId> pairs = At(arg_items[0]).items;
        for (PickleId pair : pairs) {
          if (At(pair).kind == Kind::kTuple && At(pair).items.size() == 2) {
            const PickleId key = At(pair).items[0];
            const PickleId value = At(pair).items[1];
            RETURN_IF_ERROR(Nest(dict, key));
            RETURN_IF_ERROR(Nest(dict, value));
            At(dict).items.push_back(key);
            At(dict).items.push_back(value);
          }
        }
      }
      return dict;
    }
    const bool is_set = IsGlobal(callable, "builtins", "set") ||
                        IsGlobal(callable, "builtins", "frozenset") ||
                        IsGlobal(callable, "__builtin__", "set") ||
                        IsGlobal(callable, "__builtin__", "frozenset");
    if (is_set && arg_items.size() <= 1) {
      std::vector<PickleId> members;
      if (arg_items.size() == 1 && (At(arg_items[0]).kind == Kind::kList ||
                                    At(arg_items[0]).kind == Kind::kTuple)) {
        members = At(arg_items[0]).items;
      }
      return Container(Kind::kSet, std::move(members));
    }
    // Protocol 2 pickles bytes as _codecs.encode(text, 'latin1').
    if (IsGlobal(callable, "_codecs", "encode") && arg_items.size() == 2 &&
        At(arg_items[0]).kind == Kind::kString &&
        At(arg_items[1]).kind == Kind::kString &&
        (At(arg_items[1]).text == "latin1" ||
         At(arg_items[1]).text == "latin-1")) {
      std::string bytes;
      const std::string& text = At(arg_items[0]).text;
      bool fits = true;
      for (size_t i = 0; i < text.size() && fits; ++i) {
        const unsigned char c = text[i];
        if (c < 0x80) {
          bytes.push_back(static_cast<char>(c));
        } else if ((c == 0xC2 || c == 0xC3) && i + 1 < text.size()) {
          bytes.push_back(
              static_cast<char>(((c & 0x1F) << 6) | (text[i + 1] & 0x3F)));
          ++i;
        } else {
          fits = false;
        }
      }
      if (fits) {
        ASSIGN_OR_RETURN(PickleId id, New(Kind::kBytes));
        At(id).text = std::move(bytes);
        return id;
      }
    }
    ASSIGN_OR_RETURN(PickleId object, New(Kind::kObject));
    At(object).callable = callable;
    At(object).args = args;
    RETURN_IF_ERROR(Nest(object, args));
    return object;
  }

  absl::Status SetItems(PickleId target, const std::vector<PickleId>& items) {
    if (items.size() % 2 != 0) {
      return Malformed("odd number of items for a dict");
    }
    const Kind kind = At(target).kind;
    if (kind != Kind::kDict && kind != Kind::kObject) {
      return Malformed("setting items on a value that is not a dict");
    }
    for (PickleId item : items) {
      RETURN_IF_ERROR(Nest(target, item));
      At(target).items.push_back(item);
    }
    return absl::OkStatus();
  }

  absl::Status AppendItems(PickleId target, const std::vector<PickleId>& items,
                           bool set) {
    const Kind kind = At(target).kind;
    const bool ok = set ? (kind == Kind::kSet || kind == Kind::kObject)
                        : (kind == Kind::kList || kind == Kind::kObject);
    if (!ok) {
      return Malformed(set ? "adding items to a value that is not a set"
                           : "appending to a value that is not a list");
    }
    for (PickleId item : items) {
      RETURN_IF_ERROR(Nest(target, item));
      At(target).items.push_back(item);
    }
    return absl::OkStatus();
  }

  // Python's picklers number memo slots 0, 1, 2, ...: those live in a
  // vector, anything else in a hash map.
  absl::Status Memoize(uint64_t key) {
    ASSIGN_OR_RETURN(PickleId top, Top());
    if (key < dense_memo_.size() && dense_memo_[key] != kNoMemo) {
      dense_memo_[key] = top;
      return absl::OkStatus();
    }
    if (auto it = sparse_memo_.find(key); it != sparse_memo_.end()) {
      it->second = top;
      return absl::OkStatus();
    }
    if (memo_entries_ >= options_.max_memo_entries) {
      return absl::InvalidArgumentError(
          absl::StrCat("pickle memo grows past ", options_.max_memo_entries,
                       " entries (the limit); refusing to read it"));
    }
    ++memo_entries_;
    if (key < dense_memo_.size()) {
      dense_memo_[key] = top;
    } else if (key == dense_memo_.size()) {
      dense_memo_.push_back(top);
    } else {
      sparse_memo_.emplace(key, top);
    }
    return absl::OkStatus();
  }

  absl::Status Recall(uint64_t key) {
    if (key < dense_memo_.size() && dense_memo_[key] != kNoMemo) {
      return Push(dense_memo_[key]);
    }
    auto it = sparse_memo_.find(key);
    if (it == sparse_memo_.end()) {
      return Malformed(absl::StrCat("memo key ", key, " was never stored"));
    }
    return Push(it->second);
  }

  absl::Status Step() {
    switch (op_) {
      case 0x80: {  // PROTO
        ASSIGN_OR_RETURN(uint64_t protocol, ReadUnsigned(1));
        if (protocol > 5) {
          return absl::InvalidArgumentError(absl::StrCat(
              "pickle protocol ", protocol,
              " is not supported (0 to 5 are); the file was written by a "
              "newer Python or is corrupt"));
        }
        return absl::OkStatus();
      }
      case 0x95: {  // FRAME: a length hint only.
        ASSIGN_OR_RETURN(uint64_t ignored, ReadUnsigned(8));
        (void)ignored;
        return absl::OkStatus();
      }
      case '(':  // MARK
        if (metastack_.size() >= options_.max_depth) {
          return absl::InvalidArgumentError(absl::StrCat(
              "pickle nests MARKs deeper than ", options_.max_depth,
              " levels (at byte ", op_offset_, "); refusing to read it"));
        }
        metastack_.push_back(std::move(stack_));
        stack_.clear();
        return absl::OkStatus();
      case '0':  // POP
        if (stack_.empty()) {
          ASSIGN_OR_RETURN(std::vector<PickleId> ignored, PopMark());
          (void)ignored;
          return absl::OkStatus();
        }
        stack_.pop_back();
        return absl::OkStatus();
      case '1': {  // POP_MARK
        ASSIGN_OR_RETURN(std::vector<PickleId> ignored, PopMark());
        (void)ignored;
        return absl::OkStatus();
      }
      case '2': {  // DUP
        ASSIGN_OR_RETURN(PickleId top, Top());
        return Push(top);
      }
      case 'N': {
        ASSIGN_OR_RETURN(PickleId id, New(Kind::kNone));
        return Push(id);
      }
      case 0x88:    // NEWTRUE
      case 0x89: {  // NEWFALSE
        ASSIGN_OR_RETURN(PickleId id, New(Kind::kBool));
        At(id).bool_value = op_ == 0x88;
        return Push(id);
      }
      case 'I': {  // INT (text); "01"/"00" are True/False
        ASSIGN_OR_RETURN(absl::string_view line, ReadLine());
        if (line == "01" || line == "00") {
          ASSIGN_OR_RETURN(PickleId id, New(Kind::kBool));
          At(id).bool_value = line == "01";
          return Push(id);
        }
        return PushDecimal(line);
      }
      case 'L': {  // LONG (text, trailing L)
        ASSIGN_OR_RETURN(absl::string_view line, ReadLine());
        if (!line.empty() && line.back() == 'L') line.remove_suffix(1);
        return PushDecimal(line);
      }
      case 'J': {  // BININT
        ASSIGN_OR_RETURN(uint64_t value, ReadUnsigned(4));
        return PushInt(static_cast<int32_t>(static_cast<uint32_t>(value)));
      }
      case 'K': {  // BININT1
        ASSIGN_OR_RETURN(uint64_t value, ReadUnsigned(1));
        return PushInt(static_cast<int64_t>(value));
      }
      case 'M': {  // BININT2
        ASSIGN_OR_RETURN(uint64_t value, ReadUnsigned(2));
        return PushInt(static_cast<int64_t>(value));
      }
      case 0x8a: {  // LONG1
        ASSIGN_OR_RETURN(uint64_t size, ReadUnsigned(1));
        ASSIGN_OR_RETURN(absl::string_view digits, ReadBytes(size));
        return PushLong(digits);
      }
      case 0x8b: {  // LONG4
        ASSIGN_OR_RETURN(uint64_t size, ReadUnsigned(4));
        if (size > 0x7FFFFFFF) return Malformed("negative LONG4 length");
        ASSIGN_OR_RETURN(absl::string_view digits, ReadBytes(size));
        return PushLong(digits);
      }
      case 'F': {  // FLOAT (text)
        ASSIGN_OR_RETURN(absl::string_view line, ReadLine());
        double value;
        if (!absl::SimpleAtod(line, &value)) {
          return Malformed(
              absl::StrCat(QuotedForMessage(AsStd(line)), " is not a float"));
        }
        ASSIGN_OR_RETURN(PickleId id, New(Kind::kFloat));
        At(id).float_value = value;
        return Push(id);
      }
      case 'G': {  // BINFLOAT: big-endian IEEE 754
        ASSIGN_OR_RETURN(absl::string_view raw, ReadBytes(8));
        uint64_t bits = 0;
        for (char c : raw) bits = (bits << 8) | static_cast<unsigned char>(c);
        ASSIGN_OR_RETURN(PickleId id, New(Kind::kFloat));
        At(id).float_value = std::bit_cast<double>(bits);
        return Push(id);
      }
      case 'S': {  // STRING: quoted Python 2 str (escapes kept verbatim)
        ASSIGN_OR_RETURN(absl::string_view line, ReadLine());
        if (line.size() < 2 || line.front() != line.back() ||
            (line.front() != '\'' && line.front() != '"')) {
          return Malformed("STRING argument is not quoted");
        }
        return PushLegacyString(line.substr(1, line.size() - 2));
      }
      case 'T': {  // BINSTRING
        ASSIGN_OR_RETURN(uint64_t size, ReadUnsigned(4));
        if (size > 0x7FFFFFFF) return Malformed("negative BINSTRING length");
        ASSIGN_OR_RETURN(absl::string_view text, ReadBytes(size));
        return PushLegacyString(text);
      }
      case 'U': {  // SHORT_BINSTRING
        ASSIGN_OR_RETURN(uint64_t size, ReadUnsigned(1));
        ASSIGN_OR_RETURN(absl::string_view text, ReadBytes(size));
        return PushLegacyString(text);
      }
      case 'V': {  // UNICODE (raw-unicode-escape; escapes kept verbatim)
        ASSIGN_OR_RETURN(absl::string_view line, ReadLine());
        return PushText(Kind::kString, line);
      }
      case 'X':     // BINUNICODE
      case 0x8c:    // SHORT_BINUNICODE
      case 0x8d: {  // BINUNICODE8
        const int width = op_ == 'X' ? 4 : op_ == 0x8c ? 1 : 8;
        ASSIGN_OR_RETURN(uint64_t size, ReadUnsigned(width));
        ASSIGN_OR_RETURN(absl::string_view text, ReadBytes(size));
        return PushText(Kind::kString, text);
      }
      case 'B':     // BINBYTES
      case 'C':     // SHORT_BINBYTES
      case 0x8e:    // BINBYTES8
      case 0x96: {  // BYTEARRAY8
        const int width = op_ == 'B' ? 4 : op_ == 'C' ? 1 : 8;
        ASSIGN_OR_RETURN(uint64_t size, ReadUnsigned(width));
        ASSIGN_OR_RETURN(absl::string_view text, ReadBytes(size));
        return PushText(Kind::kBytes, text);
      }
      case ')': {  // EMPTY_TUPLE
        ASSIGN_OR_RETURN(PickleId id, New(Kind::kTuple));
        return Push(id);
      }
      case 't': {  // TUPLE
        ASSIGN_OR_RETURN(std::vector<PickleId> items, PopMark());
        ASSIGN_OR_RETURN(PickleId id,
                         Container(Kind::kTuple, std::move(items)));
        return Push(id);
      }
      case 0x85:    // TUPLE1
      case 0x86:    // TUPLE2
      case 0x87: {  // TUPLE3
        const size_t count = op_ - 0x84;
        if (stack_.size() < count) return Malformed("stack underflow");
        std::vector<PickleId> items(stack_.end() - count, stack_.end());
        stack_.resize(stack_.size() - count);
        ASSIGN_OR_RETURN(PickleId id,
                         Container(Kind::kTuple, std::move(items)));
        return Push(id);
      }
      case ']': {  // EMPTY_LIST
        ASSIGN_OR_RETURN(PickleId id, New(Kind::kList));
        return Push(id);
      }
      case 'l': {  // LIST
        ASSIGN_OR_RETURN(std::vector<PickleId> items, PopMark());
        ASSIGN_OR_RETURN(PickleId id, Container(Kind::kList, std::move(items)));
        return Push(id);
      }
      case '}': {  // EMPTY_DICT
        ASSIGN_OR_RETURN(PickleId id, New(Kind::kDict));
        return Push(id);
      }
      case 'd': {  // DICT
        ASSIGN_OR_RETURN(std::vector<PickleId> items, PopMark());
        ASSIGN_OR_RETURN(PickleId id, New(Kind::kDict));
        RETURN_IF_ERROR(SetItems(id, items));
        return Push(id);
      }
      case 0x8f: {  // EMPTY_SET
        ASSIGN_OR_RETURN(PickleId id, New(Kind::kSet));
        return Push(id);
      }
      case 0x91: {  // FROZENSET
        ASSIGN_OR_RETURN(std::vector<PickleId> items, PopMark());
        ASSIGN_OR_RETURN(PickleId id, Container(Kind::kSet, std::move(items)));
        return Push(id);
      }
      case 'a': {  // APPEND
        ASSIGN_OR_RETURN(PickleId item, Pop());
        ASSIGN_OR_RETURN(PickleId list, Top());
        return AppendItems(list, {item}, /*set=*/false);
      }
      case 'e': {  // APPENDS
        ASSIGN_OR_RETURN(std::vector<PickleId> items, PopMark());
        ASSIGN_OR_RETURN(PickleId list, Top());
        return AppendItems(list, items, /*set=*/false);
      }
      case 0x90: {  // ADDITEMS
        ASSIGN_OR_RETURN(std::vector<PickleId> items, PopMark());
        ASSIGN_OR_RETURN(PickleId set, Top());
        return AppendItems(set, items, /*set=*/true);
      }
      case 's': {  // SETITEM
        ASSIGN_OR_RETURN(PickleId value, Pop());
        ASSIGN_OR_RETURN(PickleId key, Pop());
        ASSIGN_OR_RETURN(PickleId dict, Top());
        return SetItems(dict, {key, value});
      }
      case 'u': {  // SETITEMS
        ASSIGN_OR_RETURN(std::vector<PickleId> items, PopMark());
        ASSIGN_OR_RETURN(PickleId dict, Top());
        return SetItems(dict, items);
      }
      case 'p': {  // PUT (text)
        ASSIGN_OR_RETURN(absl::string_view line, ReadLine());
        uint64_t key;
        if (!absl::SimpleAtoi(line, &key)) return Malformed("bad PUT key");
        return Memoize(key);
      }
      case 'q': {  // BINPUT
        ASSIGN_OR_RETURN(uint64_t key, ReadUnsigned(1));
        return Memoize(key);
      }
      case 'r': {  // LONG_BINPUT
        ASSIGN_OR_RETURN(uint64_t key, ReadUnsigned(4));
        return Memoize(key);
      }
      case 0x94:  // MEMOIZE
        return Memoize(memo_entries_);
      case 'g': {  // GET (text)
        ASSIGN_OR_RETURN(absl::string_view line, ReadLine());
        uint64_t key;
        if (!absl::SimpleAtoi(line, &key)) return Malformed("bad GET key");
        return Recall(key);
      }
      case 'h': {  // BINGET
        ASSIGN_OR_RETURN(uint64_t key, ReadUnsigned(1));
        return Recall(key);
      }
      case 'j': {  // LONG_BINGET
        ASSIGN_OR_RETURN(uint64_t key, ReadUnsigned(4));
        return Recall(key);
      }
      case 'c': {  // GLOBAL
        ASSIGN_OR_RETURN(absl::string_view module, ReadLine());
        ASSIGN_OR_RETURN(absl::string_view name, ReadLine());
        ASSIGN_OR_RETURN(PickleId id, MakeGlobal(module, name));
        return Push(id);
      }
      case 0x93: {  // STACK_GLOBAL
        ASSIGN_OR_RETURN(PickleId name, Pop());
        ASSIGN_OR_RETURN(PickleId module, Pop());
        if (At(name).kind != Kind::kString ||
            At(module).kind != Kind::kString) {
          return Malformed("STACK_GLOBAL needs two strings");
        }
        // Copies: MakeGlobal() may move the arena.
        const std::string module_text = At(module).text;
        const std::string name_text = At(name).text;
        ASSIGN_OR_RETURN(PickleId id, MakeGlobal(module_text, name_text));
        return Push(id);
      }
      case 'R': {  // REDUCE
        ASSIGN_OR_RETURN(PickleId args, Pop());
        ASSIGN_OR_RETURN(PickleId callable, Pop());
        ASSIGN_OR_RETURN(PickleId id, Call(callable, args));
        return Push(id);
      }
      case 0x81: {  // NEWOBJ: cls.__new__(cls, *args)
        ASSIGN_OR_RETURN(PickleId args, Pop());
        ASSIGN_OR_RETURN(PickleId cls, Pop());
        ASSIGN_OR_RETURN(PickleId id, Call(cls, args));
        return Push(id);
      }
      case 0x92: {  // NEWOBJ_EX: keyword arguments are dropped
        ASSIGN_OR_RETURN(PickleId kwargs, Pop());
        (void)kwargs;
        ASSIGN_OR_RETURN(PickleId args, Pop());
        ASSIGN_OR_RETURN(PickleId cls, Pop());
        ASSIGN_OR_RETURN(PickleId id, Call(cls, args));
        return Push(id);
      }
      case 'i': {  // INST: module, name, then MARKed args
        ASSIGN_OR_RETURN(absl::string_view module, ReadLine());
        ASSIGN_OR_RETURN(absl::string_view name, ReadLine());
        ASSIGN_OR_RETURN(std::vector<PickleId> items, PopMark());
        ASSIGN_OR_RETURN(PickleId cls, MakeGlobal(module, name));
        ASSIGN_OR_RETURN(PickleId args,
                         Container(Kind::kTuple, std::move(items)));
        ASSIGN_OR_RETURN(PickleId id, Call(cls, args));
        return Push(id);
      }
      case 'o': {  // OBJ: MARK cls args...
        ASSIGN_OR_RETURN(std::vector<PickleId> items, PopMark());
        if (items.empty()) return Malformed("OBJ without a class");
        const PickleId cls = items.front();
        items.erase(items.begin());
        ASSIGN_OR_RETURN(PickleId args,
                         Container(Kind::kTuple, std::move(items)));
        ASSIGN_OR_RETURN(PickleId id, Call(cls, args));
        return Push(id);
      }
      case 'b': {  // BUILD
        ASSIGN_OR_RETURN(PickleId state, Pop());
        ASSIGN_OR_RETURN(PickleId target, Top());
        if (At(target).kind == Kind::kObject) {
          RETURN_IF_ERROR(Nest(target, state));
          At(target).state = state;
          At(target).has_state = true;
        }
        // BUILD on plain data (e.g. a dict) would set attributes Python
        // data does not have; the state is dropped.
        return absl::OkStatus();
      }
      case 'P': {  // PERSID (text)
        ASSIGN_OR_RETURN(absl::string_view line, ReadLine());
        RETURN_IF_ERROR(PushText(Kind::kString, line));
        ASSIGN_OR_RETURN(PickleId pid, Pop());
        return PushPersistent(pid);
      }
      case 'Q': {  // BINPERSID
        ASSIGN_OR_RETURN(PickleId pid, Pop());
        return PushPersistent(pid);
      }
      case 0x82:
      case 0x83:
      case 0x84:
        return absl::InvalidArgumentError(absl::StrCat(
            "pickle uses the copyreg extension registry (opcode ",
            OpcodeName(op_), " at byte ", op_offset_,
            "), which checkpoints never need; refusing to read it"));
      case 0x97:
      case 0x98:
        return absl::InvalidArgumentError(absl::StrCat(
            "pickle uses out-of-band buffers (opcode ", OpcodeName(op_),
            " at byte ", op_offset_, "), which a file cannot supply"));
      default:
        return absl::DataLossError(
            absl::StrCat("unknown pickle opcode ", OpcodeName(op_), " at byte ",
                         op_offset_, "; the data is corrupt or not a pickle"));
    }
  }

  absl::Status PushPersistent(PickleId pid) {
    ASSIGN_OR_RETURN(PickleId id, New(Kind::kPersistentId));
    At(id).args = pid;
    RETURN_IF_ERROR(Nest(id, pid));
    return Push(id);
  }

  absl::string_view bytes_;
  const UnpicklerOptions& options_;
  size_t pos_ = 0;
  size_t op_offset_ = 0;
  unsigned char op_ = 0;
  PickleData data_;
  std::vector<PickleId> stack_;
  std::vector<std::vector<PickleId>> metastack_;
  static constexpr PickleId kNoMemo = 0xFFFFFFFFu;
  std::vector<PickleId> dense_memo_;
  absl::flat_hash_map<uint64_t, PickleId> sparse_memo_;
  uint64_t memo_entries_ = 0;
  absl::flat_hash_set<std::string> seen_globals_;
};

}  // namespace

absl::StatusOr<PickleData> Unpickle(absl::string_view bytes,
                                    const UnpicklerOptions& options) {
  return Unpickler(bytes, options).Run();
}

std::string GlobalName(const PickleValue& value) {
  if (value.kind != PickleValue::Kind::kGlobal) return "";
  return absl::StrCat(value.module, ".", value.name);
}

}  // namespace mm::model
