"""The application map: groups as nodes, the services between them as edges with their
session counts, what the policy in force blocks in red. Drawn as SVG on the server: no
JavaScript, the same picture for the same sessions (deterministic layout)."""

from __future__ import annotations

import ipaddress
import math
from collections import defaultdict
from dataclasses import dataclass
from xml.sax.saxutils import escape

import numpy as np
import pyarrow as pa

from microseg.evaluate.whatif import replay, session_packets
from microseg.model import PolicySet

OUTSIDE = "(no group)"
# Beyond this many nodes the map keeps those with the most sessions.
MAX_NODES = 24
WIDTH, HEIGHT = 1000, 640


@dataclass(frozen=True)
class Edge:
    source: str
    destination: str
    service: str
    sessions: int
    blocked: bool


@dataclass(frozen=True)
class AppMap:
    nodes: tuple[str, ...]
    edges: tuple[Edge, ...]
    sessions: int


def app_map(policy_set: PolicySet, sessions: pa.Table) -> AppMap:
    """Edges (source group, destination group, service, blocked) summed over sessions;
    each address is placed in its most specific group (longest prefix, except-prefixes
    honoured)."""
    if sessions.num_rows == 0:
        return AppMap((), (), 0)
    columns = session_packets(sessions, "the flow store")
    through = replay(policy_set, columns, None).gets_through
    group_of = _grouper(policy_set)
    sources = [group_of(a) for a in sessions.column("src").to_pylist()]
    destinations = [group_of(a) for a in sessions.column("dst").to_pylist()]
    totals: dict[tuple[str, str, str, bool], int] = defaultdict(int)
    for row, count in enumerate(columns.sessions.tolist()):
        key = (sources[row], destinations[row], str(columns.service[row]), not bool(through[row]))
        totals[key] += int(count)
    weight: dict[str, int] = defaultdict(int)
    for (source, destination, _, _), count in totals.items():
        weight[source] += count
        weight[destination] += count
    kept = sorted(weight, key=lambda n: (-weight[n], n))[:MAX_NODES]
    edges = tuple(
        Edge(s, d, service, count, blocked)
        for (s, d, service, blocked), count in sorted(totals.items())
        if s in kept and d in kept
    )
    return AppMap(tuple(sorted(kept)), edges, int(np.sum(columns.sessions)))


def _grouper(policy_set: PolicySet):
    groups = [
        (group.name, group.prefixes, group.except_prefixes)
        for group in policy_set.groups
        if group.prefixes
    ]
    cache: dict[str, str] = {}

    def group_of(text: str) -> str:
        if text not in cache:
            address = ipaddress.ip_address(text)
            best, best_length = OUTSIDE, -1
            for name, prefixes, excepts in groups:
                if any(address in p for p in excepts if p.version == address.version):
                    continue
                for prefix in prefixes:
                    if (
                        prefix.version == address.version
                        and address in prefix
                        and prefix.prefixlen > best_length
                    ):
                        best, best_length = name, prefix.prefixlen
            cache[text] = best
        return cache[text]

    return group_of


def svg(picture: AppMap) -> str:
    """Nodes on a circle in name order; an edge per (pair, service), curved so that the two
    directions and several services between one pair stay apart."""
    if not picture.nodes:
        return ""
    cx, cy, radius = WIDTH / 2, HEIGHT / 2, min(WIDTH, HEIGHT) / 2 - 90
    count = len(picture.nodes)
    place = {
        name: (
            cx + radius * math.cos(2 * math.pi * i / count - math.pi / 2),
            cy + radius * math.sin(2 * math.pi * i / count - math.pi / 2),
        )
        for i, name in enumerate(picture.nodes)
    }
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        'role="img" aria-label="application map">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#607d8b"/></marker><marker id="arrow-blocked" viewBox="0 0 10 10" refX="10" '
        'refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#c62828"/></marker></defs>',
    ]
    per_pair: dict[tuple[str, str], int] = defaultdict(int)
    for edge in picture.edges:
        parts.append(_edge(edge, place, per_pair))
    for name, (x, y) in place.items():
        label = escape(name)
        width = max(90, 7.4 * len(name) + 20)
        parts.append(
            f'<g class="node"><rect x="{x - width / 2:.1f}" y="{y - 15:.1f}" width="{width:.1f}" '
            f'height="30" rx="15" fill="{"#eceff1" if name == OUTSIDE else "#e3f2fd"}" '
            f'stroke="#1565c0" stroke-width="1.2"/><text x="{x:.1f}" y="{y + 4.5:.1f}" '
            f'text-anchor="middle" font-size="13" fill="#0d2b45">{label}</text></g>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _edge(edge: Edge, place: dict, per_pair: dict[tuple[str, str], int]) -> str:
    (x1, y1), (x2, y2) = place[edge.source], place[edge.destination]
    colour = "#c62828" if edge.blocked else "#607d8b"
    marker = "arrow-blocked" if edge.blocked else "arrow"
    label = f"{edge.service} ×{edge.sessions}" + (" blocked" if edge.blocked else "")
    title = f"<title>{escape(f'{edge.source} → {edge.destination}: {label}')}</title>"
    dash = ' stroke-dasharray="6 4"' if edge.blocked else ""
    if edge.source == edge.destination:  # within one group: a loop outside the node
        nth = per_pair[(edge.source, edge.source)]
        per_pair[(edge.source, edge.source)] += 1
        size = 34 + 22 * nth
        path = f"M{x1 - 10:.1f},{y1 - 15:.1f} c{-size:.1f},{-size:.1f} {size + 20:.1f},{-size:.1f} 20,0"
        return (
            f'<g class="edge">{title}<path d="{path}" fill="none" stroke="{colour}" '
            f'stroke-width="1.6"{dash} marker-end="url(#{marker})"/><text x="{x1:.1f}" '
            f'y="{y1 - size * 0.8 - 18:.1f}" text-anchor="middle" font-size="11" '
            f'fill="{colour}">{escape(label)}</text></g>'
        )
    key = (edge.source, edge.destination)
    nth = per_pair[key]
    per_pair[key] += 1
    length = math.hypot(x2 - x1, y2 - y1) or 1.0
    # Shorten to the node's edge, bend to the right of the direction of travel.
    ux, uy = (x2 - x1) / length, (y2 - y1) / length
    sx, sy, ex, ey = x1 + ux * 24, y1 + uy * 18, x2 - ux * 24, y2 - uy * 18
    bend = 30 + 26 * nth
    mx, my = (sx + ex) / 2 - uy * bend, (sy + ey) / 2 + ux * bend
    tx, ty = (sx + ex) / 4 + mx / 2, (sy + ey) / 4 + my / 2
    return (
        f'<g class="edge">{title}<path d="M{sx:.1f},{sy:.1f} Q{mx:.1f},{my:.1f} {ex:.1f},{ey:.1f}" '
        f'fill="none" stroke="{colour}" stroke-width="1.6"{dash} marker-end="url(#{marker})"/>'
        f'<text x="{tx:.1f}" y="{ty:.1f}" text-anchor="middle" font-size="11" fill="{colour}" '
        f'paint-order="stroke" stroke="#fff" stroke-width="3">{escape(label)}</text></g>'
    )
