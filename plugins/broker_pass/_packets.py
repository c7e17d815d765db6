"""Who an OpenPGP message is encrypted to, read from its packets without decrypting.

``gpg --list-packets`` would try to decrypt (and ask for a passphrase) to show the
inner packets, and ``--list-only`` costs a gpg process per file. The recipients
are the key ids in the public-key encrypted session-key packets at the start of
the message (RFC 4880 section 5.1), which a few lines of parsing can read.
"""

from __future__ import annotations

_PKESK = 1  # public-key encrypted session key
_SKESK = 3  # symmetric-key encrypted session key (a passphrase-only recipient)
_MARKER = 10
_ARMOR_BEGIN = b"-----BEGIN PGP MESSAGE-----"
#: The key id a sender writes for a hidden recipient (``--hidden-recipient``).
WILDCARD = "0" * 16


def _dearmor(data: bytes) -> bytes | None:
    import base64
    import binascii

    lines = data.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == _ARMOR_BEGIN)
    except StopIteration:
        return None
    body: list[bytes] = []
    in_headers = True
    for line in lines[start + 1 :]:
        line = line.strip()
        if line.startswith(b"-----END"):
            break
        if in_headers:
            # Armor headers ("Version: ...") end at the first blank line.
            if not line:
                in_headers = False
            elif b":" not in line:
                in_headers = False
                body.append(line)
            continue
        if line.startswith(b"="):  # the CRC-24 checksum line
            break
        body.append(line)
    try:
        return base64.b64decode(b"".join(body))
    except (binascii.Error, ValueError):
        return None


def _header(data: bytes, pos: int) -> tuple[int, int, int] | None:
    """(tag, body start, body length) of the packet at ``pos``, or None."""
    if pos >= len(data) or not data[pos] & 0x80:
        return None
    ctb = data[pos]
    if ctb & 0x40:  # new format
        tag = ctb & 0x3F
        if pos + 1 >= len(data):
            return None
        first = data[pos + 1]
        if first < 192:
            return tag, pos + 2, first
        if first < 224:
            if pos + 2 >= len(data):
                return None
            return tag, pos + 3, ((first - 192) << 8) + data[pos + 2] + 192
        if first == 255:
            return tag, pos + 6, int.from_bytes(data[pos + 2 : pos + 6], "big")
        return None  # a partial body length: only data packets use it, never a PKESK
    tag = (ctb >> 2) & 0x0F
    size = {0: 1, 1: 2, 2: 4}.get(ctb & 0x03)
    if size is None:  # indeterminate length
        return None
    return tag, pos + 1 + size, int.from_bytes(data[pos + 1 : pos + 1 + size], "big")


def recipient_key_ids(data: bytes) -> list[str] | None:
    """Upper-case 16-hex-digit key ids the message is encrypted to, in order.

    None when ``data`` is not an OpenPGP message this can read. A hidden
    recipient shows as :data:`WILDCARD`. Only version 3 key-id packets are read
    (what GnuPG 2.2 and every pass store write).
    """
    if data.lstrip().startswith(_ARMOR_BEGIN):
        decoded = _dearmor(data)
        if decoded is None:
            return None
        data = decoded
    ids: list[str] = []
    pos = 0
    while True:
        header = _header(data, pos)
        if header is None:
            break
        tag, start, length = header
        if tag == _PKESK:
            if start + 9 > len(data):
                return None
            if data[start] == 3:
                ids.append(data[start + 1 : start + 9].hex().upper())
        elif tag not in (_SKESK, _MARKER):
            break  # the encrypted data itself: no more recipients
        pos = start + length
    return ids if ids or pos else None
