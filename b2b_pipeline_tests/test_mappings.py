"""The mapping file is the operating model: an invalid one must stop the pipeline, by name."""

import os
import subprocess
import sys
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
    assert mappings.payment_methods == {
        "on_account": "TO_BE_INVOICED",
        "invoice": "TO_BE_INVOICED",
        "platform_upfront": "PAID",
    }
    assert mappings.live_types == ["order"]
    assert mappings.unmapped_customer_policy == "queue"


def test_pending_payment_mapping_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, payment_methods={"on_account": "PENDING_PAYMENT"})
    with pytest.raises(InvalidMappings) as err:
        load_mappings(path)
    assert "payment_methods" in str(err.value)
    assert "pending payment" in str(err.value)


@pytest.mark.parametrize("kind", ["quote", "cart", "awaiting_approval", "draft", "processing"])
def test_a_quote_cart_or_unknown_type_can_never_be_live(tmp_path: Path, kind: str) -> None:
    with pytest.raises(InvalidMappings, match="live_types"):
        load_mappings(write(tmp_path, live_types=["order", kind]))


def test_a_version_1_file_is_refused_naming_the_new_key(tmp_path: Path) -> None:
    data = yaml.safe_load(DEFAULT_MAPPINGS_PATH.read_text())
    data["live_statuses"] = data.pop("live_types")
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InvalidMappings, match="live_statuses -> live_types"):
        load_mappings(path)


def test_version_1_payment_method_names_are_refused_naming_the_new_ones(tmp_path: Path) -> None:
    path = write(tmp_path, payment_methods={"pay_on_account": "TO_BE_INVOICED", "card": "PAID"})
    with pytest.raises(InvalidMappings) as err:
        load_mappings(path)
    assert "pay_on_account -> on_account" in str(err.value)
    assert "card -> platform_upfront" in str(err.value)


def test_an_empty_payment_method_cannot_be_given_a_default(tmp_path: Path) -> None:
    path = write(tmp_path, payment_methods={"on_account": "TO_BE_INVOICED", "": "PAID"})
    with pytest.raises(InvalidMappings, match="empty payment method"):
        load_mappings(path)


def test_the_command_line_refuses_a_version_1_file_in_one_line_with_exit_2(
    tmp_path: Path,
) -> None:
    data = yaml.safe_load(DEFAULT_MAPPINGS_PATH.read_text())
    data["live_statuses"] = data.pop("live_types")
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(data))
    b2b = Path(sys.executable).with_name("b2b-pipeline")
    result = subprocess.run(
        [str(b2b), "run"],
        env={**os.environ, "B2B_MAPPINGS": str(path), "B2B_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    problem = [line for line in result.stderr.splitlines() if line.startswith("b2b-pipeline:")]
    assert len(problem) == 1 and "live_statuses -> live_types" in problem[0], result.stderr


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
