"""Progress bars for long work (tqdm on stderr), silenced by --quiet or when not on a terminal in CI."""

from __future__ import annotations

import os
from typing import Iterable, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], *, desc: str, quiet: bool = False, unit: str = "it",
             total: int | None = None) -> Iterable[T]:
    if quiet or os.environ.get("SYNTHAUDIO_QUIET") == "1":
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit=unit, total=total, leave=False, mininterval=1.0)
