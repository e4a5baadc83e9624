"""DJL Serving's Large Model Inference container (LMI), as JumpStart's ``djl-inference`` images run it
(``0.28.0-lmi10.0.0-cu124``, the lmi-dist/vLLM rolling batch).

JSON lines (``djl_python/output_formatter.py``: the default for a stream unless ``tgi_compat`` or an
``output_formatter`` option says otherwise; with rolling batch ``Accept`` does not choose it, though it is
sent as ``application/jsonlines`` to say what is expected, and the token iterator reads SSE too); stops
are ``parameters.stop_sequences`` (renamed to vLLM's ``stop`` by
``lmi_dist_rolling_batch.translate_lmi_dist_params``); vLLM's finish reason ``stop`` is reported as
``eos_token`` (``rolling_batch_vllm_utils.FINISH_REASON_MAPPER``), so a stop sequence and the model's own
end look alike (DJL 0.27's DeepSpeed rolling batch says ``stop_sequence``: its images are not served,
:attr:`ContainerFamily.serving_tag_marker`); ``return_full_text`` defaults to false and lmi-dist drops
parameters it does not know with a warning in the container's log (``filter_unused_generation_params``), so
the function adds none of its own beyond ``details`` (which DJL reads before lmi-dist sees the parameters).
The window is the project's (``OPTION_MAX_MODEL_LEN``: DJL Serving reads ``OPTION_<KEY>`` as
``option.<key>``); LMI specs carry no token limits.
"""

from __future__ import annotations

from typing import Final

from pydantic import Field, field_validator

from ..model_requests import MAX_STOP_SEQUENCES
from ..strict_model import F32_MAX, I32_MAX, U32_MAX, U64_MAX, StopSequence, StrictModel
from . import CapabilityRule, ContainerFamily

SOURCE = "djl-serving v0.28.0"


class LmiGenerateParameters(StrictModel):
    """LMI ``parameters`` a caller may set: those DJL Serving 0.28's lmi-dist backend reads, with vLLM's
    own limits (``vllm/sampling_params.py`` ``_verify_args``: ``top_p`` in (0, 1], ``top_k`` -1 (no top-k) or >= 1,
    ``repetition_penalty`` in (0, 2], the penalties in [-2, 2]). Sampling needs ``do_sample: true``:
    without it LMI decodes greedily whatever ``temperature`` says."""

    max_new_tokens: int | None = Field(default=None, ge=1, le=U32_MAX)
    do_sample: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=F32_MAX)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=-1, le=I32_MAX)
    repetition_penalty: float | None = Field(default=None, gt=0, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = Field(default=None, ge=0, le=U64_MAX)
    stop_sequences: list[StopSequence] | None = Field(default=None, max_length=MAX_STOP_SEQUENCES)
    return_full_text: bool | None = None

    @field_validator("top_k")
    @classmethod
    def _top_k_not_zero(cls, value: int | None) -> int | None:
        if value == 0:
            raise ValueError("must be -1 (no top-k) or at least 1")
        return value


FAMILY: Final = ContainerFamily(
    name="lmi",
    accept="application/jsonlines",
    stop_parameter="stop_sequences",
    stop_finish_reasons=frozenset({"eos_token", "stop_sequence"}),
    send_return_full_text=False,
    parameters_model=LmiGenerateParameters,
    image_repository="djl-inference",
    version_pattern=r"^(\d+\.\d+\.\d+)-lmi",
    window_variable="OPTION_MAX_MODEL_LEN",
    # LMI's option.tensor_parallel_degree (OPTION_ variables are its serving.properties); unset, every GPU it sees.
    gpus_variable="OPTION_TENSOR_PARALLEL_DEGREE",
    serving_tag_marker="-lmi",
    checked_versions=frozenset({"0.28.0"}),
    capability_rules=(
        CapabilityRule("grammar", None, f"{SOURCE} lmi_dist_rolling_batch.py: no guided or structured decoding"),
        CapabilityRule("tools", None, f"{SOURCE}: no tool calling on the generate schema the function uses"),
        CapabilityRule("logprobs", "0.28.0", f"{SOURCE} output_formatter.py: the chosen token's `log_prob` on "
                       "each JSON line"),
        CapabilityRule("top_logprobs", None, f"{SOURCE}: the chosen token's log probability only"),
        CapabilityRule("prompt_tokens", None, f"{SOURCE} output_formatter.py: the jsonlines stream's details carry "
                       "no prompt count; `decoder_input_details` would add the prefill tokens (prompt log "
                       "probabilities over the whole prompt: vLLM #5550 reports out-of-memory crashes; lmi-dist "
                       "untested)"),
    ),
)
