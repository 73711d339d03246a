//! What a failing `cargo test` run said about its failures, repeated at the end of the run.
//!
//! A workspace test run prints thousands of lines, and the server logs printed after a failure
//! push the test's own words out of view: whoever reads only the last screen (a CI summary, a
//! terminal) would see the logs and `FAILED` but not which test failed or why. The output is
//! forwarded unchanged as it arrives; the lines that name a failure (compile errors, `test ...
//! FAILED`, a panic and the lines of its message, cargo's "to rerun pass ...") are also kept, to be
//! printed once more after everything else.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// How many lines after a panic or a compile error are its message.
const MESSAGE_LINES: usize = 4;
/// How many kept lines the summary shows at most; the first ones are the causes.
const SUMMARY_LINES: usize = 80;

/// The lines kept so far, shared by the forwarding threads.
#[derive(Clone, Default)]
pub struct Failures {
    lines: Arc<Mutex<Vec<String>>>,
}

impl Failures {
    /// Forwards `from` to `to` line by line on a thread of its own, keeping the lines that name
    /// a failure. The thread ends when `from` closes.
    pub fn forward(
        &self,
        from: impl Read + Send + 'static,
        mut to: impl Write + Send + 'static,
    ) -> JoinHandle<()> {
        let kept = self.lines.clone();
        std::thread::spawn(move || {
            let mut message_left = 0;
            for line in BufReader::new(from).split(b'\n') {
                let Ok(line) = line else { break };
                let _ = to.write_all(&line);
                let _ = to.write_all(b"\n");
                let text = String::from_utf8_lossy(&line);
                let (kept_line, left) = keep(&text, message_left);
                message_left = left;
                if kept_line {
                    kept.lock().unwrap().push(text.into_owned());
                }
            }
            let _ = to.flush();
        })
    }

    /// The kept lines, as a block to print last; empty when nothing was kept.
    pub fn summary(&self) -> String {
        let lines = self.lines.lock().unwrap();
        if lines.is_empty() {
            return String::new();
        }
        let mut out = String::from("==> what failed (repeated from the output above):\n");
        for line in lines.iter().take(SUMMARY_LINES) {
            out.push_str("    ");
            out.push_str(line);
            out.push('\n');
        }
        if lines.len() > SUMMARY_LINES {
            let _ = writeln!(
                out,
                "    ... and {} more lines",
                lines.len() - SUMMARY_LINES
            );
        }
        out
    }
}

/// Whether `line` is kept, and how many message lines are due after it, given how many of an
/// earlier panic's or compile error's are still due: a message ends at a blank line.
fn keep(line: &str, message_left: usize) -> (bool, usize) {
    if line.starts_with("error: test failed")
        || (line.starts_with("test ") && line.ends_with(" FAILED"))
    {
        // A failed test's name, or cargo's "to rerun pass ..." hint: one line each.
        (true, 0)
    } else if line.starts_with("error") || line.contains("panicked at") {
        (true, MESSAGE_LINES)
    } else if line.trim().is_empty() {
        (false, 0)
    } else if message_left > 0 {
        (true, message_left - 1)
    } else {
        (false, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(output: &str) -> Vec<String> {
        let failures = Failures::default();
        failures
            .forward(std::io::Cursor::new(output.to_owned()), std::io::sink())
            .join()
            .unwrap();
        failures.lines.lock().unwrap().clone()
    }

    #[test]
    fn a_failing_test_its_panic_and_the_rerun_hint_are_kept() {
        let output = "\
running 2 tests
test a::passes ... ok
test b::fails ... FAILED

failures:

---- b::fails stdout ----
some captured output

thread 'b::fails' panicked at src/b.rs:3:5:
assertion `left == right` failed
  left: 1
 right: 2

test result: FAILED. 1 passed; 1 failed
error: test failed, to rerun pass `-p seal-agent --test agent`
";
        assert_eq!(
            kept(output),
            [
                "test b::fails ... FAILED",
                "thread 'b::fails' panicked at src/b.rs:3:5:",
                "assertion `left == right` failed",
                "  left: 1",
                " right: 2",
                "error: test failed, to rerun pass `-p seal-agent --test agent`",
            ]
        );
    }

    #[test]
    fn a_passing_run_keeps_nothing() {
        let failures = Failures::default();
        failures
            .forward(
                std::io::Cursor::new("running 1 test\ntest a ... ok\n\ntest result: ok.\n"),
                std::io::sink(),
            )
            .join()
            .unwrap();
        assert_eq!(failures.summary(), "");
    }

    #[test]
    fn the_summary_is_bounded() {
        let output = "error: x\n".repeat(SUMMARY_LINES + 5);
        let failures = Failures::default();
        failures
            .forward(std::io::Cursor::new(output), std::io::sink())
            .join()
            .unwrap();
        let summary = failures.summary();
        assert_eq!(summary.lines().count(), 1 + SUMMARY_LINES + 1);
        assert!(summary.ends_with("... and 5 more lines\n"), "{summary}");
    }
}
