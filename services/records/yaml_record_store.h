// The RecordStore kept in one YAML file: the seed's file store, for small
// setups and for hand-inspection. The file is a mapping:
//
//   "__metadata__":
//     "version": "3.2"
//     "kind": "modelmanager.records"
//     "revision": 7          # the store-wide revision
//   "<key>":
//     "config": {...}        # the config dict, as JSON would hold it
//     "revision": 5          # revision of the record's last change
//     "created_at": 1732900000000000   # microseconds since the Unix epoch
//     "updated_at": 1732900000000000
//
// Strings are always written double-quoted and only quoted scalars read back
// as strings, so a name "123", "true" or "null" stays a string; plain
// scalars are read with the YAML core schema (null, bool, int, float).
//
// The whole store lives in memory; every change writes the whole file
// again, atomically: a temporary file in the same directory, fsync, rename
// over the file, fsync of the directory. A crash leaves either the old or
// the new file, never a mix. A failed write (disk full, no permission)
// leaves both the file and the in-memory state as they were and returns
// the error (RESOURCE_EXHAUSTED for a full disk, else UNAVAILABLE).
//
// Limits, by design of a file store: one process owns the file (changes
// made by another process or by hand while it is open are not seen and are
// overwritten by the next change); the change log for ChangesSince starts
// at the revision the file had when opened; Insert's request_id
// idempotency is remembered in memory only, for the most recent
// kYamlRememberedRequestIds creates.
//
// Thread-safety: every method may be called from any thread; reads share a
// reader lock, changes are serialized.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<RecordStore> store,
//                    OpenYamlRecordStore("/var/lib/mm/records.yaml"));
//   ASSIGN_OR_RETURN(StoredModel m, store->Insert(config, /*request_id=*/""));
#ifndef MM_SERVICES_RECORDS_YAML_RECORD_STORE_H_
#define MM_SERVICES_RECORDS_YAML_RECORD_STORE_H_

#include <cstddef>
#include <filesystem>
#include <memory>

#include "absl/status/statusor.h"
#include "services/records/record_store.h"

namespace mm::records {

// What `__metadata__` must say for the file to be opened.
inline constexpr char kYamlStoreVersion[] = "3.2";
inline constexpr char kYamlStoreKind[] = "modelmanager.records";
// Insert request ids remembered for idempotent retries.
inline constexpr size_t kYamlRememberedRequestIds = 10000;

// Opens the store in `file`, creating it (with the marker and no records)
// when it does not exist; its directory must exist (FAILED_PRECONDITION
// otherwise). FAILED_PRECONDITION as well for a file that is not valid
// YAML, has no `__metadata__` marker, has another kind or version, or is a
// legacy v3 models.yaml (the message says to run `mm models import FILE`).
// DATA_LOSS for a records file whose entries are damaged (the message names
// the entry). UNAVAILABLE when the file cannot be read or created.
absl::StatusOr<std::unique_ptr<RecordStore>> OpenYamlRecordStore(
    const std::filesystem::path& file);

}  // namespace mm::records

#endif  // MM_SERVICES_RECORDS_YAML_RECORD_STORE_H_
