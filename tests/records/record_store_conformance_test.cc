// The conformance suite every RecordStore backend must pass: SQLite (a real
// file), PostgreSQL (a throwaway cluster), and the YAML file store. It
// drives the stores through ModelRegistry, as the service does.
#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/records/model_registry.h"
#include "services/records/record_store.h"
#include "tests/testing/postgres_cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::records {
namespace {

using ::mm::testing::PostgresCluster;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using nlohmann::json;
using ::testing::HasSubstr;

std::string HexOf(int seed, size_t length) {
  std::string out;
  const char* digits = "0123456789abcdef";
  for (size_t i = 0; i < length; ++i) out += digits[(seed * 7 + i * 13) % 16];
  return out;
}

// A minimal valid VAE checkpoint record.
json VaeConfig(const std::string& name, int seed) {
  return {{"hash", "blake3:" + HexOf(seed, 64)},
          {"path", absl::StrCat("/models/vae-", seed, ".safetensors")},
          {"file_size", 1000 + seed},
          {"name", name},
          {"source", absl::StrCat("/downloads/vae-", seed, ".safetensors")},
          {"source_type", "path"},
          {"type", "vae"},
          {"format", "checkpoint"},
          {"base", "sd-1"}};
}

json LoraConfig(const std::string& name, int seed, const std::string& base) {
  return {{"hash", "sha256:" + HexOf(seed, 64)},
          {"path", absl::StrCat("/models/lora-", seed, ".safetensors")},
          {"file_size", 50 + seed},
          {"name", name},
          {"source", "https://example.invalid/lora.safetensors"},
          {"source_type", "url"},
          {"type", "lora"},
          {"format", "lycoris"},
          {"base", base}};
}

enum class Backend { kSqlite, kPostgres, kYaml };

class RecordStoreConformanceTest : public ::testing::TestWithParam<Backend> {
 protected:
  static void TearDownTestSuite() { mm::testing::StopSharedPostgresCluster(); }

  void SetUp() override {
    std::string url;
    switch (GetParam()) {
      case Backend::kSqlite:
        url = "sqlite:" + (dir_.path() / "records.db").string();
        break;
      case Backend::kYaml:
        url = (dir_.path() / "models.yaml").string();
        break;
      case Backend::kPostgres: {
        std::string error;
        PostgresCluster* cluster = mm::testing::SharedPostgresCluster(&error);
        if (cluster == nullptr) MM_SKIP_OR_FAIL_WITHOUT_POSTGRES(error);
        static std::atomic<int> counter{0};
        absl::StatusOr<std::string> db_url =
            cluster->CreateDatabase(absl::StrCat("conformance_", counter++));
        ASSERT_OK(db_url.status());
        url = *db_url;
        break;
      }
    }
    ASSERT_OK_AND_ASSIGN(store_, OpenRecordStore(url));
    registry_ = std::make_unique<ModelRegistry>(store_.get());
  }

  StoredModel MustCreate(json config) {
    absl::StatusOr<StoredModel> stored = registry_->Create(config, "");
    EXPECT_OK(stored.status());
    return stored.ok() ? *stored : StoredModel{};
  }

  std::vector<std::string> ListNames(ModelQuery query) {
    std::vector<std::string> names;
    while (true) {
      absl::StatusOr<ModelPage> page = registry_->List(query);
      EXPECT_OK(page.status());
      if (!page.ok()) break;
      for (const StoredModel& m : page->models) {
        names.push_back(m.config["name"].get<std::string>());
      }
      if (page->next_page_token.empty()) break;
      query.page_token = page->next_page_token;
    }
    return names;
  }

