// Following jobs: lines per state change, redrawn bars, concurrency and
// reconnection, against the fake downloader in-process.
#include "cli/download_watch.h"

#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/fake_downloader_service.h"
#include "tests/testing/status_matchers.h"

namespace mm::cli {
namespace {

namespace v1 = modelmanager::v1;
using ::mm::testing::FakeDownloaderService;
using ::mm::testing::FakeWatchSession;
using ::mm::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

v1::DownloadJob Job(const std::string& id, v1::DownloadState state,
                    int64_t revision = 1, int64_t bytes = 0,
                    int64_t total = 0) {
  return ::mm::testing::FakeDownloadJob(id, state, revision, bytes, total);
}

// Running at 1 MiB/s.
v1::DownloadJob Running(const std::string& id, int64_t revision, int64_t bytes,
                        int64_t total) {
  v1::DownloadJob job =
      Job(id, v1::DOWNLOAD_STATE_RUNNING, revision, bytes, total);
  job.set_bytes_per_second(1024 * 1024);
  return job;
}

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

class DownloadWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.RegisterService(&fake_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::Downloader::NewStub(
        server_->InProcessChannel(grpc::ChannelArguments()));
  }

  void TearDown() override { server_->Shutdown(); }

  absl::Status Watch(const std::vector<std::string>& ids, bool json = false,
                     bool terminal = false) {
    out_.str("");
    CommandIo io;
    io.out = &out_;
    io.json = json;
    io.terminal = terminal;
    io.reconnect_attempts = 3;
    io.reconnect_backoff = absl::Milliseconds(1);
    return WatchJobs(ids, *stub_, io);
  }

