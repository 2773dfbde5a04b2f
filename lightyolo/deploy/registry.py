"""Where runtimes are found: the built-ins below, and any package's entry points in the group
`lightyolo.runtimes` (name = the runtime's name, value = `module:factory`, the factory called
as `factory(device=..., threads=...)` and returning an object that follows
`lightyolo.deploy.runtime.Runtime`). A user's package adds a runtime by declaring, in its
pyproject.toml:

    [project.entry-points."lightyolo.runtimes"]
    myruntime = "my_package.runtime:MyRuntime"

A built-in's module is imported only when that runtime is asked for, so a missing optional
package (openvino, ncnn) makes only that runtime unavailable, with one line saying so.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points

from lightyolo.deploy.runtime import Runtime, RuntimeUnavailable

ENTRY_POINT_GROUP = "lightyolo.runtimes"
DEVICES = ("cpu", "cuda")
# name → (module:factory, the pip package it needs)
BUILT_IN: dict[str, tuple[str, str]] = {
    "torch": ("lightyolo.deploy.torch_runtime:TorchRuntime", "torch"),
    "onnxruntime": ("lightyolo.deploy.ort_runtime:OnnxRuntime", "onnxruntime"),
    "onnxruntime_trt": ("lightyolo.deploy.ort_runtime:tensorrt_runtime", "onnxruntime-gpu"),
    "openvino": ("lightyolo.deploy.openvino_runtime:OpenVinoRuntime", "openvino nncf"),
    "ncnn": ("lightyolo.deploy.ncnn_runtime:NcnnRuntime", "ncnn pnnx"),
    "executorch": ("lightyolo.deploy.executorch_runtime:ExecuTorchRuntime", "executorch (the lightyolo[executorch] extra)"),
}


def plugin_factories() -> dict[str, str]:
    """{name: 'module:factory'} of the installed packages' `lightyolo.runtimes` entry points,
    read afresh on every call (a package installed since is seen)."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def runtime_names() -> list[str]:
    return [*BUILT_IN, *sorted(set(plugin_factories()) - set(BUILT_IN))]


def _factory(target: str, name: str, package: str) -> Callable[..., Runtime]:
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise RuntimeUnavailable(f"runtimes: {name} needs {package}, which is not installed ({err})") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise RuntimeUnavailable(f"runtimes: {name}: entry point {target!r} names nothing in {module_name}") from None


def build_runtime(name: str, device: str, threads: int) -> Runtime:
    """The runtime `name` on `device` with `threads` intra-op threads; RuntimeUnavailable (one
    line) for an unknown name, a missing package or a bad device."""
    if device not in DEVICES:
        raise RuntimeUnavailable(f"device={device!r}: expected one of {', '.join(DEVICES)}")
    plugins = plugin_factories()
    if name in BUILT_IN:
        target, package = BUILT_IN[name]
        return _factory(target, name, package)(device=device, threads=threads)
    if name in plugins:
        return _factory(plugins[name], name, f"the package that declares {plugins[name]!r}")(device=device, threads=threads)
    raise RuntimeUnavailable(f"runtimes: unknown runtime {name!r} (valid: {', '.join(runtime_names())})")
