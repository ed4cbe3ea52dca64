"""The exceptions this plugin raises, each carrying the HTTP status it becomes.

Messages are written for the person who has to fix the problem. None of them
ever contains a key, a session token or a broker secret.
"""

from datasette.utils import StartupError


class FilesS3Error(Exception):
    """Base class: every error here carries a message safe to show a user."""

    status = 500
    # What the log line adds to the message, for the operator alone (an internal
    # host name, say); never a secret.
    log_detail = ""

    @property
    def messages(self) -> list[str]:
        """The message, or messages when raised with a list, as strings."""
        first = self.args[0] if self.args else ""
        return [str(m) for m in first] if isinstance(first, list) else [str(first)]

    @property
    def headers(self) -> dict:
        """HTTP headers the error's answer carries besides its JSON body."""
        return {}

    @property
    def retryable(self) -> bool:
        """Whether the same request may succeed later: a failure on our side or
        S3's may heal, a refusal of the request itself will not."""
        return self.status >= 500

    def __str__(self) -> str:
        return "; ".join(self.messages)


class ConfigError(FilesS3Error, StartupError, ValueError):
    """A source's configuration cannot work; raised at startup.

    As a StartupError, `datasette serve` prints it as one line and exits.
    """


class UploadRejected(FilesS3Error):
    """The client asked for something we will not do; they can fix it (400)."""

    status = 400


class ObjectChanged(FilesS3Error):
    """The bucket's object is no longer the one that was confirmed (409 Conflict):
    on a store that enforces no policy, a still-valid POST policy wrote it again."""

    status = 409


class BodyTooLarge(UploadRejected):
    """The request body is larger than an endpoint reads (413)."""

    status = 413


class ReadTooLarge(FilesS3Error):
    """A whole-object read of a file larger than the source's max_read_size:
    refused before its body is read, so Datasette never holds it."""

    status = 413


class AlreadyCompleted(UploadRejected):
    """The token's file is already registered (409 Conflict).

    Refused like any replay, but the answer names the file, so an uploader
    whose first complete succeeded and whose answer was lost on the way can
    show the file instead of an error.
    """

    status = 409

    def __init__(self, file_id: str, message: str = "This upload has already been completed"):
        super().__init__(message)
        self.file_id = file_id


class TooManyUploads(FilesS3Error):
    """The actor already holds as many unfinished uploads as the source allows (429).

    `retry_after` is the number of seconds until the oldest of them expires
    and frees a place without the actor doing anything.
    """

    status = 429

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after

    retryable = True  # after Retry-After seconds

    @property
    def headers(self) -> dict:
        return {"Retry-After": str(self.retry_after)}


class CompletedThenDeleted(AlreadyCompleted):
    """The token's file was registered once and deleted since (409): a token
    confirms once, ever, so the file is not registered again."""

    def __init__(self, file_id: str):
        super().__init__(
            file_id,
            "This upload was completed once and its file has since been deleted; "
            "an upload token confirms only once: upload the file again to add it back",
        )


class FolderMoved(UploadRejected):
    """The upload was started in another S3Folder than the one the source's
    credentials broker now hands out (409): the new keys cannot reach it."""

    status = 409


class UploadForbidden(FilesS3Error):
    """The actor may not do this (403)."""

    status = 403


class SourceNotFound(FilesS3Error):
    """No configured source has that name (404)."""

    status = 404


class StorageUnavailable(FilesS3Error):
    """S3 failed or could not be reached: not the client's fault (502).

    `code` is S3's error code (e.g. "NoSuchUpload") when S3 answered with one,
    else "": callers that expect a particular failure test it, not the message.
    """

    status = 502

    def __init__(self, message="", code: str = ""):
        super().__init__(message)
        self.code = code


class BucketUnusable(StorageUnavailable):
    """S3 answered that the bucket does not exist or refuses our keys (502).

    Still 502, like every error S3 answers with, but not `retryable`: only a
    change to the source's settings, the bucket or its policy helps.
    """

    retryable = False


class BucketMissing(BucketUnusable):
    """S3 answered that the bucket does not exist (502)."""


class NotPermitted(BucketUnusable):
    """S3 answered AccessDenied: the keys work but may not do this (502).

    Keys scoped to one tenant's prefix are refused every bucket-wide call
    (CORS, lifecycle, HeadBucket, listing multipart uploads); the commands
    say so instead of failing (docs/tenants.md).
    """


class S3Unreachable(StorageUnavailable):
    """The S3 endpoint did not answer at all (503): try again when it is back."""

    status = 503


class CredentialsUnavailable(StorageUnavailable):
    """No usable credentials right now, e.g. the broker is down (503)."""

    status = 503
