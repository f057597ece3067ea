// Byte sizes as users write them on the command line, and the default RAM
// budget of spec §9.
//
//   ASSIGN_OR_RETURN(uint64_t budget, ParseByteSize("8GiB"));  // 8 << 30
#ifndef MM_SERVICES_LOADER_BYTE_SIZE_H_
#define MM_SERVICES_LOADER_BYTE_SIZE_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mm::loader {

// "1048576", "512K", "512KiB", "64M", "64MiB", "8G", "8GiB", "1T", "1TiB"
// (binary multiples; "KB"/"MB"/"GB"/"TB" are decimal). INVALID_ARGUMENT
// naming the text when it is none of these or overflows.
absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text);

// Spec §9: half of `total_ram` minus 2 GiB, capped at 32 GiB, at least
// 4 GiB.
uint64_t DefaultRamBudget(uint64_t total_ram);

}  // namespace mm::loader

#endif  // MM_SERVICES_LOADER_BYTE_SIZE_H_
