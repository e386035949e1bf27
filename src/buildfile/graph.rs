//! The stage graph: which stage needs which, `--target` pruning, and build order.
//!
//! Edges come from `FROM <stage>` (only stages defined earlier, as in BuildKit: a later
//! name is an image reference), `COPY --from=<name|index>` and
//! `RUN --mount=from=<name|index>` (any stage; forward references allowed, so cycles are
//! possible and are errors). A `--from` naming no stage is an image.

use serde::Serialize;

use super::ast::{Command, LineRange};
use super::error::{suggest, Error, Location};
use super::resolve::Resolved;

/// What a stage depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "ref", rename_all = "lowercase")]
pub enum Dep {
    /// Another stage, by index.
    Stage(usize),
    /// An image reference (pulled, not built).
    Image(String),
    /// The empty base.
    Scratch,
}

/// One stage in the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub index: usize,
    pub name: Option<String>,
    pub base: Dep,
    /// Every dependency (base first), with the line that creates it.
    pub deps: Vec<(Dep, u32)>,
    pub lines: LineRange,
}

/// The stage graph of one resolved Buildfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Graph {
    #[serde(skip)]
    file: String,
    pub nodes: Vec<Node>,
}

impl Graph {
    /// Build the graph. `file` names the Buildfile in errors and `text` is its source
    /// (for the line and caret in errors).
    pub fn new(r: &Resolved, file: &str, text: &str) -> Result<Graph, Error> {
        let lines: Vec<&str> = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .collect();
        // The line of an instruction holding `from=` (it may sit on a continuation line).
        let from_line = |range: LineRange| -> u32 {
            (range.start..=range.end)
                .find(|l| {
                    lines
                        .get((*l as usize).saturating_sub(1))
                        .is_some_and(|s| s.contains("from="))
                })
                .unwrap_or(range.start)
        };
        // First stage of each name; a lookup limited to stages before `limit` finds
        // the first one if it is early enough.
        let mut first: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for (i, s) in r.stages.iter().enumerate() {
            if let Some(n) = &s.name {
                first.entry(n.as_str()).or_insert(i);
            }
        }
        let by_name = |n: &str, limit: usize| -> Option<usize> {
            let l = n.to_ascii_lowercase();
            first.get(l.as_str()).copied().filter(|i| *i < limit)
        };
        let mut nodes = Vec::new();
        for st in &r.stages {
            let base = if st.base.eq_ignore_ascii_case("scratch") {
                Dep::Scratch
            } else if let Some(i) = by_name(&st.base, st.index) {
                Dep::Stage(i)
            } else {
                Dep::Image(st.base.clone())
            };
            let mut deps = vec![(base.clone(), st.lines.start)];
            for step in &st.steps {
                let froms: Vec<&String> = match &step.command {
                    Command::Copy { from: Some(f), .. } => vec![f],
                    Command::Run { mounts, .. } => {
                        mounts.iter().filter_map(|m| m.from.as_ref()).collect()
                    }
                    _ => Vec::new(),
                };
                for f in froms {
                    let dep = if let Some(i) = by_name(f, r.stages.len()) {
                        Dep::Stage(i)
                    } else if let Ok(i) = f.parse::<usize>() {
                        if i >= r.stages.len() {
                            return Err(Error::Stage {
                                file: file.to_string(),
                                at: locate(file, &lines, from_line(step.lines)),
                                message: format!(
                                    "invalid stage index {i}: the file has {} stages",
                                    r.stages.len()
                                ),
                                hint: Some("stage indexes start at 0".into()),
                            });
                        }
                        Dep::Stage(i)
                    } else if f.is_empty() {
                        return Err(Error::Stage {
                            file: file.to_string(),
                            at: locate(file, &lines, from_line(step.lines)),
                            message: "empty --from value".into(),
                            hint: None,
                        });
                    } else {
                        Dep::Image(f.clone())
                    };
                    deps.push((dep, from_line(step.lines)));
                }
            }
            nodes.push(Node {
                index: st.index,
                name: st.name.clone(),
                base,
                deps,
                lines: st.lines,
            });
        }
        let g = Graph {
            file: file.to_string(),
            nodes,
        };
        g.check_cycles(&lines)?;
        Ok(g)
    }

    fn label(&self, i: usize) -> String {
        match &self.nodes[i].name {
            Some(n) => n.clone(),
            None => format!("stage {i}"),
        }
    }