  TempDir dir_;
  std::unique_ptr<RecordStore> store_;
  std::unique_ptr<ModelRegistry> registry_;
};

TEST_P(RecordStoreConformanceTest, CreateGeneratesAKeyAndGetReturnsTheRecord) {
  StoredModel created = MustCreate(VaeConfig("my vae", 1));
  std::string key = created.config["key"];
  EXPECT_EQ(key.size(), 32u);
  EXPECT_EQ(key.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_GT(created.revision, 0);
  ASSERT_OK_AND_ASSIGN(StoredModel got, registry_->Get(key));
  EXPECT_EQ(got.config, created.config);
  EXPECT_EQ(got.revision, created.revision);
  EXPECT_GT(got.created_at_us, 1700000000000000);
  EXPECT_EQ(got.config["base"], "sd-1");
}

TEST_P(RecordStoreConformanceTest, CallerSuppliedKeyIsKept) {
  json config = VaeConfig("keyed", 2);
  config["key"] = "my-own-key";
  StoredModel created = MustCreate(config);
  EXPECT_EQ(created.config["key"], "my-own-key");
  EXPECT_OK(registry_->Get("my-own-key").status());
}

TEST_P(RecordStoreConformanceTest, DuplicateKeyOrPathIsAlreadyExists) {
  json first = VaeConfig("first", 3);
  first["key"] = "dup";
  MustCreate(first);
  json same_key = VaeConfig("second", 4);
  same_key["key"] = "dup";
  EXPECT_THAT(registry_->Create(same_key, ""),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("key")));
  json same_path = VaeConfig("third", 5);
  same_path["path"] = first["path"];
  EXPECT_THAT(registry_->Create(same_path, ""),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       HasSubstr("/models/vae-3.safetensors")));
  // Names are not unique.
  EXPECT_OK(registry_->Create(VaeConfig("first", 6), "").status());
}

TEST_P(RecordStoreConformanceTest, UnknownKeyIsNotFound) {
  EXPECT_THAT(registry_->Get("nope"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("'nope'")));
  EXPECT_THAT(registry_->Delete("nope", 0),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("'nope'")));
  EXPECT_THAT(registry_->Update("nope", {{"name", "x"}}, false, 0),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("'nope'")));
}

TEST_P(RecordStoreConformanceTest, InvalidFieldIsRejectedNamingIt) {
  json config = VaeConfig("bad", 7);
  config["prediction_type"] = "epsilon";  // not a VAE field
  EXPECT_THAT(registry_->Create(config, ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("prediction_type")));
  json bad_base = VaeConfig("bad", 8);
  bad_base["base"] = "sd-99";
  EXPECT_THAT(registry_->Create(bad_base, ""),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ModelQuery query;
  EXPECT_TRUE(ListNames(query).empty());
}

TEST_P(RecordStoreConformanceTest, LimitsAreInvalidArgumentAndNothingIsStored) {
  json long_name = VaeConfig(std::string(1025, 'n'), 9);
  EXPECT_THAT(registry_->Create(long_name, ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("name")));
  json huge = VaeConfig("huge", 10);
  huge["description"] = std::string(60 * 1024, 'd');
  huge["source_api_response"] = std::string(1100 * 1024, 'x');
  EXPECT_THAT(registry_->Create(huge, ""),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(ListNames({}).empty());
}

TEST_P(RecordStoreConformanceTest, SparseUpdateChangesOnlyTheGivenFields) {
  json config = VaeConfig("before", 11);
  config["description"] = "keep me";
  StoredModel created = MustCreate(config);
  std::string key = created.config["key"];
  ASSERT_OK_AND_ASSIGN(StoredModel updated,
                       registry_->Update(key, {{"name", "after"}}, false, 0));
  EXPECT_EQ(updated.config["name"], "after");
  EXPECT_EQ(updated.config["description"], "keep me");
  EXPECT_EQ(updated.config["hash"], created.config["hash"]);
  EXPECT_GT(updated.revision, created.revision);
  ASSERT_OK_AND_ASSIGN(
      updated, registry_->Update(key, {{"description", nullptr}}, false, 0));
  EXPECT_TRUE(!updated.config.contains("description") ||
              updated.config["description"].is_null());
  ASSERT_OK_AND_ASSIGN(StoredModel got, registry_->Get(key));
  EXPECT_EQ(got.config, updated.config);
}

TEST_P(RecordStoreConformanceTest, ClassChangeNeedsPermission) {
  StoredModel created = MustCreate(LoraConfig("lora", 12, "sd-1"));
  std::string key = created.config["key"];
  EXPECT_THAT(registry_->Update(
                  key, {{"type", "vae"}, {"format", "checkpoint"}}, false, 0),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("allow_class_change")));
  ASSERT_OK_AND_ASSIGN(
      StoredModel changed,
      registry_->Update(key, {{"type", "vae"}, {"format", "checkpoint"}}, true,
                        0));
  EXPECT_EQ(changed.config["type"], "vae");
}

TEST_P(RecordStoreConformanceTest, StaleRevisionIsAborted) {
  StoredModel created = MustCreate(VaeConfig("v", 13));
  std::string key = created.config["key"];
  ASSERT_OK(registry_->Update(key, {{"name", "w"}}, false, created.revision)
                .status());
  EXPECT_THAT(registry_->Update(key, {{"name", "x"}}, false, created.revision),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("changed")));
  EXPECT_THAT(registry_->Replace(key, VaeConfig("y", 13), created.revision),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(registry_->Delete(key, created.revision),
              StatusIs(absl::StatusCode::kAborted));
  ASSERT_OK_AND_ASSIGN(StoredModel got, registry_->Get(key));
  EXPECT_EQ(got.config["name"], "w");
}

TEST_P(RecordStoreConformanceTest, ReplaceChecksTheKey) {
  StoredModel created = MustCreate(VaeConfig("v", 14));
  std::string key = created.config["key"];
  json other = VaeConfig("replaced", 14);
  other["key"] = "someone-else";
  EXPECT_THAT(
      registry_->Replace(key, other, 0),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("someone-else")));
  ASSERT_OK_AND_ASSIGN(StoredModel replaced,
                       registry_->Replace(key, VaeConfig("replaced", 14), 0));
  EXPECT_EQ(replaced.config["name"], "replaced");
  EXPECT_EQ(replaced.config["key"], key);
}

