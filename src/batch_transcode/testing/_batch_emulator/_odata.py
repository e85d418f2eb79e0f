"""OData ``$filter`` / ``$select`` as the Batch list operations accept them, and ISO 8601 durations.

The filter grammar covers what Batch filters use: comparisons (``eq ne gt ge lt le``)
of a property path (``state``, ``executionInfo/exitCode``) with a literal (``'text'``,
numbers, ``true``/``false``/``null``, ``DateTime'...'`` in any casing, compared as
instants), ``and`` / ``or`` / ``not``,
parentheses and ``startswith(prop, 'x')`` / ``endswith`` / ``substringof('x', prop)``.
String comparison of ids is case-insensitive, as Batch ids are.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ._errors import BatchServiceError, invalid_query, invalid_value

Predicate = Callable[[Mapping[str, Any]], bool]

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<dt>(?i:datetime)'[^']*')|(?P<num>-?\d+(?:\.\d+)?)"
    r"|(?P<lp>\()|(?P<rp>\))|(?P<comma>,)|(?P<word>[A-Za-z_$][\w/.$]*))"
)

_COMPARE = {"eq", "ne", "gt", "ge", "lt", "le"}


def _bad_filter(value: str, reason: str) -> BatchServiceError:
    return invalid_query("$filter", value, reason)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise _bad_filter(text, f"unexpected text at position {pos}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _get(doc: Any, path: str) -> Any:
    cur = doc
    for part in path.split("/"):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def _datetime(text: str) -> datetime | None:
    """An ISO 8601 instant (any number of fraction digits, ``Z`` or an offset), in UTC."""
    m = re.fullmatch(
        r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?)(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?", text.strip()
    )
    if m is None:
        return None
    base, fraction, zone = m.groups()
    micro = (fraction or "")[:6].ljust(6, "0")
    try:
        value = datetime.fromisoformat(f"{base}.{micro}{'+00:00' if zone in (None, 'Z') else zone}")
    except ValueError:
        return None
    return value.astimezone(UTC)


def _norm(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _compare(op: str, left: Any, right: Any) -> bool:
    # A DateTime literal compares as an instant with the property's timestamp (the
    # service's stamps carry 7 fraction digits: text order would be wrong).
    if isinstance(left, datetime) and isinstance(right, datetime):
        pass  # both instants already (a property given as one)
    elif isinstance(right, datetime) and isinstance(left, str):
        left = _datetime(left)
    elif isinstance(left, datetime) and isinstance(right, str):
        right = _datetime(right)
    left, right = _norm(left), _norm(right)
    if op == "eq":
        return bool(left == right)
    if op == "ne":
        return bool(left != right)
    if left is None or right is None:
        return False
    try:
        if op == "gt":
            return bool(left > right)
        if op == "ge":
            return bool(left >= right)
        if op == "lt":
            return bool(left < right)
        return bool(left <= right)
    except TypeError:
        return False


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, kind: str | None = None, word: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (kind and tok[0] != kind) or (word and tok[1].lower() != word):
            raise _bad_filter(self.text, f"expected {word or kind}")
        self.i += 1
        return tok

    def parse(self) -> Predicate:
        pred = self.or_expr()
        if self.peek() is not None:
            raise _bad_filter(self.text, f"unexpected '{self.peek()}'")
        return pred

    def or_expr(self) -> Predicate:
        return self._chain("or", self.and_expr, lambda a, b: lambda d: a(d) or b(d))

    def and_expr(self) -> Predicate:
        return self._chain("and", self.unary, lambda a, b: lambda d: a(d) and b(d))

    def _chain(
        self, word: str, operand: Callable[[], Predicate], join: Callable[[Predicate, Predicate], Predicate]
    ) -> Predicate:
        """``operand (word operand)*``, joined left to right by ``join``."""
        left = operand()
        while (tok := self.peek()) and tok[0] == "word" and tok[1].lower() == word:
            self.i += 1
            left = join(left, operand())
        return left

    def unary(self) -> Predicate:
        tok = self.peek()
        if tok and tok[0] == "word" and tok[1].lower() == "not":
            self.i += 1
            inner = self.unary()
            return lambda d: not inner(d)
        if tok and tok[0] == "lp":
            self.i += 1
            inner = self.or_expr()
            self.take("rp")
            return inner
        return self.comparison()

    def value(self) -> Callable[[Mapping[str, Any]], Any]:
        kind, text = self.take()
        if kind == "str":
            literal = text[1:-1].replace("''", "'")
            return lambda d: literal
        if kind == "dt":
            stamp = _datetime(text[len("datetime'") : -1])
            if stamp is None:
                raise _bad_filter(self.text, f"{text} is not a valid DateTime literal")
            return lambda d: stamp
        if kind == "num":
            number = float(text) if "." in text else int(text)
            return lambda d: number
        if kind == "word":
            low = text.lower()
            if low in ("true", "false"):
                flag = low == "true"
                return lambda d: flag
            if low == "null":
                return lambda d: None
            if (nxt := self.peek()) and nxt[0] == "lp":
                return self.function(text)
            return lambda d: _get(d, text)
        raise _bad_filter(self.text, f"unexpected '{text}'")

    def function(self, name: str) -> Callable[[Mapping[str, Any]], Any]:
        self.take("lp")
        args = [self.value()]
        while (tok := self.peek()) and tok[0] == "comma":
            self.i += 1
            args.append(self.value())
        self.take("rp")
        low = name.lower()
        if low in ("startswith", "endswith") and len(args) == 2:
            a, b = args
            method = str.startswith if low == "startswith" else str.endswith

            def fn(d: Mapping[str, Any]) -> bool:
                x, y = a(d), b(d)
                return isinstance(x, str) and isinstance(y, str) and method(x.lower(), y.lower())

            return fn
        if low == "substringof" and len(args) == 2:
            a, b = args
            return lambda d: isinstance(b(d), str) and str(a(d)).lower() in str(b(d)).lower()
        raise _bad_filter(self.text, f"unsupported function '{name}'")

    def comparison(self) -> Predicate:
        left = self.value()
        tok = self.peek()
        if tok and tok[0] == "word" and tok[1].lower() in _COMPARE:
            self.i += 1
            op = tok[1].lower()
            right = self.value()
            return lambda d: _compare(op, left(d), right(d))
        return lambda d: bool(left(d))


def parse_filter(text: str | None) -> Predicate:
    if not text or not text.strip():
        return lambda d: True
    return _Parser(text).parse()


@dataclass(frozen=True)
class Narrowing:
    """What a ``$filter`` requires of every item it matches, where an index can use it:
    ``state eq '<state>'`` and ``stateTransitionTime ge|gt DateTime'...'`` among the
    terms joined by a top-level ``and``."""

    state: str | None = None
    since: datetime | None = None


def narrowing(text: str | None) -> Narrowing:
    """The :class:`Narrowing` of a ``$filter`` (nothing when a top-level ``or`` joins its
    terms). Items outside it never match; the filter itself still decides the rest."""
    if not text or not text.strip():
        return Narrowing()
    toks = _tokens(text)
    terms: list[list[tuple[str, str]]] = [[]]
    depth = 0
    for kind, word in toks:
        depth += {"lp": 1, "rp": -1}.get(kind, 0)
        if depth == 0 and kind == "word" and word.lower() in ("and", "or"):
            if word.lower() == "or":
                return Narrowing()
            terms.append([])
            continue
        terms[-1].append((kind, word))
    state: str | None = None
    since: datetime | None = None
    for term in terms:
        if len(term) != 3 or term[0][0] != "word" or term[1][0] != "word":
            continue
        prop, op, (kind, literal) = term[0][1].lower(), term[1][1].lower(), term[2]
        if prop == "state" and op == "eq" and kind == "str":
            state = literal[1:-1].replace("''", "'").lower()
        elif prop == "statetransitiontime" and op in ("ge", "gt") and kind == "dt":
            stamp = _datetime(literal[len("datetime'") : -1])
            if stamp is not None and (since is None or stamp > since):
                since = stamp
    return Narrowing(state=state, since=since)


def apply_select(doc: dict[str, Any], select: str | None) -> dict[str, Any]:
    if not select:
        return doc
    keep = {s.strip() for s in select.split(",") if s.strip()}
    return {k: v for k, v in doc.items() if k in keep or k == "odata.metadata"}


_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(text: str) -> timedelta:
    """Parse an ISO 8601 duration such as ``PT1H30M`` or ``P10675199DT2H48M5.4775807S``."""
    m = _DURATION.match(text.strip())
    if not m or text.strip() in ("P", "PT"):
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    parts = {k: float(v) for k, v in m.groupdict().items() if v}
    seconds = (
        parts.get("d", 0) * 86400 + parts.get("h", 0) * 3600 + parts.get("m", 0) * 60 + parts.get("s", 0)
    )
    return timedelta(seconds=min(seconds, timedelta.max.total_seconds() - 1))


def duration_seconds(value: Any, prop: str) -> float:
    """Seconds of the duration property ``prop``; ``InvalidPropertyValue`` if it is not one."""
    try:
        return parse_duration(str(value)).total_seconds()
    except ValueError as exc:
        raise invalid_value(prop, value, "The value is not a valid ISO 8601 duration.") from exc


def format_duration(td: timedelta) -> str:
    return f"PT{td.total_seconds():g}S"
