"""instructor (TOOLS and JSON_SCHEMA modes) and guidance (chat generation with token log probabilities, and JSON)
against the local function, as their users write them; run by .venv-frameworks' Python. Prints what each saw
as one JSON line."""

from __future__ import annotations

import json
import sys

import guidance
import instructor
import openai
from guidance import assistant, gen, models, user
from pydantic import BaseModel


class City(BaseModel):
    name: str
    population: int
    rivers: list[str]


def main(base_url: str, model: str) -> None:
    seen: dict[str, object] = {}
    for mode in (instructor.Mode.TOOLS, instructor.Mode.JSON_SCHEMA):
        client = instructor.from_openai(openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0), mode=mode)
        city = client.chat.completions.create(model=model, response_model=City, max_retries=0, max_tokens=300,
                                              messages=[{"role": "user", "content": "Describe a city."}])
        seen[f"instructor_{mode.name}"] = city.model_dump()

    lm = models.OpenAI(model, base_url=base_url, api_key="unused", echo=False)
    with user():
        lm += "Say hello."
    with assistant():
        lm += gen("greeting", max_tokens=6)
    seen["guidance_text"] = lm["greeting"]
    with user():
        lm += "A city, as JSON."
    with assistant():
        lm += guidance.json("city", schema=City, max_tokens=300)
    seen["guidance_json"] = json.loads(lm["city"])
    print(json.dumps(seen))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
