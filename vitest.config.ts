import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Integration tests spawn the real pipeline and real worker pools; two cores are plenty busy
    // with one file at a time.
    fileParallelism: false,
    pool: "forks",
  },
});