    fn check_cycles(&self, lines: &[&str]) -> Result<(), Error> {
        // 0 = unvisited, 1 = on the stack, 2 = done.
        let mut color = vec![0u8; self.nodes.len()];
        for start in 0..self.nodes.len() {
            if color[start] != 0 {
                continue;
            }
            // Iterative DFS: (node, next dep position).
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            color[start] = 1;
            while let Some(&mut (n, ref mut k)) = stack.last_mut() {
                let deps = &self.nodes[n].deps;
                if *k >= deps.len() {
                    color[n] = 2;
                    stack.pop();
                    continue;
                }
                let (dep, line) = &deps[*k];
                *k += 1;
                if let Dep::Stage(d) = dep {
                    match color[*d] {
                        0 => {
                            color[*d] = 1;
                            stack.push((*d, 0));
                        }
                        1 => {
                            let pos = stack.iter().position(|(s, _)| s == d).unwrap_or(0);
                            let mut path: Vec<String> =
                                stack[pos..].iter().map(|(s, _)| self.label(*s)).collect();
                            path.push(self.label(*d));
                            return Err(Error::Stage {
                                file: self.file.clone(),
                                at: locate(&self.file, lines, *line),
                                message: format!(
                                    "circular dependency between stages: {}",
                                    path.join(" -> ")
                                ),
                                hint: Some(
                                    "a stage cannot copy from itself or from a stage that needs it"
                                        .into(),
                                ),
                            });
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// Index of the target stage: by name (case-insensitive); `None` = the last stage.
    pub fn target(&self, target: Option<&str>) -> Result<usize, Error> {
        match target {
            None => self.nodes.len().checked_sub(1).ok_or_else(|| Error::Stage {
                file: self.file.clone(),
                at: None,
                message: "no build stage".into(),
                hint: None,
            }),
            Some(t) => {
                let l = t.to_ascii_lowercase();
                if let Some(n) = self
                    .nodes
                    .iter()
                    .find(|n| n.name.as_deref() == Some(l.as_str()))
                {
                    return Ok(n.index);
                }
                let names: Vec<&str> = self
                    .nodes
                    .iter()
                    .filter_map(|n| n.name.as_deref())
                    .collect();
                let hint = suggest(t, &names)
                    .map(|s| format!("did you mean {s}?"))
                    .or_else(|| {
                        if names.is_empty() {
                            Some("the file has no named stages".into())
                        } else {
                            Some(format!("stages: {}", names.join(", ")))
                        }
                    });
                Err(Error::Stage {
                    file: self.file.clone(),
                    at: None,
                    message: format!("target stage \"{t}\" could not be found"),
                    hint,
                })
            }
        }
    }

    /// Stages needed to build `target` (default: the last stage), dependencies first.
    /// Stages the target does not need are left out.
    pub fn plan(&self, target: Option<&str>) -> Result<Vec<usize>, Error> {
        let t = self.target(target)?;
        let mut seen = vec![false; self.nodes.len()];
        let mut order = Vec::new();
        let mut stack: Vec<(usize, usize)> = vec![(t, 0)];
        seen[t] = true;
        while let Some(&mut (n, ref mut k)) = stack.last_mut() {
            let deps = &self.nodes[n].deps;
            if *k >= deps.len() {
                order.push(n);
                stack.pop();
                continue;
            }
            let dep = &deps[*k].0;
            *k += 1;
            if let Dep::Stage(d) = dep {
                if !seen[*d] {
                    seen[*d] = true;
                    stack.push((*d, 0));
                }
            }
        }
        Ok(order)
    }

    /// Stage dependencies of stage `i` (indexes, no duplicates).
    pub fn stage_deps(&self, i: usize) -> Vec<usize> {
        let mut v: Vec<usize> = Vec::new();
        if let Some(n) = self.nodes.get(i) {
            for (d, _) in &n.deps {
                if let Dep::Stage(s) = d {
                    if !v.contains(s) {
                        v.push(*s);
                    }
                }
            }
        }
        v
    }
}

/// The location of `--from=`/`from=` (or the first non-blank) on a 1-based line.
fn locate(file: &str, lines: &[&str], line: u32) -> Option<Box<Location>> {
    let src = lines.get((line as usize).checked_sub(1)?)?;
    let byte = src
        .find("from=")
        .map(|b| if src[..b].ends_with("--") { b - 2 } else { b });
    let byte = byte.unwrap_or(src.len() - src.trim_start().len());
    Some(Box::new(Location {
        file: file.to_string(),
        line,
        column: src[..byte].chars().count() as u32 + 1,
        source_line: src.to_string(),
    }))
}
