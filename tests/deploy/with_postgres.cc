// with_postgres COMMAND [ARGS...]: runs COMMAND with a throwaway PostgreSQL
// (tests/testing/postgres_cluster.h) and the URL of its empty database
// `modelmanager` in MM_TEST_POSTGRES_URL; exits with COMMAND's status. For
// the deployment tests written in Python (tests/deploy/), which start the
// real services on that database.
//
// Without PostgreSQL server binaries it exits 77 (CTest's skip) unless
// PostgreSQL is required (CI=true or MM_REQUIRE_POSTGRES=1): then 1.
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <iostream>
#include <string>

#include "tests/testing/postgres_cluster.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: with_postgres COMMAND [ARGS...]\n";
    return 2;
  }
  absl::StatusOr<std::unique_ptr<mm::testing::PostgresCluster>> cluster =
      mm::testing::PostgresCluster::Start();
  if (!cluster.ok()) {
    std::cerr << "with_postgres: no PostgreSQL: " << cluster.status() << "\n";
    return mm::testing::PostgresRequired() ? 1 : 77;
  }
  absl::StatusOr<std::string> url = (*cluster)->CreateDatabase("modelmanager");
  if (!url.ok()) {
    std::cerr << "with_postgres: " << url.status() << "\n";
    return 1;
  }
  ::setenv("MM_TEST_POSTGRES_URL", url->c_str(), 1);
  pid_t child = ::fork();
  if (child < 0) {
    std::cerr << "with_postgres: fork failed\n";
    return 1;
  }
  if (child == 0) {
    ::execvp(argv[1], argv + 1);
    std::cerr << "with_postgres: cannot run " << argv[1] << "\n";
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
  }
  // The cluster stops and its directory goes when `cluster` is destroyed.
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  std::cerr << "with_postgres: " << argv[1] << " ended by signal "
            << WTERMSIG(status) << "\n";
  return 1;
}
