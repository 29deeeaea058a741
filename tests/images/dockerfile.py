"""A small Dockerfile reader for the static image tests: enough of the reference syntax to check
images that cannot be built here (line continuations, comments, parser directives, JSON and shell
forms, instruction flags, ENV and ARG pairs with quotes, multi-stage names)."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

KNOWN = {
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
}


class DockerfileError(ValueError):
    pass


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    flags: dict[str, str]
    args: str  # the rest of the instruction, continuations joined

    def json_form(self) -> list[str] | None:
        """The exec (JSON array) form, or None for the shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DockerfileError(f"line {self.line}: {self.keyword} is not valid JSON: {exc}") from exc
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise DockerfileError(f"line {self.line}: {self.keyword} must be a JSON array of strings")
        return value


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for ins in self.instructions:
            if ins.keyword == "ENV":
                out.update(parse_pairs(ins))
        return out

    def of(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    path: Path
    instructions: list[Instruction]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage_names(self) -> set[str]:
        return {s.name for s in self.stages if s.name}


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Joins continuation lines; drops comments and blank lines (parser directives included)."""
    escape = "\\"
    out: list[tuple[int, str]] = []
    current: list[str] = []
    start = 0
    directives_possible = True
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if directives_possible:
            directive = re.match(r"#\s*(\w+)\s*=\s*(\S+)\s*$", stripped)
            if directive:
                if directive.group(1).lower() == "escape":
                    escape = directive.group(2)
                continue
            directives_possible = False
        if stripped.startswith("#"):
            continue  # comments may sit inside a continued instruction too
        if not current and not stripped:
            continue
        if not current:
            start = number
        if stripped.endswith(escape):
            current.append(stripped[: -len(escape)])
            continue
        current.append(stripped)
        out.append((start, " ".join(part for part in current if part)))
        current = []
    if current:
        raise DockerfileError(f"line {start}: the file ends inside a continued instruction")
    return out


def parse_flags(rest: str) -> tuple[dict[str, str], str]:
    flags: dict[str, str] = {}
    while True:
        m = re.match(r"--([a-z-]+)(?:=(\S*))?\s+", rest)
        if not m:
            return flags, rest
        flags[m.group(1)] = m.group(2) or ""
        rest = rest[m.end() :]


def parse_pairs(ins: Instruction) -> dict[str, str]:
    """ENV/ARG/LABEL: ``k=v k2="v 2"`` pairs, or the legacy ``ENV key value`` form."""
    text = ins.args.strip()
    first = text.split(None, 1)[0] if text else ""
    if "=" not in first:
        if ins.keyword == "ARG":
            return {first: ""}
        parts = text.split(None, 1)
        if len(parts) != 2:
            raise DockerfileError(f"line {ins.line}: {ins.keyword} needs a key and a value")
        return {parts[0]: parts[1]}
    try:
        words = shlex.split(text, posix=True)
    except ValueError as exc:
        raise DockerfileError(f"line {ins.line}: {ins.keyword} has unbalanced quotes: {exc}") from exc
    pairs: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key):
            raise DockerfileError(f"line {ins.line}: {ins.keyword} expects key=value, got {word!r}")
        pairs[key] = value
    return pairs


def parse(path: Path) -> Dockerfile:
    instructions: list[Instruction] = []
    stages: list[Stage] = []
    for number, line in logical_lines(path.read_text(encoding="utf-8")):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword not in KNOWN:
            raise DockerfileError(f"{path}: line {number}: unknown instruction {keyword!r}")
        flags, rest = parse_flags(rest.strip() + " ")
        ins = Instruction(number, keyword, flags, rest.strip())
        if keyword in {"ENV", "ARG", "LABEL"}:
            parse_pairs(ins)
        if keyword in {"CMD", "ENTRYPOINT", "RUN", "SHELL", "COPY", "ADD", "VOLUME"}:
            ins.json_form()
        if keyword in {"COPY", "ADD"} and len(copy_sources(ins)) < 1:
            raise DockerfileError(f"{path}: line {number}: {keyword} needs sources and a destination")
        instructions.append(ins)
        if keyword == "FROM":
            words = ins.args.split()
            if len(words) not in (1, 3) or (len(words) == 3 and words[1].upper() != "AS"):
                raise DockerfileError(f"{path}: line {number}: FROM IMAGE [AS NAME] expected")
            stages.append(Stage(words[0], words[2] if len(words) == 3 else None))
        elif not stages:
            if keyword != "ARG":
                raise DockerfileError(f"{path}: line {number}: {keyword} before the first FROM")
        else:
            stages[-1].instructions.append(ins)
    if not stages:
        raise DockerfileError(f"{path}: no FROM")
    return Dockerfile(path, instructions, stages)


def copy_sources(ins: Instruction) -> list[str]:
    """The sources of a COPY/ADD (everything but the destination)."""
    words = ins.json_form()
    if words is None:
        words = shlex.split(ins.args)
    return words[:-1]
