// records_bench: the cost of the records service, measured side by side.
//
// For each backend (a SQLite file in a temporary directory; a throwaway
// PostgreSQL cluster from tests/testing/postgres_cluster.h) and each store
// size, it fills a store through ModelRegistry::Create, serves it with
// RecordsService on an in-process ServiceHost over a unix socket, and then
// runs every operation twice in the same process on the same data:
// in-process (ModelRegistry calls, what the service handler does) and
// through a gRPC stub (what a client sees). The table shows both and their
// ratio, so the cost of the service boundary reads directly, and a loaded
// machine slows both columns alike.
//
// Operations:
//   get     GetModel of a random existing key (latency, p50/p99)
//   search  ListModels base=B type=T page_size=100, (B,T) drawn from the
//           families the fill uses, each matching a few percent of records
//   tput    gets/s with --clients threads for --duration seconds; the gRPC
//           clients share one channel (one HTTP/2 connection), as one
//           process with a single channel to mm-records would. With it the
//           CPU per get: of this process (rusage) and of the PostgreSQL
//           server (its postmaster and children, from /proc), and the rate
//           the machine's cores could sustain at their sum
//
//   records_bench [--backends sqlite,postgres] [--sizes 10000,100000]
//                 [--get-calls 20000] [--search-calls 500] [--clients 8]
//                 [--duration 5] [--seed 1]
//
// Exits 1 (after printing why) when a backend cannot start; PostgreSQL is
// skipped with a note when no server binaries are installed.
#include <dirent.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/client.h"
#include "common/grpc_status.h"
#include "common/server.h"
#include "common/status.h"
#include "grpcpp/grpcpp.h"
#include "modelmanager/v1/records.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "services/records/model_registry.h"
#include "services/records/record_store.h"
#include "services/records/records_service.h"
#include "tests/testing/postgres_cluster.h"
#include "tests/testing/temp_dir.h"

