// The official `openai` npm package against the local function, as a Node application would use it.
// Usage: node openai_node_client.mjs BASE_URL MODEL   (prints one JSON line with what it saw)
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 });
const messages = [{ role: "user", content: "Hi" }];
const seen = {};

seen.models = (await client.models.list()).data.map((m) => m.id);

// The test makes the endpoint fail this first stream after a few tokens.
try {
  for await (const chunk of await client.chat.completions.create({ model, messages, stream: true })) {
    void chunk;
  }
} catch (error) {
  seen.midStream = { name: error.constructor.name, message: error.message };
}
const whole = await client.chat.completions.create({ model, messages, max_tokens: 4 });
seen.whole = { content: whole.choices[0].message.content, finish: whole.choices[0].finish_reason };

const stream = await client.chat.completions.create({ model, messages, max_tokens: 5, stream: true });
seen.streamed = [];
for await (const chunk of stream) {
  const text = chunk.choices[0]?.delta?.content;
  if (text) seen.streamed.push(text);
}

try {
  await client.chat.completions.create({ model, messages, n: 2 });
} catch (error) {
  seen.refused = { name: error.constructor.name, status: error.status, param: error.param };
}

console.log(JSON.stringify(seen));
