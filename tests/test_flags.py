"""The one flag table: every flag names a real config field of the type it converts to, once."""

from __future__ import annotations

import pytest

from edge_agent import cli
from edge_agent import config as config_mod


def test_every_flag_sets_the_field_it_names_and_only_that() -> None:
    flags = list(cli.all_flags())
    # one flag per field, except a true/false pair for a boolean (--on-change / --no-on-change)
    assert len({(f.dest, f.action) for f in flags}) == len(flags)
    assert len({(f.field, f.action) for f in flags}) == len(flags)
    for field in {f.field for f in flags}:
        same = [f for f in flags if f.field == field]
        assert len(same) == 1 or sorted(f.action for f in same) == ["off", "on"], field
    samples = {int: "7", float: "0.25", str: "x"}
    for f in flags:
        kind = config_mod.field_type(f.field)
        if f.action in ("on", "off"):
            argv, want = [f.flag], f.action == "on"
        else:
            value = f.choices[-1] if f.choices else samples[kind]
            argv, want = [f.flag, value], kind(value)
        args = cli.build_parser().parse_args(argv)
        cfg = config_mod.Config()
        for g in flags:  # the same application load_config does, without validation of other fields
            if hasattr(args, g.dest):
                config_mod.apply(cfg, {g.field: getattr(args, g.dest)}, f"flag {g.flag}")
        section, _, name = f.field.rpartition(".")
        assert getattr(getattr(cfg, section) if section else cfg, name) == want, f.flag
        assert set(cfg.origin) == {f.field}, f.flag


def test_a_numeric_flag_with_text_is_one_line_naming_flag_and_field() -> None:
    args = cli.build_parser().parse_args(["--mqtt-port", "abc"])
    with pytest.raises(config_mod.ConfigError, match=r"flag --mqtt-port: field 'mqtt.port' must be an integer"):
        cli.load_config(args, environ={})
