// Whether this build carries the hooks the browser tests drive the app with: `window.cqaStudio`
// (requests to either worker, run-time limits), the engine's simulate-* requests (a lost GPU
// device, a crash, a hang) and the bare harness page. A site built by `./x dist` leaves them out
// (this stays false, harness.html is not copied); `./x test` builds with `--test-hooks`, which
// sets it true.
export const TEST_HOOKS = false;
