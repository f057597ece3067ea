// YAML-specific behaviour of the file record store: the marker checks, the
// file format (quoted strings, scalar types), atomic writes, failed writes
// and reopening. The behaviour every backend shares is in the conformance
// suite.
#include "services/records/yaml_record_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/unprivileged.h"

namespace mm::records {
namespace {

namespace fs = std::filesystem;
using ::mm::testing::IsOkAndHolds;
using ::mm::testing::ReadFile;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::mm::testing::WriteFile;
using ::nlohmann::json;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

json Config(const std::string& key, const std::string& name,
            const std::string& path) {
  return {{"key", key},        {"name", name},       {"path", path},
          {"base", "sd-1"},    {"type", "main"},     {"format", "checkpoint"},
          {"file_size", 1234}, {"hash", "blake3:00"}};
}

std::vector<std::string> FileNames(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST(YamlRecordStoreTest, CreatesAMissingFileWithTheMarker) {
  TempDir dir;
  const fs::path file = dir.path() / "records.yaml";
  ASSERT_OK_AND_ASSIGN(auto store, OpenYamlRecordStore(file));
  EXPECT_EQ(store->backend(), "yaml");
  EXPECT_EQ(store->schema_version(), "3.2");
  EXPECT_THAT(store->CurrentRevision(), IsOkAndHolds(0));
  const std::string text = ReadFile(file);
  EXPECT_THAT(text, AllOf(HasSubstr("\"__metadata__\":"),
                          HasSubstr("\"version\": \"3.2\""),
                          HasSubstr("\"kind\": \"modelmanager.records\""),
                          HasSubstr("\"revision\": 0")));
  store.reset();
  EXPECT_OK(OpenYamlRecordStore(file));
}

TEST(YamlRecordStoreTest, AnEmptyFileIsAnEmptyStore) {
  TempDir dir;
  const fs::path file = dir.path() / "records.yaml";
  WriteFile(file, "\n");
  ASSERT_OK_AND_ASSIGN(auto store, OpenYamlRecordStore(file));
  EXPECT_THAT(ReadFile(file), HasSubstr("modelmanager.records"));
}

TEST(YamlRecordStoreTest, MissingDirectoryIsFailedPrecondition) {
  TempDir dir;
  const fs::path file = dir.path() / "nope" / "records.yaml";
  EXPECT_THAT(OpenYamlRecordStore(file),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr((dir.path() / "nope").string()),
                             HasSubstr("does not exist"))));
  EXPECT_FALSE(fs::exists(dir.path() / "nope"));
}

TEST(YamlRecordStoreTest, RefusesAFileWithoutTheMarker) {
  TempDir dir;
  const fs::path file = dir.path() / "other.yaml";
  const std::string contents = "server:\n  port: 8080\n";
  WriteFile(file, contents);
  EXPECT_THAT(OpenYamlRecordStore(file),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(file.string()),
                             HasSubstr("no __metadata__ marker"))));
  EXPECT_EQ(ReadFile(file), contents);
}

TEST(YamlRecordStoreTest, RefusesATopLevelThatIsNotAMapping) {
  TempDir dir;
  const fs::path file = dir.path() / "list.yaml";
  WriteFile(file, "- a\n- b\n");
  EXPECT_THAT(OpenYamlRecordStore(file),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("top level is not a mapping")));
}

TEST(YamlRecordStoreTest, RefusesAnotherKind) {
  TempDir dir;
  const fs::path file = dir.path() / "jobs.yaml";
  WriteFile(file,
            "__metadata__:\n  version: \"3.2\"\n  kind: modelmanager.jobs\n"
            "  revision: 0\n");
  EXPECT_THAT(OpenYamlRecordStore(file),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("__metadata__.kind is \"modelmanager.jobs\", "
                                 "not \"modelmanager.records\"")));
}

