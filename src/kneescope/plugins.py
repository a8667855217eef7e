"""Entry-point groups: how capabilities, steps and training tasks plug into kneescope.

kneescope finds its steps (``kneescope.steps``), cohort-level steps
(``kneescope.cohort_steps``) and training tasks (``kneescope.tasks``) only through the
entry points of installed distributions, its own included; this module reads them (metadata
only: nothing is imported).
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from kneescope.errors import ConfigError


def registered(group: str, what: str) -> dict[str, EntryPoint]:
    """Names registered in the entry-point ``group`` -> their entry points.

    Args:
        group: the entry-point group, e.g. ``"kneescope.steps"``.
        what: what the group holds, for the message (``"step"``, ``"cohort step"``).

    Raises:
        ConfigError: two installed distributions register one name for different objects.
    """
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        previous = found.get(ep.name)
        if previous is not None and previous.value != ep.value:
            raise ConfigError(
                f"{what} name {ep.name!r} is registered twice ({previous.value} and "
                f"{ep.value}); uninstall one of the packages that register it"
            )
        found[ep.name] = ep
    return found
