// The job's exit codes: the contract with Cloud Run (a non-zero exit fails the task, which Cloud
// Run retries up to --max-retries times) and with the operator scripts. Every exit goes through one
// of these; nothing else in the job names a number.

/** The validated file (and its manifest and report) are in the bucket. The only success. */
export const EXIT_OK = 0;
/** A stage failed; parts staged so far are kept, so a retry resumes. */
export const EXIT_FAILED = 1;
/** The configuration was refused before any work started; a retry would fail the same way. */
export const EXIT_CONFIG = 2;
/** SIGTERM/SIGINT (128 + SIGINT, as a shell reports it): stopped, parts kept for the next attempt. */
export const EXIT_INTERRUPTED = 130;
