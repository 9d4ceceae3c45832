"""A policy's decisions, exactly: which match decides which packets, and what an edit changes.

Shadowing is decided as Batfish's filterLineReachability does, but over a finite space: the
atomic cells of the device's field-sets (addresses and ports cut at every boundary,
protocols and ICMP types grouped by identical membership). Every question is asked over a
*region*, the classes of packets one term accepts, cut only by the terms whose boxes meet it
(`boxes.TermBoxes`): a term that misses it on one line is zero on every point of it, so
leaving it out changes no first match. Rows are a few bits wide and collapse into few
distinct classes, so the cost follows the pairs of terms that meet, not the policy squared.
A match is usually settled by its box's first packet, which needs no region at all.

Questions: does a match ever decide a packet, and which earlier matches decide its packets
instead; does removing a rule (all its matches) change any packet's verdict; does moving a
rule up widen access. A verdict is the action with its redirect next-hops and mirror
session; access is ranked drop < redirect < forward.

A rule's decap type is one more packet dimension (EOS `packet type` / `vxlan decap`): when a
policy restricts matches to decapsulated or to plain packets, each state is analysed with
the matches that apply in it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from microseg.compile.intent import DeviceIntent, Match, PolicyIntent
from microseg.evaluate.engine import lowest_set_bit, pack_rows
from microseg.evaluate.lint.boxes import AddressLine, TermBoxes, distinct_rows, every_bit

GRID_CHUNK = 1 << 18  # grid points per step of a region scan
FIRST_CHUNK = 1 << 10  # grid points of its first step
# Grid points x words one edit question may scan; past it lint abstains (says it could not
# decide) rather than run for minutes. Deterministic: a size, not a time.
WORK_LIMIT = 1 << 31
SAMPLE_POINTS = 16  # packet classes a reachable match keeps as a sample

Effect = tuple[str, tuple, str | None]  # action, redirect next-hops, mirror session
ACCESS_RANK = {"drop": 0, "redirect": 1, "forward": 2}
# Decap types that apply to a plain packet and to a decapsulated VXLAN packet.
DECAP_STATES = (("allow-all", "no-vxlan-decap"), ("allow-all", "vxlan-decap-only"))


def match_effect(match: Match) -> Effect:
    return (match.action, match.redirect_next_hops, match.mirror_session)


def default_effect(policy: PolicyIntent) -> Effect:
    """What the implicit `ipv4-all-default` / `ipv6-all-default` matches do: the policy's
    `default_action` (forward, EOS's own default, or drop)."""
    return (policy.default_action, (), None)


def describe_effect(effect: Effect) -> str:
    action, next_hops, mirror = effect
    text = action
    if next_hops:
        text += " to " + ", ".join(str(h) for h in next_hops)
    if mirror:
        text += f" mirrored to {mirror}"
    return text


# -- packed bit rows --------------------------------------------------------------------------
def _combined(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The distinct non-empty ANDs of a row of `left` with a row of `right`."""
    if len(left) == 1 and ((right & left[0]) == right).all():
        return right
    if len(right) == 1 and ((left & right[0]) == left).all():
        return left
    rows = (left[:, None, :] & right[None, :, :]).reshape(-1, left.shape[1])
    return distinct_rows(rows[(rows != 0).any(axis=1)])


def _mask(selected: np.ndarray) -> np.ndarray:
    """uint64[word]: a row with the bits where `selected` (bool per bit) is set."""
    return pack_rows(selected[:, None])[0]


def first_set(grid: np.ndarray) -> np.ndarray:
    """Index of the lowest set bit of each row of packed words; -1 for an all-zero row."""
    nonzero = grid != 0
    word = nonzero.argmax(axis=1)
    rows = np.arange(len(grid))
    first = word * 64 + lowest_set_bit(grid[rows, word])
    return np.where(nonzero[rows, word], first, -1)


@dataclass(frozen=True)
class Region:
    """The packets one term accepts, as classes over the terms that can meet them."""

    terms: np.ndarray  # the space's term index of each bit of the rows, ascending
    sources: np.ndarray  # uint64[class, word], projected onto `terms`
    destinations: np.ndarray
    services: np.ndarray

    @property
    def uncut(self) -> bool:
        """One class of packets, inside every term the region names."""
        return len(self.sources) == len(self.destinations) == len(self.services) == 1

    def sample(self) -> Sample:
        """The one class of an uncut region."""
        return Sample(self.sources & self.destinations & self.services, self.terms)

    @property
    def work(self) -> int:
        words = self.sources.shape[1]
        return len(self.sources) * len(self.destinations) * len(self.services) * words

    def grids(self) -> Iterator[np.ndarray]:
        for _, grid in self.chunks():
            yield grid

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """Rows of every (source, destination, service) class combination, in chunks, each
        with the index of its first point (point p is source p // (d * v), destination
        p // v % d, service p % v)."""
        # Chunks grow from small: most questions are answered by the first packets looked
        # at (a match that decides something usually decides its first class), so the
        # first chunks are gathered row by row; later ones are broadcast from the pairs.
        words = self.sources.shape[1]
        pair_count = len(self.destinations) * len(self.services)
        total = len(self.sources) * pair_count
        start, size = 0, FIRST_CHUNK
        while start < total and size < pair_count:
            point = np.arange(start, min(start + size, total))
            yield (
                start,
                (
                    self.sources[point // pair_count]
                    & self.destinations[point // len(self.services) % len(self.destinations)]
                    & self.services[point % len(self.services)]
                ),
            )
            start, size = start + len(point), size * 4
        if start >= total:
            return
        pairs = (self.destinations[:, None, :] & self.services[None, :, :]).reshape(-1, words)
        first_full = -(-start // pair_count)  # the first source row not yet begun
        if first_full * pair_count > start:  # the rest of a partly gathered source row
            point = np.arange(start, first_full * pair_count)
            yield start, self.sources[point // pair_count] & pairs[point % pair_count]
        # Whole source rows, still growing from small (few pairs: the first chunk would
        # otherwise be the whole region).
        per_chunk = max(1, size // pair_count)
        source = first_full
        while source < len(self.sources):
            chunk = self.sources[source : source + per_chunk]
            yield source * pair_count, (chunk[:, None, :] & pairs[None, :, :]).reshape(-1, words)
            source += len(chunk)
            per_chunk = min(per_chunk * 4, max(1, GRID_CHUNK // pair_count))


@dataclass(frozen=True)
class Sample:
    """Some packet classes a match decides, as rows of bits over `terms`: a cheap first
    place to look for a verdict that removing its rule would change."""

    rows: np.ndarray
    terms: np.ndarray


@dataclass(frozen=True)
class Coverage:
    """For one match: whether it ever decides, and which earlier matches decide its space."""

    empty: bool  # no packet fits it at all
    reachable: bool  # it decides at least one packet
    deciders: tuple[int, ...] = ()  # every earlier match deciding some of its packets
    blockers: tuple[int, ...] = ()  # an irredundant subset of those that covers it
    sample: Sample | None = None  # when reachable: some packet classes it decides
    # When reachable through its first packet: that packet's class (the first row of the
    # sample) and the term whose region the rest of the sample is drawn from.
    first: Sample | None = None
    sample_term: int = -1


class DecisionSpace:
    """The matches of a policy that apply in one decapsulation state, as term boxes; every
    question about a term is asked over the classes of its box cut by the terms it meets."""

    def __init__(self, boxes: TermBoxes, match_count: int):
        self.boxes = boxes
        self.term_match = boxes.term_match
        # Match m's terms are bounds[m]:bounds[m + 1] (none if it does not apply here).
        self._bounds = np.searchsorted(self.term_match, np.arange(match_count + 1)).tolist()
        self._regions: dict[int, Region | None] = {}
        self._coverage: dict[int, Coverage | None] = {}
        self._samples: dict[int, Sample] = {}

    def terms_of(self, matches: list[int]) -> np.ndarray:
        """The terms of some matches (term_match is sorted: a match's terms are a run)."""
        bounds = self._bounds
        return np.concatenate([np.arange(bounds[m], bounds[m + 1]) for m in matches])

    def region(self, term: int) -> Region | None:
        """The classes term `term` accepts, over the terms that meet it; None when it accepts
        no packet."""
        if term not in self._regions:
            self._regions[term] = self._region(term)
        return self._regions[term]

    def _region(self, term: int) -> Region | None:
        terms = self.boxes.meets(term)
        if not len(terms):
            return None
        if self.boxes.one_class[term]:  # every term that meets it holds all of it
            every = every_bit(len(terms))
            return Region(terms, every, every, every)
        source, destination, protocol, icmp, source_port, destination_port = self.boxes.classes(
            term, terms
        )
        # The service classes are the distinct ANDs of protocol, ICMP-type and port classes,
        # combined pairwise and deduplicated at each step (AND is associative), so the full
        # four-way product is never built.
        service = _combined(_combined(protocol, icmp), _combined(source_port, destination_port))
        return Region(terms, source, destination, service)

    def first_sample(self, term: int) -> Sample:
        """The class of the term's first packet, as a one-row Sample over the terms it meets."""
        terms = self.boxes.meets(term)
        holders = np.zeros(len(terms), dtype=bool)
        holders[np.searchsorted(terms, self.boxes.first_point(term))] = True
        return Sample(_mask(holders)[None, :], terms)

    def sample(self, match: int) -> Sample | None:
        """Some packet classes a reachable match decides: the decided rows of the first chunk
        of a region scan that has any."""
        coverage = self.coverage(match)
        if coverage is None or coverage.sample is not None or coverage.sample_term < 0:
            return coverage.sample if coverage else None
        if match not in self._samples:
            region = self.region(coverage.sample_term)
            assert region is not None  # it holds the first packet
            for grid in region.grids():
                decided = self.term_match[region.terms[first_set(grid)]] == match
                if decided.any():
                    rows = grid[np.flatnonzero(decided)[:SAMPLE_POINTS]]
                    self._samples[match] = Sample(rows, region.terms)
                    break
        return self._samples[match]

    # -- does a match decide anything? ------------------------------------------------------
    def coverage(self, match: int) -> Coverage | None:
        """None when the match does not apply in this state."""
        if match not in self._coverage:
            self._coverage[match] = self._compute_coverage(match)
        return self._coverage[match]

    def _compute_coverage(self, match: int) -> Coverage | None:
        terms = self.terms_of([match])
        if not len(terms):
            return None
        deciders: set[int] = set()
        regions = []
        for term in terms:
            if not self.boxes.one_class[term] and len(self.boxes.meets(term)):
                # The first packet of the term's box decides first, as a region scan would
                # find: the region is built only if a sample needs more than that packet.
                opening = self.first_sample(term)
                if self.term_match[opening.terms[first_set(opening.rows)[0]]] == match:
                    return Coverage(False, True, first=opening, sample_term=int(term))
            region = self.region(term)
            if region is None:
                continue
            if region.uncut:  # one class, which every term it meets holds: the first decides
                first = int(self.term_match[region.terms[0]])
                if first == match:
                    return Coverage(empty=False, reachable=True, sample=region.sample())
                deciders.add(first)
                regions.append(region)
                continue
            for grid in region.grids():
                deciding = self.term_match[region.terms[first_set(grid)]]
                decided = deciding == match
                if decided.any():
                    sample = Sample(grid[np.flatnonzero(decided)[:SAMPLE_POINTS]], region.terms)
                    return Coverage(empty=False, reachable=True, sample=sample)
                deciders.update(int(m) for m in np.unique(deciding))
            regions.append(region)
        if not regions:
            return Coverage(empty=True, reachable=False)
        ordered = sorted(deciders)
        return Coverage(False, False, tuple(ordered), self._irredundant(ordered, regions))

    def _irredundant(self, deciders: list[int], regions: list[Region]) -> tuple[int, ...]:
        """Drop deciders (latest first) while the others still cover every point."""
        covered: dict[int, list[np.ndarray]] = {match: [] for match in deciders}
        for region in regions:
            masks = {m: _mask(self.term_match[region.terms] == m) for m in deciders}
            for grid in region.grids():
                for match, mask in masks.items():
                    covered[match].append((grid & mask).any(axis=1))
        covers = {match: np.concatenate(parts) for match, parts in covered.items()}
        kept = list(deciders)
        for match in reversed(deciders):
            others = [covers[m] for m in kept if m != match]
            if others and np.logical_or.reduce(others).all():
                kept.remove(match)
        return tuple(kept)

    # -- what an edit changes -----------------------------------------------------------------
    def removal_conflict(
        self,
        first_term: int,
        last_term: int,
        scan_terms: np.ndarray,
        hinted: np.ndarray,
        codes: np.ndarray,
        default_code: int,
    ) -> Conflict | Literal[False] | None:
        """Whether removing terms first_term..last_term (one rule's) can change a verdict
        when any subset of the `hinted` terms (bool per term) is removed too; None if not,
        False when the space is too large to decide. Only `scan_terms` (the rule's) are
        scanned: a packet no term of the rule accepts keeps its verdict."""
        for term in scan_terms:
            region = self.region(int(term))
            if region is None:
                continue
            if region.work > WORK_LIMIT:
                return False
            for grid in region.grids():
                conflict = self.conflict_in(
                    grid, region.terms, first_term, last_term, hinted, codes, default_code
                )
                if conflict:
                    return conflict
        return None

    def conflict_in(
        self,
        rows: np.ndarray,
        terms: np.ndarray,
        first_term: int,
        last_term: int,
        hinted: np.ndarray,
        codes: np.ndarray,
        default_code: int,
    ) -> Conflict | None:
        """The check behind `removal_conflict`, on some packet classes (rows of bits over
        `terms`). At a packet the rule decides once the hinted terms are gone, every term
        that could decide it once the rule is gone too (the hinted ones up to the first
        term that stays, and that one, or the default) must give the rule's verdict."""
        gone = hinted[terms]
        first_kept = terms[first_set(rows & _mask(~gone))]
        ours = first_kept >= first_term  # a term of the rule is set: first_kept <= last
        if not ours.any():
            return None
        return self._conflict_at(
            rows[ours], terms, first_kept[ours], last_term, gone, codes, default_code
        )

    def _conflict_at(
        self,
        rows: np.ndarray,
        terms: np.ndarray,
        deciding: np.ndarray,
        last_term: int,
        gone: np.ndarray,
        codes: np.ndarray,
        default_code: int,
    ) -> Conflict | None:
        """`conflict_in` on rows the rule decides (by term `deciding`) with `gone` out."""
        later = terms > last_term
        code_of_bit = codes[self.term_match[terms]]
        before = codes[self.term_match[deciding]]
        next_kept = first_set(rows & _mask(later & ~gone))
        after = np.where(next_kept >= 0, code_of_bit[np.maximum(next_kept, 0)], default_code)
        conflicting = after != before
        if (later & gone).any():
            for code in np.unique(before):
                same = before == code
                odd = first_set(rows[same] & _mask(later & gone & (code_of_bit != code)))
                kept = next_kept[same]
                conflicting[same] |= (odd >= 0) & ((kept < 0) | (odd < kept))
        if not conflicting.any():
            return None
        # Does removing the rule alone change one of them? Where the rule decided first,
        # the next term of all (hinted or not) decides then.
        decided_first = terms[first_set(rows)] == deciding
        next_any = first_set(rows & _mask(later))
        alone_after = np.where(next_any >= 0, code_of_bit[np.maximum(next_any, 0)], default_code)
        alone = conflicting & decided_first & (alone_after != before)
        if alone.any():
            row = int(np.flatnonzero(alone)[0])
            return Conflict(int(before[row]), int(alone_after[row]), True)
        row = int(np.flatnonzero(conflicting)[0])
        shown = after[row]
        if shown == before[row]:  # a suggested removal between decides differently
            odd_bits = _mask(later & gone & (code_of_bit != before[row]))
            shown = code_of_bit[first_set(rows[row : row + 1] & odd_bits)[0]]
        return Conflict(int(before[row]), int(shown), False)

    def move_widens(
        self, first_term: int, last_term: int, above_term: int, codes, rank
    ) -> bool | None:
        """Whether moving terms first_term..last_term (one rule's) to just before term
        `above_term` gives some packet a verdict of higher access; None when too large."""
        for term in range(first_term, last_term + 1):
            region = self.region(term)
            if region is None:
                continue
            if region.work > WORK_LIMIT:
                return None
            own = _mask((region.terms >= first_term) & (region.terms <= last_term))
            for grid in region.grids():
                first = region.terms[first_set(grid)]
                moved = first >= above_term  # decided at or after the new place: now this rule
                if not moved.any():
                    continue
                now = region.terms[first_set(grid[moved] & own)]
                before = rank[codes[self.term_match[first[moved]]]]
                if (rank[codes[self.term_match[now]]] > before).any():
                    return True
        return False


@dataclass(frozen=True)
class Conflict:
    """A packet whose verdict removing a rule changes: codes before and after, and whether
    removing the rule alone changes it (else only with other suggested removals)."""

    before: int
    after: int
    alone: bool


@dataclass(frozen=True)
class Outcome:
    """What removing a rule does: `decided` False when lint could not tell (too large)."""

    decided: bool
    change: tuple[Effect, Effect] | None = None  # one verdict before and after, if any
    # The change shown needs other removals lint suggests to be made too.
    alongside: bool = False


class PolicyAnalysis:
    """One policy of a device, analysed exactly; results are cached per match and rule.

    Example: PolicyAnalysis(AddressLine(intent), intent, 0).removal_plan(frozenset())"""

    def __init__(self, line: AddressLine, intent: DeviceIntent, position: int):
        policy = intent.policies[position]
        self.intent = intent
        self.policy = policy
        self.matches = policy.matches
        effects = [match_effect(m) for m in policy.matches]
        self.default = default_effect(policy)
        self.effects = list(dict.fromkeys([*effects, self.default]))
        code_of = {effect: code for code, effect in enumerate(self.effects)}
        self.codes = np.array([code_of[e] for e in effects], dtype=np.int64)
        self.default_code = code_of[self.default]
        self.rank = np.array([ACCESS_RANK[e[0]] for e in self.effects], dtype=np.int64)
        self.rules: dict[str, list[int]] = {}
        for index, match in enumerate(policy.matches):
            self.rules.setdefault(match.rule, []).append(index)
        self.spaces = self._spaces(line)

    def _spaces(self, line: AddressLine) -> list[DecisionSpace]:
        every = np.arange(len(self.matches), dtype=np.int64)
        states: list[tuple[str, ...]] = [("allow-all",)]
        if any(m.decap_type != "allow-all" for m in self.matches):
            states = list(DECAP_STATES)
        spaces = []
        for applies in states:
            indexes = every[[m.decap_type in applies for m in self.matches]]
            matches = tuple(self.matches[i] for i in indexes)
            boxes = TermBoxes(line, self.intent, matches, indexes)
            spaces.append(DecisionSpace(boxes, len(self.matches)))
        return spaces

    def coverage(self, match: int) -> Coverage:
        parts = [c for space in self.spaces if (c := space.coverage(match)) is not None]
        if any(p.reachable for p in parts):
            return Coverage(empty=False, reachable=True)
        if all(p.empty for p in parts):
            return Coverage(empty=True, reachable=False)
        deciders = sorted({m for p in parts for m in p.deciders})
        blockers = sorted({m for p in parts for m in p.blockers})
        return Coverage(False, False, tuple(deciders), tuple(blockers))

    def removal_plan(self, unidirectional: frozenset[str]) -> dict[str, Outcome]:
        """What removing each rule does, and so which removals lint suggests.

        The suggestions are safe in any combination: applying all of them, or any subset,
        changes no packet's verdict (two identical drops are each removable, but not
        both; removing a rule must not bring a dead one to life with another verdict).
        Rules whose matches all decide nothing come first, with the reverse matches of
        the rules lint makes `unidirectional` (they decide nothing either): any set of
        those can go. Then every other rule in policy order, suggested only if, at every
        packet it decides once any suggested removals are made, every match that could
        decide the packet without it (suggested ones up to the first that stays, and
        that one, or the default) gives its verdict.

        A rule whose matches all decide traffic is suggested in a default-forward policy
        only when later rules (not the default) keep its verdicts: an allow rule above
        the drops still to come is how a policy is built."""
        hinted = np.zeros(len(self.matches), dtype=bool)
        outcomes: dict[str, Outcome] = {}
        for rule, indexes in self.rules.items():
            if not any(self.coverage(i).reachable for i in indexes):
                hinted[indexes] = True
                outcomes[rule] = Outcome(True)
            elif rule in unidirectional:
                hinted[[i for i in indexes if self.matches[i].reverse]] = True
        all_live = {
            rule
            for rule, indexes in self.rules.items()
            if rule not in outcomes and all(self.coverage(i).reachable for i in indexes)
        }
        live_default_keeps = self.default[0] != "forward"
        # The suggested removals so far, per space and term.
        gone = [hinted[space.term_match] for space in self.spaces]
        for rule, indexes in self.rules.items():
            if rule in outcomes:
                continue
            default_keeps = rule not in all_live or live_default_keeps
            outcome = self._removal(rule, gone, default_keeps)
            outcomes[rule] = outcome
            if outcome.decided and outcome.change is None:
                for space, marks in zip(self.spaces, gone, strict=True):
                    marks[space.terms_of(indexes)] = True
        return outcomes

    def _sample_conflict(
        self, space: DecisionSpace, present, first: int, last: int, hinted, default_code: int
    ) -> Conflict | None:
        """`removal_conflict` looked for first in the samples of packet classes the rule's
        matches decide (it still decides them whatever else is removed: removing matches
        never makes an earlier one match)."""
        for match in sorted(set(space.term_match[present].tolist())):
            coverage = space.coverage(match)
            if coverage is None or not coverage.reachable:
                continue
            # The match decided these classes first, and still does: removing other
            # matches never makes an earlier one match. The first packet alone settles it
            # when removing the rule alone changes its verdict (the sample's answer then).
            if coverage.first is not None:
                conflict = self._conflict_in(
                    space, coverage.first, match, last, hinted, default_code
                )
                if conflict and conflict.alone:
                    return conflict
            sample = space.sample(match)
            if sample is None:
                continue
            conflict = self._conflict_in(space, sample, match, last, hinted, default_code)
            if conflict:
                return conflict
        return None

    def _conflict_in(
        self, space: DecisionSpace, sample: Sample, match: int, last: int, hinted, default_code
    ) -> Conflict | None:
        if sample.terms[-1] <= last:  # no term after the rule: the default decides them
            if self.codes[match] != default_code:
                return Conflict(int(self.codes[match]), default_code, True)
            return None
        deciding = sample.terms[first_set(sample.rows)]
        return space._conflict_at(
            sample.rows,
            sample.terms,
            deciding,
            last,
            hinted[sample.terms],
            self.codes,
            default_code,
        )

    def _removal(self, rule: str, gone: list[np.ndarray], default_keeps: bool) -> Outcome:
        indexes = self.rules[rule]
        # A code no match has: with it every fall-through to the default differs.
        default_code = self.default_code if default_keeps else len(self.effects)
        effects = [*self.effects, self.default]
        for space, hinted_terms in zip(self.spaces, gone, strict=True):
            terms = space.terms_of(indexes)
            present = terms[~hinted_terms[terms]]
            if not len(present):
                continue
            first, last = int(terms[0]), int(terms[-1])
            if last == len(space.term_match) - 1:
                # Nothing after the rule: without it, the default decides what it did.
                for match in sorted(set(space.term_match[present].tolist())):
                    coverage = space.coverage(match)
                    if coverage and coverage.reachable and self.codes[match] != default_code:
                        change = (self.effects[self.codes[match]], self.default)
                        return Outcome(True, change)
                if all(self.codes[space.term_match[present]] == default_code):
                    continue
            conflict = self._sample_conflict(
                space, present, first, last, hinted_terms, default_code
            ) or space.removal_conflict(
                first, last, present, hinted_terms, self.codes, default_code
            )
            if conflict is False:
                return Outcome(False)
            if isinstance(conflict, Conflict):
                change = (effects[conflict.before], effects[conflict.after])
                return Outcome(True, change, alongside=not conflict.alone)
        return Outcome(True)

    def reverse_matches_decide_nothing(self, rule: str) -> bool:
        """True when the rule has reverse matches here and none decides a packet."""
        reverse = [i for i in self.rules[rule] if self.matches[i].reverse]
        return bool(reverse) and not any(self.coverage(i).reachable for i in reverse)

    def move_widens(self, rule: str, above_rule: str) -> bool | None:
        """Whether moving `rule` just above `above_rule` widens access for some packet."""
        above = self.rules[above_rule][0]
        for space in self.spaces:
            terms = space.terms_of(self.rules[rule])
            if not len(terms):
                continue
            above_term = int(np.searchsorted(space.term_match, above, side="left"))
            widens = space.move_widens(
                int(terms[0]), int(terms[-1]), above_term, self.codes, self.rank
            )
            if widens is not False:
                return widens
        return False


@dataclass(frozen=True)
class EditPlan:
    """The edits lint suggests, all verified together: applying every one of them at once
    changes no packet's verdict."""

    unidirectional: frozenset[str]  # rules whose reverse matches decide nothing anywhere
    removals: dict[str, dict[str, Outcome]]  # policy -> rule -> what removing it does

    def removable(self, policy: str, rule: str) -> Outcome:
        return self.removals[policy][rule]


def plan_edits(analyses: list[PolicyAnalysis]) -> EditPlan:
    in_policies: dict[str, list[PolicyAnalysis]] = {}
    for analysis in analyses:
        for rule in analysis.rules:
            in_policies.setdefault(rule, []).append(analysis)
    unidirectional = frozenset(
        rule
        for rule, policies in in_policies.items()
        if all(a.reverse_matches_decide_nothing(rule) for a in policies)
    )
    return EditPlan(
        unidirectional,
        {a.policy.name: a.removal_plan(unidirectional) for a in analyses},
    )
