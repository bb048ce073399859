import { defineConfig } from 'vitest/config';

// Only the panel's own modules are tested here (model.ts, panel.ts); JupyterLab's
// packages are not loaded, so plain jsdom is enough.
export default defineConfig({
  test: {
    environment: 'jsdom',
    include: ['src/__tests__/**/*.spec.ts'],
    setupFiles: ['src/__tests__/setup.ts']
  }
});
