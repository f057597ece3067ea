// A temporary directory removed (recursively) when the object dies.
//
//   TempDir dir;
//   WriteFile(dir.path() / "model.safetensors", bytes);
#ifndef MM_TESTS_TESTING_TEMP_DIR_H_
#define MM_TESTS_TESTING_TEMP_DIR_H_

#include <filesystem>
#include <string>
#include <string_view>

namespace mm::testing {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Writes `contents` to `path`, creating parent directories. Aborts the test
// binary on failure (a fixture that cannot be written is a broken machine).
void WriteFile(const std::filesystem::path& path, std::string_view contents);
std::string ReadFile(const std::filesystem::path& path);

}  // namespace mm::testing

#endif  // MM_TESTS_TESTING_TEMP_DIR_H_
