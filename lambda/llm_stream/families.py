"""The model containers the function speaks to, and what differs between them.

Both take ``{"inputs", "parameters", "stream": true}`` and stream one JSON object per token whose last
one carries ``generated_text`` and ``details`` (the token iterator reads both, ``tokens.py``). What
differs, each from the container's own source:

* **TGI** (text-generation-inference 2.x): server-sent events (``data:{...}``); stops are
  ``parameters.stop``; a stop that ends the answer is part of the streamed text and reported as
  ``finish_reason: "stop_sequence"``.
* **LMI** (DJL Serving 0.28, ``djl-inference:0.28.0-lmi10.0.0-cu124``, the lmi-dist/vLLM backend):
  JSON lines (``djl_python/output_formatter.py``: the default for a stream unless ``tgi_compat`` or an
  ``output_formatter`` option says otherwise; with rolling batch ``Accept`` does not choose it, though it
  is sent as ``application/jsonlines`` to say what is expected, and the token iterator reads SSE too);
  stops are ``parameters.stop_sequences`` (renamed to vLLM's ``stop`` by
  ``lmi_dist_rolling_batch.translate_lmi_dist_params``); vLLM's finish reason ``stop`` is reported as
  ``eos_token`` (``rolling_batch_vllm_utils.FINISH_REASON_MAPPER``), so a stop sequence and the model's
  own end look alike (DJL 0.27's DeepSpeed rolling batch says ``stop_sequence``); ``return_full_text``
  defaults to false and lmi-dist drops parameters it does not know with a warning in the container's
  log (``filter_unused_generation_params``), so the function adds none of its own beyond ``details``
  (which DJL reads before lmi-dist sees the parameters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class ContainerFamily:
    name: str
    #: The stream's media type, sent as ``Accept`` (SageMaker passes it on to the container).
    accept: str
    #: The ``parameters`` key that holds stop sequences.
    stop_parameter: str
    #: Finish reasons that may mean a stop sequence ended the answer (then a trailing stop is trimmed).
    stop_finish_reasons: frozenset[str]
    #: Whether ``return_full_text: false`` must be sent (TGI's default is true; LMI's is false).
    send_return_full_text: bool


TGI: Final = ContainerFamily("tgi", "text/event-stream", "stop", frozenset({"stop_sequence"}), True)
LMI: Final = ContainerFamily("lmi", "application/jsonlines", "stop_sequences",
                             frozenset({"eos_token", "stop_sequence"}), False)
FAMILIES: Final = {family.name: family for family in (TGI, LMI)}
