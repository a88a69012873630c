"""The fingerprint of a starter: what defines it, so a process kept from another definition is
restarted.

The fingerprint hashes the starter's source and its plain settings (class attributes such as
``args``, ``pattern``, ``popen_kwargs``), not what it chooses at start (a free port in ``args()``)
and not the variables an ``env`` built from ``os.environ`` merely inherits. Nor what each run
chooses for itself (``RUN_CHOICES``): whether a run stops the process at its end, and how long it
waits for it, do not change what the process is, so a process kept by one run is reused by the
next whatever that one chose.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import re
from pathlib import Path

__all__ = ["RUN_CHOICES", "fingerprint_of"]

# Settings that say what a run does with the process, not what the process is.
RUN_CHOICES = frozenset({"terminate_at_end", "terminate_on_interrupt", "timeout"})


def fingerprint_of(label: str, definition: object, instance: object = None) -> str:
    """A hash of what defines the starter ``label``: its source, and its plain (data) settings
    (of ``definition``, a class, function or partial, and of ``instance``, made from it)."""
    target = definition.func if isinstance(definition, functools.partial) else definition
    try:
        source = _source_of(target)
    except TypeError:  # not hashable: read it without the cache
        source = _source_of.__wrapped__(target)
    parts: list[str] = [label, source]
    if isinstance(definition, functools.partial):
        parts.append(repr((definition.args, sorted(definition.keywords.items()))))
    settings: dict[str, str] = {}
    if isinstance(definition, type):
        settings.update(_class_settings(definition))
    if instance is not None:
        own = {
            k: _plain(k, v)
            for k, v in vars(instance).items()
            if _is_setting(k, v) and k not in ("control_dir", "process", "data")
        }
        settings.update(own)
    parts.append(json.dumps(sorted(settings.items())))
    return hashlib.sha256("\0".join(parts).encode("utf-8", "replace")).hexdigest()[:16]


@functools.lru_cache(maxsize=256)
def _class_settings(cls: type) -> tuple[tuple[str, str], ...]:
    """The plain settings a class and its bases define (read once per class and process)."""
    settings: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is not object:
            settings.update({k: _plain(k, v) for k, v in vars(klass).items() if _is_setting(k, v)})
    return tuple(settings.items())


@functools.lru_cache(maxsize=256)
def _source_of(definition: object) -> str:
    try:
        return inspect.getsource(definition)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return ""


def _is_setting(key: str, value: object) -> bool:
    return (
        not key.startswith("__")
        and key not in RUN_CHOICES
        and isinstance(
            value, (str, bytes, int, float, bool, type(None), list, tuple, dict, Path, re.Pattern)
        )
    )


def _plain(key: str, value: object) -> str:
    if isinstance(value, re.Pattern):
        return f"re:{value.pattern}"

    if key == "env" and isinstance(value, dict):
        # dict(os.environ, FOO="1") holds this run's variables too (xdist's, the shell's): only
        # what the starter sets differently from the environment it inherits defines it.
        value = {k: v for k, v in value.items() if os.environ.get(k) != v}
    return repr(sorted(value.items(), key=repr) if isinstance(value, dict) else value)
