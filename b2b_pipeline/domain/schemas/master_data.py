"""Pandera models for the ERP master data extracts, and how a failed rule becomes an exception row.

The ERP gateway hands over DataFrames named as in ``contracts/erp-reference-schema.md``. Each model
below holds the rules one extract must meet (unique keys, prices zero or more, a quantity break
from 1, a known currency...). Every rule carries its plain-words phrase in the field's
``metadata``, so the rule and the sentence a finance or operations reader sees live together.

:func:`validate_extract` never stops on a bad row (a ``dagster_pandera`` type failure would fail
the whole step and record nothing): it validates lazily, maps each failure back to its row, routes
those rows to exception rows (:func:`b2b_pipeline.domain.exceptions.exception_frame`) and lets the
clean rows flow on, typed as the model says. Duplicated keys send every copy to the queue: picking
one copy would be a silent guess about which the ERP meant.

Validation runs in two steps, because a value that is not even a number cannot be checked
against ``>= 0``, and pandera's own coercion reports such a value against the whole column:

1. *parse*: each column is read into its model type leniently; a missing value, or one that is
   not a number, a whole number or yes/no, is a problem of that row;
2. *rules*: the pandera model, with nullable dtypes so every row is still checked (duplicates
   among rows with a bad value included).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from b2b_pipeline.domain.exceptions import exception_frame, to_payload

if TYPE_CHECKING:
    from pandas._typing import Scalar

# ISO 4217 codes of the currencies the merchant trades in. The mapping file has no key for this
# yet; a new currency is a one-line change here (and a price list in that currency in the ERP).
KNOWN_CURRENCIES: frozenset[str] = frozenset(
    {"GBP", "EUR", "USD", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "CAD", "AUD", "NZD"}
)

# The portal's limit on a price list slug (contracts/sparklayer-api.md §3).
PRICE_LIST_SLUG_MAX_LENGTH = 30

FIX_IN_ERP = "Correct it in the ERP; the next sync sends it."
DUPLICATE = "duplicate"  # key of a model's Config.metadata phrase for a repeated key


def _rules(**phrases: str) -> dict[str, dict[str, str]]:
    """Field metadata: pandera check name -> the rule in plain words (``{value}`` is the value)."""
    return {"rules": phrases}


class ErpCustomers(pa.DataFrameModel):
    """``erp_customers``: the master customer record."""

    account_code: Series[str] = pa.Field(
        unique=True,
        title="account code",
        description="ERP account code; the portal customer's external_id and accounting_id",
        metadata=_rules(
            field_uniqueness="the account code {value} is on more than one ERP record, so none "
            "of them is sent until the duplicates are removed"
        ),
    )
    name: Series[str] = pa.Field(title="name", description="Company name shown in the portal")
    email: Series[str] = pa.Field(
        nullable=True,
        str_matches=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        title="email",
        description="Account email address",
        metadata=_rules(str_matches="the email {value} is not an email address"),
    )
    customer_group: Series[str] = pa.Field(
        title="customer group", description="ERP customer group; mapped to a portal group"
    )
    price_list_code: Series[str] = pa.Field(
        nullable=True,
        title="price list",
        description="The account's ERP price list (customer-specific or group list)",
    )
    discount_percentage: Series[float] = pa.Field(
        nullable=True,
        in_range={"min_value": 0, "max_value": 100},
        title="discount",
        description="Account discount in percent, applied after the price list",
        metadata=_rules(in_range="the discount {value}% is outside 0 to 100"),
    )
    payment_terms: Series[str] = pa.Field(
        nullable=True,
        str_matches=r"^NET\d{1,3}$",
        title="payment terms",
        description="Payment terms, NET<days>",
        metadata=_rules(
            str_matches="the payment terms {value} are not NET followed by a number of days "
            "(e.g. NET30)"
        ),
    )
    tax_code: Series[str] = pa.Field(
        title="tax code", description="ERP tax code; the mapping says whether it is tax exempt"
    )
    currency: Series[str] = pa.Field(
        isin=sorted(KNOWN_CURRENCIES),
        title="currency",
        description="Account currency (ISO 4217)",
        metadata=_rules(isin="the currency {value} is not one this integration trades in"),
    )
    credit_limit: Series[float] = pa.Field(
        nullable=True,
        ge=0,
        title="credit limit",
        description="Pay on Account credit limit; empty means no limit",
        metadata=_rules(
            greater_than_or_equal_to="the credit limit {value} is negative; it must be zero or more"
        ),
    )
    credit_hold: Series[bool] = pa.Field(
        title="credit hold", description="On credit hold: no ordering, credit limit 0"
    )
    active: Series[bool] = pa.Field(
        title="active", description="Inactive accounts are treated like held ones"
    )

    class Config:
        strict = False  # the gateway may add columns (updated_at, ...); they flow through


class ErpPriceLists(pa.DataFrameModel):
    """``erp_price_lists`` (+ ``parent_code``): one list per group, or one per customer."""

    code: Series[str] = pa.Field(
        unique=True,
        str_length={"max_value": PRICE_LIST_SLUG_MAX_LENGTH},
        title="code",
        description="ERP price list code; the portal price list slug",
        metadata=_rules(
            field_uniqueness="the code {value} is on more than one ERP price list, so none of "
            "them is sent until the duplicates are removed",
            str_length=f"the code {{value}} is longer than {PRICE_LIST_SLUG_MAX_LENGTH} "
            "characters, the portal's limit for a price list",
        ),
    )
    name: Series[str] = pa.Field(title="name", description="Price list name")
    currency: Series[str] = pa.Field(
        isin=sorted(KNOWN_CURRENCIES),
        title="currency",
        description="Currency of every price on the list (ISO 4217)",
        metadata=_rules(isin="the currency {value} is not one this integration trades in"),
    )
    parent_code: Series[str] = pa.Field(
        nullable=True,
        title="parent list",
        description="Group list a customer-specific list sits on top of",
    )

    class Config:
        strict = False


class ErpPriceListItems(pa.DataFrameModel):
    """``erp_price_list_items``: one quantity break of one SKU on one list."""

    price_list_code: Series[str] = pa.Field(title="price list", description="ERP price list")
    sku: Series[str] = pa.Field(title="SKU", description="Product SKU")
    min_quantity: Series[int] = pa.Field(
        ge=1,
        title="minimum quantity",
        description="Smallest quantity the break price applies to",
        metadata=_rules(
            greater_than_or_equal_to="the minimum quantity {value} is below 1; a quantity "
            "break starts at 1 or more"
        ),
    )
    unit_price: Series[float] = pa.Field(
        ge=0,
        title="price",
        description="Unit price in the list's currency, before the account discount",
        metadata=_rules(
            greater_than_or_equal_to="the price {value} is negative; prices must be zero or more"
        ),
    )

    class Config:
        strict = False
        unique: ClassVar[list[str]] = ["price_list_code", "sku", "min_quantity"]
        metadata: ClassVar[dict[str, str]] = {
            DUPLICATE: "this quantity break is on more than one ERP row, so none of them is "
            "sent until the duplicates are removed"
        }


class ErpProducts(pa.DataFrameModel):
    """``erp_products``: the catalogue."""

    sku: Series[str] = pa.Field(
        unique=True,
        title="SKU",
        description="Product SKU",
        metadata=_rules(
            field_uniqueness="the SKU {value} is on more than one ERP product, so none of them "
            "is used until the duplicates are removed"
        ),
    )
    name: Series[str] = pa.Field(title="name", description="Product name")
    active: Series[bool] = pa.Field(title="active", description="Sold through the portal")

    class Config:
        strict = False


class ErpInventory(pa.DataFrameModel):
    """``erp_inventory``: stock of one SKU in one warehouse."""

    sku: Series[str] = pa.Field(title="SKU", description="Product SKU")
    warehouse_code: Series[str] = pa.Field(
        title="warehouse", description="ERP warehouse; mapped to a portal stock location"
    )
    on_hand: Series[int] = pa.Field(
        ge=0,
        title="stock on hand",
        description="Units in the warehouse",
        metadata=_rules(
            greater_than_or_equal_to="the stock on hand {value} is negative; it must be zero "
            "or more"
        ),
    )
    allocated: Series[int] = pa.Field(
        ge=0,
        title="allocated stock",
        description="Units promised to open orders",
        metadata=_rules(
            greater_than_or_equal_to="the allocated stock {value} is negative; it must be zero "
            "or more"
        ),
    )

    class Config:
        strict = False
        unique: ClassVar[list[str]] = ["sku", "warehouse_code"]
        metadata: ClassVar[dict[str, str]] = {
            DUPLICATE: "this SKU and warehouse are on more than one ERP stock row, so none of "
            "them is sent until the duplicates are removed"
        }


def column_schema(model: type[pa.DataFrameModel]) -> list[tuple[str, str, str]]:
    """``(name, type, description)`` per column, for ``dagster.TableSchema`` (the Columns tab)."""
    schema = model.to_schema()
    return [
        (name, str(column.dtype), column.description or "")
        for name, column in schema.columns.items()
    ]


# --- validation -----------------------------------------------------------------------------


class ErpExtractError(ValueError):
    """The extract itself is unusable (a column is missing): the gateway, not a record, is wrong."""


@dataclass(frozen=True)
class AllowedValues:
    """A rule whose allowed values come from the mapping file or another extract."""

    column: str
    name: str  # the check's name in pandera's failure cases
    allowed: frozenset[str]
    phrase: str  # the rule in plain words; ``{value}`` is the offending value
    reason_code: str = "INVALID_ERP_RECORD"
    then: str | None = None  # what the reader does; None: the extract's own instruction


@dataclass(frozen=True)
class RecordNaming:
    """How one extract's records are named in the exception queue."""

    entity: str  # the audit entity: customer | price_list | inventory | product
    key: Callable[[pd.DataFrame], pd.Series]  # stable entity_key, vectorised over string columns
    label: Callable[[pd.DataFrame], pd.Series]  # "Price list X, SKU Y, break 10"
    account_code: str | None = None  # the column holding the ERP account, if any
    extra_rules: tuple[AllowedValues, ...] = field(default_factory=tuple)
    then: str = FIX_IN_ERP  # what the reader does about a rule without its own instruction


