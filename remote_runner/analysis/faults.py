"""RESTgym's fault count and per-API analysis settings, beside our own definition in metrics.py.

Facts (not code) taken from RESTgym's analysis, SeUniVr/RESTgym ``src/process_results.py`` and
``src/check.py`` (issue 14 cites commit 56a9300; read at the stored version 3056378):

- every 5xx body of a run goes into one pool of buckets (not per operation and status);
- the body is first cleaned per API (below), then split on whitespace; an empty result counts as
  the single word ``500``;
- a body joins the bucket whose first body is most similar (Jaccard similarity of the word sets),
  if that similarity is at least the API's threshold and above 0; otherwise it opens a new bucket;
- thresholds: features-service and languagetool 0.8, person-controller and project-tracking-system
  0.9, ncs and scs 0.0 (no 5xx there), every other API 0.7;
- verification asks at least 130 requests per budget-minute, 50 for genome-nexus with Schemathesis.

Cleanings, chosen by name per API (``[analysis] fault_cleaning`` in ``api.toml``):

- ``none``: the body as it is;
- ``languagetool``: first line only, the prefix ``Error: Internal Error: `` removed, single- and
  double-quoted text removed, every run of non-letters turned into a space;
- ``html-body``: when the body has ``<body>`` and ``</body>``, only the text from ``<body>`` up to
  ``</body>`` (features-service);
- ``json-message``: the JSON ``message`` field when it is a string of more than 4 non-blank
  characters (user-management, blog);
- ``json-message-market``: the JSON ``message`` field whatever its length, then every ``[...]``
  removed (market);
- ``punctuation``: ``" : { } [ ] ,`` turned into spaces (person-controller).

Pure functions over plain data; :mod:`remote_runner.analysis.results` calls them.
"""

from __future__ import annotations

import gc
import itertools
import json
import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from remote_runner.analysis import metrics
from remote_runner.analysis.verification import Thresholds

EMPTY_BODY_WORD = "500"


def _text(body: bytes | str) -> str:
    return body.decode("utf-8", "replace") if isinstance(body, bytes) else body


def _head(body: bytes | str, chars: int) -> str:
    """``_text(body)[:chars]`` without decoding the whole body: a character takes at most 4 bytes
    (an invalid sequence decodes to one U+FFFD per at most 3 bytes), and a sequence cut at byte
    ``4 * chars`` starts at or after byte ``4 * chars - 3``, so after the first ``chars`` characters.
    A test compares both on random bytes."""
    if isinstance(body, bytes):
        return body[: 4 * chars].decode("utf-8", "replace")[:chars]
    return body[:chars]


