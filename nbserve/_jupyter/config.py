"""`c.NbServe.*`: the server extension's settings, read from Jupyter's own config files."""

from __future__ import annotations

from traitlets import Float, Int, Unicode
from traitlets.config import Configurable

__all__ = ["NbServe"]


class NbServe(Configurable):
    """Settings of nbserve's Jupyter server extension (`c.NbServe.<name> = ...`)."""

    discovery_dir = Unicode(
        "",
        help="Where kernels advertise their services; empty means '{jupyter runtime dir}/nbserve', "
        "the directory nbserve's kernels write to.",
    ).tag(config=True)

    check_timeout = Float(
        1.0,
        help="Seconds a service has to answer its status route before the Services list shows it "
        "as 'unresponsive' (a kernel busy in a GIL-holding loop can be slow to answer).",
    ).tag(config=True)

    connect_timeout = Float(
        5.0, help="Seconds the proxy waits to connect to a service before answering 502."
    ).tag(config=True)

    request_timeout = Float(
        0.0,
        help="Seconds a proxied request may take in all; 0 means no limit, so long streams "
        "(SSE, token generation) are never cut off by the proxy.",
    ).tag(config=True)

    stop_timeout = Float(
        30.0,
        help="Seconds the stop route waits for a service to finish in-flight requests and free "
        "its port before answering 504.",
    ).tag(config=True)

    max_body_size = Int(
        10 * 2**30,
        help="Largest response body, in bytes, the proxy passes through from a service.",
    ).tag(config=True)
