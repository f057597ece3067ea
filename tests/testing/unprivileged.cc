#include "tests/testing/unprivileged.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace mm::testing {
namespace {

// The capabilities that let a process ignore file modes.
constexpr int kPermissionCapabilities[] = {CAP_DAC_OVERRIDE,
                                           CAP_DAC_READ_SEARCH, CAP_FOWNER};

bool ReadCapabilities(__user_cap_data_struct (&data)[2]) {
  __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  return ::syscall(SYS_capget, &header, data) == 0;
}

bool HasPermissionCapability() {
  __user_cap_data_struct data[2] = {};
  if (!ReadCapabilities(data)) return ::geteuid() == 0;
  for (int capability : kPermissionCapabilities) {
    if (data[capability / 32].effective & (1u << (capability % 32))) {
      return true;
    }
  }
  return false;
}

absl::Status DropAllCapabilities() {
  // Ambient capabilities would survive into anything the operation runs;
  // old kernels without them answer EINVAL, which is fine.
  ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct none[2] = {};
  if (::syscall(SYS_capset, &header, none) != 0) {
    return absl::InternalError(absl::StrCat("capset: ", std::strerror(errno)));
  }
  if (HasPermissionCapability()) {
    return absl::InternalError("capabilities are still effective after capset");
  }
  return absl::OkStatus();
}

void PutUint64(std::string& out, uint64_t value) {
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<char>(value >> (8 * i)));
}

uint64_t GetUint64(const std::string& in, size_t at) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) {
    value = (value << 8) | static_cast<unsigned char>(in[at + i]);
  }
  return value;
}

// The child's report: status code, then the message (or the text when OK).
std::string Encode(const absl::StatusOr<std::string>& result) {
  std::string out;
  PutUint64(out, static_cast<uint64_t>(result.status().code()));
  const std::string payload =
      result.ok() ? *result : std::string(result.status().message());
  PutUint64(out, payload.size());
  return out + payload;
}

absl::StatusOr<std::string> Decode(const std::string& report) {
  if (report.size() < 16 || GetUint64(report, 8) != report.size() - 16) {
    return absl::InternalError(
        absl::StrCat("the unprivileged child sent a malformed report of ",
                     report.size(), " bytes"));
  }
  const auto code = static_cast<absl::StatusCode>(GetUint64(report, 0));
  std::string payload = report.substr(16);
  if (code == absl::StatusCode::kOk) return payload;
  return absl::Status(code, payload);
}

[[noreturn]] void RunChild(
    int fd, absl::FunctionRef<absl::StatusOr<std::string>()> operation) {
  absl::StatusOr<std::string> result = [&]() -> absl::StatusOr<std::string> {
    if (absl::Status dropped = DropAllCapabilities(); !dropped.ok()) {
      return dropped;
    }
    try {
      return operation();
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("exception: ", e.what()));
    }
  }();
  const std::string report = Encode(result);
  size_t done = 0;
  while (done < report.size()) {
    const ssize_t wrote =
        ::write(fd, report.data() + done, report.size() - done);
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote <= 0) ::_exit(2);
    done += static_cast<size_t>(wrote);
  }
  ::_exit(0);
}

absl::StatusOr<std::string> RunInChild(
    absl::FunctionRef<absl::StatusOr<std::string>()> operation,
    absl::Duration deadline) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  // Buffered output would otherwise be written twice, by both processes.
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int error = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(error)));
  }
  if (pid == 0) {
    ::close(fds[0]);
    RunChild(fds[1], operation);
  }
  ::close(fds[1]);

  std::string report;
  const absl::Time give_up = absl::Now() + deadline;
  bool timed_out = false;
  while (true) {
    const int64_t left_ms = absl::ToInt64Milliseconds(give_up - absl::Now());
    if (left_ms <= 0) {
      timed_out = true;
      break;
    }
    pollfd readable = {.fd = fds[0], .events = POLLIN, .revents = 0};
    const int ready = ::poll(&readable, 1, static_cast<int>(left_ms));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;  // the deadline is checked above
    char buffer[4096];
    const ssize_t got = ::read(fds[0], buffer, sizeof(buffer));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;  // end of file: the child is done
    report.append(buffer, static_cast<size_t>(got));
  }
  ::close(fds[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int wait_status = 0;
  while (::waitpid(pid, &wait_status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    return absl::DeadlineExceededError(
        absl::StrCat("the unprivileged operation did not finish within ",
                     absl::FormatDuration(deadline)));
  }
  if (WIFSIGNALED(wait_status)) {
    return absl::InternalError(absl::StrCat(
        "the unprivileged child died of signal ", WTERMSIG(wait_status)));
  }
  if (!WIFEXITED(wait_status) || WEXITSTATUS(wait_status) != 0) {
    return absl::InternalError(
        absl::StrCat("the unprivileged child exited with status ",
                     WEXITSTATUS(wait_status)));
  }
  return Decode(report);
}

}  // namespace

bool IsPrivileged() { return HasPermissionCapability(); }

absl::StatusOr<std::string> RunUnprivilegedForText(
    absl::FunctionRef<absl::StatusOr<std::string>()> operation,
    absl::Duration deadline) {
  if (!IsPrivileged()) return operation();
  return RunInChild(operation, deadline);
}

absl::Status RunUnprivileged(absl::FunctionRef<absl::Status()> operation,
                             absl::Duration deadline) {
  return RunUnprivilegedForText(
             [&]() -> absl::StatusOr<std::string> {
               absl::Status status = operation();
               if (!status.ok()) return status;
               return std::string();
             },
             deadline)
      .status();
}

}  // namespace mm::testing
