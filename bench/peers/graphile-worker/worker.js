// The worker process of bench.js: graphile-worker's run() with concurrency 10 and the protocol's
// no-op task. Driven by its parent over the IPC channel:
//   parent -> child: {type:"expect",count} (reset samples, report when count bodies have started),
//                    {type:"go"} (call run()), {type:"completed"}, {type:"stop"}
//   child -> parent: {type:"ready"}, {type:"ok"}, {type:"reached",samples:[µs]},
//                    {type:"completed",count,errors}
"use strict";
const { run } = require("graphile-worker");

const url = process.argv[2];
const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
let expect = Infinity;
let samples = [];
let successes = 0;
let errors = 0;
let runner = null;

const taskList = {
  // The protocol's no-op: records queue-to-start (body start minus the payload's t).
  noop: async (payload) => {
    samples.push(nowUs() - payload.t);
    if (samples.length === expect) {
      process.send({ type: "reached", samples });
      samples = [];
      expect = Infinity;
    }
  },
};

process.on("message", async (m) => {
  if (m.type === "expect") {
    samples = [];
    expect = m.count;
    process.send({ type: "ok" });
  } else if (m.type === "go") {
    // graphile-worker's defaults except the protocol's concurrency (pollInterval 2 s as a
    // fallback; new jobs wake the worker through LISTEN/NOTIFY).
    runner = await run({ connectionString: url, concurrency: 10, taskList, noHandleSignals: true });
    runner.events.on("job:success", () => successes++);
    runner.events.on("job:error", () => errors++);
  } else if (m.type === "completed") {
    process.send({ type: "completed", count: successes, errors });
  } else if (m.type === "stop") {
    if (runner) await runner.stop();
    process.exit(0);
  }
});
process.on("disconnect", () => process.exit(0));
process.send({ type: "ready" });
