#include "services/downloader/tokens.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/secret_file.h"
#include "common/strings.h"

namespace mm::downloader {

absl::StatusOr<std::unique_ptr<TokenProvider>> TokenProvider::Create(
    const std::vector<std::string>& rules) {
  auto provider = std::make_unique<TokenProvider>();
  for (const std::string& text : rules) {
    size_t env = text.rfind("=env:");
    size_t file = text.rfind("=file:");
    size_t at = std::string::npos;
    Rule rule;
    if (env != std::string::npos && (file == std::string::npos || env > file)) {
      at = env;
      rule.source = text.substr(env + 5);
    } else if (file != std::string::npos) {
      at = file;
      rule.from_file = true;
      rule.source = text.substr(file + 6);
    }
    if (at == std::string::npos || at == 0 || rule.source.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("token rule ", QuotedForMessage(text),
                       " must be REGEX=env:VARIABLE or REGEX=file:PATH"));
    }
    rule.pattern = text.substr(0, at);
    try {
      rule.regex = std::regex(rule.pattern, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      return absl::InvalidArgumentError(
          absl::StrCat("token rule regex ", QuotedForMessage(rule.pattern),
                       " is invalid: ", e.what()));
    }
    provider->rules_.push_back(std::move(rule));
  }
  return provider;
}

std::optional<std::string> TokenProvider::PutJobToken(const std::string& job_id,
                                                      std::string token) {
  MutexLock lock(&mu_);
  std::optional<std::string> replaced;
  auto [it, inserted] = job_tokens_.try_emplace(job_id);
  if (!inserted) replaced = std::move(it->second);
  it->second = std::move(token);
  return replaced;
}

void TokenProvider::ForgetJob(const std::string& job_id) {
  MutexLock lock(&mu_);
  job_tokens_.erase(job_id);
}

bool TokenProvider::HasJobToken(const std::string& job_id) const {
  MutexLock lock(&mu_);
  return job_tokens_.count(job_id) > 0;
}

std::optional<std::string> TokenProvider::FromRules(
    const std::string& url) const {
  for (const Rule& rule : rules_) {
    if (!std::regex_search(url, rule.regex)) continue;
    if (rule.from_file) {
      absl::StatusOr<std::string> token = ReadTokenFile(rule.source);
      if (token.ok() && !token->empty()) return *token;
    } else if (const char* value = std::getenv(rule.source.c_str());
               value != nullptr && *value != '\0') {
      return std::string(value);
    }
    return std::nullopt;
  }
  return std::nullopt;
}

std::optional<std::string> TokenProvider::ForJob(const std::string& job_id,
                                                 const std::string& url) const {
  {
    MutexLock lock(&mu_);
    auto it = job_tokens_.find(job_id);
    if (it != job_tokens_.end()) return it->second;
  }
  return FromRules(url);
}

bool TokenProvider::RuleMatches(const std::string& url) const {
  return FromRules(url).has_value();
}

}  // namespace mm::downloader
