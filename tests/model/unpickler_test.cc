#include "model/unpickler.h"

#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/model_fixtures.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::model {
namespace {

using ::mm::testing::PickleWriter;
using ::mm::testing::StatusIs;
using ::testing::Contains;
using ::testing::HasSubstr;
using Kind = PickleValue::Kind;
using namespace std::string_literals;

TEST(UnpicklerTest, ReadsPlainData) {
  PickleWriter p;
  p.Proto(2).EmptyDict().Mark();
  p.Unicode("step").Int(220000);
  p.Unicode("lr").Float(0.5);
  p.Unicode("ok").Bool(true);
  p.Unicode("none").None();
  p.Unicode("big").Int(int64_t{1} << 40);
  p.Unicode("list").EmptyList().Int(-3).Append();
  p.SetItems().Stop();
  ASSERT_OK_AND_ASSIGN(PickleData data, Unpickle(p.bytes()));
  const PickleValue& root = data.at(data.root);
  ASSERT_EQ(root.kind, Kind::kDict);
  ASSERT_EQ(root.items.size(), 12u);
  EXPECT_EQ(data.at(root.items[0]).text, "step");
  EXPECT_EQ(data.at(root.items[1]).int_value, 220000);
  EXPECT_EQ(data.at(root.items[3]).float_value, 0.5);
  EXPECT_TRUE(data.at(root.items[5]).bool_value);
  EXPECT_EQ(data.at(root.items[7]).kind, Kind::kNone);
  EXPECT_EQ(data.at(root.items[9]).int_value, int64_t{1} << 40);
  const PickleValue& list = data.at(root.items[11]);
  ASSERT_EQ(list.kind, Kind::kList);
  EXPECT_EQ(data.at(list.items[0]).int_value, -3);
  EXPECT_TRUE(data.findings.empty());
}

TEST(UnpicklerTest, OrderedDictBecomesADict) {
  PickleWriter p;
  p.Proto(2).Global("collections", "OrderedDict").EmptyTuple().Reduce();
  p.Unicode("k").Int(1).SetItem().Stop();
  ASSERT_OK_AND_ASSIGN(PickleData data, Unpickle(p.bytes()));
  const PickleValue& root = data.at(data.root);
  ASSERT_EQ(root.kind, Kind::kDict);
  EXPECT_EQ(root.items.size(), 2u);
  EXPECT_TRUE(data.findings.empty());
}

TEST(UnpicklerTest, MemoAndProtocolFourOpcodes) {
  // \x95 FRAME, \x8c SHORT_BINUNICODE, \x94 MEMOIZE, \x93 STACK_GLOBAL,
  // h BINGET.
  std::string bytes = "\x80\x04\x95\x20\0\0\0\0\0\0\0"s;
  bytes +=
      "\x8c\x0b"
      "collections\x94";
  bytes +=
      "\x8c\x0b"
      "OrderedDict\x94";
  bytes += "\x93\x94)R\x94";
  bytes +=
      "\x8c\x01"
      "a\x94h\x03s.";
  ASSERT_OK_AND_ASSIGN(PickleData data, Unpickle(bytes));
  const PickleValue& root = data.at(data.root);
  ASSERT_EQ(root.kind, Kind::kDict);
  ASSERT_EQ(root.items.size(), 2u);
  EXPECT_EQ(data.at(root.items[0]).text, "a");
  // The value is the memoised dict itself: a cycle, which costs nothing.
  EXPECT_EQ(root.items[1], data.root);
}

TEST(UnpicklerTest, OsSystemIsNeverCalled) {
  mm::testing::TempDir dir;
  const std::filesystem::path pwned = dir.path() / "pwned";
  PickleWriter p;
  p.Proto(2).Global("os", "system");
  p.Mark().Unicode("touch " + pwned.string()).Tuple().Reduce().Stop();
  ASSERT_OK_AND_ASSIGN(PickleData data, Unpickle(p.bytes()));
  EXPECT_FALSE(std::filesystem::exists(pwned));
  EXPECT_THAT(data.findings, Contains(HasSubstr("refused global os.system")));
  const PickleValue& root = data.at(data.root);
  ASSERT_EQ(root.kind, Kind::kObject);
  EXPECT_EQ(GlobalName(data.at(root.callable)), "os.system");
}

TEST(UnpicklerTest, EvalAndSubprocessAreFindings) {
  PickleWriter p;
  p.Proto(2).Mark();
  p.Global("builtins", "eval").Mark().Unicode("1+1").Tuple().Reduce();
  p.Global("subprocess", "Popen").Mark().Unicode("ls").Tuple().Reduce();
  p.Global("argparse", "Namespace").EmptyTuple().Reduce();
  p.Raw("l").Stop();
  ASSERT_OK_AND_ASSIGN(PickleData data, Unpickle(p.bytes()));
  EXPECT_THAT(data.findings,
              Contains(HasSubstr("refused global builtins.eval")));
  EXPECT_THAT(data.findings,
              Contains(HasSubstr("refused global subprocess.Popen")));
  EXPECT_THAT(data.findings,
              Contains(HasSubstr("unknown global argparse.Namespace kept as "
                                 "an inert placeholder")));
}

TEST(UnpicklerTest, BuildOnPlaceholderKeepsState) {
  PickleWriter p;
  p.Proto(2).Global("pytorch_lightning.callbacks", "ModelCheckpoint");
  p.EmptyTuple().Raw("\x81");  // NEWOBJ
  p.EmptyDict().Unicode("monitor").Unicode("val_loss").SetItem().Build();
  p.Stop();
  ASSERT_OK_AND_ASSIGN(PickleData data, Unpickle(p.bytes()));
  const PickleValue& root = data.at(data.root);
  ASSERT_EQ(root.kind, Kind::kObject);
  ASSERT_TRUE(root.has_state);
  EXPECT_EQ(data.at(root.state).kind, Kind::kDict);
}

TEST(UnpicklerTest, TruncatedPickle) {
  EXPECT_THAT(Unpickle("\x80\x02}q\x00(X\x05\x00\x00\x00"s + "ab"),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("needs 5 more bytes but only 2 remain")));
  EXPECT_THAT(Unpickle("\x80\x02}"),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("without a STOP opcode")));
}

