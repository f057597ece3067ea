// Pieces every RecordStore backend shares, so the three agree by
// construction: the sort keys of each ordering, the filter predicate, page
// tokens, and the change notifier behind WaitForChange.
#ifndef MM_SERVICES_RECORDS_STORE_UTIL_H_
#define MM_SERVICES_RECORDS_STORE_UTIL_H_

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "nlohmann/json.hpp"
#include "services/records/record_store.h"

namespace mm::records {

// Number of changes kept in a store's change log for watchers.
inline constexpr int64_t kChangeLogRetention = 100000;

// ASCII lower-casing, the same as SQLite's lower() and PostgreSQL's lower()
// under the "C" collation.
std::string AsciiLower(std::string_view text);

// The values a record sorts by under `order`, ending with its key: e.g.
// ["main", "sd-1", "my model", "checkpoint", "<key>"] for kDefault (the
// name lower-cased). Comparing two such arrays with nlohmann::json's
// operator< gives the store's order.
nlohmann::json SortValues(const StoredModel& model, ModelOrder order);

// Whether `model` passes every filter of `query` (paging ignored).
bool MatchesQuery(const StoredModel& model, const ModelQuery& query);

// An opaque token for the page after the row with `last_sort_values`; it
// remembers a fingerprint of the query's filters and order.
std::string EncodePageToken(const ModelQuery& query,
                            const nlohmann::json& last_sort_values);
// The sort values of the last row of the previous page, or null for an
// empty token. INVALID_ARGUMENT when the token is malformed or was made for
// other filters or another order.
absl::StatusOr<nlohmann::json> DecodePageToken(const ModelQuery& query);

// Wakes waiters when a revision is committed. Thread-safe.
class ChangeNotifier {
 public:
  // Records that `revision` exists and wakes every waiter.
  void Notify(int64_t revision);
  // Wakes every waiter without a revision (e.g. after a reconnect, when
  // notifications may have been lost).
  void Poke();
  // Returns when a revision > `after` was notified, Poke/Interrupt was
  // called after this call began, or `deadline` passed.
  void Wait(int64_t after, absl::Time deadline);
  // Wakes all current and future waiters at once.
  void Interrupt();

 private:
  Mutex mu_;
  int64_t latest_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t pokes_ ABSL_GUARDED_BY(mu_) = 0;
  bool interrupted_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace mm::records

#endif  // MM_SERVICES_RECORDS_STORE_UTIL_H_
