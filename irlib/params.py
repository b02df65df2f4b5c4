"""A runbook notebook's parameters: read from its cell tagged `parameters` (with `ast`, never
executed) and the values given on the command line checked against them. papermill would run on
with a misspelled name and guess types; irlib refuses both, and refuses anything that looks like
a secret, because parameters are written in clear into the executed notebook.
"""

from __future__ import annotations

import ast
import difflib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from irlib.errors import UsageError

SECRET_NAME_SUFFIXES = ("_token", "_password", "_secret", "_api_key", "_apikey")
SECRET_HINT = "secrets are never parameters: name the environment variable instead, e.g. {example}"
_TYPES: dict[str, type] = {t.__name__: t for t in (str, int, float, bool, list, dict)}
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_NONE = ("none", "null")
# What a credential looks like when someone pastes one: an Authorization header, a JWT, a
# well-known vendor prefix, or a long run mixing upper case, lower case and digits (hex digests
# and Kubernetes names use one case, so they pass).
_SECRET_VALUE = re.compile(
    r"^\s*(bearer|basic|token)\s+\S{8,}"
    r"|^eyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]*"
    r"|^(ghp_|gho_|ghs_|github_pat_|glpat-|sk-|xox[abpr]-|AKIA|ASIA)\w{8,}",
    re.IGNORECASE,
)
_LONG_RANDOM = re.compile(r"^[A-Za-z0-9_\-+=]{32,}$")  # no "/" or ".": paths pass


@dataclass(frozen=True)
class Parameter:
    """One `name = literal` line of a parameters cell."""

    name: str
    default: Any
    kind: type | None  # None: unknown (a None default without annotation); strings pass as-is
    optional: bool = False  # None is an accepted value
    item_type: type | None = None  # for lists: the type of each item, when known

    @property
    def type_name(self) -> str:
        base = self.kind.__name__ if self.kind else "any"
        return f"{base} or None" if self.optional and self.kind else base


def read_parameters(notebook_path: Path) -> dict[str, Parameter]:
    """The parameters a notebook declares, in order; {} when it has no `parameters` cell."""
    source = _parameters_source(notebook_path)
    if source is None:
        return {}
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise UsageError(f"{notebook_path.name}: the parameters cell is not Python: {e}") from e
    found: dict[str, Parameter] = {}
    for stmt in tree.body:
        found.update([_parameter(stmt, notebook_path)])
    return found


def validate(
    notebook_path: Path,
    given: Mapping[str, Any],
    *,
    reserved: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
) -> dict[str, Any]:
    """`given` checked and converted to the types of the notebook's defaults.

    `reserved` maps names the runner sets itself to the option that sets them; `secrets` are
    values (from the environment) that must not be passed as a parameter either.
    """
    reserved = reserved or {}
    secrets = [s for s in secrets if s]
    declared = read_parameters(notebook_path)
    settable = [n for n in declared if n not in reserved]
    out: dict[str, Any] = {}
    for name, value in given.items():
        _refuse_secret_name(name)
        if name in reserved:
            raise UsageError(f"parameter {name} is set by {reserved[name]}, not by -p")
        if name not in declared:
            raise UsageError(_unknown(name, settable, notebook_path))
        converted = convert(declared[name], value)
        _refuse_secret_value(name, converted, secrets)
        out[name] = converted
    return out


def convert(param: Parameter, value: Any) -> Any:
    """`value` as the parameter's type: strings from the CLI are parsed, other values checked."""
    if isinstance(value, str):
        return _from_string(param, value)
    return _checked(param, value)


def _from_string(param: Parameter, text: str) -> Any:
    if param.optional and text.strip().lower() in _NONE:
        return None
    kind = param.kind
    if kind is None or kind is str:
        return text
    if kind is bool:
        word = text.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
    elif kind is int:
        if re.fullmatch(r"\s*[+-]?\d+\s*", text):
            return int(text)
    elif kind is float:
        try:
            return float(text)
        except ValueError:
            pass
    elif kind is list:
        return _list_from_string(param, text)
    elif kind is dict:
        value = _json_or_none(text)
        if isinstance(value, dict):
            return value
    raise _mistyped(param, text)


def _list_from_string(param: Parameter, text: str) -> list[Any]:
    if text.strip().startswith("["):
        items = _json_or_none(text)
        if not isinstance(items, list):
            raise _mistyped(param, text)
    else:
        items = [part.strip() for part in text.split(",") if part.strip()]
    if param.item_type is None or param.item_type is list:
        return items
    item = Parameter(f"{param.name}[]", None, param.item_type)
    try:
        return [convert(item, v) for v in items]
    except UsageError:
        raise _mistyped(param, text) from None


