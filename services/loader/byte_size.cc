#include "services/loader/byte_size.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace mm::loader {

absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text) {
  absl::string_view trimmed = absl::StripAsciiWhitespace(text);
  size_t digits = 0;
  while (digits < trimmed.size() && absl::ascii_isdigit(trimmed[digits])) {
    ++digits;
  }
  auto invalid = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text,
                     "' is not a byte size: write a number of bytes with an "
                     "optional unit, e.g. 8GiB, 512M, 1000000"));
  };
  uint64_t number = 0;
  if (digits == 0 || !absl::SimpleAtoi(trimmed.substr(0, digits), &number)) {
    return invalid();
  }
  std::string unit = absl::AsciiStrToUpper(trimmed.substr(digits));
  uint64_t multiplier = 0;
  static constexpr struct {
    const char* unit;
    uint64_t multiplier;
  } kUnits[] = {
      {"", 1},
      {"B", 1},
      {"K", 1ull << 10},
      {"KIB", 1ull << 10},
      {"KB", 1000ull},
      {"M", 1ull << 20},
      {"MIB", 1ull << 20},
      {"MB", 1000'000ull},
      {"G", 1ull << 30},
      {"GIB", 1ull << 30},
      {"GB", 1000'000'000ull},
      {"T", 1ull << 40},
      {"TIB", 1ull << 40},
      {"TB", 1000'000'000'000ull},
  };
  for (const auto& u : kUnits) {
    if (unit == u.unit) multiplier = u.multiplier;
  }
  if (multiplier == 0) return invalid();
  if (number > UINT64_MAX / multiplier) return invalid();
  return number * multiplier;
}

uint64_t DefaultRamBudget(uint64_t total_ram) {
  constexpr uint64_t kGiB = 1ull << 30;
  uint64_t half = total_ram / 2;
  uint64_t budget = half > 2 * kGiB ? half - 2 * kGiB : 0;
  return std::max(4 * kGiB, std::min(32 * kGiB, budget));
}

}  // namespace mm::loader