_TRUE = ("true", "t", "yes", "y", "1", "1.0")
_FALSE = ("false", "f", "no", "n", "0", "0.0")
_BOOLEAN_WORDS = {**dict.fromkeys(_TRUE, True), **dict.fromkeys(_FALSE, False)}


def _parse_column(raw: pd.Series, dtype: str) -> tuple[pd.Series, pd.Series, str]:
    """(typed values with NA where unreadable, unreadable-but-present mask, what it should be)."""
    present = raw.notna()
    if dtype == "str":
        # Stripped, since ERPs pad CHAR columns. The object-dtype .str path is several times
        # faster than pandas' "string" dtype; it gives NaN for a non-text value (a number in a
        # code column), which is then read as text on its own.
        text = raw.astype(object).str.strip()
        not_text = present & text.isna()
        if not_text.any():
            text[not_text] = raw[not_text].astype(str).str.strip()
        typed = text.where(text.notna() & (text != ""), None)  # blank is as missing as NULL
        return typed, pd.Series(False, index=raw.index), "text"
    if dtype in ("float64", "int64"):
        numbers = pd.to_numeric(raw, errors="coerce").astype("float64")
        if dtype == "float64":
            return numbers, present & numbers.isna(), "a number"
        whole = numbers.where(np.isfinite(numbers) & (numbers == np.floor(numbers)))
        return whole.astype("Int64"), present & whole.isna(), "a whole number"
    if dtype == "bool":
        if pd.api.types.is_bool_dtype(raw):
            return raw.astype("boolean"), pd.Series(False, index=raw.index), "yes or no"
        words = raw.astype("string").str.strip().str.lower()
        flags = words.map(_BOOLEAN_WORDS).astype("boolean")
        return flags, present & flags.isna(), "yes or no"
    raise TypeError(f"no parser for column type {dtype}")  # a model uses a new type: add one