namespace mm::records {
namespace {

using Clock = std::chrono::steady_clock;
using modelmanager::v1::ModelRecords;
using nlohmann::json;

struct BenchOptions {
  // "sqlite" and/or "postgres", run in this order.
  std::vector<std::string> backends = {"sqlite", "postgres"};
  // Records in the store, one full run per size.
  std::vector<int> sizes = {10000, 100000};
  // Latency samples per get measurement (after a warm-up of a tenth).
  int get_calls = 20000;
  // Latency samples per search measurement.
  int search_calls = 500;
  // Concurrent client threads in the throughput measurement.
  int clients = 8;
  // Seconds each throughput measurement runs.
  double duration_s = 5;
  // Seeds the record mix and the key/filter choices, so runs compare.
  uint64_t seed = 1;
  // --help: print the usage and run nothing.
  bool help = false;
};

constexpr char kUsage[] =
    "usage: records_bench [--backends sqlite,postgres] "
    "[--sizes 10000,100000] [--get-calls 20000] [--search-calls 500] "
    "[--clients 8] [--duration 5] [--seed 1]\n";

// One registered family the fill draws from; every base listed is a valid
// tag for the type and format (model/taxonomy.cc).
struct Family {
  const char* type;
  const char* format;
  std::vector<std::string> bases;
};

// Six common families over four bases, 21 (type, base) pairs. A record
// draws its family, then its base, uniformly, so one base+type search
// matches 1/24 to 1/12 (4-8%) of the records: a full page at 10,000.
const std::vector<Family>& Families() {
  static const auto* families = new std::vector<Family>{
      {"lora", "lycoris", {"sd-1", "sd-2", "sdxl", "flux"}},
      {"main", "checkpoint", {"sd-1", "sd-2", "sdxl", "flux"}},
      {"vae", "checkpoint", {"sd-1", "sd-2", "sdxl", "flux"}},
      {"embedding", "embedding_file", {"sd-1", "sd-2", "sdxl"}},
      {"controlnet", "checkpoint", {"sd-1", "sd-2", "sdxl", "flux"}},
      {"ip_adapter", "checkpoint", {"sd-1", "sdxl"}},
  };
  return *families;
}

struct Filter {
  std::string base;
  std::string type;
};

std::vector<Filter> AllFilters() {
  std::vector<Filter> filters;
  for (const Family& family : Families()) {
    for (const std::string& base : family.bases) {
      filters.push_back({base, family.type});
    }
  }
  return filters;
}

json MakeConfig(int index, std::mt19937_64& rng) {
  const std::vector<Family>& families = Families();
  const Family& family = families[rng() % families.size()];
  const std::string& base = family.bases[rng() % family.bases.size()];
  std::string hex;
  for (int i = 0; i < 4; ++i) {
    absl::StrAppend(&hex, absl::StrFormat("%016x", rng()));
  }
  std::string name = absl::StrFormat("%s-%s-%06d", family.type, base, index);
  std::string path =
      absl::StrCat(base, "/", family.type, "/", name, ".safetensors");
  json config = {{"hash", "blake3:" + hex},
                 {"path", path},
                 {"file_size", static_cast<int64_t>(rng() % (8LL << 30))},
                 {"name", name},
                 {"description", "benchmark record " + std::to_string(index)},
                 {"source", "/import/" + path},
                 {"source_type", "path"},
                 {"type", family.type},
                 {"format", family.format},
                 {"base", base}};
  if (std::string(family.type) == "main" && base == "flux") {
    config["variant"] = "dev";
  }
  if (std::string(family.type) == "lora") {
    config["trigger_phrases"] = {"style " + std::to_string(index % 97)};
    config["default_settings"] = {{"weight", 0.75}};
  }
  return config;
}

// Nearest-rank percentile of sorted samples, in milliseconds.
double PercentileMs(const std::vector<double>& sorted_us, double p) {
  if (sorted_us.empty()) return 0;
  size_t rank = static_cast<size_t>(p / 100.0 * sorted_us.size());
  rank = std::min(rank, sorted_us.size() - 1);
  return sorted_us[rank] / 1000.0;
}

struct Latency {
  double p50_ms = 0;
  double p99_ms = 0;
  // Mean records per call, for searches.
  double mean_results = 0;
};

// Times `calls` invocations of `op(i)` after `warmup` untimed ones. `op`
// returns the number of records it got, or an error that ends the run.
template <typename Op>
absl::StatusOr<Latency> MeasureLatency(int warmup, int calls, Op op) {
  for (int i = 0; i < warmup; ++i) {
    ASSIGN_OR_RETURN(int ignored, op(i));
    (void)ignored;
  }
  std::vector<double> samples_us;
  samples_us.reserve(calls);
  int64_t results = 0;
  for (int i = 0; i < calls; ++i) {
    Clock::time_point start = Clock::now();
    ASSIGN_OR_RETURN(int got, op(warmup + i));
    samples_us.push_back(
        std::chrono::duration<double, std::micro>(Clock::now() - start)
            .count());
    results += got;
  }
  std::sort(samples_us.begin(), samples_us.end());
  return Latency{PercentileMs(samples_us, 50), PercentileMs(samples_us, 99),
                 calls > 0 ? static_cast<double>(results) / calls : 0};
}

struct Throughput {
  double calls_per_s = 0;
  // CPU time this process (client threads, and for gRPC the server too)
  // spent per call: unlike wall time it does not grow when other work
  // shares the cores. The PostgreSQL server's own CPU is not included.
  double cpu_us_per_call = 0;
  // The PostgreSQL server's CPU time per call (its backends serving our
  // connections, and its own background processes); -1 for SQLite.
  double db_cpu_us_per_call = -1;
};

double ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

// The PostgreSQL server's process id: the first line of postmaster.pid in
// its data directory; 0 when it cannot be read.
pid_t PostmasterPid(const std::string& data_dir) {
  std::ifstream in(data_dir + "/postmaster.pid");
  long pid = 0;
  in >> pid;
  return in ? static_cast<pid_t>(pid) : 0;
}

// CPU seconds used so far by `postmaster` and every process it started
// (one backend per connection, plus its background workers), read from
// /proc. A process that exits takes its time with it, so measure over a
// span in which the connections stay open.
double ServerCpuSeconds(pid_t postmaster) {
  double ticks = 0;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return 0;
  while (dirent* entry = ::readdir(proc)) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
    std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
    std::string stat((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
    // The command name (field 2) may hold spaces: count fields after it.
    size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::vector<std::string> fields =
        absl::StrSplit(stat.substr(close + 2), ' ');
    // fields[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
    if (fields.size() < 13) continue;
    int ppid = 0;
    double utime = 0, stime = 0;
    if (!absl::SimpleAtoi(fields[1], &ppid) ||
        !absl::SimpleAtod(fields[11], &utime) ||
        !absl::SimpleAtod(fields[12], &stime)) {
      continue;
    }
    if (pid == postmaster || ppid == postmaster) ticks += utime + stime;
  }
  ::closedir(proc);
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// Runs `op(thread, i)` from `clients` threads until `duration_s` passes.
// The first error any thread sees ends the run and is returned. With a
// `postmaster`, the PostgreSQL server's CPU over the run is measured too.
template <typename Op>
absl::StatusOr<Throughput> MeasureThroughput(int clients, double duration_s,
                                             pid_t postmaster, Op op) {
  std::atomic<bool> stop{false};
  std::atomic<int64_t> done{0};
  std::vector<absl::Status> errors(clients);
  std::vector<std::thread> threads;
  Clock::time_point start = Clock::now();
  const double cpu_start = ProcessCpuSeconds();
  const double db_cpu_start = postmaster > 0 ? ServerCpuSeconds(postmaster) : 0;
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&, t] {
      int64_t mine = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        absl::Status status = op(t, mine);
        if (!status.ok()) {
          errors[t] = status;
          stop = true;
          break;
        }
        ++mine;
      }
      done += mine;
    });
  }
  // The main thread is the timer; it only sleeps, it synchronises nothing.
  std::this_thread::sleep_for(std::chrono::duration<double>(duration_s));
  stop = true;
  for (std::thread& thread : threads) thread.join();
  const double cpu = ProcessCpuSeconds() - cpu_start;
  const double db_cpu =
      postmaster > 0 ? ServerCpuSeconds(postmaster) - db_cpu_start : 0;
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  for (const absl::Status& error : errors) {
    if (!error.ok()) return error;
  }
  const double calls = static_cast<double>(done.load());
  Throughput out{calls / elapsed, calls > 0 ? cpu * 1e6 / calls : 0};
  if (postmaster > 0 && calls > 0)
    out.db_cpu_us_per_call = db_cpu * 1e6 / calls;
  return out;
}

