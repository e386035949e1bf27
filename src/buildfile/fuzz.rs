//! Fuzz-style robustness tests: arbitrary bytes and mutated valid Buildfiles go through
//! every public entry point (parse, print, resolve, graph, lint) and must never panic.
//!
//! The long run is ignored by default; CI runs it for a minute:
//! `IMGCTL_FUZZ_SECONDS=60 cargo test --lib buildfile::fuzz -- --ignored`.
//! A failing input's seed is printed; `IMGCTL_FUZZ_SEED=<n>` replays it.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

/// Valid Buildfiles that mutations start from.
const SEEDS: [&str; 6] = [
    "# syntax=docker/dockerfile:1\nARG BASE=alpine\nFROM ${BASE} AS build\nRUN --mount=type=cache,target=/root/.cache \\\n    make && \\\n    make install\nCOPY --from=build /a /b\n",
    "# escape=`\nFROM scratch\nRUN echo `\n  hi\nENV A=1 B=\"two words\"\nLABEL a=b c=\"d e\"\n",
    "FROM alpine\nRUN <<EOF\necho one\nEOF\nCOPY <<-\"A\" <<B /dst/\n\tliteral $X\n\tA\nexpanded $Y\nB\n",
    "FROM a AS one\nFROM one\nCOPY --from=0 --chown=1:1 --chmod=0755 --link --parents --exclude=*.tmp x y\nADD --checksum=sha256:abc --keep-git-dir=true https://x/y.git /src\nHEALTHCHECK --interval=30s --retries=3 CMD [\"true\"]\n",
    "FROM b\nEXPOSE 80 443/tcp 8000-8010/udp\nVOLUME [\"/data\", \"/logs\"]\nONBUILD RUN echo hi\nSTOPSIGNAL SIGTERM\nUSER app:app\nWORKDIR /srv\nSHELL [\"/bin/bash\", \"-c\"]\nENTRYPOINT [\"/bin/app\"]\nCMD --help\nMAINTAINER me\nENV OLD value here\n",
    "ARG X=${Y:-${Z:+q}}\nFROM img:${X}\nARG X\nRUN --network=none --security=sandbox --mount=type=secret,id=s,required echo $X\n",
];

/// Tokens spliced in by the mutator: the grammar's sharp edges.
const TOKENS: [&str; 24] = [
    "\\\n",
    "`\n",
    "\n",
    "<<EOF\n",
    "<<-EOF",
    "EOF\n",
    "${",
    "}",
    "$",
    "\"",
    "'",
    "[",
    "]",
    "--mount=",
    "--from=",
    "FROM ",
    "RUN ",
    "# escape=`\n",
    "\t",
    "\r\n",
    "=",
    ",",
    "\u{feff}",
    "\u{0}",
];

/// Feed one input through everything; true when it parsed.
fn run_all(bytes: &[u8]) -> bool {
    match parse_bytes("Buildfile", bytes) {
        Ok(bf) => {
            let text = String::from_utf8_lossy(bytes);
            let printed = print(&bf);
            let _ = parse("Buildfile", &printed);
            let _ = serde_json::to_string(&bf);
            let _ = lint(&bf, &text);
            if let Ok(r) = resolve(&bf, "Buildfile", &text, &ResolveOptions::default()) {
                if let Ok(g) = Graph::new(&r, "Buildfile", &text) {
                    let _ = g.plan(None);
                    let _ = g.plan(Some("build"));
                }
            }
            true
        }
        Err(e) => {
            let _ = e.render();
            false
        }
    }
}

/// xorshift64*: enough randomness for a mutation loop, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng) -> Vec<u8> {
    if rng.below(8) == 0 {
        let len = rng.below(512);
        return (0..len).map(|_| rng.next() as u8).collect();
    }
    let mut v = SEEDS[rng.below(SEEDS.len())].as_bytes().to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(v.len() + 1);
        match rng.below(4) {
            0 => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                v.splice(at..at, t.iter().copied());
            }
            1 if !v.is_empty() => {
                let end = (at + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            2 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            _ => {
                let i = rng.below(v.len().max(1));
                let end = (i + rng.below(32)).min(v.len());
                let chunk: Vec<u8> = v[i.min(end)..end].to_vec();
                v.splice(at..at, chunk);
            }
        }
    }
    v
}

/// Returns (inputs tried, inputs that parsed).
fn fuzz_for(budget: Duration, seed: u64) -> (u64, u64) {
    let start = Instant::now();
    let mut rng = Rng(seed | 1);
    let (mut n, mut parsed) = (0u64, 0u64);
    while start.elapsed() < budget {
        let input = mutate(&mut rng);
        match std::panic::catch_unwind(|| run_all(&input)) {
            Ok(ok) => parsed += u64::from(ok),
            Err(_) => panic!(
                "panic on input (seed {seed}, case {n}): {:?}",
                String::from_utf8_lossy(&input)
            ),
        }
        n += 1;
    }
    (n, parsed)
}

#[test]
#[ignore = "long fuzz run; CI sets IMGCTL_FUZZ_SECONDS=60"]
fn arbitrary_bytes_never_panic() {
    let secs: u64 = std::env::var("IMGCTL_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let seed: u64 = std::env::var("IMGCTL_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        });
    let (n, parsed) = fuzz_for(Duration::from_secs(secs), seed);
    eprintln!("fuzz: {n} inputs ({parsed} parsed) in {secs}s without a panic (seed {seed})");
    assert!(n > 0);
    // Mutations of valid files must keep reaching the later stages.
    assert!(
        parsed > 0,
        "no input parsed: the mutator only exercises error paths"
    );
}

#[test]
fn mutation_loop_quick() {
    let (n, parsed) = fuzz_for(Duration::from_millis(300), 42);
    assert!(n > 0 && parsed > 0, "{n} inputs, {parsed} parsed");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_bytes_quick(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        run_all(&bytes);
    }

    #[test]
    fn arbitrary_text_quick(s in "[A-Za-z \\\\`$#{}<>\"'=,:\\-\\[\\]\n\t]{0,200}") {
        run_all(s.as_bytes());
    }
}
