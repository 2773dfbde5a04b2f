"""Hydra SearchPathPlugin: LIGHTYOLO_CONFIG_PATH's directories join lightyolo's config groups.

Hydra finds it in the `hydra_plugins` namespace package (hydra_plugins/lightyolo_searchpath.py
re-exports it), so it applies to the compose API too; `register` adds it by hand for the
CLIs, which then work even where that namespace is not importable (an editable install made
before hydra_plugins/ existed). It only touches search paths that contain lightyolo's own
`conf/`, so other Hydra apps in the environment are left alone. The directories go after
every other entry: a built-in option keeps its name (lightyolo.configs, "first wins").
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin

from lightyolo.configs import ENV_CONFIG_PATH, config_dir, plugin_dirs


def _local_dir(path: str | None) -> Path | None:
    if not path or path.startswith(("pkg://", "structured://")):
        return None
    return Path(path.removeprefix("file://")).resolve()


class LightyoloSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        present = {_local_dir(element.path) for element in search_path.get_path()}
        if config_dir().resolve() not in present:
            return  # not a lightyolo app
        for directory in plugin_dirs():
            if directory not in present:
                search_path.append(provider=ENV_CONFIG_PATH, path=f"file://{directory}")


def register() -> None:
    """Make sure Hydra uses the plugin (a no-op when it found it in hydra_plugins)."""
    Plugins.instance().register(LightyoloSearchPathPlugin)