_gc_lock = threading.Lock()
_gc_holders = 0
_gc_was_enabled = False


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while clustering (restored after; nested and concurrent
    users counted): clustering allocates only acyclic objects (word sets, lists, dicts), and with
    tens of thousands of them alive each full collection walks them all. Measured: up to a quarter
    of the clustering time at 20k bodies, and most of its growth with zero candidates."""
    global _gc_holders, _gc_was_enabled
    with _gc_lock:
        if _gc_holders == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_holders += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0 and _gc_was_enabled:
                gc.enable()


def clean_none(text: str) -> str:
    return text


_SQUOTED = re.compile(r"'[^']*'")
_DQUOTED = re.compile(r'"[^"]*"')
_NOT_LETTERS = re.compile(r"[^a-zA-Z]+")


def clean_languagetool(text: str) -> str:
    line = text.split("\n", 1)[0].removeprefix("Error: Internal Error: ")
    # a triple quote before "(code 39)" would otherwise pair with a later quote (RESTgym does this too)
    line = line.replace("(''' (code 39))", "( (code 39))")
    line = _SQUOTED.sub(" ", line)
    line = _DQUOTED.sub(" ", line)
    return _NOT_LETTERS.sub(" ", line)


def clean_html_body(text: str) -> str:
    start, end = text.find("<body>"), text.find("</body>")
    if start < 0 or end < 0:
        return text
    return text[start:end]


def _json_message(text: str) -> str | None:
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    message = doc.get("message") if isinstance(doc, dict) else None
    return message if isinstance(message, str) else None


def clean_json_message(text: str) -> str:
    message = _json_message(text)
    return message if message is not None and len(message.strip()) > 4 else text


_BRACKETED = re.compile(r"\[.*\]")


def clean_json_message_market(text: str) -> str:
    message = _json_message(text)
    return _BRACKETED.sub("", message if message is not None else text)


_PUNCTUATION = str.maketrans({c: " " for c in '":{}[],'})


def clean_punctuation(text: str) -> str:
    return text.translate(_PUNCTUATION)


CLEANINGS: dict[str, Callable[[str], str]] = {
    "none": clean_none,
    "languagetool": clean_languagetool,
    "html-body": clean_html_body,
    "json-message": clean_json_message,
    "json-message-market": clean_json_message_market,
    "punctuation": clean_punctuation,
}


def words(body: bytes | str, cleaning: str = "none") -> frozenset[str]:
    """The word set RESTgym compares: cleaned text split on whitespace; ``{'500'}`` when empty."""
    found = frozenset(CLEANINGS[cleaning](_text(body)).split())
    return found or frozenset((EMPTY_BODY_WORD,))


@dataclass(frozen=True)
class Bucket:
    id: int
    count: int
    example: str  # first body of the bucket, truncated


@dataclass(frozen=True)
class RestgymFaults:
    buckets: tuple[Bucket, ...]
    assignment: tuple[int, ...]  # bucket id of each body, in the order given

    @property
    def unique(self) -> int:
        return len(self.buckets)


class _PrefixIndex:
    """Candidate sets for a Jaccard threshold without comparing every pair (prefix filtering, as in
    AllPairs/PPJoin).

    Every word is ranked by how few sets hold it (rarest first, one fixed order for the whole run).
    Two sets of sizes ``a`` and ``b`` with similarity ``t`` or more overlap in at least
    ``k = max(ceil(t (a + b) / (1 + t)), ceil(t a), ceil(t b))`` words, so the first ``a - k + 1``
    words of one and the first ``b - k + 1`` of the other share a word (their overlap leaves at
    most ``a - k`` words of one outside it). A set is filed under each of its first
    ``b - ceil(t b) + 1`` words by its size ``b`` and the word's position ``j``; a query of size
    ``a`` takes, for its word at position ``i``, the sets of the sizes ``b`` its overlap bounds
    allow (``ceil(t a) <= b`` and ``ceil(t b) <= a``) filed at positions ``j <= b - k``, when
    ``i <= a - k``. Every set that can reach the threshold is among them; sets sharing only
    frequent words (one stack trace template with other ids, "Value 'x' is invalid" with another
    x) are not, which keeps bodies that do not merge from being compared with every earlier one.
    Ceilings are taken a hair low (1e-9): float rounding can only lengthen a prefix, never drop a
    match. The callers compare the candidates exactly as before, so the result is the one of
    comparing with every set.

    Filters from the set-similarity-join literature, written here from their definitions: the
    prefix and length (size) filters of AllPairs (Bayardo, Ma, Srikant, "Scaling Up All Pairs
    Similarity Search", WWW 2007), and the positional filter of PPJoin (Xiao, Wang, Lin, Yu,
    "Efficient Similarity Joins for Near Duplicate Detection", WWW 2008) at the first shared word
    (the ``j <= b - k`` and ``i <= a - k`` limits). PPJoin+'s suffix filter is not used: on the
    benchmark's stack traces 80 % of the candidates that fail are within 1-2 words of the least
    overlap (two bodies of one failure an hour apart, their hour word differing), which no bound
    short of counting separates, and on small sets (LanguageTool) probing a suffix costs what
    comparing the whole set costs (about 1 us).

    Small sets are filed by **pairs** of words instead (the l-prefix scheme with l = 2 of AdaptJoin:
    Wang, Li, Feng, "Can We Beat the Prefix Filtering?", SIGMOD 2012): two sets that overlap in
    ``k >= 2`` words share the two rarest words of their overlap, and each of them lies within the
    first ``a - k + 2`` words of one set and the first ``b - k + 2`` of the other (before the second
    come at most ``a - k`` words outside the overlap and one inside it). A set of size ``b`` with
    ``ceil(t b) >= 2`` whose pair prefix ``b - ceil(t b) + 2`` is at most ``_PAIRS_UP_TO`` words is
    filed under each pair of those words by ``b`` and the later word's position; a query takes, for
    the sizes ``b`` filed so, the sets filed under a pair of its own first ``a - k + 2`` words at a
    position ``<= b - k + 1``. With one rare word shared by chance (a two-letter fragment of a fuzzed
    value, a position number) a small set is no longer a candidate; it must share two. On the
    benchmark's LanguageTool bodies at 0.8 this took the candidates from 3.52 to 0.11 per body at 20k
    bodies (they grew with the body count: two-letter fragments meet more often in more bodies)."""

    def __init__(self, sets: Sequence[frozenset[str]], threshold: float) -> None:
        df = Counter(itertools.chain.from_iterable(sets))
        # rarest first, ties in order of first appearance (any fixed order is correct; this one is
        # a sort on integers)
        self._rank = {w: i for i, w in enumerate(sorted(df, key=df.__getitem__))}
        # words held by one set only (ranks below this) can be in no overlap
        self._alone = sum(1 for c in df.values() if c == 1)
        self._t = threshold
        # (scope, word rank) -> size -> position -> ids
        self._postings: dict[tuple[object, int], dict[int, dict[int, list[int]]]] = {}
        # memos of the size bounds (pure functions of the sizes and the threshold): size ->
        # (least, largest partner size); size -> partner size -> last matching positions
        self._bounds: dict[int, tuple[int, int]] = {}
        self._slack: dict[int, dict[int, tuple[int, int]]] = {}
        # (scope, rarer word's rank, later word's rank) -> size -> later word's position -> ids
        self._pairs: dict[tuple[object, int, int], dict[int, dict[int, list[int]]]] = {}
        self._paired: dict[int, bool] = {}  # size -> filed by pairs (a pure function of the size)

    def _least(self, n: int) -> int:
        """Least overlap of a set of size ``n`` with any set it can match (similarity > 0 too)."""
        return max(1, math.ceil(self._t * n - 1e-9))

    def _need(self, a: int, b: int) -> int:
        """Least overlap of two sets of sizes ``a`` and ``b`` that can match."""
        pair = math.ceil(self._t * (a + b) / (1 + self._t) - 1e-9)
        return max(pair, self._least(a), self._least(b))

    def _largest(self, a: int) -> int:
        """The largest size of a set that can match one of size ``a`` (``ceil(t b) <= a``)."""
        bound = (a + 1e-9) / self._t if self._t > 0.0 else math.inf
        if bound > 1 << 60:  # a threshold so close to 0 bounds nothing
            return 1 << 62
        b = math.floor(bound) + 1
        while b > a and self._least(b) > a:
            b -= 1
        return b

    def prefix(self, words: frozenset[str]) -> list[int]:
        """The ranks of the set's first words, the ones it is filed under and queried with."""
        return self.prefix_of(self.ranks(words))

    def ranks(self, words: frozenset[str]) -> list[int]:
        """The ranks of all the set's words, ascending (rarest first)."""
        return sorted(map(self._rank.__getitem__, words))

    def prefix_of(self, ranks: list[int]) -> list[int]:
        """:meth:`prefix` of a set from its :meth:`ranks`: its first ``n - ceil(t n) + 2`` words (the
        single words' prefix and one word more, for the pairs)."""
        n = len(ranks)
        return ranks[: max(0, n - self._least(n) + 2)]

    def paired(self, b: int) -> bool:
        """Whether sets of ``b`` words are filed by pairs of words (else by single words)."""
        known = self._paired.get(b)
        if known is None:
            least = self._least(b)
            known = self._paired[b] = least >= 2 and b - least + 2 <= _PAIRS_UP_TO
        return known

    def mask(self, ranks: Iterable[int]) -> int:
        """The set's words held by more than one set, as bits (the commonest word the lowest bit):
        ``(mask(x) & mask(y)).bit_count()`` is the overlap of ``x`` and ``y``, as a word held by one
        set only is in no overlap."""
        top, alone = len(self._rank) - 1, self._alone
        buf = bytearray(((top + 1 - alone) >> 3) + 1)
        for r in ranks:
            if r >= alone:
                b = top - r
                buf[b >> 3] |= 1 << (b & 7)
        return int.from_bytes(buf, "little")

    def add(self, prefix: list[int], size: int, ident: int, scope: object = None) -> None:
        """Files a set of ``size`` words by its :meth:`prefix`."""
        if self.paired(size):
            for j in range(1, len(prefix)):
                later = prefix[j]
                for w in prefix[:j]:
                    self._pairs.setdefault((scope, w, later), {}).setdefault(size, {}).setdefault(
                        j, []
                    ).append(ident)
            return
        for j, w in enumerate(prefix[: size - self._least(size) + 1]):
            self._postings.setdefault((scope, w), {}).setdefault(size, {}).setdefault(j, []).append(ident)

    def candidates(self, prefix: list[int], size: int, scope: object = None) -> list[int]:
        """Ids (ascending) of the sets indexed in ``scope`` that may reach the threshold with a set
        of ``size`` words whose :meth:`prefix` is ``prefix``."""
        found: set[int] = set()
        bounds = self._bounds.get(size)
        if bounds is None:
            bounds = self._bounds[size] = (self._least(size), self._largest(size))
        smallest, largest = bounds
        # size of the other set -> (last position of this set, last of the other, that may hold the
        # first shared word), from the sizes' least overlap; kept for the whole run
        slack = self._slack.setdefault(size, {})
        for i, w in enumerate(prefix):
            filed = self._postings.get((scope, w))
            if not filed:
                continue
            if largest - smallest + 1 < len(filed):
                sizes: Iterable[int] = [b for b in range(smallest, largest + 1) if b in filed]
            else:
                sizes = [b for b in filed if smallest <= b <= largest]
            for other in sizes:
                limits = slack.get(other)
                if limits is None:
                    k = self._need(size, other)
                    limits = slack[other] = (size - k, other - k)
                if i > limits[0]:
                    continue
                last = limits[1]
                for j, ids in filed[other].items():
                    if j <= last:
                        found.update(ids)
        if self._pairs:
            for i in range(1, len(prefix)):
                later = prefix[i]
                for w in prefix[:i]:
                    filed = self._pairs.get((scope, w, later))
                    if not filed:
                        continue
                    for other, at in filed.items():
                        if not smallest <= other <= largest:
                            continue
                        limits = slack.get(other)
                        if limits is None:
                            k = self._need(size, other)
                            limits = slack[other] = (size - k, other - k)
                        # the later word of the pair: within the first a - k + 2 and b - k + 2 words
                        if i > limits[0] + 1:
                            continue
                        last = limits[1] + 1
                        for j, ids in at.items():
                            if j <= last:
                                found.update(ids)
        return sorted(found)


