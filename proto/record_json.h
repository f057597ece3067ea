// Converts between the typed `modelmanager.v1.Model` and the reference's
// config JSON dict (spec §2: field names and wire values as InvokeAI writes
// them, e.g. {"key": "...", "base": "sd-1", "type": "vae", ...}). The JSON
// form is the canonical one inside the services: it is what is validated
// and stored; the typed form is what travels.
//
// Output-only fields (revision, etag, create/update time) are not part of a
// config and are never read from or written to it.
#ifndef MM_PROTO_RECORD_JSON_H_
#define MM_PROTO_RECORD_JSON_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "google/protobuf/field_mask.pb.h"
#include "modelmanager/v1/records.pb.h"
#include "nlohmann/json.hpp"

namespace mm {

// The config fields of a record, as JSON. Unset optional fields, empty
// strings of optional-by-meaning fields and empty lists are left out.
nlohmann::json ModelToConfigJson(const modelmanager::v1::Model& model);

// The typed record for a config dict. Fields of the wrong JSON type give
// INVALID_ARGUMENT naming the field; fields the proto has no place for are
// INVALID_ARGUMENT too (validation rejects them earlier with more detail).
absl::StatusOr<modelmanager::v1::Model> ConfigJsonToModel(
    const nlohmann::json& config);

// The sparse changes described by `model` + `mask`: for each path in the
// mask, the field's value in `model`, or null (remove) when it is unset
// there. An empty mask means every field set in `model`. Unknown paths are
// INVALID_ARGUMENT.
absl::StatusOr<nlohmann::json> ChangesFromFieldMask(
    const modelmanager::v1::Model& model,
    const google::protobuf::FieldMask& mask);

// The names of every config field the Model message carries.
const std::vector<std::string>& ModelConfigFieldNames();

}  // namespace mm

#endif  // MM_PROTO_RECORD_JSON_H_
