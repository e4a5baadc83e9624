"""What every request model shares: strict validation and the containers' number ranges.

Strict: a number or a boolean sent as a string (``"5"``, ``"true"``) is refused, as OpenAI's API and the
containers refuse it, not read as one (an integer is still a valid float). A value outside the
container's own number types (TGI's router: f32 sampling parameters, i32 ``top_k``, u32 token counts,
u64 ``seed``) is refused here, not by the container after a round trip.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

F32_MAX = 3.4028234663852886e38
I32_MAX = 2**31 - 1
U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1

StopSequence = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
