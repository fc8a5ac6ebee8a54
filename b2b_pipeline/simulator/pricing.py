"""The portal's own price rule (contract §3), as SparkLayer would apply it to a buyer's order.

Deliberately written here and not imported from ``b2b_pipeline.domain.pricing``: the simulator
plays an independent system, so a drift between the pipeline's rule and the portal's must be
able to show up as a pricing exception rather than be hidden by shared code.

Rule: unit price = lowest break price with ``quantity <= ordered`` over the customer's lists,
times ``(1 - discount_percentage / 100)``, rounded to 2 dp half-up; line net = unit × quantity;
line tax = round(net × rate / 100, 2), rate 0 for a tax-exempt customer; totals are sums of lines.
Money is computed in ``Decimal`` so that half-up rounding is exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
HUNDRED = Decimal(100)

# A price list's entry for one SKU: (minimum quantity, price) breaks, sorted by quantity.
Breaks = Sequence[tuple[int, float]]


def to_money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def as_decimal(value: float | int | str) -> Decimal:
    # str() of a float is its shortest round-trip form: 12.1 -> Decimal("12.1"), not 12.0999...
    return Decimal(str(value))


def lowest_break_price(breaks_per_list: Iterable[Breaks], quantity: int) -> Decimal | None:
    """The lowest break price whose minimum quantity the order reaches, over all lists."""
    best: float | None = None
    for breaks in breaks_per_list:
        for min_quantity, price in breaks:
            if min_quantity <= quantity and (best is None or price < best):
                best = price
    return None if best is None else as_decimal(best)


@dataclass(frozen=True)
class PricedLine:
    sku: str
    quantity: int
    unit_price: Decimal  # net, after discount
    net: Decimal
    discount: Decimal  # list value minus net
    tax: Decimal
    tax_rate: Decimal

    @property
    def gross(self) -> Decimal:
        return self.net + self.tax


def price_line(
    sku: str,
    quantity: int,
    list_price: Decimal,
    discount_percentage: float,
    tax_rate: Decimal,
    *,
    apply_discount: bool = True,
) -> PricedLine:
    """One order line by the portal rule; ``apply_discount=False`` for a buyer-given price."""
    discount = as_decimal(discount_percentage) if apply_discount else Decimal(0)
    unit = to_money(list_price * (1 - discount / HUNDRED))
    net = to_money(unit * quantity)
    list_value = to_money(list_price * quantity)
    return PricedLine(
        sku=sku,
        quantity=quantity,
        unit_price=unit,
        net=net,
        discount=max(list_value - net, Decimal(0)),
        tax=to_money(net * tax_rate / HUNDRED),
        tax_rate=tax_rate,
    )
