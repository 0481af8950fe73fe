// openai-node against a running Runstep server: a streamed run that calls a function, then a
// streamed submit_tool_outputs that finishes it. Uses only the SDK's own helpers.
//
// Usage: BASE_URL=http://127.0.0.1:PORT/v1 API_KEY=sk-... node stream_function_call.mjs SCRIPT
//   (BASE_URL, API_KEY and SCRIPT may also be given as argv: node ... SCRIPT BASE_URL API_KEY)
// SCRIPT names the scripted-upstream queue: the user message carries `[[script:SCRIPT]]`.
// Prints one JSON object on stdout; any failure goes to stderr with a non-zero exit code.

import OpenAI from 'openai';
import { VERSION } from 'openai/version';

const [scriptArg, baseArg, keyArg] = process.argv.slice(2);
const script = scriptArg ?? process.env.SCRIPT;
const baseURL = baseArg ?? process.env.BASE_URL;
const apiKey = keyArg ?? process.env.API_KEY;
if (!script || !baseURL || !apiKey) {
  console.error('usage: BASE_URL=... API_KEY=... node stream_function_call.mjs SCRIPT');
  process.exit(2);
}

// No retries: a failing request must fail the test, not be hidden by a second attempt.
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 30_000 });

const WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather for a city.',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' } },
      required: ['city'],
    },
  },
};

/** Drive one AssistantStream to its end, recording what the SDK saw. */
async function collect(stream) {
  const events = [];
  const toolCallsDone = [];
  const messagesDone = [];
  const textsDone = [];
  let textDeltas = '';
  stream
    .on('event', (event) => events.push(event.event))
    .on('textDelta', (delta) => {
      textDeltas += delta.value ?? '';
    })
    .on('textDone', (text) => textsDone.push(text.value))
    .on('messageDone', (message) => messagesDone.push(message))
    .on('toolCallDone', (toolCall) => toolCallsDone.push(toolCall));
  const run = await stream.finalRun();
  const messages = await stream.finalMessages();
  const steps = await stream.finalRunSteps();
  return { events, run, messages, steps, textDeltas, textsDone, messagesDone, toolCallsDone };
}

function messageText(message) {
  return message.content
    .filter((part) => part.type === 'text')
    .map((part) => part.text.value)
    .join('');
}

const assistant = await client.beta.assistants.create({
  model: 'scripted-model',
  name: 'node-compat',
  instructions: 'Use get_weather when asked about the weather.',
  tools: [WEATHER_TOOL],
});
const thread = await client.beta.threads.create({
  messages: [{ role: 'user', content: `What is the weather in Paris? [[script:${script}]]` }],
});

// 1. Stream the run until it stops for the function call.
const first = await collect(
  client.beta.threads.runs.stream(thread.id, { assistant_id: assistant.id }),
);
const afterFirst = await client.beta.threads.runs.retrieve(first.run.id, { thread_id: thread.id });
const calls = first.run.required_action?.submit_tool_outputs?.tool_calls ?? [];
if (calls.length === 0) {
  throw new Error(`run ended ${first.run.status} without a function call`);
}

// 2. Answer every call in one streamed submit_tool_outputs.
const second = await collect(
  client.beta.threads.runs.submitToolOutputsStream(first.run.id, {
    thread_id: thread.id,
    tool_outputs: calls.map((call) => ({
      tool_call_id: call.id,
      output: JSON.stringify({ city: 'Paris', celsius: 21 }),
    })),
  }),
);
const afterSecond = await client.beta.threads.runs.retrieve(second.run.id, {
  thread_id: thread.id,
});

// 3. Read the thread back, oldest first, through the SDK's auto-pagination.
const threadMessages = [];
for await (const message of client.beta.threads.messages.list(thread.id, {
  order: 'asc',
  limit: 1,
})) {
  threadMessages.push({ role: message.role, run_id: message.run_id, text: messageText(message) });
}
const steps = [];
for await (const step of client.beta.threads.runs.steps.list(second.run.id, {
  thread_id: thread.id,
  order: 'asc',
})) {
  steps.push({ type: step.type, status: step.status });
}

// finalMessages() holds the SDK's snapshots: built from thread.message.created plus the deltas,
// so their status stays `in_progress` (the SDK ignores the data of thread.message.completed);
// messageDone hands over the completed message as the server sent it.
const finalMessage = second.messages.at(-1);
const doneMessage = second.messagesDone.at(-1);
console.log(
  JSON.stringify({
    sdk_version: VERSION,
    thread_id: thread.id,
    run_id: first.run.id,
    same_run: first.run.id === second.run.id,
    events: { first: first.events, second: second.events },
    statuses: {
      first_stream: first.run.status,
      after_first_stream: afterFirst.status,
      second_stream: second.run.status,
      after_second_stream: afterSecond.status,
    },
    required_action_type: first.run.required_action?.type ?? null,
    tool_calls: calls.map((call) => ({
      id: call.id,
      type: call.type,
      name: call.function.name,
      arguments: call.function.arguments,
    })),
    streamed_tool_calls: first.toolCallsDone.map((call) => ({
      id: call.id,
      name: call.function?.name,
      arguments: call.function?.arguments,
    })),
    first_step_snapshots: first.steps.map((step) => ({
      type: step.type,
      status: step.status,
      step_details_type: step.step_details?.type,
      tool_calls: (step.step_details?.tool_calls ?? []).map((call) => ({
        id: call.id,
        name: call.function?.name,
        arguments: call.function?.arguments,
      })),
    })),
    final_text: finalMessage ? messageText(finalMessage) : null,
    done_message: doneMessage
      ? { id: doneMessage.id, status: doneMessage.status, text: messageText(doneMessage) }
      : null,
    final_message_id: finalMessage?.id ?? null,
    streamed_text: second.textDeltas,
    texts_done: second.textsDone,
    thread_messages: threadMessages,
    steps_after: steps,
    usage: afterSecond.usage ?? null,
  }),
);
