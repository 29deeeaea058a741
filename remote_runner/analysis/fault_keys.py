"""A fault's key from what the service logged while it answered one replayed request (pure).

FuzzBench-style deduplication, for Java services: the key is the exception type plus the top frames
that belong to the API itself. What counts as the API's own: the classes under the image's
``COVERAGE_CLASSES`` (the classes JaCoCo measures), read from the container by
:mod:`remote_runner.batch.replay` and given here as a set of class names.

- **Which exception**: the root cause of the logged chain (the last ``Caused by:``), because
  frameworks wrap the real error (Spring's ``NestedServletException``, ``UndeclaredThrowable...``).
  Its full stack is its listed frames plus the frames ``... n more`` elides (the last ``n`` of the
  exception it caused).
- **Which frames**: the first :data:`KEY_FRAMES` frames of that stack whose class is one of the
  API's own (an inner class counts as its outer class); when the root cause has none (a service
  without own classes named, or a trace wholly inside libraries), its first :data:`KEY_FRAMES`
  frames, and the key says so (``own_frames`` false).
- **Normalised**: no message (it holds ids and values); generated code loses its numbers and its
  line (CGLIB/ByteBuddy ``$$`` proxies and ``Generated*Accessor`` frames are skipped, ``$$Lambda$12/0x..``
  becomes ``$$Lambda``, ``lambda$render$0`` becomes ``lambda$render``, ``$Proxy42`` becomes ``$Proxy``);
  an own frame keeps ``File.java:line`` (two throws in one method are two faults); a frame without a
  source line (``Unknown Source``, ``<generated>``, ``Native Method``) keeps only ``Class.method``.

Three frames, as ClusterFuzz's crash state: the same helper failing under two endpoints through the
same three own frames is one fault; reached through different callers within those three, two.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

KEY_FRAMES = 3

_FRAME = re.compile(r"^\s*at\s+(?:[\w.$/@-]+/)?([\w$.<>]+)\.([\w$<>]+)\(([^)]*)\)\s*$")
_MORE = re.compile(r"^\s*\.\.\.\s*(\d+)\s+(?:more|common frames omitted)")
_TYPE_AT_START = re.compile(r"^([A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+)(?::|\s*$)")
_TYPE_ANYWHERE = re.compile(r"((?:[a-z_$][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error|Throwable))")
_LAMBDA_METHOD = re.compile(r"^(lambda\$[\w$]+?)\$\d+$")
_LAMBDA_CLASS = re.compile(r"\$\$Lambda\$?[\w/$]*")
_PROXY = re.compile(r"\$Proxy\d+")
_SOURCE_LINE = re.compile(r"^([\w$]+\.(?:java|kt|scala|groovy)):(\d+)$")


@dataclass(frozen=True)
class Frame:
    cls: str
    method: str
    source: str  # as logged: "Totals.java:12", "Unknown Source", "<generated>", "Native Method"


@dataclass(frozen=True)
class Block:
    """One exception of a logged chain: its type and its full stack (elided frames restored)."""

    type: str
    frames: tuple[Frame, ...]


@dataclass(frozen=True)
class FaultKey:
    key: str
    exception: str
    frames: tuple[str, ...]
    #: the frames are the API's own (False: none of the root cause's frames were, its top ones are used)
    own_frames: bool


def _header_type(line: str) -> str | None:
    text = line.strip()
    for prefix in ("Caused by:", "Wrapped by:"):
        if text.startswith(prefix):
            text = text[len(prefix) :].strip()
    m = _TYPE_AT_START.match(text)
    if m:
        return m.group(1)
    found = _TYPE_ANYWHERE.findall(text)
    return found[-1] if found else None


def parse_chains(log_text: str) -> list[list[Block]]:
    """Every Java exception chain in ``log_text`` (a container log, with or without docker's
    timestamps), each as its blocks from the outermost to the root cause. ``Suppressed:`` blocks are
    left out (they are not the cause)."""
    lines = [_strip_timestamp(x) for x in log_text.splitlines()]
    chains: list[list[Block]] = []
    current: list[Block] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if not _FRAME.match(line) and _FRAME.match(nxt) and _header_type(line):
            header = line.strip()
            suppressed = header.startswith("Suppressed:")
            caused = header.startswith("Caused by:")
            frames: list[Frame] = []
            elided = 0
            i += 1
            while i < len(lines):
                fm = _FRAME.match(lines[i])
                if fm:
                    frames.append(Frame(fm.group(1), fm.group(2), fm.group(3)))
                    i += 1
                    continue
                mm = _MORE.match(lines[i])
                if mm:
                    elided = int(mm.group(1))
                    i += 1
                break
            if suppressed:
                continue
            if caused and current:
                tail = current[-1].frames[len(current[-1].frames) - elided :] if elided else ()
                current.append(Block(str(_header_type(header)), (*frames, *tail)))
            else:
                if current:
                    chains.append(current)
                current = [Block(str(_header_type(header)), tuple(frames))]
            continue
        i += 1
    if current:
        chains.append(current)
    return chains


_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z ")


def _strip_timestamp(line: str) -> str:
    return _TIMESTAMP.sub("", line, count=1)


def _outer(cls: str) -> str:
    return cls.split("$", 1)[0]


def is_generated(frame: Frame) -> bool:
    return "$$" in frame.cls or re.search(r"Generated\w*Accessor\d*$", frame.cls) is not None


def normalise_frame(frame: Frame, own: bool) -> str:
    cls = _PROXY.sub("$Proxy", _LAMBDA_CLASS.sub("$$Lambda", frame.cls))
    lam = _LAMBDA_METHOD.match(frame.method)
    method = lam.group(1) if lam else frame.method
    m = _SOURCE_LINE.match(frame.source)
    if own and m:
        return f"{cls}.{method}({m.group(1)}:{m.group(2)})"
    return f"{cls}.{method}"


def key_of(chain: Sequence[Block], own_classes: Iterable[str], frames: int = KEY_FRAMES) -> FaultKey:
    """The key of one chain (see the module docstring)."""
    own_outer = {_outer(c) for c in own_classes}
    root = chain[-1]
    usable = [f for f in root.frames if not is_generated(f)]
    own = [f for f in usable if _outer(f.cls) in own_outer]
    picked = own[:frames] if own else usable[:frames]
    texts = tuple(normalise_frame(f, bool(own)) for f in picked)
    return FaultKey(" | ".join((root.type, *texts)), root.type, texts, bool(own))


def key_from_log(log_text: str, own_classes: Iterable[str], frames: int = KEY_FRAMES) -> FaultKey | None:
    """The key of the first exception chain the log holds, None when it holds none."""
    chains = parse_chains(log_text)
    return key_of(chains[0], own_classes, frames) if chains else None


def class_names(listing: str) -> frozenset[str]:
    """Class names from a listing of ``.class`` files (``find`` in a class folder, ``unzip -Z1`` of a
    jar; Spring Boot's ``BOOT-INF/classes/`` and a war's ``WEB-INF/classes/`` prefixes dropped)."""
    out = set()
    for raw in listing.splitlines():
        path = raw.strip().removeprefix("./")
        if not path.endswith(".class"):
            continue
        for prefix in ("BOOT-INF/classes/", "WEB-INF/classes/"):
            path = path.removeprefix(prefix)
        name = path[: -len(".class")].replace("/", ".")
        if name and not name.endswith("module-info") and not name.endswith("package-info"):
            out.add(name)
    return frozenset(out)
