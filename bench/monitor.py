"""Policy Monitor benchmark: one poll of a 5,000-rule nftables ruleset vs `nft -j list table`
alone, in the same run.

The bench makes a network namespace of its own (removed at the end), imports the compile
benchmark's policy (`bench/compile.py`: N rules, each with its own source and destination
group of five prefixes and one service) into a scratch store with the device as an nftables
namespace, and deploys it through change control, as a user would. Then, `--repeat` times
and interleaved so both see the same machine:

* `nft_s`: `ip netns exec NS nft -j list table inet microseg` alone (the command the
  driver runs), output read as text: the floor no poller can beat;
* `counters_s`: the driver's `counters()` (that command plus JSON parsing and pairing each
  named counter with its match);
* `poll_s`: `microseg.monitor.poll` for the store as a running `monitor poll` does it (the
  deployed device and its change looked up in the store, the counters read, each match
  named to its rule and action, one Parquet segment written atomically), with the
  revision's policy and intents loaded by its first poll (`first_poll_s`, measured once:
  what `monitor poll --once` pays on top, loading and compiling the revision).

Inside each poll the time spent waiting for nft is clocked too (`poll_nft_s`); the rest is
microseg's own (`microseg_s`: store look-ups, JSON parsing, naming, the Parquet segment).
`overhead_ratio` = (poll_nft_s + microseg_s) / poll_nft_s, poll by poll: what a poll costs
over nft's listing alone. It is taken within each poll because nft's own time varies far
more from one listing to the next on a busy machine than microseg's does; `nft_s` is the
listing alone, the same run's baseline. Every figure is the median of the repeats (best in
`*_best_s`). Needs root (a namespace, nft).
Prints one JSON line. Usage: python bench/monitor.py [--rules 5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Measure the checkout this file is in, not whichever microseg the virtualenv has installed.
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "bench")]

from compile import microseg_policy  # noqa: E402
from microseg.deploy import RunOptions, approve_change, create_change, run_change  # noqa: E402
from microseg.model import PolicySet  # noqa: E402
from microseg.monitor import CounterSeries, Revisions, poll  # noqa: E402
from microseg.targets.nftables import driver as nftables_driver  # noqa: E402
from microseg.targets.nftables.driver import (  # noqa: E402
    DEFAULT_STATE_DIR,
    NftablesDriver,
    nft_argv,
)

DEVICE = "leaf1"
AUTHOR = "bench"


def lab_policy(rules: int, namespace: str) -> PolicySet:
    """The compile benchmark's policy, its device an nftables namespace."""
    document = microseg_policy(rules)
    document["devices"] = [
        {"name": DEVICE, "platform": "nftables", "management_namespace": namespace}
    ]
    return PolicySet.model_validate(document)


def deploy(store, policy: PolicySet) -> float:
    """Import and deploy through a change; seconds it took."""
    started = time.perf_counter()
    store.import_policy(policy, AUTHOR, "monitor benchmark")
    record = create_change(store, AUTHOR, None, [DEVICE], "monitor benchmark")
    approve_change(store, record.id, AUTHOR, "benchmark")
    result = run_change(store, record.id, AUTHOR, RunOptions(confirm_within=600, force=True))
    if result.state != "succeeded":
        raise SystemExit(f"deploy failed: change {record.id} {result.state}")
    return time.perf_counter() - started


class NftClock:
    """Seconds the driver spent waiting for nft (wraps its one nft runner)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._run = nftables_driver.run_nft

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self._run(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started


def measure(store, namespace: str, work: Path, repeat: int) -> dict[str, list[float]]:
    series = CounterSeries(work / "flows")
    clock = NftClock()
    nftables_driver.run_nft = clock
    driver = NftablesDriver(DEVICE, namespace=namespace, state_dir=work / "nft-state")
    listing = nft_argv(namespace, "-j", "list", "table", "inet", "microseg")
    revisions = Revisions()  # what a running poller keeps across its polls
    started = time.perf_counter()
    poll(store, series, revisions=revisions)
    times: dict[str, list[float]] = {"first_poll": [time.perf_counter() - started]}
    times.update(nft=[], counters=[], poll=[], poll_nft=[])
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(listing, capture_output=True, text=True, check=True)
        times["nft"].append(time.perf_counter() - started)
        started = time.perf_counter()
        counters = driver.counters()
        times["counters"].append(time.perf_counter() - started)
        clock.seconds = 0.0
        started = time.perf_counter()
        (outcome,) = poll(store, series, revisions=revisions)
        times["poll"].append(time.perf_counter() - started)
        times["poll_nft"].append(clock.seconds)
        if outcome.error or outcome.matches != len(counters):
            raise SystemExit(f"poll read {outcome.matches} counters: {outcome.error}")
    times["matches"] = [float(len(counters))]
    times["segments"] = [float(len(series.segments()))]
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("nft") is None:
        raise SystemExit("bench/monitor.py needs root and nft (a network namespace of its own)")
    namespace = f"msbench-monitor-{os.getpid()}"
    # SIGTERM (a timeout) unwinds like Ctrl-C, so the namespace goes too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        with tempfile.TemporaryDirectory(prefix="microseg-bench-monitor-") as scratch:
            work = Path(scratch)
            os.environ["MICROSEG_DATABASE_URL"] = f"sqlite:///{work / 'microseg.db'}"
            from microseg.store import open_store

            with open_store() as store:
                deploy_s = deploy(store, lab_policy(args.rules, namespace))
                times = measure(store, namespace, work, args.repeat)
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=False)
        shutil.rmtree(DEFAULT_STATE_DIR / f"netns-{namespace}", ignore_errors=True)
    nft_s, counters_s, poll_s = (
        statistics.median(times[name]) for name in ("nft", "counters", "poll")
    )
    # microseg's own time in each poll: the poll less the nft it waited for, poll by poll
    # (nft's time varies from run to run far more than microseg's).
    own = [total - nft for total, nft in zip(times["poll"], times["poll_nft"], strict=True)]
    own_s, poll_nft_s = statistics.median(own), statistics.median(times["poll_nft"])
    print(
        json.dumps(
            {
                "bench": "monitor",
                "rules": args.rules,
                "matches": int(times["matches"][0]),
                "repeat": args.repeat,
                "deploy_s": round(deploy_s, 2),
                "nft_s": round(nft_s, 4),
                "counters_s": round(counters_s, 4),
                "poll_s": round(poll_s, 4),
                "first_poll_s": round(times["first_poll"][0], 4),
                "nft_best_s": round(min(times["nft"]), 4),
                "poll_best_s": round(min(times["poll"]), 4),
                "poll_per_rule_us": round(poll_s / args.rules * 1e6, 1),
                "nft_per_rule_us": round(nft_s / args.rules * 1e6, 1),
                "poll_nft_s": round(poll_nft_s, 4),
                "microseg_s": round(own_s, 4),
                "microseg_per_rule_us": round(own_s / args.rules * 1e6, 1),
                "overhead_ratio": round((poll_nft_s + own_s) / poll_nft_s, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
