#include "services/installer/install_job.h"

#include <set>
#include <utility>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace mm::installer {
namespace {

using ::mm::testing::StatusIs;
using ::testing::HasSubstr;

constexpr InstallState kAll[] = {
    InstallState::kWaiting,       InstallState::kDownloading,
    InstallState::kDownloadsDone, InstallState::kRunning,
    InstallState::kPaused,        InstallState::kCompleted,
    InstallState::kError,         InstallState::kCancelled,
};

TEST(InstallStateTest, EveryPairFollowsTheProtoTable) {
  using S = InstallState;
  const std::set<std::pair<S, S>> allowed = {
      {S::kWaiting, S::kDownloading},   {S::kWaiting, S::kRunning},
      {S::kWaiting, S::kPaused},        {S::kDownloading, S::kDownloadsDone},
      {S::kDownloading, S::kPaused},    {S::kPaused, S::kWaiting},
      {S::kDownloadsDone, S::kRunning}, {S::kRunning, S::kCompleted},
  };
  for (S from : kAll) {
    for (S to : kAll) {
      bool expected = allowed.count({from, to}) > 0;
      if (!IsTerminal(from) && (to == S::kError || to == S::kCancelled)) {
        expected = true;
      }
      EXPECT_EQ(CanTransition(from, to), expected)
          << StateName(from) << " -> " << StateName(to);
    }
  }
}

TEST(InstallStateTest, NamesAndWireValuesRoundTrip) {
  for (InstallState state : kAll) {
    EXPECT_EQ(StateFromName(StateName(state)), state);
    EXPECT_EQ(StateFromProto(StateToProto(state)), state);
  }
  EXPECT_EQ(StateFromName("bogus"), std::nullopt);
  EXPECT_EQ(StateFromProto(modelmanager::v1::INSTALL_STATE_UNSPECIFIED),
            std::nullopt);
}

TEST(InstallJobTest, TransitionToRefusesAnInvalidMoveAndStampsTheEnd) {
  InstallJob job;
  job.id = "j1";
  const absl::Time now = absl::FromUnixSeconds(1000);
  EXPECT_THAT(job.TransitionTo(InstallState::kCompleted, now),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("is waiting and cannot become completed")));
  ASSERT_OK(job.TransitionTo(InstallState::kRunning, now));
  ASSERT_OK(job.TransitionTo(InstallState::kCompleted, now));
  EXPECT_EQ(job.ended, now);
  EXPECT_THAT(job.TransitionTo(InstallState::kCancelled, now),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(InstallJobTest, ProgressEventsCoalesce) {
  InstallJob job;
  const absl::Time t = absl::FromUnixSeconds(5);
  job.AddEvent("download_started", t);
  job.AddEvent("download_progress", t);
  job.AddEvent("download_progress", t);
  job.AddEvent("download_progress", t);
  job.AddEvent("downloads_complete", t);
  ASSERT_EQ(job.events.size(), 3u);
  EXPECT_EQ(job.events[1].type, "download_progress");
  EXPECT_EQ(job.events[1].count, 3);
  EXPECT_EQ(job.events[2].type, "downloads_complete");
}

TEST(InstallJobTest, TheBodyRoundTrips) {
  InstallJob job;
  job.id = "j2";
  job.source = "owner/name:fp16:vae";
  job.source_type = "hf_repo_id";
  job.config_in = {{"name", "my vae"}};
  job.has_token = true;
  job.key = "0123456789abcdef0123456789abcdef";
  job.temp_dir = "/models/tmpinstall_j2";
  job.step = InstallStep::kPlace;
  job.plan.repo_id = "owner/name";
  job.plan.commit = "abc";
  job.plan.files.push_back({"name_vae/config.json", "http://hub/x", 10, ""});
  job.plan.files.push_back({"name_vae/diffusion_pytorch_model.fp16.safetensors",
                            "http://hub/y", 2048, std::string(64, 'a')});
  job.download_id = "d1";
  job.download_revision = 7;
  job.config = {{"type", "vae"}, {"hash", "blake3:00"}};
  job.parts.push_back({"name_vae/config.json", 10, 10, true});
  job.AddEvent("download_started", absl::FromUnixSeconds(3));
  job.error = InstallError{absl::StatusCode::kAlreadyExists,
                           "DuplicateModelException", "already k"};
  modelmanager::v1::Model model;
  model.set_key(job.key);
  model.set_name("my vae");
  job.config_out = model;
  job.created = absl::FromUnixMillis(1234);

  InstallJob back;
  back.id = job.id;
  ASSERT_OK(JobBodyFromJson(JobBodyJson(job), back));
  EXPECT_EQ(JobBodyJson(back), JobBodyJson(job));
  EXPECT_EQ(back.step, InstallStep::kPlace);
  EXPECT_EQ(back.plan.files[1].sha256, std::string(64, 'a'));
  ASSERT_TRUE(back.error.has_value());
  EXPECT_EQ(back.error->code, absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(back.config_out.has_value());
  EXPECT_EQ(back.config_out->name(), "my vae");
}

TEST(InstallJobTest, AMalformedBodyIsDataLoss) {
  InstallJob job;
  job.id = "j3";
  EXPECT_THAT(JobBodyFromJson(nlohmann::json{{"source", 5}}, job),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("j3")));
  nlohmann::json body = JobBodyJson(InstallJob{});
  body["step"] = "teleport";
  EXPECT_THAT(JobBodyFromJson(body, job),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("teleport")));
}

}  // namespace
}  // namespace mm::installer