struct RunResult {
  std::string backend;
  int size = 0;
  double fill_s = 0;
  Latency get_local, get_grpc;
  Latency search_local, search_grpc;
  Throughput tput_local, tput_grpc;
};

absl::StatusOr<RunResult> RunOne(const std::string& backend,
                                 const std::string& url, int size,
                                 const BenchOptions& options,
                                 const std::string& socket_path,
                                 pid_t postmaster) {
  RunResult result;
  result.backend = backend;
  result.size = size;
  ASSIGN_OR_RETURN(std::unique_ptr<RecordStore> store, OpenRecordStore(url));
  ModelRegistry registry(store.get());

  std::fprintf(stderr, "[%s N=%d] filling...\n", backend.c_str(), size);
  std::mt19937_64 rng(options.seed);
  std::vector<std::string> keys;
  keys.reserve(size);
  Clock::time_point fill_start = Clock::now();
  for (int i = 0; i < size; ++i) {
    ASSIGN_OR_RETURN(StoredModel stored,
                     registry.Create(MakeConfig(i, rng), /*request_id=*/""));
    keys.push_back(stored.config["key"].get<std::string>());
  }
  result.fill_s =
      std::chrono::duration<double>(Clock::now() - fill_start).count();

  RecordsService service(&registry);
  ServerOptions server_options;
  server_options.listen = "unix:" + socket_path;
  ASSIGN_OR_RETURN(
      std::unique_ptr<ServiceHost> host,
      ServiceHost::Start(server_options, {&service}, {kRecordsServiceName}));
  host->AddShutdownHook([&service] { service.Shutdown(); });
  host->SetServing(true);
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                   MakeChannel(host->address(), {}));
  std::unique_ptr<ModelRecords::Stub> stub = ModelRecords::NewStub(channel);

  // Every measurement draws from the same precomputed sequence, so the
  // in-process and gRPC columns do identical work.
  std::vector<size_t> key_order(options.get_calls + options.get_calls / 10);
  for (size_t& k : key_order) k = rng() % keys.size();
  const std::vector<Filter> filters = AllFilters();
  std::vector<size_t> filter_order(options.search_calls +
                                   options.search_calls / 10);
  for (size_t& f : filter_order) f = rng() % filters.size();

  auto local_get = [&](int i) -> absl::StatusOr<int> {
    ASSIGN_OR_RETURN(StoredModel m,
                     registry.Get(keys[key_order[i % key_order.size()]]));
    (void)m;
    return 1;
  };
  auto grpc_get = [&](int i) -> absl::StatusOr<int> {
    grpc::ClientContext context;
    modelmanager::v1::GetModelRequest request;
    request.set_key(keys[key_order[i % key_order.size()]]);
    modelmanager::v1::Model response;
    RETURN_IF_ERROR(
        FromGrpcStatus(stub->GetModel(&context, request, &response)));
    return 1;
  };
  auto local_search = [&](int i) -> absl::StatusOr<int> {
    const Filter& filter = filters[filter_order[i % filter_order.size()]];
    ModelQuery query;
    query.base = filter.base;
    query.type = filter.type;
    query.page_size = 100;
    ASSIGN_OR_RETURN(ModelPage page, registry.List(std::move(query)));
    return static_cast<int>(page.models.size());
  };
  auto grpc_search = [&](int i) -> absl::StatusOr<int> {
    const Filter& filter = filters[filter_order[i % filter_order.size()]];
    grpc::ClientContext context;
    modelmanager::v1::ListModelsRequest request;
    request.set_base(filter.base);
    request.set_type(filter.type);
    request.set_page_size(100);
    modelmanager::v1::ListModelsResponse response;
    RETURN_IF_ERROR(
        FromGrpcStatus(stub->ListModels(&context, request, &response)));
    return response.models_size();
  };

  std::fprintf(stderr, "[%s N=%d] get latency...\n", backend.c_str(), size);
  const int get_warmup = options.get_calls / 10;
  ASSIGN_OR_RETURN(result.get_local,
                   MeasureLatency(get_warmup, options.get_calls, local_get));
  ASSIGN_OR_RETURN(result.get_grpc,
                   MeasureLatency(get_warmup, options.get_calls, grpc_get));
  std::fprintf(stderr, "[%s N=%d] search latency...\n", backend.c_str(), size);
  const int search_warmup = options.search_calls / 10;
  ASSIGN_OR_RETURN(
      result.search_local,
      MeasureLatency(search_warmup, options.search_calls, local_search));
  ASSIGN_OR_RETURN(
      result.search_grpc,
      MeasureLatency(search_warmup, options.search_calls, grpc_search));

  // bench/records/profile.sh waits for these lines to profile one phase.
  std::fprintf(stderr, "[%s N=%d] throughput in-process...\n", backend.c_str(),
               size);
  // Each thread walks its own stride of random keys.
  auto key_for = [&](int thread, int64_t i) -> const std::string& {
    return keys[key_order[(static_cast<size_t>(i) * options.clients + thread) %
                          key_order.size()]];
  };
  ASSIGN_OR_RETURN(
      result.tput_local,
      MeasureThroughput(options.clients, options.duration_s, postmaster,
                        [&](int thread, int64_t i) -> absl::Status {
                          return registry.Get(key_for(thread, i)).status();
                        }));
  std::fprintf(stderr, "[%s N=%d] throughput gRPC...\n", backend.c_str(), size);
  ASSIGN_OR_RETURN(
      result.tput_grpc,
      MeasureThroughput(options.clients, options.duration_s, postmaster,
                        [&](int thread, int64_t i) -> absl::Status {
                          grpc::ClientContext context;
                          modelmanager::v1::GetModelRequest request;
                          request.set_key(key_for(thread, i));
                          modelmanager::v1::Model response;
                          return FromGrpcStatus(
                              stub->GetModel(&context, request, &response));
                        }));

  host->Shutdown(absl::Seconds(5));
  return result;
}

