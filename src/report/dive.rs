//! dive's image efficiency, computed the way dive 0.13.1 computes it
//! (`dive/filetree/efficiency.go`, `file_tree.go`, `file_node.go`), so a threshold
//! a dive user set means the same here. Reimplemented, not translated; the quirks
//! that change the numbers are kept on purpose and named where they happen:
//!
//! * each layer is a tree built by `AddPath` in tar order; a name component
//!   starting with `.wh..wh..` is never added (opaque markers are ignored, so what
//!   an opaque directory hides is not counted);
//! * only leaves are visited, children in byte order before their parent;
//! * a whiteout's size is the summed header sizes of the subtree it deletes in the
//!   stack of the layers below, and 0 when that was not a directory, or when the
//!   directory only existed implicitly (a parent created for a child has no info);
//! * stacking the lower layers starts from a copy of layer 0 and stacks layer 0 on
//!   it once more;
//! * a whiteout of a path missing below ends the walk of that layer (dive returns the
//!   error from its visitor), after its path was recorded with a minimum size of -1;
//! * every path seen in two or more layers is "inefficient" with its cumulative size
//!   over all layers, the first copy included.

use std::collections::{BTreeMap, HashMap};

use super::scan::{Entry, Kind};

#[derive(Debug, Clone, Copy, Default)]
struct Info {
    is_dir: bool,
    size: i64,
}

#[derive(Debug, Clone)]
struct Node {
    name: String,
    parent: usize,
    info: Info,
    children: BTreeMap<String, usize>,
}

/// One dive `FileTree` (an arena; index 0 is the root).
#[derive(Debug, Clone)]
struct Tree {
    nodes: Vec<Node>,
}

const ROOT: usize = 0;

impl Tree {
    fn new() -> Tree {
        Tree {
            nodes: vec![Node {
                name: String::new(),
                parent: ROOT,
                info: Info::default(),
                children: BTreeMap::new(),
            }],
        }
    }

    /// `FileTree.AddPath`: create missing components without info, put `info` on the
    /// last; stop silently at a missing component named `.wh..wh..*`.
    fn add_path(&mut self, path: &str, info: Info) {
        let names: Vec<&str> = path.split('/').filter(|n| !n.is_empty()).collect();
        let mut node = ROOT;
        for (i, name) in names.iter().enumerate() {
            node = match self.nodes[node].children.get(*name) {
                Some(&c) => c,
                None => {
                    if name.starts_with(".wh..wh..") {
                        return;
                    }
                    let id = self.nodes.len();
                    self.nodes.push(Node {
                        name: name.to_string(),
                        parent: node,
                        info: Info::default(),
                        children: BTreeMap::new(),
                    });
                    self.nodes[node].children.insert(name.to_string(), id);
                    id
                }
            };
            if i == names.len() - 1 {
                self.nodes[node].info = info;
            }
        }
    }

    fn get(&self, path: &str) -> Option<usize> {
        let mut node = ROOT;
        for name in path.split('/').filter(|n| !n.is_empty()) {
            node = *self.nodes[node].children.get(name)?;
        }
        Some(node)
    }

    fn remove_path(&mut self, path: &str) {
        if let Some(n) = self.get(path) {
            if n != ROOT {
                let parent = self.nodes[n].parent;
                let name = self.nodes[n].name.clone();
                self.nodes[parent].children.remove(&name);
            }
        }
    }

