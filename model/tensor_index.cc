#include "model/tensor_index.h"

namespace mm::model {

const TensorInfo* TensorIndex::Find(const std::string& name) const {
  for (const TensorInfo& tensor : tensors) {
    if (tensor.name == name) return &tensor;
  }
  return nullptr;
}

}  // namespace mm::model
