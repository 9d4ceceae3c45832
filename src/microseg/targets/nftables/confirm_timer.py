"""The nftables confirm timer: restores the previous ruleset unless a commit is confirmed.

Started by `NftablesDriver.commit(confirm_within=N)` as
`python -m microseg.targets.nftables.confirm_timer --state-dir D --session S --seconds N`
in a new session (setsid). It forks once and the parent exits after printing
`armed <pid>`: the timer process is re-parented to init (or the nearest subreaper), so it
outlives the deploying process whatever kills it, and leaves no zombie behind.

After N seconds it takes the state directory's lock and, if the pending record still names
its session (nobody confirmed or discarded the commit), applies `rollback.nft` -- the owned
table as it was before the commit -- and records the outcome in `expired.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from microseg.targets import DriverError
from microseg.targets.nftables.driver import NftablesDriver, run_nft


def expire(driver: NftablesDriver) -> None:
    """The timer ran out: restore the previous ruleset if the commit is still pending."""
    state_dir = driver.state_dir
    with driver._locked():
        pending = driver._read_pending()
        if pending is None or pending.session != driver.session:
            return
        outcome: dict[str, str] = {"session": driver.session}
        try:
            ruleset = (state_dir / "rollback.nft").read_text()
            run_nft(driver.device, driver.namespace, "-f", "-", ruleset=ruleset)
        except (DriverError, OSError) as error:
            outcome["error"] = str(error)
        driver._write("expired.json", json.dumps(outcome))
        (state_dir / "pending.json").unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="confirm_timer")
    parser.add_argument("--device", required=True)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--session", required=True)
    parser.add_argument("--seconds", required=True, type=int)
    parser.add_argument("--namespace")
    options = parser.parse_args(argv)
    driver = NftablesDriver(options.device, options.namespace, options.session, options.state_dir)
    child = os.fork()
    if child:
        print(f"armed {child}", flush=True)
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for stream in (0, 1, 2):
        os.dup2(devnull, stream)
    time.sleep(options.seconds)
    expire(driver)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
