"""Upload tokens: what a ticket signs, and tokens signed before its checksum had a field."""

from dataclasses import asdict, replace

import pytest
from datasette.app import Datasette

from datasette_files_s3 import tickets
from datasette_files_s3.errors import UploadRejected

REQUEST = tickets.UploadRequest(filename="a.bin", content_type="application/octet-stream", size=3)
TICKET = tickets.new_ticket("s3files", REQUEST, "alice", expires_at=1000.0)
# A version 1 payload has the fields a ticket had then: no `checksummed`.
FIELDS = {name: value for name, value in asdict(TICKET).items() if name != "checksummed"}


@pytest.fixture(scope="module")
def signer():
    return Datasette(memory=True)


def version_1_token(signer, **fields) -> str:
    return signer.sign({"v": 1, **FIELDS, **fields}, namespace=tickets.TOKEN_NAMESPACE)


@pytest.mark.parametrize("kind", list(tickets.UploadKind))
def test_ticket_survives_its_token(signer, kind):
    ticket = replace(TICKET, kind=kind, checksummed=True, sha256="x" * 44)
    assert tickets.read_ticket(signer, tickets.sign_ticket(signer, ticket)) == ticket


def test_a_version_2_token_signs_every_field_as_asdict_gives_it(signer):
    """Tokens keep their exact form however the payload is built: the
    dataclass's fields in order, the kind as its value."""
    expected = {"v": tickets.TOKEN_VERSION, **asdict(TICKET), "kind": TICKET.kind.value}
    assert tickets.sign_ticket(signer, TICKET) == signer.sign(expected, namespace=tickets.TOKEN_NAMESPACE)


def test_version_1_post_token_keeps_its_digest(signer):
    ticket = tickets.read_ticket(signer, version_1_token(signer, kind="post", sha256="x" * 44))
    assert (ticket.kind, ticket.checksummed, ticket.sha256) == (tickets.UploadKind.POST, True, "x" * 44)


def test_version_1_multipart_token_says_checksummed_without_a_digest(signer):
    token = version_1_token(signer, kind="multipart", upload_id="u", part_size=5 * 1024**2, sha256="SHA256")
    ticket = tickets.read_ticket(signer, token)
    assert (ticket.kind, ticket.checksummed, ticket.sha256) == (tickets.UploadKind.MULTIPART, True, None)


def test_version_1_token_without_checksum(signer):
    ticket = tickets.read_ticket(signer, version_1_token(signer, kind="post", sha256=None))
    assert (ticket.checksummed, ticket.sha256) == (False, None)


def test_unknown_kind_is_not_a_valid_token(signer):
    token = signer.sign(
        {"v": tickets.TOKEN_VERSION, **asdict(TICKET), "kind": "carrier-pigeon"},
        namespace=tickets.TOKEN_NAMESPACE,
    )
    with pytest.raises(UploadRejected, match="not valid"):
        tickets.read_ticket(signer, token)
