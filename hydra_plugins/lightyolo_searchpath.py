"""Hydra discovers plugins in the `hydra_plugins` namespace package: lightyolo's search-path
plugin (LIGHTYOLO_CONFIG_PATH), defined in lightyolo/hydra_searchpath.py."""

from lightyolo.hydra_searchpath import LightyoloSearchPathPlugin

__all__ = ["LightyoloSearchPathPlugin"]
