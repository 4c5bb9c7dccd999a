"""The optional torch/transformers extra: imported with one clear error; the dtypes it can time.

torch and transformers are imported inside the functions that need them: the core package stays
numpy-only and a missing extra is one clear error, not an ImportError at import time.
"""

from __future__ import annotations

from typing import Any

from offload_rl.errors import ConfigError, OffloadRLError

# Bytes per element of each dtype a profile can be measured in.
DTYPES: dict[str, int] = {"float32": 4, "bfloat16": 2, "float16": 2}

MISSING_EXTRA = (
    "profiling needs torch and transformers, which are not installed: "
    "install the 'profile' extra (pip install 'offload-rl[profile]')"
)


def require_torch() -> tuple[Any, Any]:
    """Import torch and transformers, or raise the one-line 'install the extra' error."""
    try:
        import torch
        import transformers
    except ImportError as err:
        raise OffloadRLError(f"{MISSING_EXTRA} ({err})") from err
    return torch, transformers


def dtype_size(dtype: str) -> int:
    """Bytes per element of ``dtype``; a name outside :data:`DTYPES` is the user's error."""
    size = DTYPES.get(dtype)
    if size is None:
        raise ConfigError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return size


def torch_dtype(torch: Any, dtype: str) -> Any:
    """The torch dtype named ``dtype`` (checked against :data:`DTYPES` first)."""
    dtype_size(dtype)
    return getattr(torch, dtype)
