"""A small, eval-free interpreter for Xero's `where` and `order` query parameters.

Xero filters with a LINQ-like expression (developer.xero.com/documentation/api/accounting/
requests-and-responses, "Retrieving filtered data"): `Name=="Acme"`, `Total = 20.00`,
`Contact.ContactID==guid("...")`, `Name.Contains("x")`, `EmailAddress!=null`,
`Date >= DateTime(2026, 01, 01)`, `Phones[0].PhoneNumber`, joined with AND/OR/&&/|| and NOT/!,
grouped with parentheses. Field names resolve case-insensitively; an unset field is null and
string methods on null are false. Anything we cannot parse raises `WhereError`, which the app turns
into the 400 QueryParseException Xero answers.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any

_MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>"(?:[^"\\]|\\.)*")
      | (?P<num>-?\d+(?:\.\d+)?)
      | (?P<op>==|!=|>=|<=|&&|\|\||[=<>!(),.\[\]])
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_STRING_METHODS = {"contains", "startswith", "endswith"}
_CASE_METHODS = {"tolower", "toupper"}
_COMPARISONS = {"==", "=", "!=", ">", "<", ">=", "<="}
_ORDERING: dict[str, Callable[[Any, Any], Any]] = {
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}

Predicate = Callable[[Mapping[str, Any]], bool]


class WhereError(ValueError):
    """The expression cannot be parsed (Xero: 400 QueryParseException)."""


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str


@dataclass(frozen=True)
class _Path:
    """A field path such as Contact.ContactID or Phones[0].PhoneNumber, plus ToLower/ToUpper."""

    parts: tuple[str | int, ...]
    case: str | None = None

    def resolve(self, obj: Mapping[str, Any]) -> Any:
        value: Any = obj
        for part in self.parts:
            if isinstance(part, int):
                value = value[part] if isinstance(value, list) and part < len(value) else None
            elif isinstance(value, Mapping):
                value = _get_ci(value, part)
            else:
                value = None
            if value is None:
                return None
        if self.case is not None and isinstance(value, str):
            return value.lower() if self.case == "tolower" else value.upper()
        return value


def _get_ci(obj: Mapping[str, Any], key: str) -> Any:
    if key in obj:
        return obj[key]
    lowered = key.lower()
    for k, v in obj.items():
        if k.lower() == lowered:
            return v
    return None


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise WhereError(f"Unexpected character at position {pos}: {text[pos : pos + 10]!r}")
        kind = match.lastgroup or ""
        tokens.append(_Tok(kind, match.group(kind)))
        pos = match.end()
    return tokens


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        match = _MS_DATE.match(value)
        if match:
            return datetime.fromtimestamp(int(match.group(1)) / 1000, UTC)
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _as_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, Decimal)):
        return Decimal(value)
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            return None
    return None


def _compare(left: Any, op: str, right: Any) -> bool:
    """Compare a field value with a literal the way Xero's typed filter does."""
    if op in ("==", "="):
        return _equal(left, right)
    if op == "!=":
        return not _equal(left, right)
    if left is None or right is None:
        return False
    value: Any
    if isinstance(right, datetime):
        value = _as_datetime(left)
    elif isinstance(right, Decimal):
        value = _as_decimal(left)
    else:
        value, right = str(left), str(right)
    return value is not None and bool(_ORDERING[op](value, right))


def _equal(left: Any, right: Any) -> bool:
    if right is None or left is None:
        return left is None and right is None
    if isinstance(right, bool) or isinstance(left, bool):
        return left is right
    if isinstance(right, _Guid):
        return isinstance(left, str) and left.lower() == right.value.lower()
    if isinstance(right, datetime):
        return _as_datetime(left) == right
    if isinstance(right, Decimal):
        return _as_decimal(left) == right
    return bool(left == right)


@dataclass(frozen=True)
class _Guid:
    value: str


