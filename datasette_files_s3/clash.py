"""Refuse to start beside another plugin that also registers storage type `s3`.

datasette-files keeps one class per storage type and the last plugin to
register a type wins without a word, so with the published datasette-files-s3
0.1a2 (or any other s3 backend) installed too, sources would silently get
whichever pluggy called last. We stop at startup instead, naming both.
"""

from importlib.metadata import PackageNotFoundError, version

from datasette.plugins import pm
from datasette.utils import StartupError, await_me_maybe

STORAGE_TYPE = "s3"
OUR_PACKAGE = "datasette-files-s3"


def package_of(plugin) -> str:
    """`name version` of the distribution that installed a plugin, or its plugin name."""
    for registered, dist in pm.list_plugin_distinfo():
        if registered is plugin:
            return f"{dist.project_name} {dist.version}"
    return pm.get_name(plugin) or repr(plugin)


def our_package() -> str:
    try:
        return f"{OUR_PACKAGE} {version(OUR_PACKAGE)}"
    except PackageNotFoundError:  # run from a checkout that was never installed
        return OUR_PACKAGE


async def other_s3_backends(datasette, ours) -> list[str]:
    """The packages, other than ours, whose hook registers storage type `s3`."""
    others = []
    for impl in pm.hook.register_files_storage_types.get_hookimpls():
        if impl.plugin is ours:
            continue
        arguments = {"datasette": datasette}
        result = await await_me_maybe(impl.function(*[arguments[name] for name in impl.argnames]))
        if any(getattr(cls, "storage_type", None) == STORAGE_TYPE for cls in result or ()):
            others.append(package_of(impl.plugin))
    return others


async def refuse_a_second_s3_backend(datasette, ours) -> None:
    others = await other_s3_backends(datasette, ours)
    if others:
        raise StartupError(
            f"{our_package()} and {', '.join(others)} both register datasette-files storage type "
            f"'{STORAGE_TYPE}' and only one can serve it: uninstall {', '.join(others)} "
            f"(pip uninstall it, then reinstall {OUR_PACKAGE} if they shared a name)"
        )
