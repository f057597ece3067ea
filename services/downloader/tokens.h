// Where access tokens come from: per-job tokens given in a request (kept
// only in this process's memory, never in the database), else the first
// server-side rule whose URL regex matches, reading a file (a mounted
// Kubernetes Secret) or an environment variable at the time of use.
//
//   ASSIGN_OR_RETURN(TokenProvider tokens,
//       TokenProvider::Create({"^https://huggingface\\.co/=file:/run/hf"}));
//   std::optional<std::string> t = tokens.ForJob(job_id, url);
//
// Thread-safety: all methods may be called concurrently.
#ifndef MM_SERVICES_DOWNLOADER_TOKENS_H_
#define MM_SERVICES_DOWNLOADER_TOKENS_H_

#include <map>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/mutex.h"

namespace mm::downloader {

class TokenProvider {
 public:
  // Rules are "REGEX=env:VARIABLE" or "REGEX=file:PATH" (split at the last
  // "=env:" / "=file:"). INVALID_ARGUMENT for a malformed rule or regex.
  static absl::StatusOr<std::unique_ptr<TokenProvider>> Create(
      const std::vector<std::string>& rules);

  // Keeps `token` for the job; returns the token it replaced, if any (so a
  // caller whose change then fails can put that one back).
  std::optional<std::string> PutJobToken(const std::string& job_id,
                                         std::string token)
      ABSL_LOCKS_EXCLUDED(mu_);
  void ForgetJob(const std::string& job_id) ABSL_LOCKS_EXCLUDED(mu_);
  bool HasJobToken(const std::string& job_id) const ABSL_LOCKS_EXCLUDED(mu_);
  // The job's own token, else the first matching rule's (std::nullopt when
  // neither, or the rule's source is missing or empty).
  std::optional<std::string> ForJob(const std::string& job_id,
                                    const std::string& url) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // Whether a server-side rule supplies a token for `url`.
  bool RuleMatches(const std::string& url) const;

 private:
  struct Rule {
    std::string pattern;
    std::regex regex;
    bool from_file = false;
    std::string source;
  };
  std::optional<std::string> FromRules(const std::string& url) const;

  // Set once by Create; read-only afterwards, so read without mu_.
  std::vector<Rule> rules_;
  mutable Mutex mu_;
  std::map<std::string, std::string> job_tokens_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mm::downloader

#endif  // MM_SERVICES_DOWNLOADER_TOKENS_H_