TEST(YamlRecordStoreTest, RefusesAnotherVersion) {
  TempDir dir;
  const fs::path file = dir.path() / "new.yaml";
  WriteFile(file,
            "__metadata__:\n  version: \"4.0\"\n  kind: modelmanager.records\n"
            "  revision: 0\n");
  EXPECT_THAT(OpenYamlRecordStore(file),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("version \"4.0\"; this program reads "
                                 "version \"3.2\" only")));
}

TEST(YamlRecordStoreTest, ALegacyModelsYamlSaysToImportIt) {
  TempDir dir;
  const fs::path file = dir.path() / "models.yaml";
  const std::string contents =
      "__metadata__:\n  version: 3.0.0\n"
      "sd-1/main/stable-diffusion-v1-5:\n"
      "  path: sd-1/main/stable-diffusion-v1-5\n  format: diffusers\n";
  WriteFile(file, contents);
  EXPECT_THAT(OpenYamlRecordStore(file),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("legacy v3 models.yaml"),
                             HasSubstr("mm models import " + file.string()))));
  EXPECT_EQ(ReadFile(file), contents);
}

TEST(YamlRecordStoreTest, UnparsableYamlNamesTheFileAndLine) {
  TempDir dir;
  const fs::path file = dir.path() / "broken.yaml";
  WriteFile(file, "__metadata__:\n  version: \"3.2\"\nentry: [1, 2\n");
  EXPECT_THAT(
      OpenYamlRecordStore(file),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               AllOf(HasSubstr(file.string()), HasSubstr("is not valid YAML"),
                     HasSubstr("line 4"))));
}

TEST(YamlRecordStoreTest, DamagedEntryIsDataLossNamingTheEntry) {
  TempDir dir;
  const fs::path file = dir.path() / "records.yaml";
  WriteFile(file,
            "__metadata__: {version: \"3.2\", kind: modelmanager.records, "
            "revision: 3}\n"
            "abc:\n  config: {key: abc, name: x}\n  revision: oops\n"
            "  created_at: 1\n  updated_at: 1\n");
  EXPECT_THAT(OpenYamlRecordStore(file),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr("entry \"abc\""),
                             HasSubstr("'revision' = \"oops\""))));
}

TEST(YamlRecordStoreTest, DuplicatePathsInTheFileAreDataLoss) {
  TempDir dir;
  const fs::path file = dir.path() / "records.yaml";
  WriteFile(file,
            "__metadata__: {version: \"3.2\", kind: modelmanager.records, "
            "revision: 2}\n"
            "a: {config: {key: a, path: m.ckpt}, revision: 1, created_at: 1, "
            "updated_at: 1}\n"
            "b: {config: {key: b, path: m.ckpt}, revision: 2, created_at: 1, "
            "updated_at: 1}\n");
  EXPECT_THAT(
      OpenYamlRecordStore(file),
      StatusIs(absl::StatusCode::kDataLoss,
               AllOf(HasSubstr("entry \"b\""), HasSubstr("path \"m.ckpt\""))));
}

TEST(YamlRecordStoreTest, ReadsAHandWrittenFileWithTheCoreSchema) {
  TempDir dir;
  const fs::path file = dir.path() / "records.yaml";
  // Plain scalars follow YAML's core schema; only quoted ones are strings.
  // The store revision lags the record's: the record's wins.
  WriteFile(file,
            "__metadata__: {version: \"3.2\", kind: modelmanager.records, "
            "revision: 1}\n"
            "k1:\n  config:\n    name: 123\n    description: '123'\n"
            "    file_size: 42\n    ratio: 0.5\n    flag: true\n"
            "    cover_image: ~\n    tags: [a, 'b']\n"
            "  revision: 5\n  created_at: 10\n  updated_at: 20\n");
  ASSERT_OK_AND_ASSIGN(auto store, OpenYamlRecordStore(file));
  ASSERT_OK_AND_ASSIGN(StoredModel model, store->Get("k1"));
  EXPECT_EQ(model.config, json({{"key", "k1"},
                                {"name", 123},
                                {"description", "123"},
                                {"file_size", 42},
                                {"ratio", 0.5},
                                {"flag", true},
                                {"cover_image", nullptr},
                                {"tags", {"a", "b"}}}));
  EXPECT_EQ(model.revision, 5);
  EXPECT_EQ(model.created_at_us, 10);
  EXPECT_EQ(model.updated_at_us, 20);
  EXPECT_THAT(store->CurrentRevision(), IsOkAndHolds(5));
}