def restgym_buckets(
    bodies: Iterable[bytes | str], cleaning: str, threshold: float, stats: dict[str, int] | None = None
) -> RestgymFaults:
    """Bucket 5xx bodies (arrival order) as RESTgym does: the most similar bucket with similarity
    >= ``threshold`` and > 0 wins (the earliest on a tie), else a new bucket.

    Only the buckets :class:`_PrefixIndex` names are compared (RESTgym compares each body with every
    bucket: quadratic when bodies do not merge; near-duplicates just under the threshold remain
    candidates, docs/results.md "Cost at paper scale"); tests/results/test_linear_clustering.py keeps
    that every-bucket version and checks both agree on random bodies, cleanings and thresholds.

    A word set met before is not compared again with the buckets it was compared with: its best
    bucket and similarity are kept with the bucket count of then, and only buckets opened since can
    take it (with a strictly higher similarity, as a later bucket loses a tie); a set equal to a
    bucket's first (similarity 1) is settled for good.

    ``stats``, when given, receives ``compared``: how many candidates the index named in all (the
    work beside the bodies themselves; the benchmark reports it)."""
    if cleaning not in CLEANINGS:
        raise ValueError(f"unknown fault cleaning {cleaning!r} (known: {', '.join(sorted(CLEANINGS))})")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"similarity threshold must be within [0, 1], got {threshold}")
    items = list(bodies)
    with _gc_paused():
        return _restgym_buckets(items, cleaning, threshold, stats)


