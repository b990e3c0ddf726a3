"""Flags, CLASSIFYD_* variables and the configs built from them all come from the config
dataclasses' declarations (engine/options.py): the same defaults, the same names."""

from __future__ import annotations

import os
from dataclasses import fields

import pytest

from cli.main import build_parser
from cli.options import build, values
from engine.config import EngineConfig
from engine.options import options
from filejob.config import JobConfig
from offline.options import ENGINE_KEYS, TextOptions
from server.config import ServerConfig


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CLASSIFYD_"):
            monkeypatch.delenv(name)


def _parse(*argv: str) -> object:
    return build_parser().parse_args(list(argv))


def _help(capsys: pytest.CaptureFixture[str], command: str) -> str:
    with pytest.raises(SystemExit):
        _parse(command, "--help")
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("cls", [EngineConfig, ServerConfig, JobConfig])
def test_every_field_is_an_option(cls: type) -> None:
    # A field added without option metadata would be missing from the command line.
    assert [o.name for o in options(cls)] == [f.name for f in fields(cls)]


def test_serve_defaults_are_the_dataclass_defaults() -> None:
    args = _parse("serve", "--model", "m")
    assert build(EngineConfig, args) == EngineConfig(model="m")
    assert build(ServerConfig, args) == ServerConfig()


def test_classify_defaults_are_the_dataclass_defaults() -> None:
    args = _parse("classify", "in.txt")
    assert build(JobConfig, args) == JobConfig(input="in.txt")
    assert build(TextOptions, args) == TextOptions()
    defaults = EngineConfig(model="m")
    assert values(EngineConfig, args, offline=True) == {
        name: getattr(defaults, name) for name in ENGINE_KEYS
    }


def test_flags_and_variables_by_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLASSIFYD_SERVED_MODEL_NAME", "a,b")
    monkeypatch.setenv("CLASSIFYD_PACKED", "off")
    monkeypatch.setenv("CLASSIFYD_API_KEY", "k1,k2")
    monkeypatch.setenv("CLASSIFYD_HF_OVERRIDES", '{"num_labels": 3}')
    monkeypatch.setenv("CLASSIFYD_MAX_NUM_SEQS", "7")
    args = _parse(
        "serve", "--model", "m", "--api-key", "k3", "--classifier-from-tokens", "no,yes",
        "--trust-remote-code", "--workers", "2", "--dtype", "bfloat16", "--port", "9000",
        "--fault-hook", "os.path:join", "--auto-truncate", "false",
    )  # fmt: skip
    config = build(EngineConfig, args)
    assert config.served_model_names == ("a", "b")
    assert config.packed is False
    assert config.hf_overrides == {"num_labels": 3}
    assert config.max_num_seqs == 7
    assert config.classifier_from_tokens == ("no", "yes")
    assert config.trust_remote_code is True
    assert (config.workers, config.dtype) == (2, "bfloat16")
    assert config.fault_hook is os.path.join
    settings = build(ServerConfig, args)
    # A repeated flag adds to the variable's list.
    assert settings.api_keys == ("k1", "k2", "k3")
    assert (settings.port, settings.auto_truncate) == (9000, False)
    # A list flag given on the command line replaces the variable's.
    args = _parse("serve", "--served-model-name", "x", "y")
    assert build(EngineConfig, args, model="m").served_model_names == ("x", "y")


@pytest.mark.parametrize(
    "argv", [["--dtype", "int4"], ["--packed", "maybe"], ["--hf-overrides", "[1]"]]
)
def test_bad_values_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _parse("serve", *argv)
    assert exc.value.code == 2


def test_classify_takes_every_offline_engine_option() -> None:
    args = _parse("classify", "-", "--workers", "1", "--packed", "false", "--batch-scan", "8")
    engine = values(EngineConfig, args, offline=True)
    assert set(engine) == ENGINE_KEYS
    assert (engine["workers"], engine["packed"], engine["batch_scan"]) == (1, False, 8)
    # A server's own limits are not options of an offline run.
    for flag in ("--request-timeout", "--max-waiting-tokens", "--fault-hook"):
        with pytest.raises(SystemExit):
            _parse("classify", "-", flag, "1")


def test_help_lists_every_option_with_default_and_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    serve = _help(capsys, "serve")
    for opt in [*options(EngineConfig), *options(ServerConfig)]:
        assert f"--{opt.flag} " in serve, opt.flag
    assert "(default: 8000; env CLASSIFYD_PORT)" in serve
    assert "prompts admitted and not yet answered" in serve
    classify = _help(capsys, "classify")
    for opt in [*options(EngineConfig, offline=True), *options(TextOptions)]:
        assert f"--{opt.flag} " in classify, opt.flag
    # An option an offline run reads its own way says so.
    assert (
        "texts handed to the engine at once (default: 1024; env "
        "CLASSIFYD_MAX_CONCURRENT_REQUESTS)" in classify
    )
    assert "(default: warning; env CLASSIFYD_LOG_LEVEL)" in classify
