"""The tests' NGINX helper (``devtools.nginx``): a port another process takes before NGINX binds it is reported."""

from __future__ import annotations

import socket

import pytest

from devtools.nginx import Nginx, PortTaken, free_port

pytestmark = pytest.mark.nginx


def test_a_port_taken_before_nginx_binds_it_raises_port_taken(tmp_path):
    mine, taken = free_port(), socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    other = taken.getsockname()[1]
    ngx = Nginx(tmp_path, f"server {{ listen 127.0.0.1:{mine}; return 200; }}\n"
                          f"server {{ listen 127.0.0.1:{other}; return 200; }}", master=False)
    try:
        with pytest.raises(PortTaken, match=f"127.0.0.1:{other}"):
            ngx.start(mine, others=(other,))
        assert ngx.proc is None or ngx.proc.poll() is not None  # stopped
        # on free ports it starts (the earlier run's log in the same prefix does not count)
        ngx.write(f"server {{ listen 127.0.0.1:{mine}; return 200; }}", master=False)
        ngx.start(mine, others=(mine,))
    finally:
        ngx.stop()
        taken.close()