_NULLABLE_DTYPES = {"int64": "Int64", "bool": "boolean"}


def _show(value: object) -> str:
    """A value as a reader expects it: 'text' quoted, money to at least 2 decimals."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "(empty)"
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, float | np.floating):
        text = f"{value:.4f}".rstrip("0")
        whole, _, decimals = text.partition(".")
        return f"{whole}.{decimals.ljust(2, '0')}"
    return str(value)


def validate_extract(
    df: pd.DataFrame, model: type[pa.DataFrameModel], naming: RecordNaming
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split an ERP extract into (clean rows typed as ``model``, exception rows).

    Raises :class:`ErpExtractError` only when a column the model needs is missing.
    """
    schema = model.to_schema()
    missing = [name for name in schema.columns if name not in df.columns]
    if missing:
        raise ErpExtractError(
            f"the ERP extract for {naming.entity} has no column(s) {', '.join(missing)}: the "
            "ERP gateway does not match contracts/erp-reference-schema.md"
        )
    raw = df.reset_index(drop=True)
    typed = raw.copy()
    problems: list[pd.DataFrame] = []
    for name, column in schema.columns.items():
        dtype = str(column.dtype)
        values, unreadable, should_be = _parse_column(raw[name], dtype)
        typed[name] = values
        title = column.title or name
        unreadable_rows = raw.index[unreadable]
        problems.append(
            pd.DataFrame(
                {
                    "row": unreadable_rows,
                    "phrase": [
                        f"the {title} {_show(v)} is not {should_be}"
                        for v in raw.loc[unreadable_rows, name]
                    ],
                }
            )
        )
        if not column.nullable:
            empty = raw.index[values.isna() & ~unreadable]
            problems.append(pd.DataFrame({"row": empty, "phrase": f"the {title} is missing"}))

    # Rules step: nullable dtypes so that rows with an unreadable value are still compared (a
    # duplicate of a broken row must not pass as the one clean copy).
    # Text columns skip pandera's dtype check: parsing made every value text or None already,
    # and the check tests each of a million values one by one.
    rule_schema = schema.update_columns(
        {
            name: {
                "dtype": None
                if str(column.dtype) == "str"
                else _NULLABLE_DTYPES.get(str(column.dtype), column.dtype),
                "nullable": True,
            }
            for name, column in schema.columns.items()
        }
    )
    extra = {rule.name: rule for rule in naming.extra_rules}
    for rule in naming.extra_rules:
        allowed = rule.allowed
        rule_schema = rule_schema.update_column(
            rule.column,
            checks=[
                *rule_schema.columns[rule.column].checks,
                pa.Check(
                    lambda s, allowed=allowed: s.isin(allowed), name=rule.name, error=rule.name
                ),
            ],
        )
    try:
        rule_schema.validate(typed, lazy=True)
    except pa.errors.SchemaErrors as failed:
        frame_metadata = getattr(model.Config, "metadata", None) or {}
        duplicate = frame_metadata.get(DUPLICATE, "this record is on more than one ERP row")
        problems.append(_rule_problems(failed.failure_cases, schema, typed, extra, duplicate))

    found = pd.concat(problems, ignore_index=True)
    if "reason_code" not in found:
        found["reason_code"] = None
        found["then"] = None
    found["reason_code"] = found["reason_code"].fillna("INVALID_ERP_RECORD")
    found["then"] = found["then"].fillna(naming.then)
    bad_rows = pd.Index(found["row"].unique())
    clean = typed.drop(index=bad_rows).reset_index(drop=True)
    for name, column in schema.columns.items():
        if str(column.dtype) in _NULLABLE_DTYPES and not column.nullable:
            clean[name] = clean[name].astype(str(column.dtype))
    return clean, _exception_rows(found, raw, typed, naming)