def _restgym_buckets(
    items: list[bytes | str], cleaning: str, threshold: float, stats: dict[str, int] | None
) -> RestgymFaults:
    sets = [words(body, cleaning) for body in items]
    index = _PrefixIndex(sets, threshold)
    counts: list[int] = []
    examples: list[str] = []
    assignment: list[int] = []
    # each bucket's first set as the ranks of its words: the same int objects for the same word
    # (the index's), so comparing two sets matches by identity instead of comparing strings; this
    # made a compared candidate 2-4x cheaper on stack traces (100 words and more)
    first_ranks: list[frozenset[int]] = []
    # ... and as bits (:meth:`_PrefixIndex.mask`), made when first compared that way
    first_masks: list[int | None] = []
    # word set -> (best bucket, its similarity, number of buckets when they were compared)
    seen: dict[frozenset[str], tuple[int, float, int]] = {}
    compared = 0
    for body, ws in zip(items, sets, strict=True):
        known = seen.get(ws)
        if known is not None and (known[1] == 1.0 or known[2] == len(first_ranks)):
            best = known[0]
            counts[best] += 1
            assignment.append(best)
            continue
        best, best_sim, since = known if known is not None else (-1, 0.0, 0)
        size = len(ws)
        ranks = index.ranks(ws)
        prefix = index.prefix_of(ranks)
        found = index.candidates(prefix, size)
        compared += len(found)
        mine: frozenset[int] = frozenset(ranks) if found or known is None else frozenset()
        if len(found) >= _MASK_FROM:
            bits = index.mask(ranks)
            for i in found:
                if i < since:
                    continue
                other = first_masks[i]
                if other is None:
                    other = first_masks[i] = index.mask(first_ranks[i])
                inter = (bits & other).bit_count()
                if not inter:
                    continue
                sim = inter / (size + len(first_ranks[i]) - inter)
                if sim >= threshold and sim > best_sim:
                    best, best_sim = i, sim
            found = []
        for i in found:
            if i < since:
                continue
            first = first_ranks[i]
            # the overlap through the difference: a few words to collect instead of most of them
            inter = size - len(mine - first)
            if not inter:
                continue
            sim = inter / (size + len(first) - inter)
            if sim >= threshold and sim > best_sim:
                best, best_sim = i, sim
        if best < 0:
            best, best_sim = len(first_ranks), 1.0
            first_ranks.append(mine)
            first_masks.append(None)
            counts.append(0)
            examples.append(_head(body, 300))
            index.add(prefix, size, best)
        seen[ws] = (best, best_sim, len(first_ranks))
        counts[best] += 1
        assignment.append(best)
    if stats is not None:
        stats["compared"] = compared
    return RestgymFaults(
        buckets=tuple(Bucket(i, counts[i], examples[i]) for i in range(len(first_ranks))),
        assignment=tuple(assignment),
    )


