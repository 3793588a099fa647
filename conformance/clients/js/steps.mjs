// What every JavaScript client script shares: its steps, recorded one JSON line each into
// CONF_RESULTS (as the Python clients' Recorder does), and the checks they make.

import { appendFileSync } from "node:fs";

// Thrown by a step to be recorded as skipped (with its reason) rather than failed.
export class Skip extends Error {}

export function trim(text, limit = 2000) {
  text = String(text).trim();
  return text.length <= limit ? text : text.slice(0, limit / 2) + "\n[...]\n" + text.slice(-limit / 2);
}

export function expectEqual(actual, expected, what) {
  const a = JSON.stringify(actual);
  const b = JSON.stringify(expected);
  if (a !== b) throw new Error(`${what}: expected ${b}, got ${a}`);
}

// The recorder of one client: `write` for a record of its own (its version), `step` to run one.
// `explain(e)` adds what the client's errors carry (status, S3 error code) to a failure's first line.
export function recorder(client, results, explain) {
  const failed = new Set();
  const write = (record) => appendFileSync(results, JSON.stringify(record) + "\n");

  // Runs fn as one step; a step whose prerequisite failed is recorded as not run.
  async function step(name, needs, fn) {
    const broken = needs.filter((n) => failed.has(n));
    const start = Date.now();
    let result = "pass";
    let detail = "";
    if (broken.length) {
      result = "fail";
      detail = `not run: depends on failed step(s) ${broken.join(", ")}`;
    } else {
      try {
        await fn();
      } catch (e) {
        if (e instanceof Skip) {
          result = "skip";
          detail = e.message;
        } else {
          result = "fail";
          detail = `${e?.name ?? "Error"}: ${e?.message ?? e}${explain(e)}\n${e?.stack ?? ""}`;
        }
      }
    }
    if (result === "fail") failed.add(name);
    write({ client, step: name, result, detail: trim(detail), seconds: (Date.now() - start) / 1000 });
    const mark = { pass: "ok  ", fail: "FAIL", skip: "skip" }[result];
    console.error(`[${client}] ${mark} ${name}${detail ? ": " + detail.split("\n")[0] : ""}`);
  }

  return { write, step, failed };
}
