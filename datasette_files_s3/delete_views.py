"""Delete from the file page, for s3 files: datasette-files 0.1a3 (and its main)
grant files-delete and answer POST /-/files/{id}/-/delete, but no page offers it.

The file page's "File actions" menu (datasette-files' file_actions hook) links
actors who may delete to a confirmation page, whose form POSTs to that route;
a form's POST is then answered with the source's page and a message, not JSON.
"""

from __future__ import annotations

from datasette import Forbidden, NotFound, Response

from . import files_bridge
from .storage import S3Storage

CONFIRM_TEMPLATE = "datasette_files_s3_delete.html"
FORM_TYPE = "application/x-www-form-urlencoded"


async def deletable_s3_file(datasette, actor, file_id: str):
    """The file's row if it is an s3 file the actor may delete, else None."""
    row = await files_bridge.file_record(datasette, file_id)
    if row is None or not isinstance(files_bridge.storage_for(row["source_slug"]), S3Storage):
        return None
    if not await files_bridge.can_delete(datasette, actor, row["source_slug"], file_id):
        return None
    return row


async def delete_action(datasette, actor, file: dict) -> list[dict]:
    """The "Delete" entry of the file page's actions menu, for those who may delete."""
    if await deletable_s3_file(datasette, actor, file["id"]) is None:
        return []
    return [
        {
            "href": datasette.urls.path(f"/-/files-s3/delete/{file['id']}"),
            "label": "Delete",
            "description": "Delete this file and its object in the bucket (asks first)",
        }
    ]


async def confirm_page(request, datasette):
    """GET /-/files-s3/delete/{id}: "Delete this file?" with a POST form."""
    file_id = request.url_vars["file_id"]
    row = await deletable_s3_file(datasette, request.actor, file_id)
    if row is None:
        if await files_bridge.file_record(datasette, file_id) is None:
            raise NotFound(f"File not found: {file_id}")
        raise Forbidden("Permission denied: you need files-delete on this s3 file")
    return Response.html(
        await datasette.render_template(
            CONFIRM_TEMPLATE,
            {
                "file": dict(row),
                "delete_url": datasette.urls.path(f"/-/files/{file_id}/-/delete"),
                "file_url": datasette.urls.path(f"/-/files/{file_id}"),
            },
            request=request,
        )
    )


def answer_forms_with_a_page(delete_view):
    """A form's POST (from the confirmation page) gets a redirect to the source's
    page with a message once the file is gone; JSON clients get the JSON as before."""

    async def view(request, datasette):
        if not request.headers.get("content-type", "").startswith(FORM_TYPE):
            return await delete_view(request, datasette)
        row = await files_bridge.file_record(datasette, request.url_vars["file_id"])
        response = await delete_view(request, datasette)
        if row is None or response.status != 200:
            return response
        datasette.add_message(request, f"Deleted {row['filename']}", datasette.INFO)
        return Response.redirect(datasette.urls.path(f"/-/files/source/{row['source_slug']}"))

    return view
