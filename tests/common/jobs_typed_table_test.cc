// TypedJobTable (common/jobs/typed_job_table.h): a job kind's own struct
// over the shared table, as the downloader and the installer use it. The
// "widget" job here has its own states and body.
#include "common/jobs/typed_job_table.h"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::jobs {
namespace {

using ::mm::testing::FakeClock;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::testing::ElementsAre;

enum class WidgetState { kReady, kWorking, kFinished };

struct Widget {
  std::string id;
  int64_t sequence = 0;
  std::string request_id;
  WidgetState state = WidgetState::kReady;
  int priority = 10;
  int64_t revision = 0;
  std::string lease_owner;
  int64_t lease_expires_ms = 0;
  std::string token_owner;
  absl::Time ended = absl::InfinitePast();
  std::string color;  // the body
  int64_t started_ms = 0;
};

constexpr std::pair<WidgetState, const char*> kWidgetStates[] = {
    {WidgetState::kReady, "ready"},
    {WidgetState::kWorking, "working"},
    {WidgetState::kFinished, "finished"}};

struct WidgetCodec {
  using Job = Widget;
  using State = WidgetState;
  static std::string StateName(WidgetState state) {
    for (const auto& [known, name] : kWidgetStates) {
      if (known == state) return name;
    }
    return "unknown";
  }
  static std::optional<WidgetState> StateFromName(std::string_view name) {
    for (const auto& [state, known] : kWidgetStates) {
      if (known == name) return state;
    }
    return std::nullopt;
  }
  static bool IsTerminal(WidgetState state) {
    return state == WidgetState::kFinished;
  }
  static bool IsSettled(WidgetState) { return false; }
  static nlohmann::json BodyJson(const Widget& w) {
    return {{"color", w.color}, {"started", w.started_ms}};
  }
  static absl::Status BodyFromJson(const nlohmann::json& body, Widget& w) {
    if (!body.contains("color")) {
      return absl::DataLossError(absl::StrCat("widget ", w.id, ": no color"));
    }
    w.color = body.value("color", "");
    w.started_ms = body.value("started", int64_t{0});
    return absl::OkStatus();
  }
};

class TypedJobTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    JobTableSpec spec;
    spec.prefix = "widget";
    spec.component = "widgets";
    spec.channel = "mm_widgets";
    spec.noun = "widget job";
    spec.claimable_states = {"ready"};
    spec.claimed_state = "working";
    spec.terminal_states = {"finished"};
    ASSERT_OK_AND_ASSIGN(
        std::unique_ptr<JobTable> table,
        JobTable::Open("sqlite:" + (dir_.path() / "w.db").string(), "r1", spec,
                       &clock_));
    table_ = std::make_unique<TypedJobTable<WidgetCodec>>(std::move(table));
  }

  Widget MustCreate(std::string color) {
    Widget w;
    w.id = absl::StrCat("w-", color);
    w.color = std::move(color);
    absl::StatusOr<Widget> created = table_->Create(w);
    EXPECT_OK(created.status());
    return created.value_or(Widget{});
  }

  // Writes the stored row as another writer would (a damaged database, a
  // replica that took the job over), past the typing.
  void WriteRaw(const std::string& id,
                const std::function<void(JobRow&)>& edit) {
    ASSERT_OK(table_->table()
                  .Update(id,
                          [&](JobRow& row) {
                            edit(row);
                            return absl::OkStatus();
                          })
                  .status());
  }

  FakeClock clock_;
  TempDir dir_;
  std::unique_ptr<TypedJobTable<WidgetCodec>> table_;
};

TEST_F(TypedJobTableTest, ReadsAndWritesTheKindsOwnStruct) {
  Widget red = MustCreate("red");
  EXPECT_EQ(red.revision, 1);
  ASSERT_OK_AND_ASSIGN(Widget got, table_->Get(red.id));
  EXPECT_EQ(got.color, "red");
  ASSERT_OK_AND_ASSIGN(Widget blue, table_->Update(red.id, [](Widget& w) {
    w.color = "blue";
    return absl::OkStatus();
  }));
  EXPECT_EQ(blue.color, "blue");
  EXPECT_EQ(blue.revision, 2);
  MustCreate("green");
  ASSERT_OK_AND_ASSIGN(TypedJobPage<Widget> page,
                       table_->ListPage({WidgetState::kReady}, 1, ""));
  ASSERT_EQ(page.jobs.size(), 1u);
  EXPECT_EQ(page.jobs[0].color, "blue");
  ASSERT_OK_AND_ASSIGN(
      page, table_->ListPage({WidgetState::kReady}, 1, page.next_page_token));
  EXPECT_EQ(page.jobs[0].color, "green");
  EXPECT_THAT(table_->Get("nope"),
              StatusIs(absl::StatusCode::kNotFound, "no widget job nope"));
}

TEST_F(TypedJobTableTest, ClaimEditsTheJobAndLeasedWritesKeepTheLease) {
  Widget red = MustCreate("red");
  ASSERT_OK_AND_ASSIGN(std::optional<Widget> claimed,
                       table_->ClaimNext(absl::Seconds(10), absl::Seconds(30),
                                         [this](Widget& w) {
                                           w.started_ms =
                                               absl::ToUnixMillis(clock_.Now());
                                         }));
  ASSERT_TRUE(claimed.has_value());
  EXPECT_EQ(claimed->state, WidgetState::kWorking);
  EXPECT_EQ(claimed->lease_owner, "r1");
  EXPECT_EQ(claimed->started_ms, absl::ToUnixMillis(clock_.Now()));

  clock_.Advance(absl::Seconds(5));
  ASSERT_OK_AND_ASSIGN(
      Widget saved,
      table_->UpdateLeased(red.id, absl::Seconds(10), [&](Widget& w) {
        w.color = "orange";
        return true;
      }));
  EXPECT_EQ(saved.color, "orange");
  EXPECT_EQ(saved.lease_owner, "r1");
  EXPECT_EQ(saved.lease_expires_ms,
            absl::ToUnixMillis(clock_.Now() + absl::Seconds(10)));
}