    /// `FileNode.Path`: `/`-joined names, the node's own `.wh.` prefix dropped.
    fn path(&self, node: usize) -> String {
        let mut parts = Vec::new();
        let mut n = node;
        while n != ROOT {
            let name = &self.nodes[n].name;
            parts.push(if n == node {
                name.strip_prefix(".wh.").unwrap_or(name)
            } else {
                name.as_str()
            });
            n = self.nodes[n].parent;
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    /// Children (in byte order) before their parent; never the root.
    fn child_first(&self, from: usize, out: &mut Vec<usize>) {
        for &c in self.nodes[from].children.values() {
            self.child_first(c, out);
        }
        if from != ROOT {
            out.push(from);
        }
    }

    /// `FileTree.Stack`: whiteouts remove, everything else is added over.
    fn stack(&mut self, upper: &Tree) {
        let mut order = Vec::new();
        upper.child_first(ROOT, &mut order);
        for n in order {
            let path = upper.path(n);
            if upper.nodes[n].name.starts_with(".wh.") {
                self.remove_path(&path);
            } else {
                self.add_path(&path, upper.nodes[n].info);
            }
        }
    }
}

/// dive's per-layer tree of one scanned layer, and its `FileSize`.
fn layer_tree(entries: &[Entry]) -> (Tree, u64) {
    let mut t = Tree::new();
    let mut size = 0u64;
    for e in entries {
        size += e.size;
        let info = Info {
            is_dir: e.kind == Kind::Dir,
            size: e.size as i64,
        };
        t.add_path(&e.name, info);
    }
    (t, size)
}

/// One path dive calls inefficient.
#[derive(Debug, Clone, PartialEq)]
pub struct Inefficiency {
    pub path: String,
    pub count: usize,
    pub size_bytes: u64,
}

/// dive's figures for an image.
#[derive(Debug, Clone, PartialEq)]
pub struct DiveFigures {
    /// Sum of the layers' header sizes (`image.sizeBytes`).
    pub size_bytes: u64,
    /// The same without layer 0.
    pub user_size_bytes: u64,
    pub layer_size_bytes: Vec<u64>,
    pub inefficient_bytes: u64,
    pub efficiency_score: f64,
    /// `inefficient_bytes / user_size_bytes` (dive's `WastedUserPercent`, a ratio).
    pub user_wasted_percent: f64,
    /// Largest first.
    pub inefficiencies: Vec<Inefficiency>,
}

struct PathData {
    cumulative: i64,
    min: i64,
    count: usize,
}

/// Compute dive's efficiency over the layers' entries (in layer order).
pub fn efficiency(layers: &[&[Entry]]) -> DiveFigures {
    let built: Vec<(Tree, u64)> = layers.iter().map(|l| layer_tree(l)).collect();
    let mut map: HashMap<String, PathData> = HashMap::new();
    let mut matches: Vec<String> = Vec::new();
    // The stack of layers 0..k-1 as dive builds it for layer k.
    let mut below = built.first().map(|(t, _)| t.clone());
    for (tree, _) in &built {
        let mut order = Vec::new();
        tree.child_first(ROOT, &mut order);
        for n in order {
            if !tree.nodes[n].children.is_empty() {
                continue;
            }
            let path = tree.path(n);
            let data = map.entry(path.clone()).or_insert(PathData {
                cumulative: 0,
                min: -1,
                count: 0,
            });
            let size = if tree.nodes[n].name.starts_with(".wh.") {
                let Some(prev) = below.as_ref().and_then(|b| b.get(&path).map(|p| (b, p))) else {
                    // dive: "path does not exist" ends this layer's walk.
                    break;
                };
                let (b, p) = prev;
                if b.nodes[p].info.is_dir {
                    let mut sub = Vec::new();
                    b.child_first(p, &mut sub);
                    sub.iter().map(|&s| b.nodes[s].info.size).sum()
                } else {
                    0
                }
            } else {
                tree.nodes[n].info.size
            };
            data.cumulative += size;
            if data.min < 0 || size < data.min {
                data.min = size;
            }
            data.count += 1;
            if data.count == 2 {
                matches.push(path);
            }
        }
        if let Some(b) = below.as_mut() {
            b.stack(tree);
        }
    }
    let (mut min_sum, mut cum_sum) = (0i64, 0i64);
    for d in map.values() {
        min_sum += d.min;
        cum_sum += d.cumulative;
    }
    let efficiency_score = if cum_sum == 0 {
        1.0
    } else {
        min_sum as f64 / cum_sum as f64
    };
    let mut inefficiencies: Vec<Inefficiency> = matches
        .iter()
        .filter_map(|p| {
            map.get(p).map(|d| Inefficiency {
                path: p.clone(),
                count: d.count,
                size_bytes: d.cumulative as u64,
            })
        })
        .collect();
    inefficiencies.sort_by(|a, b| {
        b.size_bytes
            .cmp(&a.size_bytes)
            .then_with(|| a.path.cmp(&b.path))
    });
    let inefficient_bytes = inefficiencies.iter().map(|i| i.size_bytes).sum();
    let layer_size_bytes: Vec<u64> = built.iter().map(|(_, s)| *s).collect();
    let size_bytes = layer_size_bytes.iter().sum();
    let user_size_bytes = layer_size_bytes.iter().skip(1).sum();
    DiveFigures {
        size_bytes,
        user_size_bytes,
        layer_size_bytes,
        inefficient_bytes,
        efficiency_score,
        user_wasted_percent: inefficient_bytes as f64 / user_size_bytes as f64,
        inefficiencies,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, size: u64) -> Entry {
        Entry {
            name: name.into(),
            kind: if name.ends_with(".wh..wh..opq") {
                Kind::Opaque
            } else if name
                .rsplit('/')
                .next()
                .is_some_and(|b| b.starts_with(".wh."))
            {
                Kind::Whiteout
            } else {
                Kind::File
            },
            size,
            content: None,
        }
    }
    fn d(name: &str) -> Entry {
        Entry {
            name: name.into(),
            kind: Kind::Dir,
            size: 0,
            content: None,
        }
    }

    #[test]
    fn one_layer_is_fully_efficient() {
        let l = vec![d("a"), f("a/x", 10), f("b", 5)];
        let r = efficiency(&[&l]);
        assert_eq!(r.inefficient_bytes, 0);
        assert_eq!(r.efficiency_score, 1.0);
        assert_eq!(r.size_bytes, 15);
    }

    #[test]
    fn rewritten_and_deleted_files() {
        let l0 = vec![d("a"), f("a/x", 100), f("b", 50), d("dir"), f("dir/y", 30)];
        let l1 = vec![d("a"), f("a/x", 40), f(".wh.b", 0), f(".wh.dir", 0)];
        let r = efficiency(&[&l0, &l1]);
        // a/x: 100 + 40 (min 40); b: 50 + 0 (min 0); /dir is not a leaf in layer 0,
        // so only its whiteout visits it, sized as its subtree (dir 0 + y 30).
        assert_eq!(r.inefficient_bytes, 140 + 50);
        let min = 40 + 30 + 30; // a/x, b (0), dir/y, /dir
        let cum = 140 + 50 + 30 + 30;
        assert!((r.efficiency_score - min as f64 / cum as f64).abs() < 1e-12);
        assert_eq!(r.user_size_bytes, 40);
    }

    #[test]
    fn whiteout_of_missing_path_stops_the_layer_and_counts_minus_one() {
        let l0 = vec![f("a", 10)];
        let l1 = vec![f(".wh.nothere", 0), f("z", 7)];
        let r = efficiency(&[&l0, &l1]);
        // /nothere is recorded with min -1 and the walk stops before /z.
        assert!((r.efficiency_score - (10.0 - 1.0) / 10.0).abs() < 1e-12);
    }

    #[test]
    fn opaque_markers_are_ignored() {
        let l0 = vec![d("o"), f("o/hidden", 1000)];
        let l1 = vec![d("o"), f("o/.wh..wh..opq", 0), f("o/new", 5)];
        let r = efficiency(&[&l0, &l1]);
        assert_eq!(r.inefficient_bytes, 0);
        assert_eq!(r.efficiency_score, 1.0);
    }
}
