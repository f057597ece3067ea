#include "common/http/transfer_loop.h"

#include <curl/curl.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/mutex.h"
#include "common/strings.h"

namespace mm::http {

std::string ResponseHead::Header(std::string_view lowercase_name) const {
  auto it = headers.find(std::string(lowercase_name));
  return it == headers.end() ? std::string() : it->second;
}

int64_t ResponseHead::ContentLength() const {
  int64_t length = -1;
  std::string text = Header("content-length");
  if (text.empty() || !absl::SimpleAtoi(text, &length) || length < 0) {
    return -1;
  }
  return length;
}

class TransferLoop::Impl {
 public:
  explicit Impl(const Options& options)
      : options_(options),
        clock_(options.clock != nullptr ? options.clock : RealClock()),
        limit_(options.max_bytes_per_second) {
    static std::once_flag global_init;
    std::call_once(global_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    multi_ = curl_multi_init();
    if (options_.max_host_connections > 0) {
      curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS,
                        static_cast<long>(options_.max_host_connections));
    }
    thread_ = std::thread([this] { Run(); });
  }

  ~Impl() {
    {
      MutexLock lock(&mu_);
      stopping_ = true;
    }
    curl_multi_wakeup(multi_);
    thread_.join();
    curl_multi_cleanup(multi_);
  }

  TransferId Start(Request request, std::shared_ptr<TransferHandler> handler) {
    auto transfer = std::make_unique<Transfer>();
    transfer->impl = this;
    transfer->request = std::move(request);
    transfer->handler = std::move(handler);
    TransferId id;
    {
      MutexLock lock(&mu_);
      id = ++last_id_;
      transfer->id = id;
      pending_starts_.push_back(std::move(transfer));
    }
    active_.fetch_add(1, std::memory_order_relaxed);
    curl_multi_wakeup(multi_);
    return id;
  }

  void Cancel(TransferId id) {
    {
      MutexLock lock(&mu_);
      pending_cancels_.push_back(id);
    }
    curl_multi_wakeup(multi_);
  }

  void SetBandwidthLimit(int64_t bytes_per_second) {
    {
      MutexLock lock(&mu_);
      new_limit_ = bytes_per_second;
    }
    curl_multi_wakeup(multi_);
  }

  int ActiveTransfers() const { return active_.load(); }

 private:
  struct Transfer {
    Impl* impl = nullptr;
    TransferId id = 0;
    CURL* easy = nullptr;
    curl_slist* headers = nullptr;
    Request request;
    std::shared_ptr<TransferHandler> handler;
    ResponseHead head;
    bool head_delivered = false;
    bool stopped = false;
    bool paused = false;
    bool stalled = false;
    // When a byte (header or body) last arrived, or the transfer started.
    absl::Time last_activity;
    std::string blocked;
    int64_t body_bytes = 0;
    char error[CURL_ERROR_SIZE] = {};
  };

  static bool IsFollowedRedirect(const ResponseHead& head) {
    return head.status >= 300 && head.status < 400 && head.status != 304 &&
           !head.Header("location").empty();
  }

