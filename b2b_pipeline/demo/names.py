"""Word lists for demo names: British trade customers, EU importers, a hardware catalogue.

Names are built from these lists by index (not at random) so that every generated company name
is unique at any size, and the same arguments always give the same names.
"""

from __future__ import annotations

import re
import unicodedata

# Hand-written demo accounts use other names (Harrow, Pennine, Thames, Kingsway, Van Dijk, Rhein):
# generated names never repeat them.
UK_PLACES = (
    "Mercia",
    "Cotswold",
    "Solent",
    "Severn",
    "Chiltern",
    "Humber",
    "Wessex",
    "Mendip",
    "Tyneside",
    "Fenland",
    "Calder",
    "Medway",
    "Dales",
    "Wirral",
    "Cheviot",
    "Exmoor",
    "Trent",
    "Avon",
    "Wolds",
    "Ribble",
    "Lune",
    "Ouse",
    "Derwent",
    "Weald",
    "Broadland",
    "Quantock",
    "Malvern",
    "Peak",
    "Clyde",
    "Forth",
    "Tamar",
    "Eden",
    "Wye",
    "Usk",
    "Arun",
    "Stour",
)
UK_TRADES = (
    "Building Supplies",
    "Joinery",
    "Electrical Contractors",
    "Plumbing & Heating",
    "Roofing",
    "Hardware",
    "Interiors",
    "Facilities Management",
    "Shopfitting",
    "Timber & Fixings",
    "Engineering",
    "Maintenance Services",
    "Home & Garden",
    "Construction",
    "Tool Hire",
    "Fabrications",
    "Property Services",
    "Landscapes",
    "Ironmongery",
    "Glazing",
)
UK_LEGAL_FORMS = ("Ltd", "Ltd", "Ltd", "Limited", "& Co Ltd", "plc", "LLP")
# (family or place name, legal form of its country): EU importers, invoiced in EUR.
EU_HOUSES = (
    ("Müller", "GmbH"),
    ("Dubois", "SARL"),
    ("Rossi", "S.r.l."),
    ("García", "S.L."),
    ("Nowak", "Sp. z o.o."),
    ("Jansen", "B.V."),
    ("Lindqvist", "AB"),
    ("Moreau", "SAS"),
    ("Bianchi", "S.p.A."),
    ("Schneider", "GmbH"),
    ("Peeters", "BV"),
    ("Fernández", "S.A."),
    ("Kowalski", "Sp. z o.o."),
    ("Hansen", "ApS"),
    ("Virtanen", "Oy"),
    ("O'Brien", "Ltd"),
    ("Novák", "s.r.o."),
    ("Horvat", "d.o.o."),
    ("Silva", "Lda"),
)
EU_TRADES = (
    "Techniek",
    "Industrietechnik",
    "Outillage",
    "Ferramenta",
    "Suministros",
    "Handel",
    "Bouwmaterialen",
    "Distribution",
    "Hardware",
    "Instalacje",
)
# (SKU prefix, product noun, materials, sizes): the catalogue of a hardware merchant.
CATALOGUE = (
    ("WID", "Widget", ("Steel", "Zinc", "Brass", "Nylon"), ("25mm", "40mm", "60mm", "80mm")),
    (
        "BRK",
        "Bracket",
        ("Galvanised", "Stainless", "Black", "Heavy-Duty"),
        ("75mm", "100mm", "150mm", "200mm"),
    ),
    (
        "FIX",
        "Wood Screw",
        ("Zinc", "Stainless", "Yellow", "Black"),
        ("4x30mm", "4x40mm", "5x50mm", "5x70mm"),
    ),
    (
        "HNG",
        "Hinge",
        ("Brass", "Chrome", "Satin Nickel", "Steel"),
        ("75mm", "100mm", "Butt", "Concealed"),
    ),
    (
        "TLS",
        "Hand Tool Set",
        ("Pro", "Trade", "Compact", "Site"),
        ("6-piece", "12-piece", "24-piece", "40-piece"),
    ),
    (
        "PPE",
        "Safety Gloves",
        ("Nitrile", "Leather", "Cut-Resistant", "Thermal"),
        ("Size 8", "Size 9", "Size 10", "Size 11"),
    ),
)
# Companies that signed up on the portal by themselves (no ERP account yet).
SELF_REGISTERED = (
    ("Brightwell Interiors Ltd", "Hannah", "Brightwell"),
    ("Northgate Facilities Management", "Omar", "Siddiqui"),
    ("Kestrel Signs & Print", "Megan", "Lloyd"),
    ("Oakridge Lettings Ltd", "Tom", "Ashworth"),
    ("Bluebell Nurseries", "Priya", "Nair"),
)


def uk_company_name(index: int, legal_form: str) -> str:
    """The ``index``-th British company name, unique for every index."""
    places, trades = len(UK_PLACES), len(UK_TRADES)
    name = f"{UK_PLACES[index % places]} {UK_TRADES[(index // places) % trades]} {legal_form}"
    cycle = index // (places * trades)
    return name if cycle == 0 else f"{name} ({cycle + 1})"


def eu_company_name(index: int) -> str:
    """The ``index``-th EU importer name, unique for every index."""
    houses, trades = len(EU_HOUSES), len(EU_TRADES)
    family, legal_form = EU_HOUSES[index % houses]
    name = f"{family} {EU_TRADES[(index // houses) % trades]} {legal_form}"
    cycle = index // (houses * trades)
    return name if cycle == 0 else f"{name} ({cycle + 1})"


def email_domain(company_name: str) -> str:
    """A mail domain for a company, under the reserved ``.example`` top-level domain."""
    ascii_name = unicodedata.normalize("NFKD", company_name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return f"{slug}.example"
