"""Config: every key's default, kind and range, the checks, errors with key + file:line."""
from .schema import *  # noqa: F401,F403
from .schema import EVAL_DATA, UNSUPPORTED, __all__  # noqa: F401
