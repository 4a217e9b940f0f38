"""A test SMTP server with TLS and AUTH (aiosmtpd), for the mail tests.

Usage: smtp_tls.py PORT CERT KEY starttls|implicit USER PASSWORD_FILE DUMP_DIR

Listens on 127.0.0.1:PORT. With `starttls` it offers STARTTLS and requires
it before AUTH and MAIL; with `implicit` it speaks TLS from the first byte.
AUTH PLAIN/LOGIN must succeed with USER and the password in PASSWORD_FILE.
Each accepted message is written to DUMP_DIR as msg.N, after a first line
`X-Test-Auth: <user>`.
"""

import asyncio
import os
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def main():
    port, cert, key, mode, user, pwfile, dump = sys.argv[1:8]
    password = open(pwfile).read().strip()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    os.makedirs(dump, exist_ok=True)
    count = [0]

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login.decode() == user
              and auth_data.password.decode() == password)
        return AuthResult(success=ok, handled=False)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            if not session.authenticated:
                return "530 5.7.0 Authentication required"
            count[0] += 1
            path = os.path.join(dump, f"msg.{count[0]:06d}")
            with open(path + ".tmp", "wb") as f:
                f.write(f"X-Test-Auth: {user}\n".encode())
                f.write(envelope.original_content)
            os.rename(path + ".tmp", path)
            return "250 OK"

    kwargs = dict(hostname="127.0.0.1", port=int(port), authenticator=authenticator,
                  auth_required=True)
    if mode == "implicit":
        # The whole connection is TLS; aiosmtpd 1.4 does not count it as
        # such for auth_require_tls, so that check is left to the socket.
        controller = Controller(Handler(), ssl_context=ctx, auth_require_tls=False, **kwargs)
    else:
        controller = Controller(Handler(), tls_context=ctx, require_starttls=True,
                                auth_require_tls=True, **kwargs)
    controller.start()
    print("ready", flush=True)
    try:
        asyncio.get_event_loop().run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