class _Parser:
    """Recursive descent: or := and (OR and)*; and := not (AND not)*; not := [NOT] atom."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0

    def parse(self) -> Predicate:
        if not self.tokens:
            raise WhereError("The where clause is empty")
        predicate = self._or()
        if self.pos != len(self.tokens):
            raise WhereError(f"Unexpected token '{self.tokens[self.pos].text}'")
        return predicate

    def _peek(self) -> _Tok | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _next(self) -> _Tok:
        tok = self._peek()
        if tok is None:
            raise WhereError("Unexpected end of the where clause")
        self.pos += 1
        return tok

    def _expect(self, text: str) -> None:
        tok = self._next()
        if tok.text != text:
            raise WhereError(f"Expected '{text}' but found '{tok.text}'")

    def _is_word(self, *words: str) -> bool:
        tok = self._peek()
        return tok is not None and tok.text.upper() in words

    def _or(self) -> Predicate:
        parts = [self._and()]
        while self._is_word("OR", "||"):
            self.pos += 1
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda o: any(p(o) for p in parts))

    def _and(self) -> Predicate:
        parts = [self._not()]
        while self._is_word("AND", "&&"):
            self.pos += 1
            parts.append(self._not())
        return parts[0] if len(parts) == 1 else (lambda o: all(p(o) for p in parts))

    def _not(self) -> Predicate:
        if self._is_word("NOT", "!"):
            self.pos += 1
            inner = self._not()
            return lambda o: not inner(o)
        return self._atom()

    def _atom(self) -> Predicate:
        tok = self._peek()
        if tok is not None and tok.text == "(":
            self.pos += 1
            inner = self._or()
            self._expect(")")
            return inner
        path, method = self._path()
        if method is not None:
            self._expect("(")
            argument = self._literal()
            self._expect(")")
            return _string_method(path, method, argument)
        op_tok = self._peek()
        if op_tok is None or op_tok.text not in _COMPARISONS:
            return lambda o: path.resolve(o) is True
        self.pos += 1
        op = op_tok.text
        literal = self._literal()
        return lambda o: _compare(path.resolve(o), op, literal)

    def _path(self) -> tuple[_Path, str | None]:
        tok = self._next()
        if tok.kind != "name":
            raise WhereError(f"Expected a field name but found '{tok.text}'")
        parts: list[str | int] = [tok.text]
        case: str | None = None
        while True:
            nxt = self._peek()
            if nxt is not None and nxt.text == "[":
                self.pos += 1
                index = self._next()
                if index.kind != "num" or not index.text.isdigit():
                    raise WhereError("An index must be a whole number")
                parts.append(int(index.text))
                self._expect("]")
                continue
            if nxt is None or nxt.text != ".":
                return _Path(tuple(parts), case), None
            self.pos += 1
            name = self._next()
            if name.kind != "name":
                raise WhereError(f"Expected a member name after '.' but found '{name.text}'")
            lowered = name.text.lower()
            if lowered in _STRING_METHODS:
                return _Path(tuple(parts), case), lowered
            if lowered in _CASE_METHODS:
                self._expect("(")
                self._expect(")")
                case = lowered
                continue
            parts.append(name.text)

    def _literal(self) -> Any:
        tok = self._next()
        if tok.kind == "str":
            return _unquote(tok.text)
        if tok.kind == "num":
            return Decimal(tok.text)
        if tok.kind != "name":
            raise WhereError(f"Expected a value but found '{tok.text}'")
        word = tok.text.lower()
        if word in ("true", "false"):
            return word == "true"
        if word == "null":
            return None
        if word == "guid":
            self._expect("(")
            value = self._next()
            if value.kind != "str":
                raise WhereError("guid() takes a quoted string")
            self._expect(")")
            return _Guid(_unquote(value.text))
        if word == "datetime":
            return self._datetime()
        raise WhereError(f"Unknown value '{tok.text}'")

    def _datetime(self) -> datetime:
        self._expect("(")
        numbers: list[int] = []
        while True:
            tok = self._next()
            if tok.kind != "num" or not tok.text.isdigit():
                raise WhereError("DateTime() takes whole numbers: DateTime(2026, 01, 31)")
            numbers.append(int(tok.text))
            sep = self._next()
            if sep.text == ")":
                break
            if sep.text != ",":
                raise WhereError(f"Expected ',' or ')' in DateTime() but found '{sep.text}'")
        if not 3 <= len(numbers) <= 6:
            raise WhereError("DateTime() takes year, month, day and optionally h, m, s")
        year, month, day, hour, minute, second = [*numbers, 0, 0, 0][:6]
        try:
            return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError as exc:
            raise WhereError(f"Invalid DateTime(): {exc}") from exc


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def _string_method(path: _Path, method: str, argument: Any) -> Predicate:
    if not isinstance(argument, str):
        raise WhereError(f"{method}() takes a quoted string")

    def predicate(obj: Mapping[str, Any]) -> bool:
        value = path.resolve(obj)
        if not isinstance(value, str):
            return False
        if method == "contains":
            return argument in value
        if method == "startswith":
            return value.startswith(argument)
        return value.endswith(argument)

    return predicate


def compile_where(text: str) -> Predicate:
    """Compile a `where` expression into a predicate over a stored object."""
    return _Parser(text).parse()


def sort_key_for(order: str) -> list[tuple[_Path, bool]]:
    """Parse `order=Name ASC, UpdatedDateUTC DESC` into (path, descending) pairs."""
    keys: list[tuple[_Path, bool]] = []
    for clause in order.split(","):
        words = clause.split()
        if not words:
            continue
        if len(words) > 2 or (len(words) == 2 and words[1].upper() not in ("ASC", "DESC")):
            raise WhereError(f"Invalid order clause '{clause.strip()}'")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", words[0]):
            raise WhereError(f"Invalid order field '{words[0]}'")
        descending = len(words) == 2 and words[1].upper() == "DESC"
        keys.append((_Path(tuple(words[0].split("."))), descending))
    return keys


def order_objects(objects: list[dict[str, Any]], order: str) -> list[dict[str, Any]]:
    """Stable multi-key sort; nulls first ascending, like SQL Server which backs Xero."""
    result = list(objects)
    for path, descending in reversed(sort_key_for(order)):
        result.sort(key=partial(_sort_value, path), reverse=descending)
    return result


def _sort_value(path: _Path, obj: Mapping[str, Any]) -> tuple[int, Any]:
    return _sortable(path.resolve(obj))


def _sortable(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    when = _as_datetime(value) if isinstance(value, str) and value.startswith("/Date(") else None
    if when is not None:
        return (1, when.timestamp())
    number = _as_decimal(value) if not isinstance(value, str) else None
    if number is not None:
        return (1, number)
    return (2, str(value).lower())
