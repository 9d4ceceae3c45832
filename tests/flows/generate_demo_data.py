"""Regenerate the demo's shipped capture files (run once; the result is committed).

    python tests/flows/generate_demo_data.py

writes examples/seed-lab.pcap (the seed lab's traffic, from traffic.py) and
examples/seed-lab.ipfix (softflowd's IPFIX export of it, RFC 5655 file layout),
which the demo replays when softflowd is not installed.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1] / "src")]

from flows_traffic import seed_lab_traffic, write_pcap  # noqa: E402

from microseg.flows.demo import SEED_LAB_IPFIX, SEED_LAB_PCAP  # noqa: E402
from microseg.flows.replay import softflowd_replay  # noqa: E402


def main() -> None:
    SEED_LAB_PCAP.parent.mkdir(parents=True, exist_ok=True)
    write_pcap(seed_lab_traffic(), SEED_LAB_PCAP)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(2.0)
        softflowd_replay(SEED_LAB_PCAP, "127.0.0.1", receiver.getsockname()[1])
        messages = []
        try:
            while True:
                messages.append(receiver.recv(65535))
        except TimeoutError:
            pass
    SEED_LAB_IPFIX.write_bytes(b"".join(messages))
    print(f"{SEED_LAB_PCAP}: written; {SEED_LAB_IPFIX}: {len(messages)} IPFIX messages")


if __name__ == "__main__":
    main()
