#include "cli/output.h"

#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "modelmanager/v1/downloader.pb.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"

namespace mm::cli {
namespace {

using modelmanager::v1::Model;
using modelmanager::v1::ModelEvent;
using ::testing::HasSubstr;
using ::testing::Not;

Model SampleModel() {
  Model model;
  model.set_key("0123456789abcdef0123456789abcdef");
  model.set_name("Dreamy");
  model.set_base("sd-1");
  model.set_type("main");
  model.set_format("checkpoint");
  model.set_path("sd-1/main/dreamy.safetensors");
  model.set_file_size(2'132'625'408);
  model.set_hash("blake3:abc");
  model.set_source("/downloads/dreamy.safetensors");
  model.set_source_type("path");
  model.add_tags("anime");
  model.add_tags("portrait");
  model.set_variant("normal");
  model.set_prediction_type("epsilon");
  model.mutable_main_default_settings()->set_steps(30);
  model.set_revision(7);
  model.set_etag("7");
  model.mutable_create_time()->set_seconds(1'700'000'000);
  return model;
}

TEST(HumanSizeTest, Units) {
  EXPECT_EQ(HumanSize(0), "0 B");
  EXPECT_EQ(HumanSize(1023), "1023 B");
  EXPECT_EQ(HumanSize(1024), "1.0 KiB");
  EXPECT_EQ(HumanSize(1536), "1.5 KiB");
  EXPECT_EQ(HumanSize(1024 * 1024 - 1), "1.0 MiB");
  EXPECT_EQ(HumanSize(2'132'625'408), "2.0 GiB");
  EXPECT_EQ(HumanSize(int64_t{5} << 40), "5.0 TiB");
  EXPECT_EQ(HumanSize(-1), "-");
}

TEST(FormatTimestampTest, Rfc3339Utc) {
  google::protobuf::Timestamp timestamp;
  EXPECT_EQ(FormatTimestamp(timestamp), "-");
  timestamp.set_seconds(1'700'000'000);
  EXPECT_EQ(FormatTimestamp(timestamp), "2023-11-14T22:13:20Z");
}

TEST(TextTableTest, AlignsColumnsWithoutTrailingBlanks) {
  TextTable table({"KEY", "NAME", "PATH"});
  table.AddRow({"a", "long name", "/p"});
  table.AddRow({"bbbb", "n", ""});
  std::ostringstream out;
  table.Print(out);
  EXPECT_EQ(out.str(),
            "KEY   NAME       PATH\n"
            "a     long name  /p\n"
            "bbbb  n\n");
}

TEST(TextTableTest, ShortRowsArePadded) {
  TextTable table({"A", "B"});
  table.AddRow({"x"});
  std::ostringstream out;
  table.Print(out);
  EXPECT_EQ(out.str(), "A  B\nx\n");
}

TEST(PrintModelListTest, Table) {
  std::ostringstream out;
  PrintModelList({SampleModel()}, /*json=*/false, out);
  EXPECT_EQ(out.str(),
            "KEY                               NAME    BASE  TYPE  FORMAT      "
            "SIZE     PATH\n"
            "0123456789abcdef0123456789abcdef  Dreamy  sd-1  main  checkpoint  "
            "2.0 GiB  sd-1/main/dreamy.safetensors\n");
}

TEST(PrintModelListTest, EmptyList) {
  std::ostringstream table, json;
  PrintModelList({}, /*json=*/false, table);
  PrintModelList({}, /*json=*/true, json);
  EXPECT_EQ(table.str(), "No models.\n");
  EXPECT_EQ(json.str(), "[]\n");
}

TEST(PrintModelListTest, JsonArrayOfReferenceConfigs) {
  std::ostringstream out;
  PrintModelList({SampleModel(), SampleModel()}, /*json=*/true, out);
  nlohmann::json list = nlohmann::json::parse(out.str());
  ASSERT_TRUE(list.is_array());
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["base"], "sd-1");
  EXPECT_EQ(list[0]["file_size"], 2'132'625'408);
  EXPECT_EQ(list[0]["default_settings"]["steps"], 30);
  // Output-only fields are not part of the reference's config.
  EXPECT_FALSE(list[0].contains("revision"));
  EXPECT_FALSE(list[0].contains("etag"));
}

TEST(PrintModelTest, FieldLinesWithRevisionAndEtag) {
  std::ostringstream out;
  PrintModel(SampleModel(), /*json=*/false, out);
  std::string text = out.str();
  EXPECT_THAT(text, ::testing::StartsWith(
                        "key:              0123456789abcdef0123456789abcdef\n"
                        "name:             Dreamy\n"
                        "base:             sd-1\n"));
  EXPECT_THAT(text,
              HasSubstr("file_size:        2.0 GiB (2132625408 bytes)\n"));
  EXPECT_THAT(text, HasSubstr("tags:             anime, portrait\n"));
  EXPECT_THAT(text, HasSubstr("default_settings: {\"steps\":30}\n"));
  EXPECT_THAT(text, HasSubstr("revision:         7\n"));
  EXPECT_THAT(text, HasSubstr("etag:             7\n"));
  EXPECT_THAT(text, HasSubstr("created:          2023-11-14T22:13:20Z\n"));
  EXPECT_THAT(text, HasSubstr("updated:          -\n"));
}

TEST(PrintModelTest, JsonIsExactlyTheConfig) {
  std::ostringstream out;
  PrintModel(SampleModel(), /*json=*/true, out);
  nlohmann::json config = nlohmann::json::parse(out.str());
  EXPECT_EQ(config, ModelJson(SampleModel()));
  EXPECT_EQ(config["type"], "main");
  EXPECT_FALSE(config.contains("revision"));
}

TEST(JsonTextTest, InvalidUtf8DoesNotThrow) {
  nlohmann::json value = std::string("bad \xff byte");
  std::string text;
  EXPECT_NO_THROW(text = JsonText(value));
  EXPECT_THAT(text, HasSubstr("bad"));
}

TEST(FormatEventTest, HumanLine) {
  ModelEvent event;
  event.set_type(ModelEvent::ADDED);
  event.set_revision(8);
  *event.mutable_model() = SampleModel();
  EXPECT_EQ(FormatEvent(event, /*json=*/false),
            "ADDED revision 8 0123456789abcdef0123456789abcdef Dreamy "
            "(main.checkpoint.sd-1) sd-1/main/dreamy.safetensors");
  ModelEvent bookmark;
  bookmark.set_type(ModelEvent::BOOKMARK);
  bookmark.set_revision(3);
  EXPECT_EQ(FormatEvent(bookmark, false), "BOOKMARK revision 3");
}

TEST(FormatEventTest, JsonLine) {
  ModelEvent event;
  event.set_type(ModelEvent::DELETED);
  event.set_revision(9);
  *event.mutable_model() = SampleModel();
  std::string line = FormatEvent(event, /*json=*/true);
  EXPECT_THAT(line, Not(HasSubstr("\n")));
  nlohmann::json object = nlohmann::json::parse(line);
  EXPECT_EQ(object["type"], "DELETED");
  EXPECT_EQ(object["revision"], 9);
  EXPECT_EQ(object["model"]["key"], "0123456789abcdef0123456789abcdef");
}

TEST(ProtoJsonTest, ProtoFieldNamesAndEveryDefault) {
  modelmanager::v1::DownloadJob job;
  job.set_id("j1");
  job.set_total_bytes(2048);
  ASSERT_OK_AND_ASSIGN(nlohmann::json value, ProtoJson(job));
  EXPECT_EQ(value["id"], "j1");
  // The proto's own names, not lowerCamelCase; 64-bit numbers as strings
  // (the protobuf JSON mapping).
  EXPECT_EQ(value["total_bytes"], "2048");
  EXPECT_FALSE(value.contains("totalBytes"));
  // Unset scalars are printed, so scripts need not guess a default.
  EXPECT_EQ(value["bytes"], "0");
  EXPECT_EQ(value["done"], false);
  EXPECT_EQ(value["state"], "DOWNLOAD_STATE_UNSPECIFIED");
}

}  // namespace
}  // namespace mm::cli
