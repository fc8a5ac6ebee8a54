"""The mapping file is the operating model: an invalid one must stop the pipeline, by name."""

from pathlib import Path

import pytest
import yaml

from b2b_pipeline.config.mappings import DEFAULT_MAPPINGS_PATH, InvalidMappings, load_mappings


def write(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load(DEFAULT_MAPPINGS_PATH.read_text())
    data.update(changes)
    path = tmp_path / "mappings.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_shipped_default_maps_pay_on_account_to_to_be_invoiced() -> None:
    mappings = load_mappings()
    assert mappings.payment_methods["pay_on_account"] == "TO_BE_INVOICED"
    assert mappings.live_statuses == ["processing", "confirmed"]
    assert mappings.unmapped_customer_policy == "queue"


def test_pending_payment_mapping_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, payment_methods={"pay_on_account": "PENDING_PAYMENT"})
    with pytest.raises(InvalidMappings) as err:
        load_mappings(path)
    assert "payment_methods" in str(err.value)
    assert "pending payment" in str(err.value)


@pytest.mark.parametrize("status", ["draft", "quote", "cart", "awaiting_approval", "cancelled"])
def test_a_draft_or_quote_can_never_be_a_live_status(tmp_path: Path, status: str) -> None:
    with pytest.raises(InvalidMappings, match="live_statuses"):
        load_mappings(write(tmp_path, live_statuses=["processing", status]))


def test_unknown_key_and_bad_policy_are_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidMappings, match="customer_grups"):
        load_mappings(write(tmp_path, customer_grups={}))
    with pytest.raises(InvalidMappings, match="unmapped_customer_policy"):
        load_mappings(write(tmp_path, unmapped_customer_policy="guess"))


def test_missing_file_and_broken_yaml_are_clear(tmp_path: Path) -> None:
    with pytest.raises(InvalidMappings, match="does not exist"):
        load_mappings(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("customer_groups: [unclosed")
    with pytest.raises(InvalidMappings, match="not valid YAML"):
        load_mappings(broken)
