// The Vercel AI SDK's default OpenAI provider, `openai(model)` (the Responses API), as an application would
// call it: generateText and streamText, generateObject, and a tool call. Prints what it saw as one JSON line.
import { createOpenAI } from "@ai-sdk/openai";
import { generateObject, generateText, jsonSchema, streamText, tool } from "ai";

const [baseURL, modelId] = process.argv.slice(2);
const openai = createOpenAI({ baseURL, apiKey: "unused" });
const seen = {};

const whole = await generateText({ model: openai(modelId), prompt: "How do I build a website?", maxOutputTokens: 200 });
seen.whole = { text: whole.text, finish: whole.finishReason, output: whole.usage.outputTokens, input: whole.usage.inputTokens };

const streamed = streamText({ model: openai(modelId), system: "Be brief.", prompt: "Hi there", maxOutputTokens: 5 });
seen.deltas = [];
for await (const delta of streamed.textStream) seen.deltas.push(delta);
seen.streamedFinish = await streamed.finishReason;

const city = jsonSchema({
  type: "object",
  properties: { name: { type: "string" }, population: { type: "integer" }, rivers: { type: "array", items: { type: "string" } } },
  required: ["name", "population", "rivers"],
  additionalProperties: false,
});
const object = await generateObject({ model: openai(modelId), schema: city, prompt: "Describe a city.", maxOutputTokens: 200 });
seen.object = object.object;

const weather = tool({
  description: "The weather in a city",
  inputSchema: jsonSchema({ type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: false }),
});
const called = await generateText({ model: openai(modelId), prompt: "Weather in Paris?", tools: { weather }, toolChoice: "required" });
seen.toolCalls = called.toolCalls.map((call) => ({ name: call.toolName, input: call.input }));
seen.toolFinish = called.finishReason;

console.log(JSON.stringify(seen));