def _rule_problems(
    failure_cases: pd.DataFrame,
    schema: pa.DataFrameSchema,
    typed: pd.DataFrame,
    extra: dict[str, AllowedValues],
    duplicate_phrase: str,
) -> pd.DataFrame:
    """pandera's failure cases -> one (row, phrase, reason_code, then) per failed rule and row."""
    cases = failure_cases[failure_cases["index"].notna()].copy()
    if len(cases) < len(failure_cases):
        # A failure with no row is about the whole column (a dtype, a missing column): parsing
        # rules that out, so this is a bug in this module, not in the data.
        whole = failure_cases[failure_cases["index"].isna()]
        raise ErpExtractError(f"the extract failed column-level checks: {whole.to_dict('records')}")
    cases["row"] = cases["index"].astype(int)
    cases["name"] = cases["check"].astype(str).str.split("(", n=1).str[0]
    uniqueness = cases["name"] == "multiple_fields_uniqueness"
    cases.loc[uniqueness, "column"] = None
    cases = cases.drop_duplicates(["row", "column", "name"])

    def phrase(case: pd.Series) -> str:
        if case["name"] == "multiple_fields_uniqueness":
            return duplicate_phrase
        if case["name"] in extra:
            template = extra[case["name"]].phrase
        else:
            column = schema.columns[case["column"]]
            rules = (column.metadata or {}).get("rules", {})
            title = column.title or case["column"]
            template = rules.get(case["name"], f"the {title} {{value}} breaks {case['check']}")
        return template.format(value=_show(typed.at[case["row"], case["column"]]))

    # One call per failed rule and row, never per extract row: the clean rows cost nothing here.
    return pd.DataFrame(
        {
            "row": cases["row"].to_numpy(),
            "phrase": [phrase(case) for _, case in cases.iterrows()],
            "reason_code": cases["name"].map({n: rule.reason_code for n, rule in extra.items()}),
            "then": cases["name"].map({n: rule.then for n, rule in extra.items()}),
        }
    )


