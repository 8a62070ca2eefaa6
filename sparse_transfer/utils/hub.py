"""Hub names and the offline route. When a model or dataset named on the Hugging Face
hub cannot be fetched, stop within seconds with one line that says what could not be
fetched and gives the local-files flags, instead of a minute of retries and tracebacks."""

from __future__ import annotations

import os
import socket
import threading
from urllib.parse import urlparse

from huggingface_hub import constants

from sparse_transfer.utils.errors import ConfigurationError

PROBE_SECONDS = 3.0
CACHED_COPY_HINT = "with a copy in the local cache, set HF_HUB_OFFLINE=1"


def is_hub_name(name: str | None) -> bool:
    return bool(name) and not os.path.exists(name)


def hub_reachable(timeout: float = PROBE_SECONDS) -> bool:
    """A TCP connection to the hub's endpoint within `timeout` seconds (name lookup included,
    which a socket timeout alone does not bound)."""
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    reached = []

    def connect():
        try:
            socket.create_connection((url.hostname, port), timeout=timeout).close()
            reached.append(True)
        except OSError:
            pass

    probe = threading.Thread(target=connect, daemon=True)
    probe.start()
    probe.join(timeout)
    return bool(reached)


def require_hub(wanted: list[str], offline_flags: str, timeout: float = PROBE_SECONDS) -> None:
    """`wanted`: what would come from the hub (e.g. "model bert-base-uncased"); nothing to
    check when it is empty or when the hub is switched off (HF_HUB_OFFLINE=1: cache only)."""
    if not wanted or constants.HF_HUB_OFFLINE or hub_reachable(timeout):
        return
    raise ConfigurationError(
        f"cannot reach the Hugging Face hub ({constants.ENDPOINT}) to fetch {' and '.join(wanted)}; "
        f"run offline with {offline_flags} ({CACHED_COPY_HINT})")


def load_or_explain(load, name: str, flag: str):
    """`load(name)`, with a missing or unloadable model turned into one line naming `flag`."""
    if os.path.sep in name and not os.path.isdir(name):
        raise ConfigurationError(f"{flag} {name}: no such directory")
    try:
        return load(name)
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"cannot load {flag} {name} ({str(error).splitlines()[0]}); give a local "
                                 "directory, or a hub name where the hub can be reached") from None