TEST(UnpicklerTest, HugeLengthsFailWithoutAllocating) {
  std::string bytes = "\x80\x04\x8d";
  bytes += std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8);
  EXPECT_THAT(Unpickle(bytes),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("needs 9223372036854775807 more bytes")));
}

TEST(UnpicklerTest, StackUnderflowAndBadMemo) {
  EXPECT_THAT(Unpickle("\x80\x02R."), StatusIs(absl::StatusCode::kDataLoss,
                                               HasSubstr("stack underflow")));
  EXPECT_THAT(Unpickle("\x80\x02h\x07."),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("memo key 7 was never stored")));
  EXPECT_THAT(Unpickle("\x80\x02\xff."),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("unknown pickle opcode 0xff at byte 2")));
  EXPECT_THAT(Unpickle("\x80\x02K\x01K\x02"
                       "a."),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("appending to a value that is not a list")));
}

TEST(UnpicklerTest, DeepNestingIsRefused) {
  // [[[[...]]]] built bottom-up: 100,000 lists appended into each other.
  std::string bytes = "\x80\x02";
  for (int i = 0; i < 100000; ++i) bytes += "]";
  for (int i = 0; i < 99999; ++i) bytes += "a";
  bytes += ".";
  EXPECT_THAT(Unpickle(bytes),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("nests containers deeper than 256 levels")));
  // MARKs nested 100,000 deep.
  EXPECT_THAT(Unpickle("\x80\x02" + std::string(100000, '(') + "."),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("nests MARKs deeper than 256 levels")));
}

TEST(UnpicklerTest, ObjectAndMemoLimits) {
  UnpicklerOptions options;
  options.max_objects = 100;
  EXPECT_THAT(Unpickle("\x80\x02" + std::string(1000, 'N') + ".", options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("more than 100 objects")));
  options = UnpicklerOptions();
  options.max_memo_entries = 10;
  std::string bytes = "\x80\x02N";
  for (int i = 0; i < 20; ++i) bytes += std::string("q") + static_cast<char>(i);
  EXPECT_THAT(Unpickle(bytes + ".", options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("memo grows past 10 entries")));
}

TEST(UnpicklerTest, RefusesExtensionsAndBuffers) {
  EXPECT_THAT(Unpickle("\x80\x02\x82\x01."),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("extension registry")));
  EXPECT_THAT(Unpickle("\x80\x05\x97."),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("out-of-band buffers")));
  EXPECT_THAT(Unpickle("\x80\x06."),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("pickle protocol 6 is not supported")));
}

TEST(UnpicklerTest, InvalidUtf8String) {
  EXPECT_THAT(
      Unpickle(std::string("\x80\x02X\x02\x00\x00\x00\xff\xfe.", 10)),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("not valid UTF-8")));
}

TEST(UnpicklerTest, TextProtocolZero) {
  ASSERT_OK_AND_ASSIGN(PickleData data,
                       Unpickle("(dp0\nVkey\np1\nI42\nsS'x'\nL7L\ns."));
  const PickleValue& root = data.at(data.root);
  ASSERT_EQ(root.kind, Kind::kDict);
  ASSERT_EQ(root.items.size(), 4u);
  EXPECT_EQ(data.at(root.items[1]).int_value, 42);
  EXPECT_EQ(data.at(root.items[2]).text, "x");
  EXPECT_EQ(data.at(root.items[3]).int_value, 7);
}

TEST(UnpicklerTest, CodecsEncodeBecomesBytes) {
  PickleWriter p;
  p.Proto(2).Global("_codecs", "encode");
  p.Mark().Unicode("a\xc3\xbf").Unicode("latin1").Tuple().Reduce().Stop();
  ASSERT_OK_AND_ASSIGN(PickleData data, Unpickle(p.bytes()));
  const PickleValue& root = data.at(data.root);
  ASSERT_EQ(root.kind, Kind::kBytes);
  EXPECT_EQ(root.text, "a\xff");
}

}  // namespace
}  // namespace mm::model
