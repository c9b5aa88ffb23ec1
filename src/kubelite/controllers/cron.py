"""Cron schedules as CronJob's spec.schedule reads them (robfig/cron's standard
parser, which Kubernetes uses): five fields, minute hour day-of-month month
day-of-week, each `*`, `?`, a value, a range `a-b`, with a step `/n`, or a list
of those; month and weekday names (jan, mon); 7 is Sunday too; and the macros
@yearly (@annually), @monthly, @weekly, @daily (@midnight), @hourly. When both
day-of-month and day-of-week are restricted, a day matching either fires.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
          "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
          "@hourly": "0 * * * *"}
_MONTHS = {m: i + 1 for i, m in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split())}
_DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
# (low, high, names) per field.
_FIELDS = ((0, 59, {}), (0, 23, {}), (1, 31, {}), (1, 12, _MONTHS), (0, 7, _DAYS))
# How far ahead next() looks before deciding a schedule never fires (Feb 30).
_HORIZON_DAYS = 366 * 5


class CronError(ValueError):
    pass


def _value(text: str, names: dict[str, int]) -> int:
    lowered = text.lower()
    if lowered in names:
        return names[lowered]
    if not text.isdigit():
        raise CronError(f"failed to parse int from {text}")
    return int(text)


def _field(text: str, low: int, high: int, names: dict[str, int]) -> tuple[set[int], bool]:
    """The values a field allows, and whether it was a star (unrestricted)."""
    values: set[int] = set()
    star = False
    for part in text.split(","):
        rng, _, step_text = part.partition("/")
        step = _value(step_text, {}) if step_text else 1
        if step <= 0:
            raise CronError(f"step of range should be a positive number: {part}")
        if rng in ("*", "?"):
            first, last = low, high
            star = star or not step_text
        elif "-" in rng:
            a, _, b = rng.partition("-")
            first, last = _value(a, names), _value(b, names)
        else:
            first = _value(rng, names)
            last = high if step_text else first
        if first < low or last > high or first > last:
            raise CronError(f"end of range ({last}) above maximum ({high}): {part}"
                            if last > high else f"beginning of range ({first}) below minimum "
                            f"({low}): {part}" if first < low else
                            f"beginning of range ({first}) beyond end of range ({last}): {part}")
        values.update(range(first, last + 1, step))
    return values, star


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_star: bool
    weekdays_star: bool

    @classmethod
    def parse(cls, text: str) -> Schedule:
        spec = MACROS.get(text.strip().lower(), text.strip())
        parts = spec.split()
        if len(parts) != 5:
            raise CronError(f"expected exactly 5 fields, found {len(parts)}: {text}")
        parsed = [_field(p, lo, hi, names) for p, (lo, hi, names) in zip(parts, _FIELDS,
                                                                            strict=True)]
        weekdays = {d % 7 for d in parsed[4][0]}
        return cls(frozenset(parsed[0][0]), frozenset(parsed[1][0]), frozenset(parsed[2][0]),
                   frozenset(parsed[3][0]), frozenset(weekdays), parsed[2][1], parsed[4][1])

    def _day_matches(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.days_star or self.weekdays_star:
            return dom and dow
        return dom or dow

    def next(self, after: dt.datetime) -> dt.datetime | None:
        """The first time strictly after `after` (an aware datetime, in the zone the
        schedule is meant for) that the schedule fires; None if it never does."""
        tz = after.tzinfo
        start = after.replace(second=0, microsecond=0, tzinfo=None) + dt.timedelta(minutes=1)
        day = start.date()
        for _ in range(_HORIZON_DAYS):
            if self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        candidate = dt.datetime.combine(day, dt.time(hour, minute))
                        if candidate < start:
                            continue
                        aware = candidate.replace(tzinfo=tz)
                        # A wall time skipped by a DST change does not exist: skip it.
                        if tz is not None and aware.astimezone(dt.UTC).astimezone(
                                tz).replace(tzinfo=None) != candidate:
                            continue
                        return aware
            day += dt.timedelta(days=1)
        return None
