//! Build progress as events, and BuildKit-style renderers.
//!
//! Plain mode prints, like BuildKit's `--progress=plain`:
//! ```text
//! #3 [builder 2/4] RUN mkdir -p /build
//! #3 0.412 some output
//! #3 DONE 0.5s
//! #4 [builder 3/4] COPY a.txt /a
//! #4 CACHED
//! ```
//! The tty mode folds a step's output (it is shown only when the step fails).

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

/// One thing that happened during a build. `n` is the step's `#N`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    /// A step starts: `[stage k/n] INSTRUCTION`.
    Start { n: usize, name: &'a str },
    /// A line of a RUN step's output, at `at` since the step started.
    Output {
        n: usize,
        at: Duration,
        line: &'a str,
    },
    /// The step was taken from the cache.
    Cached { n: usize },
    /// The step missed the cache: why (`--explain` detail).
    Miss { n: usize, reason: &'a str },
    /// The step finished.
    Done { n: usize, took: Duration },
    /// The step failed.
    Error {
        n: usize,
        took: Duration,
        message: &'a str,
    },
    /// Something to say once (`writing image sha256:...`, warnings).
    Note { n: usize, text: &'a str },
}

/// A progress sink. Called from the build's threads.
pub trait Progress: Send + Sync {
    fn event(&self, e: &Event<'_>);
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plain,
    /// Output folded: shown only for a failing step.
    Tty,
    Quiet,
}

/// A renderer writing to `out` (stderr in the CLI).
pub struct Renderer<W: Write + Send> {
    mode: Mode,
    explain: bool,
    out: Mutex<(W, Vec<(usize, String)>)>,
}

impl<W: Write + Send> Renderer<W> {
    /// `explain`: print why each missed step missed (always in plain mode).
    pub fn new(out: W, mode: Mode, explain: bool) -> Renderer<W> {
        Renderer {
            mode,
            explain,
            out: Mutex::new((out, Vec::new())),
        }
    }
}

impl<W: Write + Send> Progress for Renderer<W> {
    fn event(&self, e: &Event<'_>) {
        if self.mode == Mode::Quiet {
            return;
        }
        let Ok(mut g) = self.out.lock() else { return };
        let (out, folded) = &mut *g;
        let secs = |d: &Duration| format!("{:.1}s", d.as_secs_f64());
        let _ = match e {
            Event::Start { n, name } => writeln!(out, "#{n} {name}"),
            Event::Output { n, at, line } => {
                if self.mode == Mode::Tty {
                    folded.push((*n, format!("#{n} {:.3} {line}", at.as_secs_f64())));
                    // Keep the tail only.
                    if folded.len() > 200 {
                        folded.drain(..folded.len() - 200);
                    }
                    Ok(())
                } else {
                    writeln!(out, "#{n} {:.3} {line}", at.as_secs_f64())
                }
            }
            Event::Cached { n } => writeln!(out, "#{n} CACHED"),
            Event::Miss { n, reason } => {
                if self.explain || self.mode == Mode::Plain {
                    writeln!(out, "#{n} cache miss: {reason}")
                } else {
                    Ok(())
                }
            }
            Event::Done { n, took } => {
                folded.retain(|(k, _)| k != n);
                writeln!(out, "#{n} DONE {}", secs(took))
            }
            Event::Error { n, took, message } => {
                for (_, l) in folded.iter().filter(|(k, _)| k == n) {
                    let _ = writeln!(out, "{l}");
                }
                folded.retain(|(k, _)| k != n);
                writeln!(out, "#{n} ERROR {} {message}", secs(took))
            }
            Event::Note { n, text } => writeln!(out, "#{n} {text}"),
        };
        let _ = out.flush();
    }
}

/// A sink that drops everything.
pub struct Silent;

impl Progress for Silent {
    fn event(&self, _: &Event<'_>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(mode: Mode, events: &[Event<'_>]) -> String {
        let r = Renderer::new(Vec::new(), mode, false);
        for e in events {
            r.event(e);
        }
        let (v, _) = r.out.into_inner().unwrap();
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn plain_prints_output_and_tty_folds_it_unless_the_step_fails() {
        let ev = [
            Event::Start {
                n: 2,
                name: "[a 2/3] RUN echo hi",
            },
            Event::Output {
                n: 2,
                at: Duration::from_millis(5),
                line: "hi",
            },
            Event::Done {
                n: 2,
                took: Duration::from_millis(300),
            },
            Event::Start {
                n: 3,
                name: "[a 3/3] RUN false",
            },
            Event::Output {
                n: 3,
                at: Duration::from_millis(7),
                line: "boom",
            },
            Event::Error {
                n: 3,
                took: Duration::from_millis(100),
                message: "exit code 1",
            },
        ];
        let plain = render(Mode::Plain, &ev);
        assert!(plain.contains("#2 0.005 hi\n#2 DONE 0.3s\n"), "{plain}");
        let tty = render(Mode::Tty, &ev);
        assert!(!tty.contains("0.005 hi"), "{tty}");
        assert!(
            tty.contains("#3 0.007 boom\n#3 ERROR 0.1s exit code 1\n"),
            "{tty}"
        );
        assert_eq!(render(Mode::Quiet, &ev), "");
    }
}