def _checked(param: Parameter, value: Any) -> Any:
    kind = param.kind
    if value is None and (param.optional or kind is None):
        return None
    if kind is None:
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is list and isinstance(value, tuple):
        value = list(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise _mistyped(param, value)


def _mistyped(param: Parameter, value: Any) -> UsageError:
    return UsageError(f"parameter {param.name} expects {param.type_name}, got {value!r}")


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _unknown(name: str, known: list[str], notebook_path: Path) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return (
        f"unknown parameter {name!r} for {notebook_path.stem}{hint} "
        f"(it takes: {', '.join(known) or 'no parameters'})"
    )


def _refuse_secret_name(name: str) -> None:
    lowered = name.lower()
    if lowered.endswith(SECRET_NAME_SUFFIXES) or lowered in ("token", "password", "secret"):
        raise UsageError(f"parameter {name}: " + SECRET_HINT.format(example=f"{name}_env"))


def _refuse_secret_value(name: str, value: Any, secrets: list[str]) -> None:
    texts = [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]
    for text in texts:
        if text in secrets or looks_like_secret(text):
            raise UsageError(
                f"parameter {name}: the value looks like a credential; "
                + SECRET_HINT.format(example='admin_token_env="IRLIB_ADMIN_TOKEN"')
            )


def looks_like_secret(text: str) -> bool:
    """A bearer token, a JWT, a vendor key, or a long random-looking string."""
    if _SECRET_VALUE.search(text):
        return True
    return bool(
        _LONG_RANDOM.match(text)
        and re.search(r"[a-z]", text)
        and re.search(r"[A-Z]", text)
        and re.search(r"\d", text)
    )


def _parameters_source(notebook_path: Path) -> str | None:
    try:
        nb = json.loads(notebook_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"cannot read notebook {notebook_path}: {e}") from e
    for cell in nb.get("cells", []):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = cell.get("source", "")
            return "".join(source) if isinstance(source, list) else source
    return None


def _parameter(stmt: ast.stmt, notebook_path: Path) -> tuple[str, Parameter]:
    where = f"{notebook_path.name}: parameters cell line {stmt.lineno}"
    annotation: ast.expr | None = None
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        target, value = stmt.targets[0], stmt.value
    elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
        target, value, annotation = stmt.target, stmt.value, stmt.annotation
    else:
        raise UsageError(f"{where}: only `name = literal` lines belong in a parameters cell")
    if not isinstance(target, ast.Name):
        raise UsageError(f"{where}: only `name = literal` lines belong in a parameters cell")
    try:
        default = ast.literal_eval(value)
    except ValueError:
        raise UsageError(f"{where}: {target.id} is not set to a literal") from None
    kind, optional, item = _annotated(annotation)
    if kind is None:
        kind, item = _type_of(default)
    optional = optional or default is None
    return target.id, Parameter(target.id, default, kind, optional, item)


def _type_of(default: Any) -> tuple[type | None, type | None]:
    if default is None:
        return None, None
    if isinstance(default, tuple):
        default = list(default)
    kind = type(default) if type(default) in _TYPES.values() else None
    item = None
    if isinstance(default, list) and default:
        item = type(default[0]) if type(default[0]) in (str, int, float, bool) else None
    return kind, item


def _annotated(node: ast.expr | None) -> tuple[type | None, bool, type | None]:
    """(type, accepts None, list item type) from `int`, `str | None`, `list[str]`,
    `Optional[float]`; (None, False, None) for anything else (the default decides)."""
    if node is None:
        return None, False, None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        sides = [node.left, node.right]
        nones = [s for s in sides if isinstance(s, ast.Constant) and s.value is None]
        if len(nones) == 1:
            kind, _, item = _annotated(next(s for s in sides if s is not nones[0]))
            return kind, True, item
        return None, False, None
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        if node.value.id == "Optional":
            kind, _, item = _annotated(node.slice)
            return kind, True, item
        if node.value.id in ("list", "List"):
            item_kind, _, _ = _annotated(node.slice)
            return list, False, item_kind
        return _TYPES.get(node.value.id.lower()), False, None
    if isinstance(node, ast.Name):
        return _TYPES.get(node.id), False, None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:  # a string annotation, as `from __future__ import annotations` would leave it
            return _annotated(ast.parse(node.value, mode="eval").body)
        except SyntaxError:
            return None, False, None
    return None, False, None
