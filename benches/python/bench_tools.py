"""The tools the benchmark calls."""

import capsule


@capsule.tool()
def noop() -> None:
    return None
