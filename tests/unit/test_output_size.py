"""output.size: the one formatter of byte counts montero computes (doctor disk, stats, offsite push)."""

from __future__ import annotations

import pytest

from montero_ops.output import size


@pytest.mark.parametrize(("n", "spaced", "tight"), [
    (None, "-", "-"),
    (0, "0 B", "0B"),
    (1023, "1023 B", "1023B"),
    (1024, "1.0 KiB", "1.0KiB"),
    (1536, "1.5 KiB", "1.5KiB"),
    (3 * 1024**3, "3.0 GiB", "3.0GiB"),
    (5 * 1024**4, "5.0 TiB", "5.0TiB"),
    (2048 * 1024**4, "2048.0 TiB", "2048.0TiB"),  # TiB is the largest unit
])
def test_binary_units(n: int | None, spaced: str, tight: str) -> None:
    assert size(n) == spaced
    assert size(n, sep="") == tight