#: a set whose pair prefix (:meth:`_PrefixIndex.paired`) has at most this many words is filed by
#: pairs of them (at most 15 pairs); longer ones by single words (a 100-word trace at 0.9 would take
#: 66 pairs, and its candidates share many words anyway: one template)
_PAIRS_UP_TO = 6


#: a body with this many candidates or more is compared with them as bit masks: one AND and a bit
#: count per candidate (0.05 us) after building its mask (about 12 us for a 100-word trace), instead
#: of a set difference per candidate (1.6 us with 100 words, cache misses included)
_MASK_FROM = 8


#: groups of one operation and status compared one by one before the index takes over (below it,
#: scanning them costs less than looking them up)
_SCAN_LIMIT = 64


def our_failures(
    requests: Sequence[metrics.Request],
    operations: Sequence[metrics.Operation | None],
    threshold: float,
) -> tuple[tuple[metrics.FailureGroup, ...], tuple[bool, ...]]:
    """Our definition (:func:`metrics.unique_failures`: 5xx grouped per operation and status, a body
    joins the first group whose first body is similar enough) in one pass that also says, per
    request, whether it opened a new group (for the cumulative series). ``operations`` is each
    request's matched operation; the groups equal ``metrics.unique_failures``'s (a test checks).

    Past ``_SCAN_LIMIT`` groups of an operation and status, only the groups :class:`_PrefixIndex`
    names are compared, earliest first (the first that is similar enough wins, as when comparing
    with every group); with threshold 0 every group is similar enough, and an empty token set is
    similar (1.0) only to another empty one."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"similarity threshold must be within [0, 1], got {threshold}")
    failing: list[tuple[int, str, int, frozenset[str]]] = []
    for n, (r, op) in enumerate(zip(requests, operations, strict=True)):
        if r.status is not None and 500 <= r.status < 600:
            key = str(op) if op is not None else f"{r.method.upper()} {r.path.split('?', 1)[0]}"
            failing.append((n, key, r.status, metrics.normalise_body(r.response_body)))
    index: _PrefixIndex | None = None  # built when some operation's groups first pass _SCAN_LIMIT
    groups: dict[tuple[str, int], list[tuple[frozenset[str], list[int]]]] = {}
    empty_group: dict[tuple[str, int], int] = {}  # the first group of each key whose first body has no token
    indexed: set[tuple[str, int]] = set()  # keys with more than _SCAN_LIMIT groups: looked up in the index
    order: list[tuple[str, int, list[int], str]] = []
    flags = [False] * len(requests)
    for n, key, status, tokens in failing:
        r = requests[n]
        scope = (key, status)
        clusters = groups.setdefault(scope, [])
        joined = None
        if clusters and threshold == 0.0:
            joined = 0
        elif not tokens:
            joined = empty_group.get(scope)
        elif clusters:
            size = len(tokens)
            if index is not None and scope in indexed:
                ahead: Iterable[int] = index.candidates(index.prefix(tokens), size, scope)
            else:
                ahead = range(len(clusters))
            for at in ahead:
                first = clusters[at][0]
                inter = len(first & tokens)  # metrics.jaccard's figure, the union counted, not built
                if inter and inter / (len(first) + size - inter) >= threshold:
                    joined = at
                    break
        if joined is not None:
            clusters[joined][1][0] += 1
            continue
        count = [1]
        if not tokens:
            empty_group.setdefault(scope, len(clusters))
        clusters.append((tokens, count))
        if index is not None and scope in indexed:
            if tokens:
                index.add(index.prefix(tokens), len(tokens), len(clusters) - 1, scope)
        elif len(clusters) > _SCAN_LIMIT:  # from now on, the index: file every group so far
            if index is None:
                index = _PrefixIndex([t for *_, t in failing], threshold)
            indexed.add(scope)
            for at, (first, _) in enumerate(clusters):
                if first:
                    index.add(index.prefix(first), len(first), at, scope)
        order.append((key, status, count, _text(r.response_body)[:300] if r.response_body else ""))
        flags[n] = True
    found = tuple(metrics.FailureGroup(key=k, status=st, count=c[0], example=ex) for k, st, c, ex in order)
    return found, tuple(flags)


# --- per-API analysis settings --------------------------------------------------------------------

DEFAULT_RESTGYM_SIMILARITY = 0.7
DEFAULT_MIN_REQUESTS_PER_MINUTE = 130.0


@dataclass(frozen=True)
class Analysis:
    """How one API's runs are analysed: ``[analysis]`` in its ``api.toml`` (docs/contracts.md)."""

    fault_cleaning: str = "none"
    fault_similarity: float = DEFAULT_RESTGYM_SIMILARITY  # RESTgym's bucket threshold
    min_requests_per_minute: float = DEFAULT_MIN_REQUESTS_PER_MINUTE
    #: (tool, requests per minute) pairs overriding ``min_requests_per_minute`` for that tool
    min_requests_per_minute_by_tool: tuple[tuple[str, float], ...] = field(default=())

    def min_requests_per_minute_for(self, tool: str) -> float:
        return dict(self.min_requests_per_minute_by_tool).get(tool, self.min_requests_per_minute)

    def thresholds_for(self, tool: str, base: Thresholds | None = None) -> Thresholds:
        """Verification thresholds of this API with ``tool`` (the other checks from ``base``)."""
        return replace(base or Thresholds(), min_requests_per_minute=self.min_requests_per_minute_for(tool))


