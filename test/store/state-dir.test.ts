import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError } from "../../src/core/errors.js";
import { defaultStateDir } from "../../src/store/state-dir.js";

describe("defaultStateDir", () => {
  it("prefers TOKENKEEPER_HOME on every platform", () => {
    for (const platform of ["linux", "darwin", "win32"] as const) {
      assert.equal(defaultStateDir({ TOKENKEEPER_HOME: "/srv/tk", HOME: "/home/ann" }, platform), "/srv/tk");
    }
  });

  it("Linux: $XDG_STATE_HOME/tokenkeeper, else ~/.local/state/tokenkeeper", () => {
    assert.equal(
      defaultStateDir({ XDG_STATE_HOME: "/home/ann/state", HOME: "/home/ann" }, "linux"),
      "/home/ann/state/tokenkeeper",
    );
    assert.equal(defaultStateDir({ HOME: "/home/ann" }, "linux"), "/home/ann/.local/state/tokenkeeper");
    assert.equal(defaultStateDir({ HOME: "/home/ann" }, "freebsd"), "/home/ann/.local/state/tokenkeeper");
  });

  it("Linux: ignores an empty or relative XDG_STATE_HOME, as the XDG spec says", () => {
    assert.equal(
      defaultStateDir({ XDG_STATE_HOME: "", HOME: "/home/ann" }, "linux"),
      "/home/ann/.local/state/tokenkeeper",
    );
    assert.equal(
      defaultStateDir({ XDG_STATE_HOME: "state", HOME: "/home/ann" }, "linux"),
      "/home/ann/.local/state/tokenkeeper",
    );
  });

  it("macOS: ~/Library/Application Support/tokenkeeper (XDG does not apply)", () => {
    assert.equal(
      defaultStateDir({ HOME: "/Users/ann", XDG_STATE_HOME: "/x" }, "darwin"),
      "/Users/ann/Library/Application Support/tokenkeeper",
    );
  });

  it("Windows: %LOCALAPPDATA%\\tokenkeeper, else under the profile", () => {
    assert.equal(
      defaultStateDir({ LOCALAPPDATA: "C:\\Users\\ann\\AppData\\Local" }, "win32"),
      "C:\\Users\\ann\\AppData\\Local\\tokenkeeper",
    );
    assert.equal(
      defaultStateDir({ USERPROFILE: "C:\\Users\\ann" }, "win32"),
      "C:\\Users\\ann\\AppData\\Local\\tokenkeeper",
    );
  });

  it("takes an explicit home directory over HOME", () => {
    assert.equal(
      defaultStateDir({ HOME: "/wrong" }, "linux", "/home/ann"),
      "/home/ann/.local/state/tokenkeeper",
    );
  });

  it("fails with ConfigError when nothing says where home is", () => {
    for (const platform of ["linux", "darwin", "win32"] as const) {
      assert.throws(() => defaultStateDir({}, platform), ConfigError);
    }
  });
});
