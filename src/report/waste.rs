//! imgctl's own account of wasted bytes, complete where dive's is not: every
//! regular file's bytes stored in some layer but not visible in the final
//! filesystem (overwritten, deleted by a whiteout, hidden by an opaque directory,
//! or under a directory replaced by a non-directory), plus visible files whose
//! content is already stored at another visible path (duplicates). Each item names
//! its path and the layer holding the bytes.
//!
//! Semantics follow the OCI layer spec: whiteouts and opaque markers apply to the
//! layers below only, never to entries of their own layer; within one layer a later
//! entry for a path replaces an earlier one.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::scan::{split, Entry, Kind};

/// Why bytes count as wasted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The path was written again in a later layer (or later in the same layer).
    Overwritten,
    /// A whiteout in a later layer deleted it (or a directory above it).
    Deleted,
    /// An opaque directory in a later layer hid it.
    Opaque,
    /// Visible, but the same content is visible at `same_as` too.
    Duplicate,
}

/// One wasted item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waste {
    /// Absolute path in the image.
    pub path: String,
    /// Index of the layer storing the bytes.
    pub layer: usize,
    pub bytes: u64,
    pub reason: Reason,
    /// The layer whose entry made these bytes invisible (not for duplicates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_layer: Option<usize>,
    /// For duplicates: the visible path holding the kept copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_as: Option<String>,
    /// The content's BLAKE3 hash (not printed).
    #[serde(skip)]
    pub content: Option<[u8; 32]>,
}

/// A path of the final (flattened) filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visible {
    pub layer: usize,
    pub kind: Kind,
    pub size: u64,
    pub content: Option<[u8; 32]>,
}

/// The flattened filesystem (path without leading `/` -> what is there) and the waste.
#[derive(Debug, Clone, Default)]
pub struct Flattened {
    pub paths: BTreeMap<String, Visible>,
    pub waste: Vec<Waste>,
}

fn abs(p: &str) -> String {
    format!("/{p}")
}

/// Remove `path` and everything below it from `paths`; its files become waste.
fn remove_tree(
    paths: &mut BTreeMap<String, Visible>,
    waste: &mut Vec<Waste>,
    path: &str,
    self_too: bool,
    reason: Reason,
    by: usize,
) {
    let mut gone: Vec<String> = Vec::new();
    if self_too && paths.contains_key(path) {
        gone.push(path.to_string());
    }
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    gone.extend(
        paths
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone()),
    );
    for k in gone {
        if let Some(v) = paths.remove(&k) {
            if v.kind == Kind::File && v.size > 0 {
                waste.push(Waste {
                    path: abs(&k),
                    layer: v.layer,
                    bytes: v.size,
                    reason,
                    by_layer: Some(by),
                    same_as: None,
                    content: v.content,
                });
            }
        }
    }
}

/// Flatten the layers (in order) and account for every stored byte.
pub fn flatten(layers: &[&[Entry]]) -> Flattened {
    let mut paths: BTreeMap<String, Visible> = BTreeMap::new();
    let mut waste = Vec::new();
    for (li, entries) in layers.iter().enumerate() {
        // Lower layers first lose what this layer's opaque markers and whiteouts hide.
        for e in entries.iter().filter(|e| e.kind == Kind::Opaque) {
            let dir = e.target();
            remove_tree(&mut paths, &mut waste, &dir, false, Reason::Opaque, li);
        }
        for e in entries.iter().filter(|e| e.kind == Kind::Whiteout) {
            let target = e.target();
            remove_tree(&mut paths, &mut waste, &target, true, Reason::Deleted, li);
        }
        for e in entries
            .iter()
            .filter(|e| !matches!(e.kind, Kind::Whiteout | Kind::Opaque))
        {
            // A non-directory anywhere above replaces... only directories hold children:
            // a file entry at a path that was a directory drops the directory's tree.
            if let Some(old) = paths.get(&e.name) {
                if e.kind == Kind::Dir && old.kind == Kind::Dir {
                    paths.insert(
                        e.name.clone(),
                        Visible {
                            layer: li,
                            kind: Kind::Dir,
                            size: 0,
                            content: None,
                        },
                    );
                    continue;
                }
                remove_tree(
                    &mut paths,
                    &mut waste,
                    &e.name,
                    true,
                    Reason::Overwritten,
                    li,
                );
            }
            // Parents that are not directories (a file replaced by a directory
            // implicitly) are dropped so the tree stays a tree.
            let mut parent = split(&e.name).0;
            while !parent.is_empty() {
                match paths.get(parent) {
                    Some(v) if v.kind != Kind::Dir => {
                        remove_tree(
                            &mut paths,
                            &mut waste,
                            parent,
                            true,
                            Reason::Overwritten,
                            li,
                        );
                        break;
                    }
                    Some(_) => break,
                    None => parent = split(parent).0,
                }
            }
            paths.insert(
                e.name.clone(),
                Visible {
                    layer: li,
                    kind: e.kind,
                    size: e.size,
                    content: e.content,
                },
            );
        }
    }
    // Duplicates: the first visible path (by layer, then path) keeps the content.
    let mut first: HashMap<[u8; 32], (usize, &String)> = HashMap::new();
    let mut files: Vec<(&String, &Visible)> = paths
        .iter()
        .filter(|(_, v)| v.kind == Kind::File && v.size > 0)
        .collect();
    files.sort_by(|a, b| a.1.layer.cmp(&b.1.layer).then_with(|| a.0.cmp(b.0)));
    let mut dups = Vec::new();
    for (p, v) in files {
        let Some(c) = v.content else { continue };
        match first.get(&c) {
            Some((_, kept)) => dups.push(Waste {
                path: abs(p),
                layer: v.layer,
                bytes: v.size,
                reason: Reason::Duplicate,
                by_layer: None,
                same_as: Some(abs(kept)),
                content: v.content,
            }),
            None => {
                first.insert(c, (v.layer, p));
            }
        }
    }
    // Bytes a visible hardlink of the same layer still reaches are not wasted.
    let linked: std::collections::HashSet<(usize, [u8; 32])> = paths
        .values()
        .filter(|v| v.kind == Kind::Hardlink)
        .filter_map(|v| v.content.map(|c| (v.layer, c)))
        .collect();
    waste.retain(|w| !w.content.is_some_and(|c| linked.contains(&(w.layer, c))));
    waste.extend(dups);
    waste.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then_with(|| a.path.cmp(&b.path))
            .then_with(|| a.layer.cmp(&b.layer))
    });
    Flattened { paths, waste }
}

