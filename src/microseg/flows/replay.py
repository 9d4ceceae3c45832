"""Feeding a collector from recorded traffic: softflowd over a pcap, or an IPFIX file.

softflowd 1.1.0 facts this relies on: `-r FILE` reads a pcap, flushes every flow at end of
file and exits; `-a` makes flow times follow the capture; `-c` must not follow `-r` (it
then blocks forever), so the control socket and pid file go to a scratch directory.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from microseg.flows import ipfix


def softflowd_available() -> bool:
    return shutil.which("softflowd") is not None


def softflowd_replay(
    pcap: Path, host: str, port: int, version: int = 10, biflow: bool = False
) -> subprocess.CompletedProcess:
    """Export the flows of a pcap to host:port with softflowd (IPFIX 10 or NetFlow 9)."""
    with tempfile.TemporaryDirectory(prefix="microseg-softflowd-") as scratch:
        # the control socket and pid file first: after -r, -c makes softflowd block
        command = ["softflowd", "-c", f"{scratch}/ctl", "-p", f"{scratch}/pid"]
        command += ["-r", str(pcap), "-v", str(version), "-a", "-A", "milli"]
        if biflow:
            command.append("-b")  # RFC 5103 biflows (IPFIX only)
        destination = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        command += ["-n", destination]
        return subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)


def read_ipfix_file(path: Path) -> list[bytes]:
    """IPFIX messages of an RFC 5655 IPFIX file (messages back to back, self-delimiting)."""
    data = Path(path).read_bytes()
    messages, position = [], 0
    while len(data) - position >= ipfix.HEADER.size:
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if length < ipfix.HEADER.size:
            break
        messages.append(data[position : position + length])
        position += length
    return messages


def send_datagrams(messages: list[bytes], host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sender:
        for message in messages:
            sender.sendto(message, (host, port))
