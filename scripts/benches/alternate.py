#!/usr/bin/env python3
"""Time commands alternately (A B C A B C ...) so that a busy shared host's
drift hits every command alike; print mean/median/min per command and the
ratios of the first command over the second.

Usage: alternate.py RUNS WARMUP NAME=CMD NAME=CMD [...]
"""
import shlex
import statistics
import subprocess
import sys
import time


def main():
    runs, warmup = int(sys.argv[1]), int(sys.argv[2])
    cmds = []
    for arg in sys.argv[3:]:
        name, cmd = arg.split("=", 1)
        cmds.append((name, shlex.split(cmd)))
    times = {name: [] for name, _ in cmds}
    for i in range(warmup + runs):
        for name, argv in cmds:
            t0 = time.perf_counter()
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
            dt = time.perf_counter() - t0
            if r.returncode != 0:
                sys.exit(f"{name} failed ({r.returncode}): {r.stderr.decode()[-500:]}")
            if i >= warmup:
                times[name].append(dt * 1000)
    print(f"{'command':<28} {'mean ms':>8} {'median':>8} {'min':>8}  (n={runs}, alternated)")
    for name, _ in cmds:
        t = times[name]
        print(f"{name:<28} {statistics.mean(t):8.1f} {statistics.median(t):8.1f} {min(t):8.1f}")
    a, b = cmds[0][0], cmds[1][0]
    for k, f in (("mean", statistics.mean), ("median", statistics.median), ("min", min)):
        print(f"ratio {a} / {b} ({k}): {f(times[a]) / f(times[b]):.2f}")


if __name__ == "__main__":
    main()