def _exception_rows(
    found: pd.DataFrame, raw: pd.DataFrame, typed: pd.DataFrame, naming: RecordNaming
) -> pd.DataFrame:
    """One exception per bad row and reason; its rules joined in one sentence."""
    if found.empty:
        return exception_frame()
    found = found.drop_duplicates(["row", "reason_code", "phrase"])
    grouped = (
        found.groupby(["row", "reason_code", "then"], sort=True)["phrase"]
        .agg("; ".join)
        .reset_index()
    )
    records = raw.loc[grouped["row"]]
    # Keys and labels as validation read them (trimmed), falling back to the value as received.
    as_text = typed.loc[grouped["row"]].astype("string").fillna(records.astype("string")).fillna("")
    grouped["entity"] = naming.entity
    grouped["entity_key"] = naming.key(as_text).to_numpy()
    grouped["message"] = (
        naming.label(as_text).to_numpy() + ": " + grouped["phrase"] + ". " + grouped["then"]
    )
    grouped["account_code"] = (
        [code or None for code in as_text[naming.account_code].tolist()]
        if naming.account_code
        else None
    )
    grouped["payload"] = [to_payload(r) for r in records.to_dict("records")]
    return exception_frame(_one_per_record(grouped))


def _one_per_record(rows: pd.DataFrame) -> pd.DataFrame:
    """Copies of a duplicated key share an entity_key: the queue keeps one exception per
    (entity, entity_key, reason), so they become one row listing every copy."""
    keys = ["entity", "entity_key", "reason_code"]
    repeated = rows.duplicated(keys, keep=False)
    if not repeated.any():
        return rows
    merged = (
        rows[repeated]
        .groupby(keys, sort=False)
        .agg(
            account_code=("account_code", "first"),
            message=("message", lambda m: " Another copy: ".join(dict.fromkeys(m))),
            payload=("payload", lambda p: "[" + ", ".join(p) + "]"),
        )
        .reset_index()
    )
    return pd.concat([rows[~repeated], merged], ignore_index=True)


def allowed(values: Iterable[Scalar | None]) -> frozenset[str]:
    """A value set for :class:`AllowedValues` (ERP codes are compared as stripped text)."""
    return frozenset(str(v).strip() for v in values if v is not None and not pd.isna(v))


def price_list_exists(price_lists: pd.DataFrame) -> AllowedValues:
    """Rule: the record names one of the ERP's valid price lists (``price_list_code``)."""
    return AllowedValues(
        column="price_list_code",
        name="price_list_exists",
        allowed=allowed(price_lists["code"]),
        phrase="the price list {value} is not among the ERP's valid price lists",
    )


def sku_in_catalogue(products: pd.DataFrame) -> AllowedValues:
    """Rule: the record's SKU is in the ERP catalogue."""
    return AllowedValues(
        column="sku",
        name="sku_exists",
        allowed=allowed(products["sku"]),
        phrase="the SKU {value} is not in the ERP catalogue",
    )
