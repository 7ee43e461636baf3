"""Which kind of upload a file is, by its name, and whether its first bytes agree.

A mismatch is refused at once (415), before anything is saved: a `.pdf` must start like a PDF,
a `.docx` like a zip, and a text file must not start like either (Latin-1 would decode anything).
Anything else the name allows is text, decoded by the route as before.
"""
from __future__ import annotations

DOCUMENT_KINDS = {"pdf": "pdf", "docx": "docx"}  # extension -> kind read by documents.worker
PDF_MAGIC, ZIP_MAGIC, OLE_MAGIC = b"%PDF-", b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
NOT_TEXT = ((PDF_MAGIC, "PDF", ".pdf"), (ZIP_MAGIC, "zip archive (a .docx is one)", ".docx"))
PDF_HEADER_WINDOW = 1024  # readers accept a little junk before %PDF-, within the first KB
NOT_PDF = "{name} is not a PDF: its content does not start like one."
NOT_DOCX = "{name} is not a Word .docx file: its content is not a .docx (zip) package."
RENAMED = "{name} is a {kind}, not text: upload it under its own extension ({extension})."
OLD_DOC = ("{name} is an old Word .doc file or a password-protected .docx (both are sealed containers, "
           "not .docx packages). Save it as .docx without a password, then upload that.")


class WrongType(ValueError):
    """The file's content does not match its name; the message says so."""


def kind_of(file_name: str) -> str:
    """'pdf' or 'docx' for documents, 'text' for everything else."""
    extension = file_name.rsplit(".", 1)[-1].lower() if "." in file_name else ""
    return DOCUMENT_KINDS.get(extension, "text")


def check_signature(kind: str, file_name: str, head: bytes) -> None:
    """Raise WrongType when the first bytes do not belong to `kind`."""
    if kind == "text":
        for magic, what, extension in NOT_TEXT:
            if head.startswith(magic):
                raise WrongType(RENAMED.format(name=file_name, kind=what, extension=extension))
    if kind == "pdf" and PDF_MAGIC not in head[:PDF_HEADER_WINDOW]:
        raise WrongType(NOT_PDF.format(name=file_name))
    if kind == "docx" and not head.startswith(ZIP_MAGIC):
        raise WrongType((OLD_DOC if head.startswith(OLE_MAGIC) else NOT_DOCX).format(name=file_name))
