// A small leveled logger writing one line per message to stderr:
//
//   2026-11-30T01:02:03.456Z I records: opened sqlite:/var/mm/records.db
//
// Usage: `MM_LOG(INFO) << "opened " << url;`. Thread-safe: each message is
// formatted into a buffer and written with a single write(2). The minimum
// level is process-wide and set once at start-up (SetMinLogLevel).
#ifndef MM_COMMON_LOGGING_H_
#define MM_COMMON_LOGGING_H_

#include <sstream>
#include <string_view>

namespace mm {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Sets the least severe level that is printed (default kInfo).
void SetMinLogLevel(LogLevel level);
LogLevel MinLogLevel();
// Parses "debug", "info", "warning" or "error"; false for anything else.
bool ParseLogLevel(std::string_view text, LogLevel* level);
// Sets the component name printed after the level ("records").
void SetLogComponent(std::string_view name);

namespace logging_internal {

class LogMessage {
 public:
  explicit LogMessage(LogLevel level) : level_(level) {}
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  ~LogMessage();
  std::ostringstream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};

}  // namespace logging_internal
}  // namespace mm

#define MM_LOG_LEVEL_DEBUG ::mm::LogLevel::kDebug
#define MM_LOG_LEVEL_INFO ::mm::LogLevel::kInfo
#define MM_LOG_LEVEL_WARNING ::mm::LogLevel::kWarning
#define MM_LOG_LEVEL_ERROR ::mm::LogLevel::kError

#define MM_LOG(level)                               \
  if (MM_LOG_LEVEL_##level < ::mm::MinLogLevel()) { \
  } else                                            \
    ::mm::logging_internal::LogMessage(MM_LOG_LEVEL_##level).stream()

#endif  // MM_COMMON_LOGGING_H_
