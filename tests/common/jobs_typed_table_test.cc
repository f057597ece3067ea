// TypedJobTable (common/jobs/typed_job_table.h): a job kind's own struct
// over the shared table, as the downloader and the installer use it. The
// "widget" job here has its own states and body.
#include "common/jobs/typed_job_table.h"

#include <memory>
#include <optional>
#include <string>
#include <thread>
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
  int64_t ended_ms = 0;
  std::string color;  // the body
  int64_t started_ms = 0;
};

struct WidgetCodec {
  using Job = Widget;
  using State = WidgetState;
  static std::string StateName(WidgetState state) {
    switch (state) {
      case WidgetState::kReady:
        return "ready";
      case WidgetState::kWorking:
        return "working";
      case WidgetState::kFinished:
        break;
    }
    return "finished";
  }
  static JobRow ToRow(const Widget& w) {
    return JobRow{w.id,
                  w.sequence,
                  w.request_id,
                  StateName(w.state),
                  w.priority,
                  w.revision,
                  w.lease_owner,
                  w.lease_expires_ms,
                  w.token_owner,
                  w.ended_ms,
                  {{"color", w.color}, {"started", w.started_ms}}};
  }
  static absl::StatusOr<Widget> FromRow(const JobRow& row) {
    Widget w{row.id,
             row.sequence,
             row.request_id,
             WidgetState::kReady,
             row.priority,
             row.revision,
             row.lease_owner,
             row.lease_expires_ms,
             row.token_owner,
             row.ended_ms,
             row.body.value("color", ""),
             row.body.value("started", int64_t{0})};
    if (row.state == "working") w.state = WidgetState::kWorking;
    if (row.state == "finished") w.state = WidgetState::kFinished;
    return w;
  }
  static jobs::Look Look(const Widget& w) {
    bool done = w.state == WidgetState::kFinished;
    return jobs::Look{w.revision, StateName(w.state), done, done};
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
      Widget saved, table_->UpdateLeased(red.id, [&](Widget& w) {
        w.color = "orange";
        w.lease_expires_ms = table_->table().LeaseExpiryMs(absl::Seconds(10));
        return true;
      }));
  EXPECT_EQ(saved.color, "orange");
  EXPECT_EQ(saved.lease_owner, "r1");
  EXPECT_EQ(saved.lease_expires_ms,
            absl::ToUnixMillis(clock_.Now() + absl::Seconds(10)));
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
