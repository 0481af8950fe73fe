"""Prefixed object ids, shaped like the hosted API's (``asst_`` + 24 alphanumerics)."""

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits

ASSISTANT = "asst_"
THREAD = "thread_"
MESSAGE = "msg_"
RUN = "run_"
STEP = "step_"
CALL = "call_"
FILE = "file-"
VECTOR_STORE = "vs_"
FILE_BATCH = "vsfb_"
PROJECT = "proj_"
API_KEY = "key_"


def random_token(length: int = 24) -> str:
    """Return a random alphanumeric token."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_id(prefix: str) -> str:
    """Return a fresh id with the given prefix."""
    return prefix + random_token()
