"""Settings: defaults < TAGGER_* environment < flags, one typed place for every command, errors that name
the setting."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tagger.cli import build_parser
from tagger.cli._common import add_settings_arguments
from tagger.config import DEFAULT_MAX_CHARS, ConfigError, ServeConfig, Settings, default_workers, from_args
from tagger.paths import default_model_root


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser, ServeConfig)
    return parser.parse_args(argv)


def test_defaults() -> None:
    cfg = from_args(parse([]), environ={})
    assert cfg == ServeConfig()
    assert (cfg.port, cfg.metrics_port, cfg.reflection, cfg.on_too_long) == (50051, 9100, True, "truncate")
    assert cfg.workers == default_workers() and 1 <= cfg.workers <= 2
    assert cfg.max_message_bytes > 4 * 1024 * 1024  # above gRPC's default


def test_environment_overrides_defaults_and_flags_override_environment() -> None:
    env = {"TAGGER_PORT": "6000", "TAGGER_WORKERS": "3", "TAGGER_REFLECTION": "off", "TAGGER_MODEL": "/m",
           "TAGGER_ON_TOO_LONG": "reject", "TAGGER_LOG_LEVEL": "debug"}
    cfg = from_args(parse([]), environ=env)
    assert (cfg.port, cfg.workers, cfg.reflection, cfg.model, cfg.on_too_long, cfg.log_level) == (
        6000, 3, False, Path("/m"), "reject", "DEBUG")
    cfg = from_args(parse(["--port", "7000", "--reflection", "--workers", "1"]), environ=env)
    assert (cfg.port, cfg.workers, cfg.reflection) == (7000, 1, True)


def test_no_reflection_flag() -> None:
    assert from_args(parse(["--no-reflection"]), environ={}).reflection is False


@pytest.mark.parametrize(("env", "needle"), [
    ({"TAGGER_PORT": "http"}, "TAGGER_PORT"),
    ({"TAGGER_REFLECTION": "maybe"}, "TAGGER_REFLECTION"),
    ({"TAGGER_ON_TOO_LONG": "drop"}, "TAGGER_ON_TOO_LONG"),
    ({"TAGGER_WORKERS": "0"}, "--workers / TAGGER_WORKERS"),
    ({"TAGGER_MAX_MESSAGE_MB": "4096"}, "--max-message-mb"),
    ({"TAGGER_MAX_MESSAGE_MB": "inf"}, "--max-message-mb / TAGGER_MAX_MESSAGE_MB must be a number > 0, got inf"),
    ({"TAGGER_GRACE": "nan"}, "--grace / TAGGER_GRACE must be a number >= 0"),
    ({"TAGGER_MAX_CHARS": str(2**32)}, r"--max-chars / TAGGER_MAX_CHARS must be in 1\.\.4294967295"),
    ({"TAGGER_MAX_BATCH": str(2**40)}, "--max-batch"),
    ({"TAGGER_THREADS": "1"}, "--threads / TAGGER_THREADS must be >= 2"),
    ({"TAGGER_THREADS": "8", "TAGGER_MAX_STREAMS": "8"}, r"--max-streams / TAGGER_MAX_STREAMS must be in 0\.\.7"),
    ({"TAGGER_STREAM_IDLE_TIMEOUT": "-1"}, "--stream-idle-timeout"),
])
def test_invalid_values_name_the_setting(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        from_args(parse([]), environ=env)


def test_flag_errors_are_argparse_errors() -> None:
    with pytest.raises(SystemExit):
        parse(["--on-too-long", "drop"])


def test_serve_help_lists_every_setting_with_its_env_var(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser("serve").parse_args(["serve", "--help"])
    out = capsys.readouterr().out
    for name in ServeConfig.__dataclass_fields__:
        assert "--" + name.replace("_", "-") in out
    assert "TAGGER_METRICS_PORT" in out and "--no-reflection" in out and "grpcurl" in out


def test_every_command_shares_the_model_setting_and_its_default() -> None:
    """One name, one meaning: --model / TAGGER_MODEL picks the model for serve and for every other command."""
    assert Settings().model_path == default_model_root() == ServeConfig().model_path
    env = {"TAGGER_MODEL": "/srv/models/x"}
    assert from_args(None, environ=env, cls=Settings).model_path == Path("/srv/models/x")
    assert from_args(None, environ=env).model_path == Path("/srv/models/x")
    required = {"spark-tag": ["--input", "x", "--output", "y"]}
    for command in ("tag", "evaluate", "info", "serve", "spark-tag"):
        args = build_parser(command).parse_args([command, "--model", "/flag", *required.get(command, [])])
        assert from_args(args, environ=env, cls=Settings).model_path == Path("/flag"), command


def test_max_chars_has_one_default() -> None:
    import tagger.tagger

    assert Settings().max_chars == ServeConfig().max_chars == DEFAULT_MAX_CHARS == tagger.tagger.DEFAULT_MAX_CHARS
