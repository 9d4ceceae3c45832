"""FlowBatch from readable rows, for session-table tests."""

from __future__ import annotations

import numpy as np

from microseg.flows.batch import FlowBatch, address_halves


def flow_batch(rows: list[dict]) -> FlowBatch:
    batch = FlowBatch.empty(len(rows))
    batch.direction[:] = -1
    for index, row in enumerate(rows):
        src_hi, src_lo = address_halves(row["src"])
        dst_hi, dst_lo = address_halves(row["dst"])
        exporter_hi, exporter_lo = address_halves(row.get("exporter", "10.255.1.10"))
        batch.family[index] = 6 if ":" in row["src"] else 4
        batch.src_hi[index], batch.src_lo[index] = src_hi, src_lo
        batch.dst_hi[index], batch.dst_lo[index] = dst_hi, dst_lo
        batch.exporter_hi[index], batch.exporter_lo[index] = exporter_hi, exporter_lo
        batch.src_port[index] = row.get("sport", 0)
        batch.dst_port[index] = row.get("dport", 0)
        batch.protocol[index] = row.get("proto", 17)
        batch.icmp_type_code[index] = row.get("icmp", 0)
        batch.packets[index] = row.get("packets", 1)
        batch.bytes[index] = row.get("bytes", 100)
        batch.rev_packets[index] = row.get("rev_packets", 0)
        batch.rev_bytes[index] = row.get("rev_bytes", 0)
        batch.start_ms[index] = row.get("start", 1_763_578_369_000)
        batch.end_ms[index] = row.get("end", batch.start_ms[index])
        batch.tcp_flags[index] = row.get("flags", 0)
        batch.rev_tcp_flags[index] = row.get("rev_flags", 0)
        batch.vrf_id[index] = row.get("vrf", 0)
    return batch


def random_flows(count: int, seed: int = 7) -> FlowBatch:
    """`count` uniflow records: clients in 10.1/16 to servers in 10.2/24, both directions."""
    generator = np.random.default_rng(seed)
    half = count // 2
    batch = FlowBatch.empty(2 * half)
    batch.family[:] = 4
    client = (10 << 24) | (1 << 16) | generator.integers(1, 65000, half, dtype=np.uint64)
    server = (10 << 24) | (2 << 16) | generator.integers(1, 250, half, dtype=np.uint64)
    client_port = generator.integers(49152, 65535, half, dtype=np.uint64)
    server_port = generator.choice(np.array([22, 53, 80, 443], np.uint64), half)
    mapped = np.uint64(0xFFFF00000000)
    batch.src_lo[:half], batch.dst_lo[:half] = mapped | client, mapped | server
    batch.src_lo[half:], batch.dst_lo[half:] = mapped | server, mapped | client
    batch.src_port[:half], batch.dst_port[:half] = client_port, server_port
    batch.src_port[half:], batch.dst_port[half:] = server_port, client_port
    batch.protocol[:] = 6
    batch.packets[:] = generator.integers(1, 100, 2 * half)
    batch.bytes[:] = batch.packets * 80
    start = 1_763_578_369_000 + generator.integers(0, 3_600_000, half)
    batch.start_ms[:half], batch.start_ms[half:] = start, start + 1
    batch.end_ms[:] = batch.start_ms + 500
    batch.tcp_flags[:half], batch.tcp_flags[half:] = 0x1B, 0x1B
    batch.direction[:] = -1
    batch.exporter_lo[:] = mapped | np.uint64((10 << 24) | (255 << 16) | (1 << 8) | 10)
    return batch