TEST_P(RecordStoreConformanceTest, HostileStringsAreStoredLiterally) {
  std::vector<std::string> names = {"Robert'); DROP TABLE models; --",
                                    "quote \" and ' and `",
                                    "semi;colon -- comment /* c */",
                                    "percent % and underscore _",
                                    "ünïcödé 模型 🚀",
                                    "back\\slash",
                                    "line\nbreak",
                                    "$1 ? :name"};
  int seed = 100;
  for (const std::string& name : names) MustCreate(VaeConfig(name, seed++));
  for (const std::string& name : names) {
    ModelQuery query;
    query.name = name;
    EXPECT_THAT(ListNames(query), ::testing::ElementsAre(name));
  }
  EXPECT_EQ(ListNames({}).size(), names.size());
}

TEST_P(RecordStoreConformanceTest, FiltersCombine) {
  json a = LoraConfig("alpha", 20, "sdxl");
  a["tags"] = {"style", "anime"};
  json b = LoraConfig("beta", 21, "sd-1");
  b["tags"] = {"style"};
  json c = VaeConfig("gamma", 22);
  c["compatible_bases"] = {"sd-2"};
  std::string a_key = MustCreate(a).config["key"];
  MustCreate(b);
  MustCreate(c);

  ModelQuery by_type;
  by_type.type = "lora";
  EXPECT_THAT(ListNames(by_type),
              ::testing::UnorderedElementsAre("alpha", "beta"));
  ModelQuery by_base_type;
  by_base_type.base = "sdxl";
  by_base_type.type = "lora";
  EXPECT_THAT(ListNames(by_base_type), ::testing::ElementsAre("alpha"));
  ModelQuery by_tags;
  by_tags.tags = {"style", "anime"};
  EXPECT_THAT(ListNames(by_tags), ::testing::ElementsAre("alpha"));
  ModelQuery one_tag;
  one_tag.tags = {"style"};
  EXPECT_THAT(ListNames(one_tag),
              ::testing::UnorderedElementsAre("alpha", "beta"));
  ModelQuery compatible;
  compatible.base = "sd-2";
  EXPECT_THAT(ListNames(compatible), ::testing::ElementsAre("gamma"));
  ModelQuery sd1;
  sd1.base = "sd-1";
  EXPECT_THAT(ListNames(sd1), ::testing::UnorderedElementsAre("beta", "gamma"));
  ModelQuery by_format;
  by_format.format = "checkpoint";
  EXPECT_THAT(ListNames(by_format), ::testing::ElementsAre("gamma"));
  ModelQuery by_path;
  by_path.path = a["path"].get<std::string>();
  EXPECT_THAT(ListNames(by_path), ::testing::ElementsAre("alpha"));
  ModelQuery by_hash;
  by_hash.hash = c["hash"].get<std::string>();
  EXPECT_THAT(ListNames(by_hash), ::testing::ElementsAre("gamma"));
  ModelQuery none;
  none.name = "alpha";
  none.type = "vae";
  EXPECT_TRUE(ListNames(none).empty());
  ModelQuery unknown_base;
  unknown_base.base = "sd-99";
  EXPECT_THAT(registry_->List(unknown_base),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sd-99")));
  (void)a_key;
}

TEST_P(RecordStoreConformanceTest, OrderingsAndPagingVisitEveryRecordOnce) {
  // Mixed-case names, equal names, several types and bases.
  std::vector<json> configs;
  const char* names[] = {"banana", "Apple",  "cherry", "apple", "Banana",
                         "date",   "Éclair", "fig",    "apple", "Grape"};
  int seed = 200;
  for (int i = 0; i < 25; ++i) {
    std::string name = names[i % 10];
    json config = (i % 3 == 0)
                      ? VaeConfig(name, seed)
                      : LoraConfig(name, seed, i % 2 ? "sdxl" : "sd-1");
    config["file_size"] = (i * 7919) % 1000;
    configs.push_back(MustCreate(config).config);
    ++seed;
  }
  struct Case {
    ModelOrder order;
    std::function<json(const json&)> key;
  };
  auto lower = [](std::string s) {
    for (char& ch : s) {
      if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
    }
    return s;
  };
  std::vector<Case> cases = {
      {ModelOrder::kDefault,
       [&](const json& c) {
         return json{c["type"], c["base"], lower(c["name"]), c["format"],
                     c["key"]};
       }},
      {ModelOrder::kName,
       [&](const json& c) {
         return json{lower(c["name"]), c["key"]};
       }},
      {ModelOrder::kBase,
       [](const json& c) {
         return json{c["base"], c["key"]};
       }},
      {ModelOrder::kType,
       [](const json& c) {
         return json{c["type"], c["key"]};
       }},
      {ModelOrder::kSize,
       [](const json& c) {
         return json{c["file_size"], c["key"]};
       }},
      {ModelOrder::kPath,
       [](const json& c) {
         return json{c["path"], c["key"]};
       }},
  };
  for (const Case& c : cases) {
    for (bool descending : {false, true}) {
      std::vector<json> expected = configs;
      std::sort(expected.begin(), expected.end(),
                [&](const json& x, const json& y) {
                  return descending ? c.key(y) < c.key(x) : c.key(x) < c.key(y);
                });
      ModelQuery query;
      query.order = c.order;
      query.descending = descending;
      query.page_size = 7;
      std::vector<std::string> keys;
      int pages = 0;
      while (true) {
        ASSERT_OK_AND_ASSIGN(ModelPage page, registry_->List(query));
        ++pages;
        for (const StoredModel& m : page.models)
          keys.push_back(m.config["key"]);
        if (page.next_page_token.empty()) break;
        query.page_token = page.next_page_token;
      }
      std::vector<std::string> expected_keys;
      for (const json& e : expected) expected_keys.push_back(e["key"]);
      EXPECT_EQ(keys, expected_keys)
          << "order " << static_cast<int>(c.order) << " desc " << descending;
      EXPECT_EQ(pages, 4);
    }
  }
  // A token is bound to its filters and order.
  ModelQuery first;
  first.page_size = 5;
  ASSERT_OK_AND_ASSIGN(ModelPage page, registry_->List(first));
  ModelQuery other;
  other.order = ModelOrder::kName;
  other.page_token = page.next_page_token;
  EXPECT_THAT(
      registry_->List(other),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("other filters")));
  ModelQuery garbage;
  garbage.page_token = "not a token!";
  EXPECT_THAT(
      registry_->List(garbage),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
}

TEST_P(RecordStoreConformanceTest, FindByNameNeedsExactlyOne) {
  MustCreate(LoraConfig("unique", 30, "sdxl"));
  MustCreate(LoraConfig("twice", 31, "sdxl"));
  MustCreate(LoraConfig("twice", 32, "sdxl"));
  ASSERT_OK_AND_ASSIGN(StoredModel found,
                       registry_->FindByName("unique", "sdxl", "lora"));
  EXPECT_EQ(found.config["name"], "unique");
  EXPECT_THAT(registry_->FindByName("missing", "sdxl", "lora"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing")));
  EXPECT_THAT(registry_->FindByName("twice", "sdxl", "lora"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("more than one")));
}

TEST_P(RecordStoreConformanceTest, RequestIdMakesCreateIdempotent) {
  ASSERT_OK_AND_ASSIGN(StoredModel first,
                       registry_->Create(VaeConfig("once", 40), "req-1"));
  ASSERT_OK_AND_ASSIGN(StoredModel again,
                       registry_->Create(VaeConfig("once", 40), "req-1"));
  EXPECT_EQ(again.config["key"], first.config["key"]);
  EXPECT_EQ(ListNames({}).size(), 1u);
}

TEST_P(RecordStoreConformanceTest, ChangeLogRecordsEveryChangeInOrder) {
  ASSERT_OK_AND_ASSIGN(int64_t start, store_->CurrentRevision());
  StoredModel created = MustCreate(VaeConfig("watched", 50));
  std::string key = created.config["key"];
  ASSERT_OK(registry_->Update(key, {{"name", "renamed"}}, false, 0).status());
  ASSERT_OK(registry_->Delete(key, 0).status());
  ASSERT_OK_AND_ASSIGN(std::vector<ModelChange> changes,
                       store_->ChangesSince(start, 100));
  ASSERT_EQ(changes.size(), 3u);
  EXPECT_EQ(changes[0].type, ChangeType::kAdded);
  EXPECT_EQ(changes[1].type, ChangeType::kModified);
  EXPECT_EQ(changes[1].model.config["name"], "renamed");
  EXPECT_EQ(changes[2].type, ChangeType::kDeleted);
  EXPECT_EQ(changes[2].model.config["key"], key);
  EXPECT_LT(changes[0].revision, changes[1].revision);
  EXPECT_LT(changes[1].revision, changes[2].revision);
  ASSERT_OK_AND_ASSIGN(int64_t now, store_->CurrentRevision());
  EXPECT_EQ(now, changes[2].revision);
  ASSERT_OK_AND_ASSIGN(std::vector<ModelChange> none,
                       store_->ChangesSince(now, 100));
  EXPECT_TRUE(none.empty());
}

TEST_P(RecordStoreConformanceTest, WaitForChangeWakesOnACommit) {
  ASSERT_OK_AND_ASSIGN(int64_t start, store_->CurrentRevision());
  std::thread writer([&] { MustCreate(VaeConfig("wake", 60)); });
  absl::Time deadline = absl::Now() + absl::Seconds(60);
  int64_t now = start;
  while (now == start && absl::Now() < deadline) {
    store_->WaitForChange(start, deadline);
    ASSERT_OK_AND_ASSIGN(now, store_->CurrentRevision());
  }
  writer.join();
  EXPECT_GT(now, start);
}

TEST_P(RecordStoreConformanceTest, ConcurrentWritersLoseNoUpdate) {
  StoredModel created = MustCreate(VaeConfig("counter", 70));
  std::string key = created.config["key"];
  int64_t base = created.config["file_size"];
  constexpr int kThreads = 32;
  constexpr int kIncrements = 5;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Each thread also adds a record of its own.
      if (!registry_->Create(VaeConfig(absl::StrCat("t", t), 1000 + t), "")
               .ok()) {
        ++failures;
      }
      for (int i = 0; i < kIncrements; ++i) {
        while (true) {
          absl::StatusOr<StoredModel> current = registry_->Get(key);
          if (!current.ok()) {
            ++failures;
            return;
          }
          int64_t size = current->config["file_size"];
          absl::StatusOr<StoredModel> updated = registry_->Update(
              key, {{"file_size", size + 1}}, false, current->revision);
          if (updated.ok()) break;
          if (!absl::IsAborted(updated.status()) &&
              !absl::IsUnavailable(updated.status())) {
            ++failures;
            return;
          }
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  ASSERT_OK_AND_ASSIGN(StoredModel final_state, registry_->Get(key));
  EXPECT_EQ(final_state.config["file_size"].get<int64_t>(),
            base + kThreads * kIncrements);
  EXPECT_EQ(ListNames({}).size(), 1u + kThreads);
}

INSTANTIATE_TEST_SUITE_P(Backends, RecordStoreConformanceTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres,
                                           Backend::kYaml),
                         [](const ::testing::TestParamInfo<Backend>& info) {
                           switch (info.param) {
                             case Backend::kSqlite:
                               return "Sqlite";
                             case Backend::kPostgres:
                               return "Postgres";
                             case Backend::kYaml:
                               return "Yaml";
                           }
                           return "Unknown";
                         });

}  // namespace
}  // namespace mm::records
