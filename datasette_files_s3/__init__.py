"""datasette-files-s3: an S3 storage backend for datasette-files.

This module holds the plugin hooks only; see README.md for the upload flow.
"""

from datasette import hookimpl

from . import database, multipart_views, views
from .storage import S3Storage

__all__ = ["S3Storage"]


@hookimpl
def register_files_storage_types(datasette):
    """Offer `storage: s3`, bound to this Datasette so sources know their names."""
    return [S3Storage.bound_to(datasette)]


@hookimpl
def startup(datasette):
    """Create our pending-uploads table in the internal database."""

    async def inner():
        await database.create_tables(datasette)

    return inner


@hookimpl(tryfirst=True)
def register_routes():
    """Our routes first: they take over datasette-files' upload API for s3 sources."""
    return [
        (r"^/-/files/upload/(?P<source_slug>[^/]+)/-/prepare$", views.upload_prepare),
        (r"^/-/files/upload/(?P<source_slug>[^/]+)/-/complete$", views.upload_complete),
        (r"^/-/files/(?P<file_id>df-[a-z0-9]+)/thumbnail$", views.file_thumbnail),
        (r"^/-/files/(?P<file_id>df-[a-z0-9]+)/-/delete$", views.file_delete),
        (r"^/-/files/(?P<file_id>df-[a-z0-9]+)/-/update$", views.file_update),
        (r"^/-/files/(?P<file_id>df-[a-z0-9]+)/download$", views.file_download),
        *multipart_views.ROUTES,
    ]


@hookimpl
def extra_body_script(datasette, request):
    """The bundled uploader in place of datasette-files' own on s3 sources' pages."""
    return multipart_views.uploader_swap_script(datasette, request)


@hookimpl
def register_commands(cli):
    """Add `datasette files-s3`: sources, cors, doctor and cleanup."""
    from .cli import files_s3

    cli.add_command(files_s3)