std::string Ratio(double grpc, double local) {
  if (local <= 0) return "-";
  return absl::StrFormat("%.2f", grpc / local);
}

void PrintTable(const std::vector<RunResult>& results,
                const BenchOptions& options) {
  std::printf(
      "\n| backend | records | fill s | operation | in-process p50 ms | "
      "in-process p99 ms | gRPC p50 ms | gRPC p99 ms | gRPC/in-process "
      "(p50) |\n");
  std::printf("|---|---:|---:|---|---:|---:|---:|---:|---:|\n");
  for (const RunResult& r : results) {
    std::printf("| %s | %d | %.1f | get | %.3f | %.3f | %.3f | %.3f | %s |\n",
                r.backend.c_str(), r.size, r.fill_s, r.get_local.p50_ms,
                r.get_local.p99_ms, r.get_grpc.p50_ms, r.get_grpc.p99_ms,
                Ratio(r.get_grpc.p50_ms, r.get_local.p50_ms).c_str());
    std::printf(
        "| %s | %d | | search (%.0f rows avg) | %.3f | %.3f | %.3f | %.3f | "
        "%s |\n",
        r.backend.c_str(), r.size, r.search_grpc.mean_results,
        r.search_local.p50_ms, r.search_local.p99_ms, r.search_grpc.p50_ms,
        r.search_grpc.p99_ms,
        Ratio(r.search_grpc.p50_ms, r.search_local.p50_ms).c_str());
  }
  std::printf(
      "\n| backend | records | in-process gets/s (%d threads) | gRPC gets/s "
      "(%d clients, one channel) | gRPC/in-process | in-process CPU us/get | "
      "gRPC CPU us/get | CPU ratio |\n",
      options.clients, options.clients);
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const RunResult& r : results) {
    std::printf(
        "| %s | %d | %.0f | %.0f | %s | %.1f | %.1f | %s |\n",
        r.backend.c_str(), r.size, r.tput_local.calls_per_s,
        r.tput_grpc.calls_per_s,
        Ratio(r.tput_grpc.calls_per_s, r.tput_local.calls_per_s).c_str(),
        r.tput_local.cpu_us_per_call, r.tput_grpc.cpu_us_per_call,
        Ratio(r.tput_grpc.cpu_us_per_call, r.tput_local.cpu_us_per_call)
            .c_str());
  }
  std::printf(
      "(CPU us/get: CPU time of this process, client and gRPC server "
      "together, per call; the PostgreSQL server's CPU is not in it.)\n");

  // Where a get's CPU goes when every process of it shares the machine:
  // this process plus the PostgreSQL server. Dividing the cores by it gives
  // the rate the machine could sustain if nothing else ran, a figure that
  // does not move with other load the way gets/s does.
  const long cores = ::sysconf(_SC_NPROCESSORS_ONLN);
  std::printf(
      "\n| backend | records | path | this process CPU us/get | PostgreSQL "
      "CPU us/get | total CPU us/get | gets/s at that cost on %ld cores |\n",
      cores);
  std::printf("|---|---:|---|---:|---:|---:|---:|\n");
  for (const RunResult& r : results) {
    for (const auto& [path, t] :
         {std::pair<const char*, const Throughput&>{"in-process", r.tput_local},
          std::pair<const char*, const Throughput&>{"gRPC", r.tput_grpc}}) {
      const double db = std::max(t.db_cpu_us_per_call, 0.0);
      const double total = t.cpu_us_per_call + db;
      std::printf("| %s | %d | %s | %.1f | %s | %.1f | %.0f |\n",
                  r.backend.c_str(), r.size, path, t.cpu_us_per_call,
                  t.db_cpu_us_per_call < 0
                      ? "-"
                      : absl::StrFormat("%.1f", t.db_cpu_us_per_call).c_str(),
                  total, total > 0 ? cores * 1e6 / total : 0);
    }
  }

  // The targets, checked on the gRPC figures (what clients see).
  std::printf("\nTargets (gRPC):\n");
  for (const RunResult& r : results) {
    std::printf("  %-8s N=%-6d get p50 %.3f ms < 0.5 ms: %s; ",
                r.backend.c_str(), r.size, r.get_grpc.p50_ms,
                r.get_grpc.p50_ms < 0.5 ? "met" : "MISSED");
    if (r.size >= 100000) {
      std::printf("search p50 %.2f ms < 10 ms: %s; ", r.search_grpc.p50_ms,
                  r.search_grpc.p50_ms < 10 ? "met" : "MISSED");
    }
    std::printf("%.0f gets/s >= 5000: %s\n", r.tput_grpc.calls_per_s,
                r.tput_grpc.calls_per_s >= 5000 ? "met" : "MISSED");
  }
}