TEST(YamlRecordStoreTest, ValuesRoundTripWithTheirTypes) {
  TempDir dir;
  const fs::path file = dir.path() / "records.yaml";
  json config = Config("k1", "123", "models/a.safetensors");
  config["description"] = "true";
  config["source"] = "null";
  config["cover_image"] = "~";
  config["quotes"] = "say \"hi\" and 'bye' \\ back\\slash";
  config["unicode"] = "模型 ✓ café ü";
  config["lines"] = "line one\nline two\ttab";
  config["yamlish"] = "key: value # not a comment";
  config["leading"] = "  spaced  ";
  config["empty"] = "";
  config["float_string"] = "1.5";
  config["int"] = -42;
  config["big"] = int64_t{9007199254740993};
  config["unsigned"] = uint64_t{18446744073709551615u};
  config["float"] = 0.1;
  config["whole_float"] = 2.0;
  config["tiny"] = 1e-300;
  config["yes"] = true;
  config["no"] = false;
  config["nothing"] = nullptr;
  config["list"] = {1, "2", 3.5, nullptr, json::array(), json::object()};
  config["empty_list"] = json::array();
  config["empty_map"] = json::object();
  config["nested"] = {{"vae", "x"}, {"steps", 30}, {"inner", {{"a", "0"}}}};
  {
    ASSERT_OK_AND_ASSIGN(auto store, OpenYamlRecordStore(file));
    ASSERT_OK(store->Insert(config, "").status());
  }
  ASSERT_OK_AND_ASSIGN(auto store, OpenYamlRecordStore(file));
  ASSERT_OK_AND_ASSIGN(StoredModel model, store->Get("k1"));
  // json's == treats 2 and 2.0 as equal; compare the dumps too, which
  // keep the JSON types apart.
  EXPECT_EQ(model.config, config);
  EXPECT_EQ(model.config.dump(), config.dump());
  EXPECT_TRUE(model.config["whole_float"].is_number_float());
  EXPECT_TRUE(model.config["unsigned"].is_number_unsigned());
  // Every string is written double-quoted.
  EXPECT_THAT(ReadFile(file), AllOf(HasSubstr("\"name\": \"123\""),
                                    HasSubstr("\"description\": \"true\""),
                                    HasSubstr("\"source\": \"null\"")));
}

TEST(YamlRecordStoreTest, ReopenKeepsRecordsAndRevision) {
  TempDir dir;
  const fs::path file = dir.path() / "records.yaml";
  StoredModel kept;
  {
    ASSERT_OK_AND_ASSIGN(auto store, OpenYamlRecordStore(file));
    ASSERT_OK(store->Insert(Config("a", "A", "a.ckpt"), "").status());
    ASSERT_OK(store->Insert(Config("b", "B", "b.ckpt"), "").status());
    ASSERT_OK_AND_ASSIGN(kept,
                         store->Replace("a", Config("a", "A2", "a2.ckpt"), 1));
    ASSERT_OK(store->Delete("b", 0).status());
    EXPECT_THAT(store->CurrentRevision(), IsOkAndHolds(4));
  }
  ASSERT_OK_AND_ASSIGN(auto store, OpenYamlRecordStore(file));
  EXPECT_THAT(store->CurrentRevision(), IsOkAndHolds(4));
  ASSERT_OK_AND_ASSIGN(StoredModel a, store->Get("a"));
  EXPECT_EQ(a.config, kept.config);
  EXPECT_EQ(a.revision, 3);
  EXPECT_EQ(a.created_at_us, kept.created_at_us);
  EXPECT_EQ(a.updated_at_us, kept.updated_at_us);
  EXPECT_THAT(store->Get("b"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("'b'")));
  // The change log starts at the revision the file was opened with.
  EXPECT_THAT(store->ChangesSince(4, 10), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(store->ChangesSince(3, 10),
              StatusIs(absl::StatusCode::kOutOfRange,
                       HasSubstr("list the models again")));
  ASSERT_OK_AND_ASSIGN(StoredModel c,
                       store->Insert(Config("c", "C", "c.ckpt"), ""));
  EXPECT_EQ(c.revision, 5);
  ASSERT_OK_AND_ASSIGN(auto changes, store->ChangesSince(4, 10));
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].type, ChangeType::kAdded);
  EXPECT_EQ(changes[0].revision, 5);
}

