"""Geometry of the close pack's chart: daily portal and ERP totals as paired bars.

Computed here, drawn by the template as inline SVG: the pack stays one self-contained file
(no JavaScript, no CDN) that still opens in ten years' time.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

WIDTH = 960
HEIGHT = 280
MARGIN_LEFT = 80
MARGIN_RIGHT = 16
MARGIN_TOP = 16
MARGIN_BOTTOM = 40
PORTAL_COLOUR = "#2f6db5"
ERP_COLOUR = "#e08a1e"


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str  # tooltip: the day, the system and the amount


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class DailyChart:
    currency: str
    width: int
    height: int
    plot_left: float
    plot_bottom: float
    plot_right: float
    bars: list[Bar]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    portal_colour: str = PORTAL_COLOUR
    erp_colour: str = ERP_COLOUR


def daily_charts(daily: pd.DataFrame) -> list[DailyChart]:
    """One chart per currency (amounts in different currencies never share an axis)."""
    if daily.empty:
        return []
    currencies = daily["currency"].fillna("").drop_duplicates().sort_values()
    return [
        _chart(str(currency), daily.loc[daily["currency"].fillna("") == currency])
        for currency in currencies
    ]


def _chart(currency: str, days: pd.DataFrame) -> DailyChart:
    days = days.sort_values("day").reset_index(drop=True)
    plot_width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    bottom = MARGIN_TOP + plot_height
    top_value = _nice_ceiling(float(max(days["portal_gross"].max(), days["erp_gross"].max(), 0)))
    slot = plot_width / max(len(days), 1)
    bar_width = max(slot * 0.38, 1.0)

    def height_of(amount: float) -> float:
        return 0.0 if top_value == 0 else plot_height * max(amount, 0.0) / top_value

    bars: list[Bar] = []
    x_ticks: list[Tick] = []
    label_every = 1 if len(days) <= 16 else 2
    # A month has at most 31 days per currency: a loop per day is the chart, not a hot path.
    for index, (_, row) in enumerate(days.iterrows()):
        left = MARGIN_LEFT + index * slot + slot * 0.1
        label = pd.Timestamp(row["day"]).strftime("%Y-%m-%d")
        for offset, system, amount, colour in (
            (0.0, "Portal", float(row["portal_gross"]), PORTAL_COLOUR),
            (bar_width, "ERP", float(row["erp_gross"]), ERP_COLOUR),
        ):
            height = height_of(amount)
            bars.append(
                Bar(
                    x=round(left + offset, 1),
                    y=round(bottom - height, 1),
                    width=round(bar_width, 1),
                    height=round(height, 1),
                    colour=colour,
                    title=f"{label} {system}: {amount:,.2f} {currency}",
                )
            )
        if index % label_every == 0:
            x_ticks.append(Tick(round(left + bar_width, 1), str(pd.Timestamp(row["day"]).day)))
    y_ticks = [
        Tick(round(bottom - plot_height * share, 1), f"{top_value * share:,.0f}")
        for share in (0.0, 0.25, 0.5, 0.75, 1.0)
    ]
    return DailyChart(
        currency=currency,
        width=WIDTH,
        height=HEIGHT,
        plot_left=MARGIN_LEFT,
        plot_bottom=bottom,
        plot_right=WIDTH - MARGIN_RIGHT,
        bars=bars,
        x_ticks=x_ticks,
        y_ticks=y_ticks,
    )


def _nice_ceiling(value: float) -> float:
    """A round axis maximum at or above ``value`` (1, 2, 2.5 or 5 times a power of ten)."""
    if value <= 0:
        return 0.0
    power = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power
