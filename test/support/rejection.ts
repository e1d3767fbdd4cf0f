// The JobError a promise rejects with; fails the test if it resolves or rejects with anything else.
import { expect } from "vitest";
import { JobError } from "../../src/errors.ts";

export async function rejection(p: Promise<unknown>): Promise<JobError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(JobError);
  return err as JobError;
}
