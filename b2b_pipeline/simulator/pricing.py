"""The portal's own price rule (contract §3), as SparkLayer would apply it to a buyer.

Deliberately written here and not imported from ``b2b_pipeline.domain.pricing``: the simulator
plays an independent system, and the two rules differ on purpose (the ERP takes the lowest price
over an account's lists; the portal takes the first list that prices the SKU), so a sync that
does not bridge them must show up as a pricing exception rather than be hidden by shared code.

Rule [assumed, contract §3], in :func:`buyer_price` and nowhere else: walk the customer's
``price_lists`` in their order; the first list with a break whose ``quantity <=`` the ordered
quantity prices the SKU (a list whose breaks all start above the ordered quantity does not
price it at that quantity, so the walk goes on [assumed]); in that list take the break with the
largest such quantity; unit = that price × ``(1 - discount_percentage / 100)``, 2 dp half-up.
Then line net = unit × quantity; line tax = round(net × rate / 100, 2), rate 0 for a
tax-exempt customer. Money is ``Decimal`` so half-up rounding is exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
HUNDRED = Decimal(100)

# A price list's entry for one SKU: (minimum quantity, price) breaks, sorted by quantity.
Breaks = Sequence[tuple[int, float]]
# A customer's lists in their order: (slug, sku -> breaks).
CustomerLists = Sequence[tuple[str, Mapping[str, Breaks]]]


def to_money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def as_decimal(value: float | int | str) -> Decimal:
    # str() of a float is its shortest round-trip form: 12.1 -> Decimal("12.1"), not 12.0999...
    return Decimal(str(value))


@dataclass(frozen=True)
class BuyerPrice:
    slug: str  # the list that priced the SKU
    list_price: Decimal  # the break price, before the customer's discount
    unit_price: Decimal  # net, after discount, 2 dp


def buyer_price(
    lists: CustomerLists, sku: str, quantity: int, discount_percentage: float
) -> BuyerPrice | None:
    """The unit price the portal charges this customer, or None when no list prices the SKU."""
    for slug, prices in lists:
        best: float | None = None
        for min_quantity, price in prices.get(sku, ()):
            if min_quantity > quantity:
                break  # breaks are sorted by quantity
            best = price
        if best is not None:
            list_price = as_decimal(best)
            discount = as_decimal(discount_percentage)
            return BuyerPrice(slug, list_price, to_money(list_price * (1 - discount / HUNDRED)))
    return None


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
    sku: str, quantity: int, list_price: Decimal, unit_price: Decimal, tax_rate: Decimal
) -> PricedLine:
    """One order line's totals from its list price and the unit price charged."""
    net = to_money(unit_price * quantity)
    list_value = to_money(list_price * quantity)
    return PricedLine(
        sku=sku,
        quantity=quantity,
        unit_price=unit_price,
        net=net,
        discount=max(list_value - net, Decimal(0)),
        tax=to_money(net * tax_rate / HUNDRED),
        tax_rate=tax_rate,
    )
