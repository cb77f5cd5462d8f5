import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { commands } from "../../src/cli/commands.js";

describe("the command table", () => {
  it("is sorted, and each entry loads the command it names, with the same summary", async () => {
    const names = commands.map((c) => c.name);
    assert.deepEqual(names, [...names].sort());
    for (const entry of commands) {
      const command = await entry.load();
      assert.equal(command.name, entry.name);
      assert.equal(command.summary, entry.summary, `${entry.name}: summary differs from the command's`);
    }
  });
});