absl::StatusOr<std::vector<int>> ParseInts(const std::string& flag,
                                           const std::string& value) {
  std::vector<int> out;
  std::vector<std::string> parts = absl::StrSplit(value, ',');
  for (const std::string& part : parts) {
    int n = 0;
    if (!absl::SimpleAtoi(part, &n) || n < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          flag, " '", value, "': expected positive integers separated by ",
          "commas, e.g. ", flag, " 10000,100000"));
    }
    out.push_back(n);
  }
  return out;
}

absl::StatusOr<BenchOptions> ParseArgs(int argc, char** argv) {
  BenchOptions options;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      options.help = true;
      return options;
    }
    if (i + 1 >= argc) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, " needs a value; see --help"));
    }
    std::string value = argv[++i];
    if (flag == "--backends") {
      options.backends.clear();
      std::vector<std::string> names = absl::StrSplit(value, ',');
      for (const std::string& b : names) {
        if (b != "sqlite" && b != "postgres") {
          return absl::InvalidArgumentError(absl::StrCat(
              "--backends: unknown backend '", b,
              "'; use sqlite, postgres or both separated by a comma"));
        }
        options.backends.push_back(b);
      }
    } else if (flag == "--sizes") {
      ASSIGN_OR_RETURN(options.sizes, ParseInts(flag, value));
    } else if (flag == "--get-calls" || flag == "--search-calls" ||
               flag == "--clients" || flag == "--seed") {
      ASSIGN_OR_RETURN(std::vector<int> n, ParseInts(flag, value));
      if (n.size() != 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            flag, " takes one positive integer, got '", value, "'"));
      }
      if (flag == "--get-calls") options.get_calls = n[0];
      if (flag == "--search-calls") options.search_calls = n[0];
      if (flag == "--clients") options.clients = n[0];
      if (flag == "--seed") options.seed = static_cast<uint64_t>(n[0]);
    } else if (flag == "--duration") {
      if (!absl::SimpleAtod(value, &options.duration_s) ||
          options.duration_s <= 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--duration '", value, "': expected seconds > 0, e.g. 5"));
      }
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag '", flag, "'; see --help"));
    }
  }
  return options;
}

