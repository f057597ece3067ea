// Every message a model reader builds from file or remote content is
// printable UTF-8 of bounded length: raw bytes are escaped (\xff), control
// characters too, and quoted names are cut. First one crafted input per
// place where content enters a message, then mutated files thrown at every
// reader.
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "common/strings.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/gguf.h"
#include "model/huggingface.h"
#include "model/safetensors.h"
#include "model/source.h"
#include "model/torch_checkpoint.h"
#include "model/unpickler.h"
#include "model/zip_archive.h"
#include "tests/testing/message_checks.h"
#include "tests/testing/model_fixtures.h"
#include "tests/testing/status_matchers.h"

namespace mm::model {
namespace {

using ::mm::testing::FixtureTensor;
using ::mm::testing::GgufFixture;
using ::mm::testing::IsPrintableUtf8;
using ::mm::testing::PickleWriter;
using ::mm::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

// No reader message needs more: a few quoted names of at most 200 bytes
// and the advice around them.
constexpr size_t kMaxReaderMessageBytes = 1500;

MATCHER(IsShowableMessage, "is printable UTF-8 of bounded length") {
  const std::string_view message = AsStd(mm::testing::GetStatus(arg).message());
  const ::testing::AssertionResult printable = IsPrintableUtf8(message);
  if (!printable) {
    *result_listener << printable.message();
    return false;
  }
  if (message.size() > kMaxReaderMessageBytes) {
    *result_listener << "is " << message.size() << " bytes long";
    return false;
  }
  return true;
}

std::string LengthPrefixed(const std::string& json) {
  std::string out;
  for (int i = 0; i < 8; ++i) {
    out.push_back(static_cast<char>(json.size() >> (8 * i)));
  }
  return out + json;
}

absl::StatusOr<TensorIndex> ParseSafetensors(const std::string& bytes) {
  return ParseSafetensorsHeader(bytes, bytes.size());
}

// ---------------------------------------------------------------------------
// Crafted inputs, one per place content reaches a message.

TEST(ReaderMessagesTest, SafetensorsJsonErrorEscapesTheBytesItQuotes) {
  // nlohmann's message quotes what it read last: here the 0xFF byte.
  const absl::StatusOr<TensorIndex> index =
      ParseSafetensors(LengthPrefixed("{\"a\xFF\": 1}"));
  EXPECT_THAT(index, StatusIs(absl::StatusCode::kDataLoss,
                              AllOf(HasSubstr("safetensors header is not "
                                              "valid JSON"),
                                    HasSubstr(R"(\xff)"))));
  EXPECT_THAT(index.status(), IsShowableMessage());
}

TEST(ReaderMessagesTest, SafetensorsTensorNamesAreEscapedAndCut) {
  const std::string name = "evil\\u001b[2J\\n" + std::string(5000, 'x');
  const absl::StatusOr<TensorIndex> index = ParseSafetensors(LengthPrefixed(
      "{\"" + name +
      R"(": {"dtype": "F32", "shape": [1], "data_offsets": [0, 3]}})"));
  EXPECT_THAT(
      index,
      StatusIs(absl::StatusCode::kDataLoss,
               AllOf(HasSubstr(R"(safetensors tensor 'evil\x1b[2J\nxxx)"),
                     HasSubstr("...': data_offsets [0, 3]"))));
  EXPECT_THAT(index.status(), IsShowableMessage());
}

TEST(ReaderMessagesTest, SafetensorsUnknownDtypeIsEscaped) {
  const absl::StatusOr<TensorIndex> index = ParseSafetensors(LengthPrefixed(
      R"({"w": {"dtype": "F32\u0085\n", "shape": [1], "data_offsets": [0, 4]}})"));
  EXPECT_THAT(index, StatusIs(absl::StatusCode::kInvalidArgument,
                              HasSubstr(R"(unknown dtype 'F32\u0085\n')")));
  EXPECT_THAT(index.status(), IsShowableMessage());
}

TEST(ReaderMessagesTest, SafetensorsShapeIsShownShort) {
  std::string shape = "[\"\\u0007\"";
  for (int i = 0; i < 2000; ++i) shape += ", 1";
  shape += "]";
  const absl::StatusOr<TensorIndex> index =
      ParseSafetensors(LengthPrefixed(R"({"w": {"dtype": "F32", "shape": )" +
                                      shape + R"(, "data_offsets": [0, 4]}})"));
  EXPECT_THAT(index, StatusIs(absl::StatusCode::kDataLoss,
                              HasSubstr(R"(shape ["\u0007",1,1,1)")));
  EXPECT_THAT(index.status(), IsShowableMessage());
}

TEST(ReaderMessagesTest, GgufNamesAndKeysAreEscaped) {
  GgufFixture bad_type;
  bad_type.tensors = {{.name = "w\x01\x7f", .type = 0, .shape = {32}}};
  std::string bad_type_bytes = mm::testing::GgufBytes(bad_type);
  // The type field follows the header (24), the name (8+3), n_dims (4) and
  // one dimension (8).
  bad_type_bytes[24 + 8 + 3 + 4 + 8] = 99;
  const absl::StatusOr<TensorIndex> index = ParseGguf(bad_type_bytes);
  EXPECT_THAT(index,
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(R"(GGUF tensor 'w\x01\x7f': unknown)")));
  EXPECT_THAT(index.status(), IsShowableMessage());

