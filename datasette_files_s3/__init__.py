"""datasette-files-s3: an S3 storage backend for datasette-files.

This module holds the plugin hooks only; see README.md for the upload flow.

It imports nothing of datasette-files until a hook runs: Datasette loads this
plugin whenever it is imported, and datasette-files main's thumbnail worker
(`python -m datasette_files.pillow_worker`) imports Datasette from inside
datasette-files' own half-run __init__, where our `from datasette_files import`
would fail and take the worker down.
"""

import sys

from datasette import hookimpl

__all__ = ["S3Storage"]


def __getattr__(name):
    if name == "S3Storage":
        from .storage import S3Storage

        return S3Storage
    raise AttributeError(name)


@hookimpl
def register_files_storage_types(datasette):
    """Offer `storage: s3`, bound to this Datasette so sources know their names."""
    from .storage import S3Storage

    return [S3Storage.bound_to(datasette)]


@hookimpl
def startup(datasette):
    """Refuse to run beside another `s3` storage backend, then create our
    pending-uploads table in the internal database."""

    from . import clash, database

    async def inner():
        await clash.refuse_a_second_s3_backend(datasette, ours=sys.modules[__name__])
        await database.create_tables(datasette)

    return inner


# The URL prefixes our routes share: datasette-files' upload API for a source,
# one of its files, and our bundled uploader for a source.
UPLOAD_API = r"^/-/files/upload/(?P<source_slug>[^/]+)"
FILE = r"^/-/files/(?P<file_id>df-[a-z0-9]+)"
UPLOADER = r"^/-/files-s3/upload/(?P<source_slug>[^/]+)"

# The multipart endpoints, by the last segment of their URL.
MULTIPART_STEPS = ("create", "sign", "parts", "complete", "abort")


@hookimpl(tryfirst=True)
def register_routes():
    """Every route we serve. Ours come first: they take over datasette-files'
    upload API (and file views) for s3 sources, handing other sources back."""
    from . import batch_views, delete_views, multipart_views, proxy_upload, views

    return [
        (UPLOAD_API + r"/-/prepare$", views.upload_prepare),
        (UPLOAD_API + r"$", views.upload_page),
        (UPLOAD_API + r"/-/upload$", proxy_upload.upload_content),
        (UPLOAD_API + r"/-/complete$", views.upload_complete),
        (r"^/-/files/import/(?P<file_id>df-[a-z0-9]+)$", views.file_import),
        (FILE + r"/thumbnail$", views.file_thumbnail),
        (FILE + r"/-/delete$", views.file_delete),
        (FILE + r"/-/update$", views.file_update),
        (FILE + r"/download$", views.file_download),
        (r"^/-/files-s3/delete/(?P<file_id>df-[a-z0-9]+)$", delete_views.confirm_page),
        (UPLOADER + r"$", multipart_views.upload_page),
        (UPLOADER + r"/-/bucket$", multipart_views.bucket_status),
        (UPLOADER + r"/-/prepare-batch$", batch_views.prepare_batch),
        (UPLOADER + r"/-/complete-batch$", batch_views.complete_batch),
        *[
            (UPLOADER + f"/-/multipart/{step}$", getattr(multipart_views, f"multipart_{step}"))
            for step in MULTIPART_STEPS
        ],
    ]


@hookimpl
def extra_body_script(datasette, request, view_name, database, table):
    """The bundled uploader in place of datasette-files' own on s3 sources' pages,
    and its upload machine for uploads from datasette-files' file picker."""
    from . import file_picker, multipart_views

    swap = multipart_views.uploader_swap_script(datasette, request)
    if swap or not file_picker.may_show_picker(request, view_name, database, table):
        return swap

    async def inner():
        # "" when nothing applies: an awaited None would be written out as "None".
        return await file_picker.picker_upload_script(datasette, request, database, table) or ""

    return inner


@hookimpl
def file_actions(datasette, actor, file, preview_bytes):
    """Delete, in the actions menu of an s3 file's page, for actors with files-delete."""
    from . import delete_views

    return delete_views.delete_action(datasette, actor, file)


@hookimpl
def extra_css_urls(datasette, request):
    """The bundled uploader's stylesheet on the datasette-files pages it takes over."""
    from . import multipart_views

    return multipart_views.uploader_stylesheet(datasette, request)


@hookimpl
def register_commands(cli):
    """Add `datasette files-s3`: sources, cors, doctor and cleanup."""
    from .cli import files_s3

    cli.add_command(files_s3)
