// The widget's ES modules are plain files in the Python package; the tests import them as is.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    environment: "jsdom",
    include: ["tests/js/**/*.test.js"],
  },
});
