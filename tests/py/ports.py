"""Ports for test servers: zkd reports the port it bound (--port-file); Apache ZooKeeper, which
cannot, gets a held one (PortHold). Shared by tests/py/conftest.py and tests/py/opcodes/servers.py."""
import socket


class PortHold:
    """A port for a server that cannot bind port 0 and report it (Apache ZooKeeper): a socket
    bound to 0.0.0.0:0 with SO_REUSEADDR and never listened on, kept open while the server runs.
    ZooKeeper's listener sets SO_REUSEADDR too, so it binds and listens beside it; meanwhile the
    kernel neither hands the port to another bind of port 0 nor uses it as the local port of an
    outgoing connection, because a socket is bound to it. What remains: a process binding this
    very port number explicitly, with SO_REUSEADDR, before the server listens on it (then the
    server exits during start-up, and Server retries on another port)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", 0))
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


def listened_on_by_another(port):
    """True if something other than our PortHold listens on 127.0.0.1:port."""
    t = socket.socket()
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        t.bind(("127.0.0.1", port))
        t.listen()
        return False
    except OSError:
        return True
    finally:
        t.close()


def read_port_file(path):
    """The port zkd wrote with --port-file (it writes by rename: the file is absent or whole)."""
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None