absl::Status Main(int argc, char** argv) {
  ASSIGN_OR_RETURN(BenchOptions options, ParseArgs(argc, argv));
  if (options.help) {
    std::fputs(kUsage, stdout);
    return absl::OkStatus();
  }
  std::printf(
      "records_bench: get %d calls, search %d calls (page_size 100), "
      "throughput %d clients x %.1f s, seed %llu\n",
      options.get_calls, options.search_calls, options.clients,
      options.duration_s, static_cast<unsigned long long>(options.seed));
  std::fflush(stdout);
  std::vector<RunResult> results;
  for (const std::string& backend : options.backends) {
    std::unique_ptr<testing::PostgresCluster> cluster;
    if (backend == "postgres") {
      absl::StatusOr<std::unique_ptr<testing::PostgresCluster>> started =
          testing::PostgresCluster::Start();
      if (started.status().code() == absl::StatusCode::kFailedPrecondition) {
        std::printf("postgres skipped: %s\n",
                    started.status().ToString().c_str());
        continue;
      }
      RETURN_IF_ERROR(started.status());
      cluster = std::move(*started);
    }
    for (int size : options.sizes) {
      // A fresh database per size, so each fill starts empty and the
      // previous one's pages are not in the way.
      testing::TempDir dir;
      std::string url;
      if (cluster) {
        ASSIGN_OR_RETURN(
            url, cluster->CreateDatabase(absl::StrCat("records_bench_", size)));
      } else {
        url = "sqlite:" + (dir.path() / "records.db").string();
      }
      const pid_t postmaster =
          cluster ? PostmasterPid(cluster->directory() + "/data") : 0;
      if (cluster && postmaster == 0) {
        std::fprintf(stderr,
                     "cannot read postmaster.pid; PostgreSQL's CPU is not "
                     "measured\n");
      }
      ASSIGN_OR_RETURN(
          RunResult result,
          RunOne(backend, url, size, options,
                 (dir.path() / "records.sock").string(), postmaster));
      results.push_back(result);
    }
  }
  PrintTable(results, options);
  return absl::OkStatus();
}

}  // namespace
}  // namespace mm::records

int main(int argc, char** argv) {
  absl::Status status = mm::records::Main(argc, argv);
  if (!status.ok()) {
    std::fprintf(stderr, "records_bench: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