  GgufFixture twice;
  twice.metadata = {{"key\xFF\n", uint32_t{1}}, {"key\xFF\n", uint32_t{2}}};
  const absl::StatusOr<TensorIndex> duplicate =
      ParseGguf(mm::testing::GgufBytes(twice));
  EXPECT_THAT(
      duplicate,
      StatusIs(absl::StatusCode::kDataLoss,
               HasSubstr(R"(GGUF metadata 'key\xff\n' appears twice)")));
  EXPECT_THAT(duplicate.status(), IsShowableMessage());

  // A value cut short names its key, escaped.
  GgufFixture cut;
  cut.metadata = {{std::string(1000, '\xC3'), std::string("value")}};
  std::string bytes = mm::testing::GgufBytes(cut);
  // Header (24), key (8+1000), value type (4), string length (8): then
  // two of the value's five bytes.
  bytes.resize(24 + 8 + 1000 + 4 + 8 + 2);
  const absl::StatusOr<TensorIndex> truncated = ParseGguf(bytes);
  EXPECT_THAT(truncated, StatusIs(absl::StatusCode::kDataLoss,
                                  HasSubstr(R"(GGUF metadata '\xc3\xc3)")));
  EXPECT_THAT(truncated.status(), IsShowableMessage());
}

TEST(ReaderMessagesTest, ZipEntryNamesAreEscaped) {
  const absl::StatusOr<std::unique_ptr<ZipArchive>> zip = ZipArchive::FromBytes(
      mm::testing::ZipBytes({{.name = "\xFF\x1b[2J/../x", .data = ""}}));
  EXPECT_THAT(zip, StatusIs(absl::StatusCode::kInvalidArgument,
                            HasSubstr(R"(zip entry path '\xff\x1b[2J/../x')")));
  EXPECT_THAT(zip.status(), IsShowableMessage());
}

TEST(ReaderMessagesTest, PickleTextIsEscaped) {
  const absl::StatusOr<PickleData> pickle =
      Unpickle(PickleWriter().Proto(2).Raw("I12\xFF\x1b\n").Stop().bytes());
  EXPECT_THAT(pickle, StatusIs(absl::StatusCode::kDataLoss,
                               HasSubstr(R"('12\xff\x1b' is not an integer)")));
  EXPECT_THAT(pickle.status(), IsShowableMessage());
}

TEST(ReaderMessagesTest, CheckpointNamesAndFindingsAreEscaped) {
  // A tensor whose storage is missing: its name is in the error.
  const std::vector<FixtureTensor> tensors = {
      {.name = "w\x1b[31m", .dtype = "F32", .shape = {2}}};
  const absl::StatusOr<TensorIndex> missing =
      ParseTorchCheckpoint(mm::testing::ZipBytes(
          {{.name = "archive/data.pkl",
            .data = mm::testing::TorchPickleBytes(tensors)}}));
  EXPECT_THAT(
      missing,
      StatusIs(absl::StatusCode::kDataLoss,
               HasSubstr(R"(checkpoint tensor 'w\x1b[31m': its storage )"
                         R"(entry 'archive/data/0' is missing)")));
  EXPECT_THAT(missing.status(), IsShowableMessage());

  // A foreign global is kept inert and reported in the findings.
  const std::string pickle = PickleWriter()
                                 .Proto(2)
                                 .EmptyDict()
                                 .Unicode("callback")
                                 .Global("evil\x1b]0;title\x07", "Thing")
                                 .EmptyTuple()
                                 .Reduce()
                                 .SetItem()
                                 .Stop()
                                 .bytes();
  ASSERT_OK_AND_ASSIGN(TensorIndex index,
                       ParseTorchCheckpoint(mm::testing::ZipBytes(
                           {{.name = "archive/data.pkl", .data = pickle}})));
  ASSERT_EQ(index.findings.size(), 1u);
  EXPECT_THAT(index.findings[0],
              HasSubstr(R"(unknown global evil\x1b]0;title\x07.Thing)"));
  EXPECT_TRUE(IsPrintableUtf8(index.findings[0]));
}

TEST(ReaderMessagesTest, ModelInfoJsonErrorIsEscaped) {
  const absl::StatusOr<HfModelInfo> info = ParseHfModelInfo(
      "{\"id\": \"a/b\", \"siblings\": [{\"rfilename\": \"x\xFF\"}]}");
  EXPECT_THAT(
      info, StatusIs(absl::StatusCode::kDataLoss,
                     AllOf(HasSubstr("not valid JSON"), HasSubstr(R"(\xff)"))));
  EXPECT_THAT(info.status(), IsShowableMessage());
}

// ---------------------------------------------------------------------------
// Mutated files at every reader.

// Bytes that make parsers fail in interesting places or that must never
// reach a message unescaped.
constexpr unsigned char kHostileBytes[] = {0x00, 0x01, 0x0A, 0x1B, 0x7F, 0x80,
                                           0xBF, 0xC3, 0xE2, 0xED, 0xF0, 0xFF,
                                           '"',  '\\', '{',  '}',  ':',  '['};

std::string Mutate(const std::string& seed, std::mt19937& random) {
  std::string out = seed;
  const int edits = 1 + static_cast<int>(random() % 4);
  for (int i = 0; i < edits && !out.empty(); ++i) {
    const size_t at = random() % out.size();
    const char byte =
        static_cast<char>(kHostileBytes[random() % sizeof(kHostileBytes)]);
    switch (random() % 4) {
      case 0:
        out.insert(out.begin() + static_cast<std::ptrdiff_t>(at), byte);
        break;
      case 1:
        out.resize(at);  // truncate
        break;
      default:
        out[at] = byte;
        break;
    }
  }
  return out;
}

struct Reader {
  const char* name;
  std::vector<std::string> seeds;
  // The outcome's status, and the findings when it succeeded.
  std::function<absl::Status(const std::string&, std::vector<std::string>&)>
      read;
};

std::vector<Reader> Readers() {
  const std::vector<FixtureTensor> tensors = {
      {.name = "model.diffusion_model.w\xC3\xA9", .dtype = "F16", .shape = {4}},
      {.name = "first_stage_model.b", .dtype = "F32", .shape = {2, 2}}};
  const auto index_reader = [](auto parse) {
    return
        [parse](const std::string& bytes, std::vector<std::string>& findings) {
          absl::StatusOr<TensorIndex> index = parse(bytes);
          if (index.ok()) findings = index->findings;
          return index.status();
        };
  };
  GgufFixture gguf;
  gguf.metadata = {{"general.name", std::string("m\xC3\xA9")},
                   {"tokenizer.tokens", std::vector<std::string>{"a", "b"}}};
  gguf.tensors = {{.name = "blk.0.w", .type = 0, .shape = {32}}};
  const std::string foreign = PickleWriter()
                                  .Proto(2)
                                  .EmptyDict()
                                  .Unicode("epoch")
                                  .Int(3)
                                  .SetItem()
                                  .Unicode("cb")
                                  .Global("pytorch_lightning", "Callback")
                                  .EmptyTuple()
                                  .Reduce()
                                  .SetItem()
                                  .Stop()
                                  .bytes();
  return {
      {"safetensors",
       {mm::testing::SafetensorsBytes(tensors, {{"format", "pt"}})},
       index_reader([](const std::string& b) { return ParseSafetensors(b); })},
      {"gguf",
       {mm::testing::GgufBytes(gguf)},
       index_reader([](const std::string& b) { return ParseGguf(b); })},
      {"torch",
       {mm::testing::TorchCheckpointBytes(tensors),
        mm::testing::ZipBytes({{.name = "archive/data.pkl", .data = foreign}})},
       index_reader([](const std::string& b) {
         TorchCheckpointOptions options;
         options.unpickler.max_objects = 100000;
         return ParseTorchCheckpoint(b, options);
       })},
      {"unpickler",
       {mm::testing::TorchPickleBytes(tensors), foreign},
       [](const std::string& bytes, std::vector<std::string>& findings) {
         absl::StatusOr<PickleData> pickle = Unpickle(bytes);
         if (pickle.ok()) findings = pickle->findings;
         return pickle.status();
       }},
      {"model info",
       {R"({"id": "o/n", "sha": "0123456789abcdef0123456789abcdef01234567",
            "siblings": [{"rfilename": "unet/m.safetensors", "size": 10,
                          "lfs": {"sha256": ")" +
        std::string(64, 'a') + R"(", "size": 10}}]})"},
       [](const std::string& bytes, std::vector<std::string>&) {
         return ParseHfModelInfo(bytes).status();
       }},
      {"model source",
       {"owner/name:fp16:unet+vae", "https://huggingface.co/o/n/blob/main/x",
        "/models/x.safetensors"},
       [](const std::string& bytes, std::vector<std::string>&) {
         const auto exists = [](std::string_view path) {
           return path.substr(0, 8) == "/models/";
         };
         return ParseModelSource(bytes, exists).status();
       }},
  };
}