  FakeDownloaderService fake_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Downloader::Stub> stub_;
  std::ostringstream out_;
};

TEST_F(DownloadWatchTest, WatchPrintsOneLinePerStateChange) {
  FakeWatchSession session;
  session.messages = {Job("w", v1::DOWNLOAD_STATE_QUEUED, 1)};
  for (int i = 1; i <= 5; ++i) {
    session.messages.push_back(Running("w", 1 + i, i * 10, 100));
  }
  v1::DownloadJob paused = Job("w", v1::DOWNLOAD_STATE_PAUSED, 7, 50, 100);
  paused.set_status_message("paused by a person");
  session.messages.push_back(paused);
  session.messages.push_back(Running("w", 8, 60, 100));
  session.messages.push_back(
      Job("w", v1::DOWNLOAD_STATE_SUCCEEDED, 9, 100, 100));
  fake_.ScriptWatch("w", session);
  EXPECT_OK(Watch({"w"}));
  EXPECT_THAT(
      Lines(out_.str()),
      ElementsAre("w queued", "w running", "w paused paused by a person",
                  "w running", "w succeeded /models/w.safetensors"));
  EXPECT_THAT(out_.str(), Not(HasSubstr("\x1b[")));
}

TEST_F(DownloadWatchTest, WatchJsonPrintsOneObjectPerStateChange) {
  fake_.ScriptWatch("w", {{Running("w", 1, 1, 10), Running("w", 2, 2, 10),
                           Job("w", v1::DOWNLOAD_STATE_SUCCEEDED, 3)}});
  EXPECT_OK(Watch({"w"}, /*json=*/true));
  std::vector<std::string> lines = Lines(out_.str());
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(nlohmann::json::parse(lines[0])["state"], "DOWNLOAD_STATE_RUNNING");
  EXPECT_EQ(nlohmann::json::parse(lines[1])["done"], true);
}

TEST_F(DownloadWatchTest, WatchOnATerminalRedrawsABar) {
  fake_.ScriptWatch("w", {{Running("w", 1, 25, 100), Running("w", 2, 50, 100),
                           Job("w", v1::DOWNLOAD_STATE_SUCCEEDED, 3)}});
  EXPECT_OK(Watch({"w"}, /*json=*/false,
                  /*terminal=*/true));
  std::string text = out_.str();
  EXPECT_THAT(text, HasSubstr("\r\x1b[2Kw running [######------------------] "
                              "25% 25 B/100 B 1.0 MiB/s ETA 0s\n"));
  // Each redraw moves back up over the one-line block.
  EXPECT_THAT(text, HasSubstr("\x1b[1A\r\x1b[2Kw running [############"));
  EXPECT_THAT(text, HasSubstr("50%"));
  EXPECT_THAT(text, HasSubstr("\x1b[1A\r\x1b[2Kw succeeded "
                              "/models/w.safetensors\n"));
}

TEST_F(DownloadWatchTest, WatchesSeveralJobsConcurrently) {
  fake_.ScriptWatch("a", {{Running("a", 1, 1, 10),
                           Job("a", v1::DOWNLOAD_STATE_SUCCEEDED, 2)}});
  fake_.ScriptWatch(
      "b", {{Running("b", 1, 1, 10), Job("b", v1::DOWNLOAD_STATE_FAILED, 2)}});
  // Each stream holds back until the other has begun: one after the other
  // would stall the first for the whole wait.
  fake_.WatchWaitsFor("a", "b");
  fake_.WatchWaitsFor("b", "a");
  EXPECT_THAT(Watch({"a", "b"}), StatusIs(absl::StatusCode::kNotFound,
                                          HasSubstr("download b failed")));
  EXPECT_EQ(fake_.WatchesOverlapped(), 2);
  std::vector<std::string> lines = Lines(out_.str());
  EXPECT_THAT(lines,
              ::testing::UnorderedElementsAre(
                  "a running", "a succeeded /models/a.safetensors", "b running",
                  "b failed HTTPError(NOT FOUND): 404 from "
                  "example.com"));
}

TEST_F(DownloadWatchTest, WatchOnATerminalDrawsOneLinePerJob) {
  fake_.ScriptWatch("a", {{Running("a", 1, 1, 10),
                           Job("a", v1::DOWNLOAD_STATE_SUCCEEDED, 2)}});
  fake_.ScriptWatch("b", {{Running("b", 1, 1, 10),
                           Job("b", v1::DOWNLOAD_STATE_SUCCEEDED, 2)}});
  EXPECT_OK(Watch({"a", "b"}, /*json=*/false,
                  /*terminal=*/true));
  std::string text = out_.str();
  EXPECT_THAT(text, HasSubstr("\x1b[2A"));
  // The last redraw shows both final lines, in the order given.
  EXPECT_TRUE(absl::EndsWith(text,
                             "\x1b[2A\r\x1b[2Ka succeeded /models/a.safetensors"
                             "\n\r\x1b[2Kb succeeded /models/b.safetensors\n"))
      << text;
}

TEST_F(DownloadWatchTest, WatchReconnectsFromTheLastRevision) {
  fake_.ScriptWatch(
      "r", {{Job("r", v1::DOWNLOAD_STATE_QUEUED, 1), Running("r", 2, 10, 100)},
            grpc::Status(grpc::StatusCode::UNAVAILABLE, "server restarting")});
  // A stream that ends cleanly before `done` is just as broken.
  fake_.ScriptWatch("r", {{Running("r", 3, 50, 100)}, grpc::Status::OK});
  fake_.ScriptWatch("r", {{Running("r", 4, 90, 100),
                           Job("r", v1::DOWNLOAD_STATE_SUCCEEDED, 5)}});
  EXPECT_OK(Watch({"r"}));
  std::vector<v1::WatchDownloadRequest> requests = fake_.watch_requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(requests[0].since_revision(), 0);
  EXPECT_EQ(requests[1].since_revision(), 2);
  EXPECT_EQ(requests[2].since_revision(), 3);
  EXPECT_THAT(Lines(out_.str()),
              ElementsAre("r queued", "r running",
                          "r succeeded /models/r.safetensors"));
}

TEST_F(DownloadWatchTest, WatchGivesUpAfterTheAttempts) {
  for (int i = 0; i < 4; ++i) {
    fake_.ScriptWatch(
        "r", {{}, grpc::Status(grpc::StatusCode::UNAVAILABLE, "down")});
  }
  EXPECT_THAT(Watch({"r"}),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("lost the watch of download r 4 times in a "
                                 "row (last: UNAVAILABLE: down)")));
  EXPECT_EQ(fake_.watch_requests().size(), 4u);
}

TEST_F(DownloadWatchTest, WatchOtherErrorsAreNotRetried) {
  EXPECT_THAT(Watch({"ghost"}),
              StatusIs(absl::StatusCode::kNotFound, "no download 'ghost'"));
  EXPECT_EQ(fake_.watch_requests().size(), 1u);
}

}  // namespace
}  // namespace mm::cli
