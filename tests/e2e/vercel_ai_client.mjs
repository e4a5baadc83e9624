// The Vercel AI SDK's default OpenAI provider, `openai(model)` (the Responses API), as an application would
// call it: generateText and streamText. Prints what it saw as one JSON line.
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, streamText } from "ai";

const [baseURL, modelId] = process.argv.slice(2);
const openai = createOpenAI({ baseURL, apiKey: "unused" });
const seen = {};

const whole = await generateText({ model: openai(modelId), prompt: "How do I build a website?", maxOutputTokens: 200 });
seen.whole = { text: whole.text, finish: whole.finishReason, output: whole.usage.outputTokens, input: whole.usage.inputTokens };

const streamed = streamText({ model: openai(modelId), system: "Be brief.", prompt: "Hi there", maxOutputTokens: 5 });
seen.deltas = [];
for await (const delta of streamed.textStream) seen.deltas.push(delta);
seen.streamedFinish = await streamed.finishReason;

console.log(JSON.stringify(seen));