/// One of the largest files or directories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Largest {
    pub path: String,
    pub bytes: u64,
    /// Layer of a file; for a directory, the number of files below it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
}

/// The `n` largest visible files and directories (directory = all files below it).
pub fn largest(f: &Flattened, n: usize) -> (Vec<Largest>, Vec<Largest>) {
    let mut files: Vec<Largest> = f
        .paths
        .iter()
        .filter(|(_, v)| v.kind == Kind::File)
        .map(|(p, v)| Largest {
            path: abs(p),
            bytes: v.size,
            layer: Some(v.layer),
            files: None,
        })
        .collect();
    files.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
    files.truncate(n);
    let mut dirs: HashMap<String, (u64, u64)> = HashMap::new();
    for (p, v) in f.paths.iter().filter(|(_, v)| v.kind == Kind::File) {
        let mut d = split(p).0;
        while !d.is_empty() {
            let e = dirs.entry(d.to_string()).or_default();
            e.0 += v.size;
            e.1 += 1;
            d = split(d).0;
        }
    }
    let mut dirs: Vec<Largest> = dirs
        .into_iter()
        .map(|(p, (bytes, count))| Largest {
            path: abs(&p),
            bytes,
            layer: None,
            files: Some(count),
        })
        .collect();
    dirs.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
    dirs.truncate(n);
    (files, dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, data: &[u8]) -> Entry {
        Entry {
            name: name.into(),
            kind: Kind::File,
            size: data.len() as u64,
            content: Some(blake3::hash(data).into()),
        }
    }
    fn mark(name: &str, kind: Kind) -> Entry {
        Entry {
            name: name.into(),
            kind,
            size: 0,
            content: None,
        }
    }

    #[test]
    fn every_kind_of_waste_is_found_with_path_and_layer() {
        let big = vec![7u8; 1000];
        let l0 = vec![
            file("big", &big),
            file("f", b"one"),
            mark("o", Kind::Dir),
            file("o/hidden", b"hidden!"),
            file("a", b"same content"),
        ];
        let l1 = vec![
            mark(".wh.big", Kind::Whiteout),
            file("f", b"two!"),
            mark("o", Kind::Dir),
            mark("o/.wh..wh..opq", Kind::Opaque),
            file("o/new", b"n"),
            file("b", b"same content"),
        ];
        let l2 = vec![file("f", b"three")];
        let r = flatten(&[&l0, &l1, &l2]);
        let got: Vec<(String, usize, u64, Reason)> = r
            .waste
            .iter()
            .map(|w| (w.path.clone(), w.layer, w.bytes, w.reason))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/big".to_string(), 0, 1000, Reason::Deleted),
                ("/b".to_string(), 1, 12, Reason::Duplicate),
                ("/o/hidden".to_string(), 0, 7, Reason::Opaque),
                ("/f".to_string(), 1, 4, Reason::Overwritten),
                ("/f".to_string(), 0, 3, Reason::Overwritten),
            ]
        );
        assert!(r.paths.contains_key("o/new"));
        assert_eq!(r.paths["f"].size, 5);
    }

    #[test]
    fn bytes_a_visible_hardlink_reaches_are_not_wasted() {
        let mut link = mark("b", Kind::Hardlink);
        let a = file("a", b"shared bytes");
        link.content = a.content;
        let l0 = vec![a, link, file("c", b"only here")];
        let l1 = vec![mark(".wh.a", Kind::Whiteout), mark(".wh.c", Kind::Whiteout)];
        let r = flatten(&[&l0, &l1]);
        let got: Vec<&str> = r.waste.iter().map(|w| w.path.as_str()).collect();
        assert_eq!(got, vec!["/c"]);
    }

    #[test]
    fn opaque_marker_keeps_entries_of_its_own_layer() {
        let l0 = vec![mark("d", Kind::Dir), file("d/x", b"x")];
        let l1 = vec![file("d/y", b"yy"), mark("d/.wh..wh..opq", Kind::Opaque)];
        let r = flatten(&[&l0, &l1]);
        assert!(r.paths.contains_key("d/y"));
        assert!(!r.paths.contains_key("d/x"));
    }
}
