"""Modality subsets: parsing, canonical names, enumeration, nested pairs.

A :class:`Subset` is an immutable, non-empty set of modality names held in the
data's modality order. Its canonical string joins the names with ``"+"``
(``"text+audio"``). :func:`parse_subset` accepts that string, initials
(``"TA"``), an index or a sequence of names or indices, and ``"all"``.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "SEPARATOR",
    "Subset",
    "all_subsets",
    "cumulative_subsets",
    "join_label",
    "label_names",
    "label_size",
    "largest_label",
    "nested_label_pairs",
    "nested_pairs",
    "parse_subset",
    "parse_subsets",
]

#: The character that joins modality names in a subset's canonical label ("text+audio").
SEPARATOR = "+"


@dataclass(frozen=True, order=False)
class Subset:
    """A non-empty set of modality names, ordered as in ``universe``.

    Attributes
    ----------
    names : tuple of str
        The chosen modalities, in the universe's order.
    universe : tuple of str
        All modality names of the data, in order.
    """

    names: tuple[str, ...]
    universe: tuple[str, ...]
    _label: str = field(init=False, repr=False, compare=False)  # str(self), formed once

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("a subset must contain at least one modality, got an empty subset")
        unknown = [n for n in self.names if n not in self.universe]
        if unknown:
            raise ValueError(
                f"unknown modality {unknown[0]!r} in subset; "
                f"known modalities: {list(self.universe)}"
            )
        ordered = tuple(n for n in self.universe if n in set(self.names))
        if len(ordered) != len(self.names):
            raise ValueError(f"subset lists a modality twice: {list(self.names)}")
        object.__setattr__(self, "names", ordered)
        object.__setattr__(self, "_label", join_label(ordered))

    def __str__(self) -> str:
        return self._label

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self):
        return iter(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    @property
    def indices(self) -> tuple[int, ...]:
        """Positions of the chosen modalities in the universe."""
        return tuple(self.universe.index(n) for n in self.names)

    @property
    def mask(self) -> tuple[bool, ...]:
        """One flag per modality of the universe: True when kept."""
        return tuple(n in self.names for n in self.universe)

    def issubset(self, other: Subset) -> bool:
        return set(self.names) <= set(other.names)

    def is_proper_subset(self, other: Subset) -> bool:
        return set(self.names) < set(other.names)


def _initials(universe: Sequence[str]) -> dict[str, str] | None:
    """Map upper-case initial -> name, or None when initials are ambiguous."""
    init = {n[0].upper(): n for n in universe}
    return init if len(init) == len(universe) else None


def parse_subset(spec: object, universe: Sequence[str]) -> Subset:
    """Parse one subset of ``universe``.

    Accepted forms: a :class:`Subset`; ``"all"``; a canonical string ``"a+b"``;
    a single name ``"a"``; initials ``"TA"`` (when the initials of the universe are
    distinct); an integer index; a sequence of names or indices.

    >>> str(parse_subset("TA", ["text", "video", "audio"]))
    'text+audio'
    >>> str(parse_subset([2, 0], ["text", "video", "audio"]))
    'text+audio'
    """
    universe = tuple(universe)
    if isinstance(spec, Subset):
        if spec.universe != universe:
            return Subset(spec.names, universe)
        return spec
    if isinstance(spec, numbers.Integral) and not isinstance(spec, bool):
        return Subset((universe[_index(int(spec), universe)],), universe)
    if isinstance(spec, str):
        text = spec.strip()
        if text == "":
            raise ValueError("a subset must contain at least one modality, got an empty string")
        if text.lower() == "all":
            return Subset(universe, universe)
        if SEPARATOR in text:
            parts = [p.strip() for p in text.split(SEPARATOR)]
            if any(p == "" for p in parts):
                raise ValueError(f"subset {spec!r} has an empty name between '+' signs")
            return Subset(tuple(parts), universe)
        if text in universe:
            return Subset((text,), universe)
        initials = _initials(universe)
        if initials is not None and text.isalpha() and text.isupper():
            missing = [c for c in text if c not in initials]
            if not missing:
                return Subset(tuple(initials[c] for c in text), universe)
        raise ValueError(
            f"unknown modality or subset {spec!r}; known modalities: {list(universe)}"
            + (f", initials: {''.join(initials)}" if initials else "")
        )
    if isinstance(spec, Iterable):
        items = list(spec)
        names = []
        for item in items:
            if isinstance(item, numbers.Integral) and not isinstance(item, bool):
                names.append(universe[_index(int(item), universe)])
            elif isinstance(item, str):
                names.append(item)
            else:
                raise TypeError(
                    f"subset items must be modality names or indices, got {type(item).__name__}"
                )
        return Subset(tuple(names), universe)
    raise TypeError(f"cannot read a subset from {type(spec).__name__} {spec!r}")


def _index(i: int, universe: tuple[str, ...]) -> int:
    if not 0 <= i < len(universe):
        raise ValueError(
            f"modality index {i} out of range: there are {len(universe)} modalities "
            f"(valid indices 0..{len(universe) - 1})"
        )
    return int(i)


def all_subsets(universe: Sequence[str]) -> list[Subset]:
    """All 2^K - 1 non-empty subsets, by size, then in modality order."""
    universe = tuple(universe)
    return [
        Subset(tuple(universe[i] for i in combo), universe)
        for size in range(1, len(universe) + 1)
        for combo in itertools.combinations(range(len(universe)), size)
    ]


def cumulative_subsets(universe: Sequence[str]) -> list[Subset]:
    """The first modality, the first two, ..., all of them (the paper's Table 4 rows)."""
    universe = tuple(universe)
    return [Subset(universe[:k], universe) for k in range(1, len(universe) + 1)]


def parse_subsets(spec: object, universe: Sequence[str]) -> list[Subset]:
    """Parse a list of subsets: ``"all"`` (every subset), ``"cumulative"``, or a list of subsets."""
    universe = tuple(universe)
    if isinstance(spec, str) and spec.strip().lower() == "all":
        return all_subsets(universe)
    if isinstance(spec, str) and spec.strip().lower() == "cumulative":
        return cumulative_subsets(universe)
    if isinstance(spec, str | Subset) or isinstance(spec, numbers.Integral):
        return [parse_subset(spec, universe)]
    if not isinstance(spec, Iterable):
        raise TypeError(f"subsets must be 'all', 'cumulative' or a list, got {type(spec).__name__}")
    out = [parse_subset(s, universe) for s in spec]
    if not out:
        raise ValueError("subsets must name at least one subset, got an empty list")
    seen: set[str] = set()
    unique = []
    for s in out:
        if str(s) not in seen:
            seen.add(str(s))
            unique.append(s)
    return unique


def nested_pairs(subsets: Iterable[Subset]) -> list[tuple[Subset, Subset]]:
    """Pairs (N, M) with N a proper subset of M, both from ``subsets``."""
    subsets = list(subsets)
    return [(n, m) for m in subsets for n in subsets if n.is_proper_subset(m)]


# ------------------------------------------------------------------ labels in tables
# Result tables store a subset as its canonical label; these are the only functions that
# read such a label back (no other module splits on the separator).


def join_label(names: Iterable[str]) -> str:
    """The canonical label of modality ``names`` (already in the data's order)."""
    return SEPARATOR.join(names)


def label_names(label: str) -> tuple[str, ...]:
    """The modality names of a canonical subset label: ``"text+audio"`` -> ``("text", "audio")``."""
    return tuple(str(label).split(SEPARATOR))


def label_size(label: str) -> int:
    """The number of modalities in a canonical subset label."""
    return len(label_names(label))


def largest_label(labels: Iterable[str]) -> str:
    """The label with the most modalities (the first such one in ``labels``)."""
    labels = list(labels)
    if not labels:
        raise ValueError("largest_label needs at least one subset label, got none")
    return max(labels, key=label_size)


def nested_label_pairs(labels: Iterable[str]) -> list[tuple[str, str]]:
    """Pairs (N, M) of labels with N's modalities a proper subset of M's, for M in order."""
    labels = list(labels)
    sets = {s: set(label_names(s)) for s in labels}
    return [(n, m) for m in labels for n in labels if sets[n] < sets[m]]
