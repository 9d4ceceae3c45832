"""Deploy benchmark: one change to N eAPI test-double switches, `--parallel P` against
`--parallel 1` in the same run, and microseg's own time per device.

Each double answers every request `--delay` seconds late (a switch's eAPI is not
instant), so a sequential run costs about N x requests x delay and a parallel one about
1/P of it: the ratio shows whether devices really run at once. microseg's own overhead per
device is the sequential run's wall time minus the time the doubles spent answering
(measured inside the doubles' request handler, delay included), divided by N: rendering,
the store's records of every step, pyeapi's HTTP and JSON, the thread pool. The doubles
run in this process, so their own processing competes with microseg for the GIL; the
overhead figure is an upper bound.

Prints one JSON line. Usage: python bench/deploy.py [--devices 50] [--parallel 10]
[--delay 0.02]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests" / "targets")]

import eapi_double  # noqa: E402
from seed_doubles import seed_switch  # noqa: E402

from microseg.deploy import RunOptions, approve_change, create_change, run_change  # noqa: E402
from microseg.policyfile import load_policy  # noqa: E402
from microseg.store import open_store  # noqa: E402

SEED_SWITCH = "andreasm-720xp-home"

_busy = threading.local()
_answering = {"seconds": 0.0, "requests": 0}
_answering_lock = threading.Lock()


def _timed_handler() -> None:
    """Count the time every double spends on a request, from arrival to reply sent."""
    original = eapi_double._Handler.do_POST

    def do_post(self) -> None:
        started = time.perf_counter()
        try:
            original(self)
        finally:
            with _answering_lock:
                _answering["seconds"] += time.perf_counter() - started
                _answering["requests"] += 1

    eapi_double._Handler.do_POST = do_post


def fleet_policy(ports: list[int]):
    """The seed's DNS/NTP policy on N switches, leaf001..., each reached at its double."""
    policy_set = load_policy(ROOT / "examples" / "home-lab-dns-ntp.yaml")
    seed = policy_set.device(SEED_SWITCH)
    devices = tuple(
        seed.model_copy(
            update={
                "name": f"leaf{index:03}",
                "management_address": "127.0.0.1",
                "management_port": port,
                "management_transport": "http",
            }
        )
        for index, port in enumerate(ports, 1)
    )
    domain = policy_set.domains[0].model_copy(update={"devices": tuple(d.name for d in devices)})
    return policy_set.model_copy(
        update={
            "devices": devices,
            "domains": (domain,),
            "monitor_nodes": (),
            "monitor_objects": (),
        }
    )


def deploy_once(count: int, parallel: int, delay: float, directory: Path) -> dict:
    doubles = [seed_switch() for _ in range(count)]
    for double in doubles:
        double.__enter__()
    try:
        policy_set = fleet_policy([double.port for double in doubles])
        url = f"sqlite:///{directory / f'parallel-{parallel}.db'}"
        with open_store(url) as store:
            store.import_policy(policy_set, "bench", "fleet")
            started = time.perf_counter()
            change = create_change(store, "bench")
            create_s = time.perf_counter() - started
            approve_change(store, change.id, "bench")
            for double in doubles:
                double.hang(delay)
            with _answering_lock:
                _answering.update(seconds=0.0, requests=0)
            started = time.perf_counter()
            result = run_change(store, change.id, "bench", RunOptions(parallel=parallel))
            wall = time.perf_counter() - started
        if result.state != "succeeded":
            raise SystemExit(f"the deploy failed: {result.as_json()}")
        with _answering_lock:
            answering = dict(_answering)
        return {"wall_s": wall, "create_s": create_s, **answering}
    finally:
        for double in doubles:
            double.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--parallel", type=int, default=10)
    parser.add_argument("--delay", type=float, default=0.02, help="seconds per eAPI request")
    args = parser.parse_args()
    os.environ.setdefault("MICROSEG_DEVICE_USERNAME", "admin")
    os.environ.setdefault("MICROSEG_DEVICE_PASSWORD", "secret")
    warnings.simplefilter("ignore")
    _timed_handler()
    with tempfile.TemporaryDirectory(prefix="microseg-bench-deploy-") as tmp:
        sequential = deploy_once(args.devices, 1, args.delay, Path(tmp))
        parallel = deploy_once(args.devices, args.parallel, args.delay, Path(tmp))
    overhead = (sequential["wall_s"] - sequential["seconds"]) / args.devices
    print(
        json.dumps(
            {
                "bench": "deploy",
                "devices": args.devices,
                "delay_s": args.delay,
                "requests_per_device": sequential["requests"] / args.devices,
                "parallel_1_s": round(sequential["wall_s"], 3),
                f"parallel_{args.parallel}_s": round(parallel["wall_s"], 3),
                "speedup": round(sequential["wall_s"] / parallel["wall_s"], 2),
                "device_time_per_device_s": round(sequential["seconds"] / args.devices, 4),
                "overhead_per_device_ms": round(overhead * 1000, 1),
                "create_change_s": round(sequential["create_s"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