#: RESTgym's values for the 11 benchmark APIs (sources in the module docstring); the api.toml files
#: of apis/ carry the same values, and a test keeps the two equal.
RESTGYM_ANALYSIS: dict[str, Analysis] = {
    "features-service": Analysis("html-body", 0.8),
    "languagetool": Analysis("languagetool", 0.8),
    "person-controller": Analysis("punctuation", 0.9),
    "project-tracking-system": Analysis("none", 0.9),
    "ncs": Analysis("none", 0.0),
    "scs": Analysis("none", 0.0),
    "genome-nexus": Analysis("none", 0.7, min_requests_per_minute_by_tool=(("schemathesis", 50.0),)),
    "market": Analysis("json-message-market", 0.7),
    "user-management": Analysis("json-message", 0.7),
    "blog": Analysis("json-message", 0.7),
    "restcountries": Analysis("none", 0.7),
}


def default_analysis(api: str) -> Analysis:
    """RESTgym's settings for a benchmark API, the generic defaults for any other."""
    return RESTGYM_ANALYSIS.get(api, Analysis())


_ANALYSIS_KEYS = (
    "fault_cleaning",
    "fault_similarity",
    "min_requests_per_minute",
    "min_requests_per_minute_by_tool",
)


def parse_analysis(table: Mapping[str, object], where: str, default: Analysis) -> tuple[Analysis, list[str]]:
    """An ``[analysis]`` table read over ``default``; returns the settings and every problem found
    (bad keys and values are reported and replaced by the default's)."""
    problems: list[str] = []
    for key in table:
        if key not in _ANALYSIS_KEYS:
            problems.append(f"{where}: unknown key [analysis] {key!r} (known: {', '.join(_ANALYSIS_KEYS)})")

    def number(key: str, value: object, low: float, high: float | None) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"{where}: [analysis] {key} must be a number, got {value!r}")
            return None
        if value < low or (high is not None and value > high):
            span = f"within [{low:g}, {high:g}]" if high is not None else f"at least {low:g}"
            problems.append(f"{where}: [analysis] {key} must be {span}, got {value!r}")
            return None
        return float(value)

    cleaning = table.get("fault_cleaning", default.fault_cleaning)
    if cleaning not in CLEANINGS:
        problems.append(
            f"{where}: [analysis] fault_cleaning must be one of {', '.join(sorted(CLEANINGS))}, "
            f"got {cleaning!r}"
        )
        cleaning = default.fault_cleaning
    similarity = default.fault_similarity
    if "fault_similarity" in table:
        got_similarity = number("fault_similarity", table["fault_similarity"], 0.0, 1.0)
        similarity = got_similarity if got_similarity is not None else similarity
    rpm = default.min_requests_per_minute
    if "min_requests_per_minute" in table:
        got = number("min_requests_per_minute", table["min_requests_per_minute"], 0.0, None)
        rpm = got if got is not None else rpm
    by_tool = default.min_requests_per_minute_by_tool
    if "min_requests_per_minute_by_tool" in table:
        raw = table["min_requests_per_minute_by_tool"]
        if not isinstance(raw, Mapping):
            problems.append(
                f"{where}: [analysis.min_requests_per_minute_by_tool] must be a table of tool = number"
            )
        else:
            pairs = []
            for tool, value in raw.items():
                got = number(f"min_requests_per_minute_by_tool.{tool}", value, 0.0, None)
                if got is not None:
                    pairs.append((str(tool), got))
            by_tool = tuple(sorted(pairs))
    return Analysis(str(cleaning), similarity, rpm, by_tool), problems
