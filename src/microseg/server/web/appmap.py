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
MAX_LABELS = 3  # services written on one line of the map
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
    """Nodes on a circle in name order; a curved line per (pair, blocked or forwarded) with
    its services, so that the two directions between a pair stay apart."""
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
    # One line per (pair, blocked or not), labelled with its services: the table lists each.
    lines: dict[tuple[str, str, bool], list[Edge]] = defaultdict(list)
    for edge in picture.edges:
        lines[(edge.source, edge.destination, edge.blocked)].append(edge)
    per_pair: dict[tuple[str, str], int] = defaultdict(int)
    for (source, destination, blocked), edges in lines.items():
        parts.append(_line(source, destination, blocked, edges, place, per_pair))
    for name, (x, y) in place.items():
        label = escape(name)
        width = _node_width(name)
        parts.append(
            f'<g class="node"><rect x="{x - width / 2:.1f}" y="{y - 15:.1f}" width="{width:.1f}" '
            f'height="30" rx="15" fill="{"#eceff1" if name == OUTSIDE else "#e3f2fd"}" '
            f'stroke="#1565c0" stroke-width="1.2"/><text x="{x:.1f}" y="{y + 4.5:.1f}" '
            f'text-anchor="middle" font-size="13" fill="#0d2b45">{label}</text></g>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _node_width(name: str) -> float:
    return max(90.0, 7.4 * len(name) + 20)


def _labels(edges: list[Edge], blocked: bool) -> list[str]:
    ordered = sorted(edges, key=lambda e: (-e.sessions, e.service))
    labels = [f"{e.service} ×{e.sessions}" for e in ordered[:MAX_LABELS]]
    if len(ordered) > MAX_LABELS:
        labels.append(f"+{len(ordered) - MAX_LABELS} more")
    if blocked:
        labels[0] += " blocked"
    return labels


def _text(x: float, y: float, labels: list[str], colour: str, anchor: str) -> str:
    spans = "".join(
        f'<tspan x="{x:.1f}" dy="{0 if i == 0 else 13}">{escape(label)}</tspan>'
        for i, label in enumerate(labels)
    )
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="11" fill="{colour}" '
        f'paint-order="stroke" stroke="#fff" stroke-width="3">{spans}</text>'
    )


def _line(
    source: str,
    destination: str,
    blocked: bool,
    edges: list[Edge],
    place: dict,
    per_pair: dict[tuple[str, str], int],
) -> str:
    (x1, y1), (x2, y2) = place[source], place[destination]
    colour = "#c62828" if blocked else "#607d8b"
    marker = "arrow-blocked" if blocked else "arrow"
    labels = _labels(edges, blocked)
    title = f"<title>{escape(f'{source} → {destination}: ' + ', '.join(labels))}</title>"
    dash = ' stroke-dasharray="6 4"' if blocked else ""
    stroke = f'fill="none" stroke="{colour}" stroke-width="1.6"{dash} marker-end="url(#{marker})"'
    nth = per_pair[(source, destination)]
    per_pair[(source, destination)] += 1
    if source == destination:  # within one group: a loop above the node, labels beside it
        size = 26 + 12 * nth
        path = f"M{x1 - 10:.1f},{y1 - 15:.1f} c{-size:.1f},{-size:.1f} {size + 20:.1f},{-size:.1f} 20,0"
        beside = x1 + _node_width(source) / 2 + 8
        text = _text(beside, y1 + 4 - 13 * (len(labels) - 1) - 44 * nth, labels, colour, "start")
        return f'<g class="edge">{title}<path d="{path}" {stroke}/>{text}</g>'
    length = math.hypot(x2 - x1, y2 - y1) or 1.0
    # Shortened to the nodes' edges, bent to the right of the direction of travel: the two
    # directions between a pair (and a blocked next to a forwarded line) stay apart.
    ux, uy = (x2 - x1) / length, (y2 - y1) / length
    sx, sy, ex, ey = x1 + ux * 24, y1 + uy * 18, x2 - ux * 24, y2 - uy * 18
    bend = 34 + 40 * nth
    mx, my = (sx + ex) / 2 - uy * bend, (sy + ey) / 2 + ux * bend
    # Labels of several lines between one pair sit at different points along them.
    t = (0.5, 0.3, 0.7)[nth % 3]
    tx = (1 - t) ** 2 * sx + 2 * (1 - t) * t * mx + t**2 * ex
    ty = (1 - t) ** 2 * sy + 2 * (1 - t) * t * my + t**2 * ey
    path = f"M{sx:.1f},{sy:.1f} Q{mx:.1f},{my:.1f} {ex:.1f},{ey:.1f}"
    text = _text(tx, ty - 6.5 * (len(labels) - 1), labels, colour, "middle")
    return f'<g class="edge">{title}<path d="{path}" {stroke}/>{text}</g>'
