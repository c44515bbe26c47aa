"""A real SMTP server on loopback for the digest tests (tests/it/notify.rs).

Run with Debian's interpreter (/usr/bin/python3, which has python3-aiosmtpd):

    sink.py PORT OUTDIR [--starttls CERT KEY | --smtps CERT KEY]

Every message accepted is written to OUTDIR/<n>.eml exactly as received
(the DATA bytes), with its envelope recipients in OUTDIR/<n>.rcpt; each file
appears whole (written under another name, then renamed). Prints "ready" on
stdout once it listens, and runs until killed.
"""

import asyncio
import os
import ssl
import sys
import time

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, outdir):
        self.outdir = outdir
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        base = os.path.join(self.outdir, str(self.count))
        for ext, data in ((".rcpt", "\n".join(envelope.rcpt_tos).encode()),
                          (".eml", envelope.original_content)):
            with open(base + ext + ".tmp", "wb") as f:
                f.write(data)
            os.rename(base + ext + ".tmp", base + ext)
        return "250 OK"


def context(cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


def main():
    port, outdir = int(sys.argv[1]), sys.argv[2]
    mode = sys.argv[3] if len(sys.argv) > 3 else None
    handler = Sink(outdir)
    kw = dict(hostname="127.0.0.1", port=port)
    if mode == "--starttls":
        ctl = Controller(handler, server_hostname="localhost", server_kwargs=dict(
            tls_context=context(sys.argv[4], sys.argv[5]), require_starttls=True), **kw)
    elif mode == "--smtps":
        ctl = Controller(handler, ssl_context=context(sys.argv[4], sys.argv[5]),
                         server_hostname="localhost", **kw)
    else:
        ctl = Controller(handler, server_hostname="localhost", **kw)
    ctl.start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
