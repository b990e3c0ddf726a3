"""JobConfig: the options of `classifyd classify` that are the job's own, each also a flag
(engine/options.py). How each text is classified is offline.options.TextOptions, the local
engine's knobs are EngineConfig's offline options."""

from __future__ import annotations

from dataclasses import dataclass

# `field` is also one of the options' names.
from dataclasses import field as dataclass_field
from typing import Literal

from engine.options import LogLevel, option
from filejob.inputs import InputFormat
from filejob.outputs import OutputFormat

Progress = Literal["auto", "always", "never"]


@dataclass(frozen=True)
class JobConfig:
    input: str = dataclass_field(
        metadata=option(
            "text (one per line), .jsonl or .csv/.tsv file (.gz too), or - for stdin",
            positional=True,
        )
    )
    output: str | None = dataclass_field(
        default=None,
        metadata=option("output file, .jsonl or .csv/.tsv", short="-o", shown="JSONL on stdout"),
    )
    format: InputFormat | None = dataclass_field(
        default=None, metadata=option("input format", shown="by extension; text for stdin")
    )
    field: str = dataclass_field(
        default="text", metadata=option("JSONL: the field holding the text")
    )
    id_field: str | None = dataclass_field(
        default=None,
        metadata=option("JSONL: the field holding each row's id", shown="the line number"),
    )
    column: str = dataclass_field(
        default="text", metadata=option("CSV: the column holding the text")
    )
    id_column: str | None = dataclass_field(
        default=None,
        metadata=option("CSV: the column holding each row's id", shown="the line number"),
    )
    delimiter: str | None = dataclass_field(
        default=None, metadata=option("CSV input delimiter", shown="tab for .tsv, else comma")
    )
    output_format: OutputFormat | None = dataclass_field(
        default=None, metadata=option("output format", shown="by -o extension, else jsonl")
    )
    include_text: bool = dataclass_field(
        default=False, metadata=option("also write each row's text")
    )
    resume: bool = dataclass_field(
        default=False,
        metadata=option(
            "the output exists: skip the ids it holds, drop a last row cut short, append the rest"
        ),
    )
    overwrite: bool = dataclass_field(
        default=False, metadata=option("the output exists: start it over")
    )
    errors: str | None = dataclass_field(
        default=None, metadata=option("also write bad rows (line, id, error) to this JSONL file")
    )
    fail_on_bad_rows: bool = dataclass_field(
        default=False, metadata=option("exit 3 instead of 0 when some rows were bad")
    )
    progress: Progress = dataclass_field(
        default="auto", metadata=option("progress bar on stderr; auto: when stderr is a terminal")
    )
    batch_size: int = dataclass_field(
        default=64,
        metadata=option(
            "texts per engine call, or per request with --url (at most the server's "
            "--max-client-batch-size)"
        ),
    )
    url: str | None = dataclass_field(
        default=None,
        metadata=option(
            "classify on the classifyd (or vLLM) server at this URL instead of loading a model"
        ),
    )
    # This and served_model_name share their variables with `serve`, where they are comma
    # lists: the first one is used.
    api_key: str | None = dataclass_field(
        default=None,
        metadata=option("with --url: bearer key to send (env: the first of a comma list)"),
    )
    served_model_name: str | None = dataclass_field(
        default=None,
        metadata=option("with --url: the model name to ask for", shown="the server's"),
    )
    max_in_flight: int = dataclass_field(default=4, metadata=option("with --url: requests at once"))
    timeout: float = dataclass_field(
        default=120.0, metadata=option("with --url: seconds to wait for one answer")
    )
    max_retries: int = dataclass_field(
        default=8, metadata=option("with --url: retries of a request refused (429, 503) or lost")
    )
    model: str | None = dataclass_field(
        default=None,
        metadata=option(
            "local model directory, Hugging Face Hub id (org/name), or `default`: the built-in "
            "sentiment model classifyd/minilm-sentiment, also when not given (ignored with --url)"
        ),
    )
    # -1 for truncate_prompt_tokens, locally and on the server alike.
    auto_truncate: bool = dataclass_field(
        default=False,
        metadata=option(
            "truncate over-long texts to the maximum length instead of reporting them as bad rows"
        ),
    )
    log_level: LogLevel = dataclass_field(default="warning", metadata=option("logging level"))