  static size_t OnHeader(char* data, size_t size, size_t count, void* arg) {
    auto* t = static_cast<Transfer*>(arg);
    size_t length = size * count;
    t->last_activity = t->impl->clock_->Now();
    std::string_view line(data, length);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) {
      line.remove_suffix(1);
    }
    if (line.substr(0, 5) == "HTTP/") {
      // A new response (the first, or the next after a redirect or 100).
      t->head = ResponseHead{};
      size_t space = line.find(' ');
      if (space != std::string_view::npos) {
        int status = 0;
        if (absl::SimpleAtoi(std::string(line.substr(space + 1, 3)), &status)) {
          t->head.status = status;
        }
      }
      return length;
    }
    if (line.empty()) {
      if (t->head.status < 200 ||
          (t->request.max_redirects > 0 && IsFollowedRedirect(t->head))) {
        return length;  // libcurl goes on to the next response
      }
      char* url = nullptr;
      curl_easy_getinfo(t->easy, CURLINFO_EFFECTIVE_URL, &url);
      if (url != nullptr) t->head.effective_url = url;
      t->head_delivered = true;
      if (!t->handler->OnResponse(t->head)) {
        t->stopped = true;
        return 0;
      }
      return length;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return length;
    std::string name(line.substr(0, colon));
    for (char& c : name) c = static_cast<char>(std::tolower(c));
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
      value.remove_prefix(1);
    }
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) {
      value.remove_suffix(1);
    }
    t->head.headers[name] = std::string(value);
    return length;
  }

  static size_t OnWrite(char* data, size_t size, size_t count, void* arg) {
    auto* t = static_cast<Transfer*>(arg);
    size_t length = size * count;
    Impl* impl = t->impl;
    if (impl->limit_ > 0) {
      if (impl->tokens_ <= 0) {
        t->paused = true;
        impl->any_paused_ = true;
        return CURL_WRITEFUNC_PAUSE;
      }
      impl->tokens_ -= static_cast<double>(length);
    }
    if (!t->head_delivered) {
      // A body without a final header block (HTTP/0.9 style): deliver
      // what we have so the handler always sees a response first.
      t->head_delivered = true;
      if (!t->handler->OnResponse(t->head)) {
        t->stopped = true;
        return 0;
      }
    }
    if (!t->handler->OnBody(data, length)) {
      t->stopped = true;
      return 0;
    }
    t->last_activity = t->impl->clock_->Now();
    t->body_bytes += static_cast<int64_t>(length);
    return length;
  }

  static curl_socket_t OnOpenSocket(void* arg, curlsocktype /*purpose*/,
                                    curl_sockaddr* address) {
    auto* t = static_cast<Transfer*>(arg);
    if (t->request.address_policy != nullptr) {
      absl::Status allowed = t->request.address_policy->Check(&address->addr);
      if (!allowed.ok()) {
        t->blocked = std::string(allowed.message());
        return CURL_SOCKET_BAD;
      }
    }
    return socket(address->family, address->socktype, address->protocol);
  }

  void Setup(Transfer& t) {
    CURL* easy = curl_easy_init();
    t.easy = easy;
    const Request& r = t.request;
    curl_easy_setopt(easy, CURLOPT_URL, r.url.c_str());
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION,
                     r.max_redirects > 0 ? 1L : 0L);
    curl_easy_setopt(easy, CURLOPT_MAXREDIRS,
                     static_cast<long>(r.max_redirects));
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    // Proxies from the environment would be connected to instead of the
    // target and defeat the address policy; they are not used.
    curl_easy_setopt(easy, CURLOPT_PROXY, "");
    curl_easy_setopt(
        easy, CURLOPT_CONNECTTIMEOUT_MS,
        static_cast<long>(absl::ToInt64Milliseconds(r.connect_timeout)));
    // Stalls are detected by the loop itself (CheckStalls): libcurl's
    // low-speed check averages over several seconds and reacts late.
    t.last_activity = clock_->Now();
    curl_easy_setopt(easy, CURLOPT_BUFFERSIZE,
                     static_cast<long>(options_.buffer_size));
    curl_easy_setopt(easy, CURLOPT_USERAGENT, r.user_agent.c_str());
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, t.error);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &Impl::OnHeader);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &Impl::OnWrite);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, &Impl::OnOpenSocket);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, &t);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, &t);
    if (r.head) curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    if (r.range_begin >= 0) {
      std::string range = absl::StrCat(r.range_begin, "-");
      if (r.range_end >= 0) absl::StrAppend(&range, r.range_end);
      curl_easy_setopt(easy, CURLOPT_RANGE, range.c_str());  // copied
      if (!r.if_range.empty()) {
        std::string header = absl::StrCat("If-Range: ", r.if_range);
        t.headers = curl_slist_append(t.headers, header.c_str());
      }
    }
    // No "Expect:" and no content coding: ranges address the raw bytes.
    t.headers = curl_slist_append(t.headers, "Accept-Encoding: identity");
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, t.headers);
    if (!r.bearer_token.empty()) {
      curl_easy_setopt(easy, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
      curl_easy_setopt(easy, CURLOPT_XOAUTH2_BEARER, r.bearer_token.c_str());
      curl_easy_setopt(easy, CURLOPT_UNRESTRICTED_AUTH, 0L);
    }
  }

  TransferResult ResultOf(const Transfer& t, CURLcode code, bool cancelled) {
    TransferResult result;
    result.body_bytes = t.body_bytes;
    result.http_status = t.head_delivered ? t.head.status : 0;
    using Kind = TransferResult::Kind;
    if (cancelled) {
      result.kind = Kind::kCancelled;
      result.message = "cancelled";
    } else if (t.stalled) {
      result.kind = Kind::kStalled;
      result.message =
          absl::StrCat("no data received for ",
                       absl::FormatDuration(t.request.stall_timeout));
    } else if (t.stopped) {
      result.kind = Kind::kStopped;
      result.message = "stopped";
    } else if (code == CURLE_OK) {
      result.kind = Kind::kComplete;
    } else if (!t.blocked.empty()) {
      result.kind = Kind::kBlocked;
      result.message = t.blocked;
    } else {
      // libcurl's error buffer can quote what the server sent.
      std::string detail = SafeForMessage(
          t.error[0] != '\0' ? t.error : curl_easy_strerror(code));
      switch (code) {
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_URL_MALFORMAT:
        case CURLE_TOO_MANY_REDIRECTS:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CIPHER:
        case CURLE_LOGIN_DENIED:
          result.kind = Kind::kPermanent;
          result.message = detail;
          break;
        default:
          result.kind = Kind::kNetwork;
          result.message = detail;
          break;
      }
    }
    return result;
  }

  void Finish(TransferId id, CURLcode code, bool cancelled) {
    auto it = transfers_.find(id);
    if (it == transfers_.end()) return;
    std::unique_ptr<Transfer> t = std::move(it->second);
    transfers_.erase(it);
    TransferResult result = ResultOf(*t, code, cancelled);
    curl_multi_remove_handle(multi_, t->easy);
    curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->headers);
    active_.fetch_sub(1, std::memory_order_relaxed);
    t->handler->OnDone(result);
  }

  void Refill() {
    if (limit_ <= 0) {
      tokens_ = 0;
      if (any_paused_) UnpauseAll();
      return;
    }
    auto now = std::chrono::steady_clock::now();
    double seconds = std::chrono::duration<double>(now - last_refill_).count();
    last_refill_ = now;
    double burst = std::max(static_cast<double>(limit_) / 10, 65536.0);
    tokens_ = std::min(burst, tokens_ + seconds * static_cast<double>(limit_));
    if (tokens_ > 0 && any_paused_) UnpauseAll();
  }

  // Ends transfers that received nothing for their stall_timeout (time
  // spent paused by the bandwidth limit does not count).
  void CheckStalls() {
    const absl::Time now = clock_->Now();
    std::vector<TransferId> stalled;
    for (auto& [id, t] : transfers_) {
      if (t->paused) {
        t->last_activity = now;
        continue;
      }
      absl::Duration limit = t->request.stall_timeout;
      if (limit <= absl::ZeroDuration()) continue;
      if (now - t->last_activity > limit) {
        t->stalled = true;
        stalled.push_back(id);
      }
    }
    for (TransferId id : stalled) Finish(id, CURLE_OK, /*cancelled=*/false);
  }

  void UnpauseAll() {
    any_paused_ = false;
    std::vector<Transfer*> paused;
    for (auto& [id, t] : transfers_) {
      if (t->paused) paused.push_back(t.get());
    }
    for (Transfer* t : paused) {
      t->paused = false;
      // May deliver the held data at once and pause again.
      curl_easy_pause(t->easy, CURLPAUSE_CONT);
    }
  }

  void Run() {
    last_refill_ = std::chrono::steady_clock::now();
    while (true) {
      std::vector<std::unique_ptr<Transfer>> starts;
      std::vector<TransferId> cancels;
      bool stopping;
      {
        MutexLock lock(&mu_);
        starts.swap(pending_starts_);
        cancels.swap(pending_cancels_);
        stopping = stopping_;
        if (new_limit_.has_value()) {
          limit_ = *new_limit_;
          new_limit_.reset();
        }
      }
      for (std::unique_ptr<Transfer>& t : starts) {
        Setup(*t);
        TransferId id = t->id;
        CURL* easy = t->easy;
        transfers_[id] = std::move(t);
        curl_multi_add_handle(multi_, easy);
      }
      for (TransferId id : cancels) Finish(id, CURLE_OK, /*cancelled=*/true);
      if (stopping) break;
      Refill();
      int running = 0;
      curl_multi_perform(multi_, &running);
      int queued = 0;
      while (CURLMsg* msg = curl_multi_info_read(multi_, &queued)) {
        if (msg->msg != CURLMSG_DONE) continue;
        Transfer* t = nullptr;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &t);
        if (t != nullptr) Finish(t->id, msg->data.result, false);
      }
      CheckStalls();
      int timeout_ms = (limit_ > 0 && any_paused_) ? 5 : 100;
      curl_multi_poll(multi_, nullptr, 0, timeout_ms, nullptr);
    }
    std::vector<TransferId> remaining;
    for (auto& [id, t] : transfers_) remaining.push_back(id);
    for (TransferId id : remaining) Finish(id, CURLE_OK, /*cancelled=*/true);
    MutexLock lock(&mu_);
    for (std::unique_ptr<Transfer>& t : pending_starts_) {
      active_.fetch_sub(1, std::memory_order_relaxed);
      TransferResult result;
      result.kind = TransferResult::Kind::kCancelled;
      result.message = "cancelled";
      t->handler->OnDone(result);
    }
    pending_starts_.clear();
  }

  const Options options_;
  Clock* const clock_;
  CURLM* multi_ = nullptr;
  std::thread thread_;
  std::atomic<int> active_{0};

  mutable Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  TransferId last_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::unique_ptr<Transfer>> pending_starts_ ABSL_GUARDED_BY(mu_);
  std::vector<TransferId> pending_cancels_ ABSL_GUARDED_BY(mu_);
  std::optional<int64_t> new_limit_ ABSL_GUARDED_BY(mu_);

  // Loop thread only.
  std::unordered_map<TransferId, std::unique_ptr<Transfer>> transfers_;
  int64_t limit_ = 0;
  double tokens_ = 0;
  bool any_paused_ = false;
  std::chrono::steady_clock::time_point last_refill_;
};

std::unique_ptr<TransferLoop> TransferLoop::Create(const Options& options) {
  return std::unique_ptr<TransferLoop>(
      new TransferLoop(std::make_unique<Impl>(options)));
}

TransferLoop::TransferLoop(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}
TransferLoop::~TransferLoop() = default;

TransferId TransferLoop::Start(Request request,
                               std::shared_ptr<TransferHandler> handler) {
  return impl_->Start(std::move(request), std::move(handler));
}
void TransferLoop::Cancel(TransferId id) { impl_->Cancel(id); }
void TransferLoop::SetBandwidthLimit(int64_t bytes_per_second) {
  impl_->SetBandwidthLimit(bytes_per_second);
}
int TransferLoop::ActiveTransfers() const { return impl_->ActiveTransfers(); }

}  // namespace mm::http
