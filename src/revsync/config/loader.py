"""Load ``revsync.yaml`` with errors that name file, line, key path and a fix."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from revsync.config.destinations import Ga4Destination, GoogleAdsDestination, MetaDestination
from revsync.config.mapping import FileSource, HubSpotSource, RevsyncConfig, SalesforceSource
from revsync.config.reading import format_key_path, item_line, key_line, plain, read_document
from revsync.config.rules import LocatedValueError, cross_block
from revsync.errors import ConfigError

_BLOCKS: dict[str, type[BaseModel]] = {
    "file": FileSource,
    "salesforce": SalesforceSource,
    "hubspot": HubSpotSource,
    "google_ads": GoogleAdsDestination,
    "ga4": Ga4Destination,
    "meta": MetaDestination,
}


def load_config(path: Path) -> RevsyncConfig:
    """Parse and validate a mapping file; raise ``ConfigError`` listing every problem.

    Relative file paths inside the mapping are resolved against the file's folder.
    """
    document = read_document(path)
    data = plain(document, path)
    try:
        config = RevsyncConfig.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        if not any(isinstance(e.get("ctx", {}).get("error"), LocatedValueError) for e in errors):
            errors += _cross_block_errors(data)  # in the same pass, not after a fix
        problems = [p for error in errors for p in _describe(path, document, error)]
        raise ConfigError(f"{path}: {len(problems)} problem(s)", problems) from None
    config = _resolve_paths(config, path.parent)
    problems = _file_problems(path, document, config)
    if problems:
        raise ConfigError(f"{path}: {len(problems)} problem(s)", problems)
    return config


# The starter file's stand-ins (``revsync init``): valid in form, never an account's own
_PLACEHOLDERS = {"customer_id": "1234567890", "conversion_action": "987654321",
                 "measurement_id": "G-XXXXXXXXXX", "pixel_id": "1234567890"}  # fmt: skip


def config_warnings(path: Path, config: RevsyncConfig) -> list[str]:
    """What a valid mapping may not mean, ``file:line: key: warning``: a value still the
    starter file's placeholder, a Meta ``test_event_code`` left on (every event would go
    to Test Events only)."""
    document = read_document(path)
    found = []

    def warn(i: int, key: str, text: str) -> None:
        keys, line, _ = _locate(document, ("destinations", i, key))
        found.append(f"{path}:{line}: {format_key_path(keys)}: {text}")

    for i, block in enumerate(config.destinations):
        for key, placeholder in _PLACEHOLDERS.items():
            if getattr(block, key, None) == placeholder and block.transport != "file":
                warn(i, key, "still the starter file's placeholder: use your account's own")
        if isinstance(block, MetaDestination) and block.test_event_code:
            warn(i, "test_event_code", "set, so Meta shows every event under Test Events "
                 "only and none reaches ad reporting; remove it once the test is done")  # fmt: skip
    return found


def _cross_block_errors(data: Any) -> list[Any]:
    """The cross-block rules on the raw mapping, for a file whose fields have errors too."""
    if not isinstance(data, dict):
        return []

    def name(block: Any, i: int) -> str:
        value = block.get("name") if isinstance(block, dict) else None
        return value if isinstance(value, str) else f"\0{i}"  # a bad name matches nothing

    raw_sources: list[Any] = data["sources"] if isinstance(data.get("sources"), list) else []
    raw_destinations = data.get("destinations")
    sources = [name(b, i) for i, b in enumerate(raw_sources)]
    destinations = []
    for i, block in enumerate(raw_destinations if isinstance(raw_destinations, list) else []):
        wanted = block.get("sources") if isinstance(block, dict) else None
        named = (
            [w if isinstance(w, str) else "\0" for w in wanted] if isinstance(wanted, list) else []
        )
        destinations.append((name(block, -1 - i), named))
    problems = [p for p in cross_block(sources, destinations) if "\0" not in p[1]]
    return [{"loc": (), "msg": "", "type": "value_error",
             "ctx": {"error": LocatedValueError(problems)}}] if problems else []  # fmt: skip


def _describe(path: Path, document: CommentedMap, error: Any) -> list[str]:
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, LocatedValueError):  # a rule across blocks: each at its own key
        located = [(tuple(error["loc"]) + loc, message) for loc, message in cause.problems]
    elif error["type"] == "union_tag_invalid":  # at the block's `type:` line
        located = [((*error["loc"], "type"), error["msg"])]
    else:
        located = [(tuple(error["loc"]), error["msg"])]
    out = []
    for loc, message in located:
        keys, line, parent_model = _locate(document, loc)
        key_path = format_key_path(keys) or "(top level)"
        hint = _hint(error, keys, parent_model) if len(located) == 1 else ""
        out.append(f"{path}:{line}: {key_path}: {message}" + (f" (hint: {hint})" if hint else ""))
    return out


def _locate(
    document: CommentedMap, loc: tuple[Any, ...]
) -> tuple[list[str | int], int, type[BaseModel] | None]:
    """Walk the YAML tree along a pydantic error location.

    Returns the YAML key path, the line of the deepest key found, and the model that owns
    the last key (for hints).
    """
    node: Any = document
    keys: list[str | int] = []
    line = 1
    model: type[BaseModel] | None = RevsyncConfig
    owner = model
    for part in loc:
        if isinstance(node, CommentedMap) and isinstance(part, str):
            if part not in node and node.get("type") == part:
                model = _block_model(part)
                continue  # a discriminator tag inserted by pydantic, not a YAML key
            owner = model
            keys.append(part)
            if part in node:
                line = key_line(node, part) or line
                model = _field_model(model, part)
                node = node[part]
            else:
                node = None
        elif isinstance(node, CommentedSeq) and isinstance(part, int):
            keys.append(part)
            if 0 <= part < len(node):
                line = item_line(node, part) or line
                node = node[part]
        else:
            keys.append(part)
    return keys, line, owner


def _field_model(model: type[BaseModel] | None, name: str) -> type[BaseModel] | None:
    from typing import get_args

    if model is None or name not in model.model_fields:
        return None
    annotation = model.model_fields[name].annotation
    for candidate in (annotation, *get_args(annotation)):
        for inner in (candidate, *get_args(candidate)):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return None


def _block_model(tag: str) -> type[BaseModel] | None:
    return _BLOCKS.get(tag)


def _hint(error: Any, keys: list[str | int], model: type[BaseModel] | None) -> str:
    kind = error["type"]
    if kind == "extra_forbidden" and keys:
        bad = str(keys[-1])
        known = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(bad, known, n=1)
        if close:
            return f"did you mean `{close[0]}`?"
        return "unknown key; allowed: " + ", ".join(known) if known else "unknown key"
    if kind == "missing" and model is not None and keys:
        field = model.model_fields.get(str(keys[-1]))
        if field is not None and field.description:
            return f"add `{keys[-1]}:` — {field.description}"
    if kind == "union_tag_invalid":
        return "set `type:` to one of " + str(error.get("ctx", {}).get("expected_tags", ""))
    if kind == "union_tag_not_found":
        return "every source and destination block needs a `type:`"
    if model is not None and keys and isinstance(keys[-1], str):
        field = model.model_fields.get(keys[-1])
        if field is not None and field.description:
            return field.description
    return ""


def _resolve_paths(config: RevsyncConfig, base: Path) -> RevsyncConfig:
    """Make relative paths in source and destination blocks relative to the mapping file."""

    def fix(block: BaseModel, field: str) -> BaseModel:
        value = getattr(block, field, None)
        if isinstance(value, Path) and not value.is_absolute():
            return block.model_copy(update={field: base / value})
        return block

    sources = [fix(fix(s, "path"), "ca_bundle") for s in config.sources]
    destinations = [fix(fix(d, "output_dir"), "ca_bundle") for d in config.destinations]
    return config.model_copy(update={"sources": sources, "destinations": destinations})


def _file_problems(path: Path, document: CommentedMap, config: RevsyncConfig) -> list[str]:
    """What the file system already says is wrong: an export that is a folder, an output
    folder that is a file."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    for i, source in enumerate(config.sources):
        export = getattr(source, "path", None)
        if isinstance(export, Path) and _kind(export) == "folder":
            found.append((("sources", i, "path"), f"{export} is a folder; name the export file"))
    for i, dest in enumerate(config.destinations):
        if _kind(dest.output_dir) == "file":
            found.append(
                (("destinations", i, "output_dir"), f"{dest.output_dir} is a file, not a folder")
            )
    out = []
    for loc, message in found:
        keys, line, _ = _locate(document, loc)
        out.append(f"{path}:{line}: {format_key_path(keys)}: {message}")
    return out


def _kind(path: Path) -> str | None:
    """folder, file, or None when absent or unreadable (the run that needs it will say)."""
    import stat

    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):
        return None
    return "folder" if stat.S_ISDIR(mode) else "file"
