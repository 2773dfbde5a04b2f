"""Hydra SearchPathPlugin: LIGHTYOLO_CONFIG_PATH's directories join lightyolo's config groups.

Hydra imports every module of the `hydra_plugins` namespace package when it starts, so this
applies to `python -m lightyolo.run`, `-cd <sweeps>` multiruns, `lightyolo.sweep` and the
compose API alike. It only touches search paths that contain lightyolo's own `conf/`, so
other Hydra apps in the same environment are left alone. The directories go after every
other entry: a built-in option keeps its name (lightyolo.configs, "first wins").
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from lightyolo.configs import config_dir, plugin_dirs

PROVIDER = "LIGHTYOLO_CONFIG_PATH"


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
                search_path.append(provider=PROVIDER, path=f"file://{directory}")
