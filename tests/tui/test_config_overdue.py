"""The overdue bands come from the settings file, validated like every other setting."""

from __future__ import annotations

import pytest

from tui.config import ConfigInvalid, load_config


def test_overdue_bands_from_the_settings_file(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("overdue_hours = [72, 12]\n")
    assert load_config(path).overdue_hours == [12, 72]
    assert load_config(tmp_path / "missing.toml").overdue_hours == [24, 48, 72]


@pytest.mark.parametrize("bad", ["[0]", "[24, 24]", "[]", "[-5, 10]"])
def test_bad_overdue_bands_are_refused_with_a_message(tmp_path, bad):
    path = tmp_path / "config.toml"
    path.write_text(f"overdue_hours = {bad}\n")
    with pytest.raises(ConfigInvalid) as err:
        load_config(path)
    assert "overdue_hours" in str(err.value)
