"""Peak memory of taking in a large received mail (docs/inbound.rst, "Large mail").

    .venv/bin/python benchmarks/inbound_memory.py [--mib 10]

Builds a mail of ``--mib`` MiB (a short text body and one base64 attachment of random
bytes), writes it to a file, and measures with ``tracemalloc`` (Python allocations only),
each in a fresh child process so that one measurement does not leave memory to the next:

- ``streamed``: ``seacucumber.events.inbound.parse_file``: the file fed to the parser in
  64 KB chunks, as ``events.s3.fetch_message`` feeds it the S3 download;
- ``streamed + attachment``: the same, then ``message.attachments`` read (the decoded bytes
  held beside the parsed message, as a receiver holding them would);
- ``whole bytes``: what the obvious code does, ``f.read()`` then
  ``email.message_from_bytes(raw, policy=policy.default)``.

Prints the mail's size, and for each way the peak and what is still held at the end (the
parsed message; with the attachment, its bytes too), in MiB and as multiples of the mail.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import tracemalloc
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MIB = 1024 * 1024
WAYS = ("streamed", "streamed + attachment", "whole bytes")


def make_mail(path: Path, mib: float) -> int:
    message = EmailMessage()
    message["From"], message["To"] = "ann@example.org", "support@inbound.example.com"
    message["Subject"] = "A large reply"
    message.set_content("The scans are attached.\n")
    # base64 grows bytes by 4/3, plus a line break every 76 characters
    size = int(mib * MIB * 3 / 4 * 76 / 77)
    message.add_attachment(os.urandom(size), maintype="application",
                           subtype="octet-stream", filename="scans.bin")
    raw = message.as_bytes()
    path.write_bytes(raw)
    return len(raw)


def measure(way: str, path: str) -> tuple[int, int]:
    """(peak, held at the end) bytes allocated taking the mail in ``way`` (in a child
    process)."""
    from seacucumber.events import inbound

    tracemalloc.start()
    with open(path, "rb") as stream:
        if way == "whole bytes":
            message = message_from_bytes(stream.read(), policy=policy.default)
        else:
            message = inbound.parse_file(stream, inbound.Limits.defaults())
            if way == "streamed + attachment":
                attachments = message.attachments
                assert attachments and len(attachments[0].content) > 0
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert message["Subject"] == "A large reply"
    return peak, held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, default=10.0)
    parser.add_argument("--child", nargs=2, metavar=("WAY", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(*measure(args.child[0], args.child[1]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "large.eml"
        size = make_mail(path, args.mib)
        print(f"mail: {size / MIB:.2f} MiB ({size} bytes), Python {sys.version.split()[0]}")
        for way in WAYS:
            done = subprocess.run([sys.executable, __file__, "--child", way, str(path)],
                                  capture_output=True, text=True, check=True)
            peak, held = map(int, done.stdout.split())
            print(f"{way:24s} peak {peak / MIB:6.2f} MiB = {peak / size:4.2f} x the mail; "
                  f"held at the end {held / MIB:6.2f} MiB = {held / size:4.2f} x")


if __name__ == "__main__":
    main()
