// .mjs, not "type": "module" in package.json: that would make node read every .js below the
// repository root as ESM, the venv's tools (jlpm) included.
// The widget's ES modules are plain files in the Python package; the tests import them as is.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    environment: "jsdom",
    include: ["tests/js/**/*.test.js"],
  },
});