TEST_F(TypedJobTableTest, EverySharedColumnSurvivesARoundTrip) {
  Widget w;
  w.id = "w-all";
  w.sequence = 7;
  w.request_id = "req";
  w.state = WidgetState::kFinished;
  w.priority = 3;
  w.revision = 9;
  w.lease_owner = "r2";
  w.lease_expires_ms = 1234;
  w.token_owner = "r3";
  w.ended = absl::FromUnixMillis(5678);
  w.color = "teal";
  w.started_ms = 42;
  ASSERT_OK_AND_ASSIGN(Widget back,
                       table_->FromRow(TypedJobTable<WidgetCodec>::ToRow(w)));
  EXPECT_EQ(back.id, w.id);
  EXPECT_EQ(back.sequence, w.sequence);
  EXPECT_EQ(back.request_id, w.request_id);
  EXPECT_EQ(back.state, w.state);
  EXPECT_EQ(back.priority, w.priority);
  EXPECT_EQ(back.revision, w.revision);
  EXPECT_EQ(back.lease_owner, w.lease_owner);
  EXPECT_EQ(back.lease_expires_ms, w.lease_expires_ms);
  EXPECT_EQ(back.token_owner, w.token_owner);
  EXPECT_EQ(back.ended, w.ended);
  EXPECT_EQ(back.color, w.color);
  EXPECT_EQ(back.started_ms, w.started_ms);
  // Not ended is 0 in the row.
  EXPECT_EQ(TypedJobTable<WidgetCodec>::ToRow(Widget{}).ended_ms, 0);
}

TEST_F(TypedJobTableTest, AnUnknownStateOrABadBodyIsDataLoss) {
  Widget red = MustCreate("red");
  WriteRaw(red.id, [](JobRow& row) { row.state = "melted"; });
  EXPECT_THAT(table_->Get(red.id),
              StatusIs(absl::StatusCode::kDataLoss,
                       "widget job w-red has an unknown state melted"));
  Widget blue = MustCreate("blue");
  WriteRaw(blue.id, [](JobRow& row) { row.body = nlohmann::json::object(); });
  EXPECT_THAT(table_->Get(blue.id),
              StatusIs(absl::StatusCode::kDataLoss, "widget w-blue: no color"));
}

TEST_F(TypedJobTableTest, ListAllReadsEveryBatch) {
  for (int i = 0; i < 6; ++i) MustCreate(absl::StrCat("c", i));
  ASSERT_OK(table_
                ->Update("w-c2",
                         [](Widget& w) {
                           w.state = WidgetState::kFinished;
                           return absl::OkStatus();
                         })
                .status());
  // Batches of 2: two full ones, then a short one ends the read.
  ASSERT_OK_AND_ASSIGN(std::vector<Widget> ready,
                       table_->ListAll({WidgetState::kReady}, 2));
  std::vector<std::string> colors;
  for (const Widget& w : ready) colors.push_back(w.color);
  EXPECT_THAT(colors, ElementsAre("c0", "c1", "c3", "c4", "c5"));
}

TEST_F(TypedJobTableTest, ALeasedWriteLandsOnlyWhileTheLeaseIsHeld) {
  Widget red = MustCreate("red");
  ASSERT_OK_AND_ASSIGN(std::optional<Widget> claimed,
                       table_->ClaimNext(absl::Seconds(10), absl::Seconds(30)));
  ASSERT_TRUE(claimed.has_value());
  // Another replica took the job over (its lease had run out).
  WriteRaw(red.id, [](JobRow& row) { row.lease_owner = "r9"; });
  bool asked = false;
  ASSERT_OK_AND_ASSIGN(
      Widget seen,
      table_->UpdateLeased(red.id, absl::Seconds(10), [&](Widget& w) {
        asked = true;
        w.color = "stale";
        return true;
      }));
  EXPECT_FALSE(asked);
  EXPECT_EQ(seen.lease_owner, "r9");
  EXPECT_EQ(seen.color, "red");
}

TEST_F(TypedJobTableTest, WaitAndWatchFollowTheTypedJob) {
  Widget red = MustCreate("red");
  Follower follower(&table_->table().changes(), "widget job");
  std::vector<std::string> colors;
  std::thread finisher([&] {
    ASSERT_OK(table_
                  ->Update(red.id,
                           [](Widget& w) {
                             w.color = "done";
                             w.state = WidgetState::kFinished;
                             return absl::OkStatus();
                           })
                  .status());
  });
  FollowOptions options;
  options.deadline = absl::Now() + absl::Seconds(30);
  ASSERT_OK_AND_ASSIGN(Widget finished,
                       table_->Wait(follower, red.id, options));
  finisher.join();
  EXPECT_EQ(finished.color, "done");
  ASSERT_OK(table_->Watch(follower, red.id, 0,
                          [&](const Widget& w) {
                            colors.push_back(w.color);
                            return true;
                          },
                          {}));
  EXPECT_THAT(colors, ElementsAre("done"));
}

}  // namespace
}  // namespace mm::jobs
