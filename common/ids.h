// Identifiers for resources every service hands out (record keys, job ids,
// replica ids): 128 bits from the operating system's secure random source,
// so an id can be neither guessed from another nor repeated across
// processes and machines without coordination.
//
//   job.id = NewResourceId();  // "3f9c0a..." (32 lowercase hex digits)
//
// Thread-safety: may be called concurrently.
#ifndef MM_COMMON_IDS_H_
#define MM_COMMON_IDS_H_

#include <string>

namespace mm {

// 32 lowercase hexadecimal digits (16 bytes from getrandom(2)).
std::string NewResourceId();

}  // namespace mm

#endif  // MM_COMMON_IDS_H_
