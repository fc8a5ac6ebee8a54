"""Dagster definitions, one folder per business domain."""

import warnings

from dagster import BetaWarning, PreviewWarning

# dagster-pandera's type conversion is marked beta; it is the documented way to type a
# DataFrame output with a Pandera model, and the warning would repeat on every CLI call.
warnings.filterwarnings("ignore", category=BetaWarning)
# A partitioned asset check (the month-end check runs per month) is "preview" in 1.13.
warnings.filterwarnings("ignore", category=PreviewWarning)
