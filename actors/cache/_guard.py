"""The semantic cache's guard: two questions that embed close together may still ask
different things. It refuses a match when the two texts differ in

- negation: not, no, never, none, nothing, nobody, neither, nor, without, cannot and
  any word ending in n't (``is`` vs ``isn't``), and a word one says with a negating
  prefix the other does not (``safe`` vs ``unsafe``, ``possible`` vs ``impossible``);
- numbers: digits (``2``, ``3.5``, ``1,000``) and number words (one to twenty, the
  tens, hundred, thousand, million, billion, first to tenth), as multisets;
- named entities: capitalized words that do not start a sentence and words in
  capitals (``NASA``), compared without case or a possessive 's; and quoted text,
  when both quote something;
- direction: one says a word of a pair of opposites that the other does not (before
  and after, more and less, max and min, increase and decrease, ...).

It knows nothing of meaning beyond these rules: it catches the near misses that
embeddings are known to score as the same question (GPTCache #694: a question and its
negation at 0.83 to 0.9997), not every different question.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass

__all__ = ["differences"]

_NEGATIONS = frozenset(
    {
        "not",
        "no",
        "never",
        "none",
        "nothing",
        "nobody",
        "nowhere",
        "neither",
        "nor",
        "without",
        "cannot",
    }
)
_NUMBER_WORDS = frozenset(
    {
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
        "twenty",
        "thirty",
        "forty",
        "fifty",
        "sixty",
        "seventy",
        "eighty",
        "ninety",
        "hundred",
        "thousand",
        "million",
        "billion",
        "trillion",
        "first",
        "second",
        "third",
        "fourth",
        "fifth",
        "sixth",
        "seventh",
        "eighth",
        "ninth",
        "tenth",
        "half",
        "double",
        "triple",
    }
)
_OPPOSITES = [
    ("before", "after"), ("more", "less"), ("most", "least"), ("max", "min"),
    ("maximum", "minimum"), ("increase", "decrease"), ("largest", "smallest"),
    ("biggest", "smallest"), ("higher", "lower"), ("highest", "lowest"),
    ("above", "below"), ("over", "under"), ("first", "last"), ("add", "remove"),
    ("enable", "disable"), ("buy", "sell"), ("true", "false"), ("open", "close"),
    ("start", "stop"), ("win", "lose"), ("pro", "con"), ("advantage", "disadvantage"),
    ("cheap", "expensive"),
    ("faster", "slower"),
    ("fastest", "slowest"),
    ("better", "worse"),
    ("best", "worst"),
    ("bigger", "smaller"),
    ("larger", "smaller"),
    ("longer", "shorter"),
    ("hot", "cold"),
    ("early", "late"),
    ("earlier", "later"),
    ("top", "bottom"),
    ("left", "right"),
    ("import", "export"),
    ("upload", "download"),
    ("encrypt", "decrypt"),
    ("include", "exclude"),
    ("allow", "deny"),
    ("accept", "reject"), ("fast", "slow"), ("north", "south"), ("east", "west"),
]  # fmt: skip
_WORD = re.compile("[A-Za-z][A-Za-z'\u2019]*|\\d[\\d,.]*\\d|\\d")
_QUOTED = re.compile(r"[\"“”']([^\"“”']{2,})[\"“”']")
_SENTENCE_END = re.compile(r"[.!?:;\n]")
_POSSESSIVE = re.compile("['\u2019]s?$")


def _words(text: str) -> list[tuple[str, bool]]:
    """Each word, and whether it starts a sentence (one pass over the text)."""
    out = []
    starts, last = True, 0
    for match in _WORD.finditer(text):
        between = text[last : match.start()]
        if _SENTENCE_END.search(between):
            starts = True
        out.append((match.group(), starts))
        starts, last = False, match.end()
    return out


def _negations(words: list[tuple[str, bool]]) -> Counter[str]:
    found: Counter[str] = Counter()
    for word, _ in words:
        lower = word.lower().replace("\u2019", "'")
        if lower in _NEGATIONS or lower.endswith("n't"):
            found["not"] += 1
    return found


_PREFIXES = ("un", "in", "im", "il", "ir", "dis", "non")


def _prefix_negations(a: frozenset[str], b: frozenset[str]) -> bool:
    """One says a word the other says with a negating prefix (safe and unsafe)."""
    for mine, theirs in ((a - b, b), (b - a, a)):
        for word in mine:
            for prefix in _PREFIXES:
                if word.startswith(prefix) and word[len(prefix) :].lstrip("-") in theirs:
                    return True
    return False


def _numbers(words: list[tuple[str, bool]]) -> Counter[str]:
    found: Counter[str] = Counter()
    for word, _ in words:
        lower = word.lower()
        if lower[0].isdigit():
            found[lower.replace(",", "").rstrip(".")] += 1
        elif lower in _NUMBER_WORDS:
            found[lower] += 1
    return found


def _entities(words: list[tuple[str, bool]]) -> set[str]:
    found = set()
    for word, starts in words:
        if word[0].isdigit():
            continue
        if (word[0].isupper() and not starts) or (len(word) > 1 and word.isupper()):
            found.add(_POSSESSIVE.sub("", word.lower()))
    return found


def _quoted(text: str) -> set[str]:
    return {q.lower().strip() for q in _QUOTED.findall(text)}


def _directions(words: list[tuple[str, bool]]) -> set[str]:
    lowered = {word.lower() for word, _ in words}
    return {f"{a}/{b}" if a in lowered else f"{b}/{a}" for a, b in _OPPOSITES
            if (a in lowered) != (b in lowered)}  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Features:
    words: frozenset[str]
    negations: Counter[str]
    numbers: Counter[str]
    entities: frozenset[str]
    quoted: frozenset[str]
    directions: frozenset[str]


@functools.lru_cache(maxsize=4_096)
def _features(text: str) -> _Features:
    """What the guard compares of a text (kept for the texts seen most: a cached
    question is compared with many)."""
    words = _words(text)
    return _Features(
        words=frozenset(word.lower() for word, _ in words),
        negations=_negations(words),
        numbers=_numbers(words),
        entities=frozenset(_entities(words)),
        quoted=frozenset(_quoted(text)),
        directions=frozenset(_directions(words)),
    )


def differences(one: str, other: str) -> str:
    """Why two texts ask different things ("" when the guard sees no difference)."""
    a, b = _features(one), _features(other)
    if a.negations != b.negations or _prefix_negations(a.words, b.words):
        return "one is negated and the other is not"
    if a.numbers != b.numbers:
        return "they name different numbers"
    if a.entities != b.entities:
        return "they name different names"
    if a.quoted and b.quoted and a.quoted != b.quoted:  # both quote something
        return "they quote different texts"
    if a.directions & {f"{y}/{x}" for x, y in (d.split("/") for d in b.directions)}:
        return "they ask in opposite directions"
    return ""