TEST(YamlRecordStoreTest, DuplicateKeyOrPathIsAlreadyExists) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto store,
                       OpenYamlRecordStore(dir.path() / "records.yaml"));
  ASSERT_OK(store->Insert(Config("a", "A", "a.ckpt"), "").status());
  EXPECT_THAT(store->Insert(Config("a", "A", "other.ckpt"), ""),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("key 'a'")));
  EXPECT_THAT(
      store->Insert(Config("b", "B", "a.ckpt"), ""),
      StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("path 'a.ckpt'")));
  EXPECT_THAT(store->CurrentRevision(), IsOkAndHolds(1));
}

TEST(YamlRecordStoreTest, WritesLeaveNoTemporaryFilesAndKeepTheMode) {
  TempDir dir;
  const fs::path file = dir.path() / "records.yaml";
  ASSERT_OK_AND_ASSIGN(auto store, OpenYamlRecordStore(file));
  ASSERT_EQ(::chmod(file.c_str(), 0600), 0);
  for (int i = 0; i < 5; ++i) {
    const std::string key = "k" + std::to_string(i);
    ASSERT_OK(store->Insert(Config(key, key, key + ".ckpt"), "").status());
  }
  ASSERT_OK(store->Delete("k0", 0).status());
  EXPECT_THAT(FileNames(dir.path()), ElementsAre("records.yaml"));
  struct stat info;
  ASSERT_EQ(::stat(file.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
}

// Replaces the store's directory by a regular file, so that creating the
// temporary file fails even for root (which ignores permissions).
TEST(YamlRecordStoreTest, AFailedWriteLeavesFileAndMemoryUnchanged) {
  TempDir dir;
  const fs::path sub = dir.path() / "state";
  const fs::path moved = dir.path() / "state.moved";
  fs::create_directory(sub);
  const fs::path file = sub / "records.yaml";
  ASSERT_OK_AND_ASSIGN(auto store, OpenYamlRecordStore(file));
  ASSERT_OK_AND_ASSIGN(StoredModel a,
                       store->Insert(Config("a", "A", "a.ckpt"), ""));
  const std::string before = ReadFile(file);

  fs::rename(sub, moved);
  WriteFile(sub, "not a directory");
  EXPECT_THAT(
      store->Insert(Config("b", "B", "b.ckpt"), "req-1"),
      StatusIs(absl::StatusCode::kUnavailable,
               AllOf(HasSubstr(file.string()), HasSubstr("Not a directory"))));
  EXPECT_THAT(store->Replace("a", Config("a", "A2", "a.ckpt"), 0),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(store->Delete("a", 0), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(store->Ping(), StatusIs(absl::StatusCode::kUnavailable,
                                      HasSubstr(sub.string())));

  // Memory is as before the failed writes.
  EXPECT_THAT(store->CurrentRevision(), IsOkAndHolds(1));
  ASSERT_OK_AND_ASSIGN(StoredModel still, store->Get("a"));
  EXPECT_EQ(still.config, a.config);
  EXPECT_EQ(still.revision, 1);
  EXPECT_THAT(store->Get("b"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store->ChangesSince(1, 10), IsOkAndHolds(IsEmpty()));
  ASSERT_OK_AND_ASSIGN(ModelPage page, store->List({}));
  EXPECT_EQ(page.models.size(), 1u);

  // So is the file, with no temporary left beside it.
  fs::remove(sub);
  fs::rename(moved, sub);
  EXPECT_EQ(ReadFile(file), before);
  EXPECT_THAT(FileNames(sub), ElementsAre("records.yaml"));

  // The failed request id was not remembered: a retry inserts.
  EXPECT_OK(store->Ping());
  ASSERT_OK_AND_ASSIGN(StoredModel b,
                       store->Insert(Config("b", "B", "b.ckpt"), "req-1"));
  EXPECT_EQ(b.revision, 2);
  store.reset();
  ASSERT_OK_AND_ASSIGN(auto reopened, OpenYamlRecordStore(file));
  EXPECT_THAT(reopened->CurrentRevision(), IsOkAndHolds(2));
}

TEST(YamlRecordStoreTest, AReadOnlyDirectoryFailsTheWrite) {
  TempDir dir;
  const fs::path file = dir.path() / "records.yaml";
  ASSERT_OK_AND_ASSIGN(auto store, OpenYamlRecordStore(file));
  const std::string before = ReadFile(file);
  ASSERT_EQ(::chmod(dir.path().c_str(), 0500), 0);
  // As root (CI) the write runs with file permissions enforced, in a child
  // that reports the status and whether the record is then visible.
  absl::Status write = mm::testing::RunUnprivileged([&]() -> absl::Status {
    absl::Status inserted =
        store->Insert(Config("a", "A", "a.ckpt"), "").status();
    if (absl::Status get = store->Get("a").status(); !absl::IsNotFound(get)) {
      return absl::InternalError(
          absl::StrCat("after the failed write, Get says ", get.ToString()));
    }
    return inserted;
  });
  ASSERT_EQ(::chmod(dir.path().c_str(), 0700), 0);
  EXPECT_THAT(write, StatusIs(absl::StatusCode::kUnavailable,
                              HasSubstr("Permission denied")));
  EXPECT_EQ(ReadFile(file), before);
  EXPECT_THAT(store->Get("a"), StatusIs(absl::StatusCode::kNotFound));
}

TEST(YamlRecordStoreTest, RequestIdMakesInsertIdempotent) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto store,
                       OpenYamlRecordStore(dir.path() / "records.yaml"));
  ASSERT_OK_AND_ASSIGN(StoredModel first,
                       store->Insert(Config("a", "A", "a.ckpt"), "req"));
  ASSERT_OK_AND_ASSIGN(StoredModel again,
                       store->Insert(Config("a", "A", "a.ckpt"), "req"));
  EXPECT_EQ(again.config, first.config);
  EXPECT_EQ(again.revision, first.revision);
  EXPECT_THAT(store->CurrentRevision(), IsOkAndHolds(1));
}

TEST(YamlRecordStoreTest, PagesDescendingByName) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto store,
                       OpenYamlRecordStore(dir.path() / "records.yaml"));
  for (const char* name : {"b", "E", "a", "d", "C"}) {
    const std::string key = std::string("k") + name;
    ASSERT_OK(store->Insert(Config(key, name, key), "").status());
  }
  ModelQuery query;
  query.order = ModelOrder::kName;
  query.descending = true;
  query.page_size = 2;
  std::vector<std::string> names;
  int pages = 0;
  do {
    ASSERT_OK_AND_ASSIGN(ModelPage page, store->List(query));
    for (const StoredModel& m : page.models) names.push_back(m.config["name"]);
    query.page_token = page.next_page_token;
    ++pages;
  } while (!query.page_token.empty() && pages < 10);
  EXPECT_THAT(names, ElementsAre("E", "d", "C", "b", "a"));
  EXPECT_EQ(pages, 3);
}

TEST(YamlRecordStoreTest, WaitForChangeReturnsOnACommit) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto store,
                       OpenYamlRecordStore(dir.path() / "records.yaml"));
  ASSERT_OK(store->Insert(Config("a", "A", "a.ckpt"), "").status());
  // Already past revision 0: returns at once, long before the deadline.
  store->WaitForChange(0, absl::Now() + absl::Hours(1));
  store->Interrupt();
  store->WaitForChange(1, absl::Now() + absl::Hours(1));
}

}  // namespace
}  // namespace mm::records
