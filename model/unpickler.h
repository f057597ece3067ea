// A pickle reader that builds data and never runs anything. It understands
// the opcodes of protocols 0-5 that torch.save and ordinary Python data
// produce, and turns every global it meets into an inert value: REDUCE,
// NEWOBJ and BUILD record "callable + arguments + state" as a placeholder
// object instead of calling anything. A few allow-listed globals that are
// pure data (collections.OrderedDict, builtins.set, _codecs.encode) are
// materialised as the container they build; everything else stays a
// placeholder and is reported in `findings`, with a louder wording for
// globals that only an attack would pickle (os.system, eval, ...).
//
// Values live in one arena (`PickleData::values`) and refer to each other by
// id, so cyclic or deeply nested pickles cost no recursion to free, and
// consumers walk the graph with explicit depth limits.
//
// Thread-safety: Unpickle is a pure function; PickleData is a value.
//
//   ASSIGN_OR_RETURN(PickleData data, Unpickle(bytes));
//   const PickleValue& root = data.at(data.root);
//   if (root.kind == PickleValue::Kind::kDict) ...
#ifndef MM_MODEL_UNPICKLER_H_
#define MM_MODEL_UNPICKLER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mm::model {

// Index of a value in PickleData::values.
using PickleId = uint32_t;

struct PickleValue {
  enum class Kind {
    kNone,
    kBool,
    kInt,     // fits in int64: `int_value`
    kBigInt,  // wider than int64: little-endian two's complement in `text`
    kFloat,
    kString,  // UTF-8 text in `text`
    kBytes,   // raw bytes in `text`
    kTuple,   // `items`
    kList,    // `items`
    kDict,    // `items` holds key, value, key, value, ... in insertion order
    kSet,     // `items`
    kGlobal,  // a class or function reference: `module`, `name`
    // Something a real unpickler would have built by calling `callable` (a
    // kGlobal or another object) with `args`; never called here. `state` is
    // what BUILD would have set; `items` collect list/dict items appended to
    // it (a placeholder subclass of list or dict).
    kObject,
    // A persistent id (BINPERSID/PERSID) whose meaning belongs to the
    // caller: `args` is the pid value (torch: a ('storage', ...) tuple).
    kPersistentId,
  };

  Kind kind = Kind::kNone;
  bool bool_value = false;
  int64_t int_value = 0;
  double float_value = 0;
  std::string text;
  std::string module;
  std::string name;
  std::vector<PickleId> items;
  PickleId callable = 0;
  PickleId args = 0;
  PickleId state = 0;
  bool has_state = false;
  // The longest chain of containers below this value, as far as the
  // unpickler could see when it was built; bounded by max_depth.
  uint32_t depth = 0;
};

struct UnpicklerOptions {
  // Most values built; a torch state dict needs about 20 per tensor.
  // Default 4,000,000.
  uint64_t max_objects = 4'000'000;
  // Most memo entries (PUT/MEMOIZE). Default 1,000,000.
  uint64_t max_memo_entries = 1'000'000;
  // Deepest container nesting accepted. Default 256.
  uint32_t max_depth = 256;
};

struct PickleData {
  std::vector<PickleValue> values;
  PickleId root = 0;
  // Globals that were not allow-listed, each once, e.g. "refused global
  // os.system: it was not called (the file may be malicious)".
  std::vector<std::string> findings;

  const PickleValue& at(PickleId id) const { return values[id]; }
};

// Reads one pickle (up to its STOP opcode). DATA_LOSS for a truncated or
// malformed stream, INVALID_ARGUMENT when a limit in `options` is exceeded
// or an opcode we refuse appears (extension registry, out-of-band buffers).
absl::StatusOr<PickleData> Unpickle(absl::string_view bytes,
                                    const UnpicklerOptions& options = {});

// "module.name" of a kGlobal value, "" for anything else.
std::string GlobalName(const PickleValue& value);

}  // namespace mm::model

#endif  // MM_MODEL_UNPICKLER_H_
