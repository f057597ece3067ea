#!/usr/bin/python3
"""Runs commands in turn, round after round, and reports each one's wall
and CPU time (min, first quartile, median). Alternating the order every
round keeps a slow spell of a shared machine from landing on one command.

  bench/interleave.py ROUNDS NAME=COMMAND [NAME=COMMAND ...]

COMMAND is run by /bin/sh with its output discarded; a leading
"VAR=value ... ::" sets environment variables for it, e.g.
  bench/interleave.py 20 \\
      "ours=build/default/bench/model/mm_hash_bench blake3_multi big.bin" \\
      "b3sum=b3sum big.bin"
"""
import os
import resource
import statistics
import subprocess
import sys
import time


def parse(spec):
    name, command = spec.split("=", 1)
    env = dict(os.environ)
    if "::" in command:
        assignments, command = command.split("::", 1)
        for assignment in assignments.split():
            key, value = assignment.split("=", 1)
            env[key] = value
    return name, env, command


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    rounds = int(sys.argv[1])
    commands = [parse(spec) for spec in sys.argv[2:]]
    wall = {name: [] for name, _, _ in commands}
    cpu = {name: [] for name, _, _ in commands}
    for round_index in range(rounds):
        order = commands if round_index % 2 == 0 else commands[::-1]
        for name, env, command in order:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(command, shell=True, env=env, check=True,
                           stdout=subprocess.DEVNULL)
            wall[name].append((time.perf_counter() - start) * 1000)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[name].append((after.ru_utime + after.ru_stime -
                              before.ru_utime - before.ru_stime) * 1000)
    print("%-12s %9s %9s %9s %11s" % ("command", "min ms", "q1 ms",
                                       "median ms", "cpu med ms"))
    for name, _, _ in commands:
        times = sorted(wall[name])
        print("%-12s %9.1f %9.1f %9.1f %11.1f" % (
            name, times[0], times[len(times) // 4], statistics.median(times),
            statistics.median(cpu[name])))


if __name__ == "__main__":
    main()