TEST(ReaderMessagesTest, MutatedFilesGiveShowableMessages) {
  std::mt19937 random(20250611);
  for (const Reader& reader : Readers()) {
    int errors = 0;
    for (const std::string& seed : reader.seeds) {
      std::vector<std::string> findings;
      ASSERT_OK(reader.read(seed, findings)) << reader.name;
      for (int trial = 0; trial < 3000; ++trial) {
        const std::string input = Mutate(seed, random);
        findings.clear();
        const absl::Status status = reader.read(input, findings);
        if (!status.ok()) ++errors;
        ASSERT_THAT(status, IsShowableMessage())
            << reader.name << ": " << status;
        for (const std::string& finding : findings) {
          ASSERT_TRUE(IsPrintableUtf8(finding)) << reader.name;
        }
      }
    }
    // The mutations must actually reach the error paths.
    EXPECT_GT(errors, 500) << reader.name;
  }
}

TEST(ReaderMessagesTest, RandomBytesGiveShowableMessages) {
  std::mt19937 random(42);
  for (const Reader& reader : Readers()) {
    for (int trial = 0; trial < 2000; ++trial) {
      std::string input(random() % 64, '\0');
      for (char& c : input) c = static_cast<char>(random() % 256);
      std::vector<std::string> findings;
      const absl::Status status = reader.read(input, findings);
      ASSERT_THAT(status, IsShowableMessage()) << reader.name << ": " << status;
    }
  }
}

}  // namespace
}  // namespace mm::model
