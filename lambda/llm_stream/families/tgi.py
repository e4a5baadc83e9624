"""Hugging Face TGI (text-generation-inference), as JumpStart's ``huggingface-pytorch-tgi-inference`` images
run it (1.4.0 and 2.4.0 in the catalog).

Server-sent events (``data:{...}``); stops are ``parameters.stop``; a stop that ends the answer is part of
the streamed text and reported as ``finish_reason: "stop_sequence"``; ``return_full_text`` defaults to
true on ``/invocations``, so the function sends false. The request rules are the router's own
(``router/src/validation.rs``), so the container never refuses what passed here.
"""

from __future__ import annotations

from typing import Final

from pydantic import Field

from ..model_requests import MAX_STOP_SEQUENCES
from ..strict_model import F32_MAX, I32_MAX, U32_MAX, U64_MAX, StopSequence, StrictModel
from . import CapabilityRule, ContainerFamily

REPOSITORY = "huggingface/text-generation-inference"


class GenerateParameters(StrictModel):
    """TGI ``parameters`` a caller may set (``details`` and ``stream`` are the function's own)."""

    max_new_tokens: int | None = Field(default=None, ge=1, le=U32_MAX)
    temperature: float | None = Field(default=None, gt=0, le=F32_MAX)
    top_p: float | None = Field(default=None, gt=0, lt=1)
    top_k: int | None = Field(default=None, gt=0, le=I32_MAX)
    typical_p: float | None = Field(default=None, gt=0, lt=1)
    repetition_penalty: float | None = Field(default=None, gt=0, le=F32_MAX)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    do_sample: bool | None = None
    seed: int | None = Field(default=None, ge=0, le=U64_MAX)
    stop: list[StopSequence] | None = Field(default=None, max_length=MAX_STOP_SEQUENCES)
    return_full_text: bool | None = None
    #: TGI also requires it below the model's input window; the function checks the total window.
    truncate: int | None = Field(default=None, ge=1, le=U32_MAX)
    watermark: bool | None = None


FAMILY: Final = ContainerFamily(
    name="tgi",
    accept="text/event-stream",
    stop_parameter="stop",
    stop_finish_reasons=frozenset({"stop_sequence"}),
    send_return_full_text=True,
    parameters_model=GenerateParameters,
    image_repository="huggingface-pytorch-tgi-inference",
    version_pattern=r"-tgi(\d+\.\d+\.\d+)",
    spec_token_limits=("MAX_INPUT_LENGTH", "MAX_TOTAL_TOKENS"),
    required_spec_environment=("HF_MODEL_ID", "MAX_TOTAL_TOKENS", "MAX_INPUT_LENGTH", "SM_NUM_GPUS"),
    # TGI's sagemaker-entrypoint.sh: NUM_SHARD=$SM_NUM_GPUS.
    gpus_variable="SM_NUM_GPUS",
    checked_versions=frozenset({"1.4.0", "2.4.0"}),
    capability_rules=(
        CapabilityRule("grammar", "1.4.1", f"{REPOSITORY} v1.4.1: `parameters.grammar` ({{type: json|regex, value}}) "
                       "in the router (its docs say 1.4.3); a JSON schema needs top-level `properties` "
                       "(router/src/validation.rs)"),
        CapabilityRule("tools", "1.4.3", f"{REPOSITORY} v1.4.3: `tools`/`tool_choice` on the Messages API "
                       "(router/src/infer/tool_grammar.rs in 2.x: one call per answer)"),
        CapabilityRule("logprobs", "0.9.0", f"{REPOSITORY}: every streamed token carries `token.logprob` "
                       "(router/src/lib.rs `Token`)"),
        CapabilityRule("top_logprobs", "1.1.0", f"{REPOSITORY}#868: `parameters.top_n_tokens`, `top_tokens` per "
                       "streamed token (released in v1.1.0; #1340 reports failures on 1.3.x)"),
        CapabilityRule("prompt_tokens", "2.3.0", f"{REPOSITORY} v2.3.0 (#2336): the stream's last event carries "
                       "`details.input_length` (router/src/lib.rs `StreamDetails`; absent from v1.4.0 to v2.2.0, and "
                       "`decoder_input_details` is refused when streaming)"),
    ),
)
