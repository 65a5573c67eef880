"""The plugin manager and the registries it feeds.

Built-in and third-party plugins are discovered the same way: through the
``autotransfer`` entry-point group. The manager is created once and cached;
:func:`reset_plugin_manager` drops it (tests, or after installing a plugin).
"""

from __future__ import annotations

import functools
import traceback
from dataclasses import dataclass
from typing import Any

import pluggy

from autotransfer import hookspecs
from autotransfer.errors import PluginError, unknown_name

KINDS = {
    "backbones": "autotransfer_register_backbones",
    "weight_sources": "autotransfer_register_weight_sources",
    "estimators": "autotransfer_register_estimators",
    "descriptors": "autotransfer_register_descriptors",
    "strategies": "autotransfer_register_strategies",
    "trackers": "autotransfer_register_trackers",
}


@functools.lru_cache(maxsize=1)
def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, with every ``autotransfer`` entry point loaded."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.load_setuptools_entrypoints(hookspecs.PROJECT)
    pm.check_pending()
    return pm


def reset_plugin_manager() -> None:
    """Forget the cached manager and registries so the next call rediscovers plugins."""
    get_plugin_manager.cache_clear()
    _registry.cache_clear()


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register a plugin object or module in code (no entry point needed); returns its name.

    >>> register_plugin(my_plugin_module)   # doctest: +SKIP
    """
    pm = get_plugin_manager()
    registered_name = pm.register(plugin, name=name)
    _registry.cache_clear()
    if registered_name is None:
        raise PluginError(f"Plugin {name or plugin!r} is already registered or was blocked.")
    return registered_name


@dataclass(frozen=True)
class Registered:
    """One registered object and the plugin that registered it."""

    name: str
    kind: str
    obj: Any
    plugin: str
    distribution: str


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin and the distribution it came from."""

    name: str
    distribution: str
    version: str


def plugin_infos() -> list[PluginInfo]:
    """Every loaded plugin with its distribution name and version."""
    pm = get_plugin_manager()
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    out = []
    for name, plugin in pm.list_name_plugin():
        dist = dists.get(id(plugin))
        out.append(
            PluginInfo(
                name=name,
                distribution=dist.project_name if dist else "(registered in code)",
                version=dist.version if dist else "",
            )
        )
    return sorted(out, key=lambda p: (p.distribution != "autotransfer", p.name))


def _distribution_of(pm: pluggy.PluginManager, plugin: object) -> str:
    for p, dist in pm.list_plugin_distinfo():
        if p is plugin:
            return dist.project_name
    return "(registered in code)"


def call_plugin(plugin_name: str, hook_name: str, func, /, **kwargs: Any) -> Any:
    """Call plugin code; re-raise any error naming the plugin and the hook."""
    try:
        return func(**kwargs)
    except Exception as exc:
        tb = "".join(traceback.format_exception(exc)[-3:]).rstrip()
        raise PluginError(
            f"Plugin {plugin_name!r} failed in {hook_name}: {type(exc).__name__}: {exc}\n{tb}"
        ) from exc


@functools.cache
def _registry(kind: str) -> dict[str, Registered]:
    pm = get_plugin_manager()
    hook_name = KINDS[kind]
    caller = getattr(pm.hook, hook_name)
    out: dict[str, Registered] = {}
    # get_hookimpls() lists in registration order: a duplicate is reported against its first owner
    for impl in caller.get_hookimpls():
        items = call_plugin(impl.plugin_name, hook_name, impl.function) or []
        for obj in items:
            name = getattr(obj, "name", None) or getattr(obj, "id", None)
            if not isinstance(name, str) or not name:
                raise PluginError(
                    f"Plugin {impl.plugin_name!r} returned a {kind[:-1]} without a name "
                    f"from {hook_name}: {obj!r}. Give it a `name` attribute."
                )
            if name in out:
                raise PluginError(
                    f"{kind[:-1].replace('_', ' ').capitalize()} {name!r} is registered twice: "
                    f"by plugin {out[name].plugin!r} and by plugin {impl.plugin_name!r}. "
                    "Rename one of them or uninstall one plugin."
                )
            out[name] = Registered(
                name=name,
                kind=kind,
                obj=obj,
                plugin=impl.plugin_name,
                distribution=_distribution_of(pm, impl.plugin),
            )
    return out


def registered(kind: str) -> dict[str, Registered]:
    """Everything of one kind (``"backbones"``, ``"estimators"``, ...) by name."""
    if kind not in KINDS:
        raise unknown_name("registry kind", kind, KINDS)
    return dict(_registry(kind))


def lookup(kind: str, name: str) -> Any:
    """The registered object of ``kind`` called ``name``; close matches on a miss."""
    reg = _registry(kind)
    if name not in reg:
        raise unknown_name(kind[:-1].replace("_", " "), name, reg)
    return reg[name].obj


def plugin_error(strategy: str, hook: str, exc: BaseException) -> str:
    """One line naming the plugin that registered ``strategy``, the hook and the error."""
    owner = registered("strategies").get(strategy)
    return (
        f"Plugin {owner.plugin if owner else '?'!r} failed in strategy {strategy!r}.{hook}: "
        f"{type(exc).__name__}: {exc}"
    )
